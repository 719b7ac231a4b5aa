package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// primaryType is the FHIR type a kind's primary resource has.
func primaryType(k mapping.Kind) string {
	switch k {
	case mapping.KindPatient:
		return "Patient"
	case mapping.KindOrder:
		return "MedicationRequest"
	case mapping.KindAdministration:
		return "MedicationAdministration"
	default:
		return "Observation"
	}
}

// lookup answers the mapper's questions from resolved dependencies.
type lookup struct {
	refs   map[mapping.Dependency]string
	orders map[string]*mapping.Order
}

func (l *lookup) Reference(kind mapping.Kind, id string) string {
	return l.refs[mapping.Dependency{Kind: kind, ID: id}]
}

func (l *lookup) Order(id string) *mapping.Order { return l.orders[id] }

// waitError says a record cannot go out yet; it becomes a waiting outcome.
type waitError struct {
	dep   mapping.Dependency
	class string
}

func (w *waitError) Error() string { return "waiting for " + string(w.dep.Kind) + ": " + w.class }

// deliver sends one claimed row and returns its outcome.
func (e *Engine) deliver(ctx context.Context, r store.Record) store.Outcome {
	rec, err := e.parser.Parse(r.Payload, 0)
	if err != nil {
		return store.Outcome{State: store.StateDead, ErrorClass: ClassInvalidRecord, ErrorDetail: err.Error()}
	}
	if rec.Kind == mapping.KindPatient {
		return e.deliverPatient(ctx, r, rec)
	}
	lk, err := e.resolve(ctx, rec)
	if err != nil {
		return e.waitOrFail(r, err)
	}
	self := mapping.Dependency{Kind: rec.Kind, ID: rec.ID()}
	if r.EHRID != "" {
		lk.refs[self] = primaryType(rec.Kind) + "/" + r.EHRID
	}
	res, err := e.mapper.Map(rec, lk)
	if err != nil {
		return e.mappingFailure(rec, err)
	}
	e.metrics.Mapped(r.Kind)
	id, version, err := e.write(ctx, r, res[0], r.EHRID, r.EHRVersion)
	if err != nil {
		return e.failure(r, err)
	}
	if len(res) > 1 {
		if _, known := lk.refs[self]; !known {
			// The derived resources point to the primary one: map again now
			// that its id is known.
			lk.refs[self] = primaryType(rec.Kind) + "/" + id
			if res, err = e.mapper.Map(rec, lk); err != nil {
				return e.mappingFailure(rec, err)
			}
		}
		for _, d := range res[1:] {
			if _, _, err := e.write(ctx, r, d, "", ""); err != nil {
				out := e.failure(r, err)
				// Keep what the primary write taught us, so the retry
				// updates it in place.
				out.EHRID, out.EHRVersion = id, version
				return out
			}
		}
	}
	return store.Outcome{State: store.StateSynced, EHRID: id, EHRVersion: version}
}

// mappingFailure turns a mapping error into an outcome: an administration
// whose order is unknown waits for it; anything else is a dead letter.
func (e *Engine) mappingFailure(rec *mapping.Record, err error) store.Outcome {
	if errors.Is(err, mapping.ErrOrderUnknown) && rec.Administration != nil {
		return store.Outcome{State: store.StateWaiting, WaitKind: string(mapping.KindOrder),
			WaitID: rec.Administration.OrderID, ErrorClass: ClassDependencyPending}
	}
	return store.Outcome{State: store.StateDead, ErrorClass: ClassMapping, ErrorDetail: err.Error()}
}

// waitOrFail turns a resolution error into an outcome.
func (e *Engine) waitOrFail(r store.Record, err error) store.Outcome {
	var w *waitError
	if errors.As(err, &w) {
		return store.Outcome{State: store.StateWaiting, WaitKind: string(w.dep.Kind), WaitID: w.dep.ID, ErrorClass: w.class}
	}
	return e.failure(r, err)
}

// deliverPatient resolves a patient by MRN and, when patients.create is
// set, creates or updates it.
func (e *Engine) deliverPatient(ctx context.Context, r store.Record, rec *mapping.Record) store.Outcome {
	if !e.cfg.Patients.Create {
		id, err := e.findPatient(ctx, rec.Patient.MRN)
		if err != nil {
			return e.failure(r, err)
		}
		if id == "" {
			// Held by policy: RequeueHeld checks it again later.
			return store.Outcome{State: store.StateWaiting, ErrorClass: ClassPatientUnknown,
				ErrorDetail: "the EHR has no patient with this MRN and patients.create is false"}
		}
		return store.Outcome{State: store.StateSynced, EHRID: id}
	}
	res, err := e.mapper.Map(rec, &lookup{refs: map[mapping.Dependency]string{}})
	if err != nil {
		return store.Outcome{State: store.StateDead, ErrorClass: ClassMapping, ErrorDetail: err.Error()}
	}
	e.metrics.Mapped(r.Kind)
	id, version, err := e.write(ctx, r, res[0], r.EHRID, r.EHRVersion)
	if err != nil {
		return e.failure(r, err)
	}
	e.patientIDs.Store(rec.Patient.MRN, id)
	return store.Outcome{State: store.StateSynced, EHRID: id, EHRVersion: version}
}

// findPatient searches the EHR for a patient by MRN; "" when none.
func (e *Engine) findPatient(ctx context.Context, mrn string) (string, error) {
	if id, ok := e.patientIDs.Load(mrn); ok {
		return id.(string), nil
	}
	ident := e.mapper.Identifier(mapping.KindPatient, mrn)
	entries, err := e.client.Search(ctx, "Patient", ident.Query())
	if err != nil {
		return "", err
	}
	switch len(entries) {
	case 0:
		return "", nil
	case 1:
		e.patientIDs.Store(mrn, entries[0].ID)
		return entries[0].ID, nil
	}
	return "", &ehr.RejectedError{Status: http.StatusConflict, ResourceType: "Patient",
		Issues: []ehr.Issue{{Severity: "error", Code: "multiple-matches",
			Diagnostics: fmt.Sprintf("%d patients in the EHR hold this MRN", len(entries))}}}
}

// resolve finds the EHR references of a record's dependencies, or returns a
// *waitError naming the first one that is not synced.
func (e *Engine) resolve(ctx context.Context, rec *mapping.Record) (*lookup, error) {
	lk := &lookup{refs: map[mapping.Dependency]string{}, orders: map[string]*mapping.Order{}}
	for _, dep := range rec.Dependencies() {
		row, err := e.store.Get(ctx, string(dep.Kind), dep.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if dep.Kind != mapping.KindPatient {
				return nil, &waitError{dep, ClassDependencyMissing}
			}
			id, err := e.findPatient(ctx, dep.ID)
			if err != nil {
				return nil, err
			}
			if id == "" {
				return nil, &waitError{dep, ClassPatientUnknown}
			}
			lk.refs[dep] = "Patient/" + id
			continue
		case err != nil:
			if ctx.Err() != nil {
				// Shutting down, not a store failure: the row is
				// released as canceled.
				return nil, ctx.Err()
			}
			return nil, &ehr.TransientError{Reason: "store"}
		}
		if row.EHRID == "" {
			class := ClassDependencyPending
			switch {
			case row.State == store.StateDead:
				class = ClassDependencyDead
			case dep.Kind == mapping.KindPatient && row.State == store.StateWaiting && row.ErrorClass == ClassPatientUnknown:
				// Held with its patient (patients.create false): the
				// same reason, so RequeueHeld re-checks it too.
				class = ClassPatientUnknown
			}
			return nil, &waitError{dep, class}
		}
		lk.refs[dep] = primaryType(dep.Kind) + "/" + row.EHRID
		if dep.Kind == mapping.KindOrder {
			order, err := e.parser.Parse(row.Payload, 0)
			if err != nil || order.Order == nil {
				return nil, &waitError{dep, ClassDependencyDead}
			}
			lk.orders[dep.ID] = order.Order
		}
	}
	return lk, nil
}

// write makes one idempotent write and returns the resource's EHR id and
// version. With a known id it updates in place with If-Match, re-reading
// the version once on 412; otherwise it writes conditionally on the
// business identifier by the configured strategy.
func (e *Engine) write(ctx context.Context, r store.Record, res mapping.Resource, knownID, knownVersion string) (string, string, error) {
	if knownID != "" {
		id, v, err := e.updateByID(ctx, res, knownID, knownVersion)
		var rej *ehr.RejectedError
		if errors.As(err, &rej) && (rej.Status == http.StatusNotFound || rej.Status == http.StatusGone) {
			// Deleted in the EHR since: write it again conditionally.
			return e.writeConditional(ctx, res)
		}
		return id, v, err
	}
	return e.writeConditional(ctx, res)
}

func (e *Engine) updateByID(ctx context.Context, res mapping.Resource, id, version string) (string, string, error) {
	body, err := withID(res.JSON, id)
	if err != nil {
		return "", "", err
	}
	req := ehr.Request{Method: http.MethodPut, Path: res.Type + "/" + id, ResourceType: res.Type, Body: body, IfMatch: version}
	resp, err := e.client.Do(ctx, req)
	if versionConflict(err) {
		// Someone else changed it: learn the current version and try once
		// more. Our content wins; the EHR keeps the history.
		cur, gerr := e.client.Do(ctx, ehr.Request{Method: http.MethodGet, Path: res.Type + "/" + id, ResourceType: res.Type})
		if gerr != nil {
			return "", "", gerr
		}
		req.IfMatch = cur.Version
		resp, err = e.client.Do(ctx, req)
	}
	if err != nil {
		return "", "", err
	}
	return orDefault(resp.ID, id), resp.Version, nil
}

func (e *Engine) writeConditional(ctx context.Context, res mapping.Resource) (string, string, error) {
	query := res.Identifier.Query()
	strategy := e.cfg.EHR.Strategy(res.Type)
	if res.Type == "Patient" && e.cfg.EHR.WriteStrategy["Patient"] == "" {
		strategy = "conditional-create" // the EHR owns Patient: never overwrite one we did not write
	}
	if strategy == "conditional-create" {
		resp, err := e.client.Do(ctx, ehr.Request{Method: http.MethodPost, Path: res.Type, ResourceType: res.Type,
			Body: res.JSON, IfNoneExist: query})
		if err != nil {
			return "", "", err
		}
		if resp.Status == http.StatusOK && res.Type != "Patient" && resp.ID != "" {
			// It existed (an earlier attempt whose answer was lost, or an
			// older content): make sure it holds ours.
			return e.updateByID(ctx, res, resp.ID, resp.Version)
		}
		return resp.ID, resp.Version, nil
	}
	resp, err := e.client.Do(ctx, ehr.Request{Method: http.MethodPut, Path: res.Type + "?" + query,
		ResourceType: res.Type, Body: res.JSON})
	if err != nil {
		return "", "", err
	}
	return resp.ID, resp.Version, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// withID sets "id" on a resource's JSON (an update by id must carry it).
func withID(body []byte, id string) ([]byte, error) {
	s := strings.TrimSpace(string(body))
	if !strings.HasPrefix(s, "{") {
		return nil, errors.New("adapter: resource JSON is not an object")
	}
	quoted, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	return []byte(`{"id":` + string(quoted) + `,` + strings.TrimPrefix(s, "{")), nil
}

// versionConflict reports whether err says the If-Match version is stale:
// 412 as the FHIR spec says, or 409 as some servers answer.
func versionConflict(err error) bool {
	if ehr.Classify(err) == ehr.ClassConflict {
		return true
	}
	var rej *ehr.RejectedError
	return errors.As(err, &rej) && rej.Status == http.StatusConflict && rej.IfMatch != ""
}
