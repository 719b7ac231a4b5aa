package adapter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

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

// selfID is the id the mapper is given for the record's own primary
// resource, so that its derived resources can be mapped (and hashed)
// before that resource exists; withSelf puts the real reference in.
const selfID = "ketamine-fhir-self"

// withSelf replaces the placeholder reference to the primary resource of
// type typ in a derived resource's JSON with ref ("Type/id" or a urn).
func withSelf(body []byte, typ, ref string) []byte {
	return bytes.ReplaceAll(body, []byte(`"`+typ+"/"+selfID+`"`), []byte(`"`+ref+`"`))
}

// fhirHash is the hash of what a record's mapping sends: every resource's
// JSON, in order. Change detection compares it with the row's SentHash.
func fhirHash(res []mapping.Resource) string {
	h := sha256.New()
	for _, r := range res {
		h.Write([]byte(r.Type))
		h.Write([]byte{0})
		h.Write(r.JSON)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// derivedKey names a derived resource for the outbox's Derived list.
func derivedKey(r mapping.Resource) string {
	return r.Type + "|" + r.Identifier.System + "|" + r.Identifier.Value
}

// parseDerivedKey is the inverse of derivedKey.
func parseDerivedKey(k string) (typ string, id mapping.Identifier, ok bool) {
	// A system is a URI, which holds no '|'; a value may.
	typ, rest, ok1 := strings.Cut(k, "|")
	system, value, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 {
		return "", mapping.Identifier{}, false
	}
	return typ, mapping.Identifier{System: system, Value: value}, true
}

// derivedKeys lists the derived resources of a mapping.
func derivedKeys(res []mapping.Resource) []string {
	if len(res) < 2 {
		return nil
	}
	keys := make([]string, 0, len(res)-1)
	for _, r := range res[1:] {
		keys = append(keys, derivedKey(r))
	}
	return keys
}

// staleDerived returns the derived resources synced before (was) that the
// new mapping no longer produces.
func staleDerived(was []string, res []mapping.Resource) []string {
	if len(was) == 0 {
		return nil
	}
	now := map[string]bool{}
	for _, k := range derivedKeys(res) {
		now[k] = true
	}
	var stale []string
	for _, k := range was {
		if !now[k] {
			stale = append(stale, k)
		}
	}
	return stale
}

// writeDerived writes the derived resources of it not yet written,
// concurrently, and marks those that succeed. It returns the first error
// that is not transient if any, else the first transient one.
func (e *Engine) writeDerived(ctx context.Context, it *item) error {
	if it.derivedDone == nil {
		it.derivedDone = make([]bool, len(it.mapped)-1)
	}
	typ := primaryType(it.rec.Kind)
	var (
		wg               sync.WaitGroup
		mu               sync.Mutex
		fatal, transient error
		progress         bool
	)
	for i, done := range it.derivedDone {
		if done {
			continue
		}
		d := it.mapped[1+i]
		d.JSON = withSelf(d.JSON, typ, typ+"/"+it.id)
		wg.Go(func() {
			_, _, err := e.writeConditional(ctx, d, true)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				it.derivedDone[i], progress = true, true
			case ehr.Classify(err) != ehr.ClassTransient:
				if fatal == nil {
					fatal = err
				}
			case transient == nil:
				transient = err
			}
		})
	}
	wg.Wait()
	if progress {
		it.progressed() // progress renews the budget of in-memory tries
	}
	if fatal != nil {
		return fatal
	}
	return transient
}

// deliverItem makes one attempt at delivering an item and says what comes
// next. It resumes where an earlier in-memory attempt stopped.
func (e *Engine) deliverItem(ctx context.Context, p *pipeline, it *item) result {
	rec, r := it.rec, it.row
	if rec.Kind == mapping.KindPatient && !e.cfg.Patients.Create {
		return e.holdPatient(ctx, it)
	}
	if it.mapped == nil {
		if res := e.prepare(ctx, p, it); res != nil {
			return *res
		}
	}
	if r.EHRID != "" && r.SentHash == it.sentHash && it.id == "" && len(staleDerived(r.Derived, it.mapped)) == 0 {
		// The EHR holds exactly this already (a resync, or an update of
		// fields that are not sent): nothing to send.
		return result{out: store.Outcome{State: store.StateSynced, EHRID: r.EHRID, EHRVersion: r.EHRVersion}, unchanged: true}
	}
	if it.id == "" {
		id, version, err := e.write(ctx, it.mapped[0], r.EHRID, r.EHRVersion)
		if err != nil {
			return e.failed(it, err)
		}
		it.id, it.ver = id, version
		it.progressed()
		if rec.Kind == mapping.KindPatient {
			e.patientIDs.Store(rec.Patient.MRN, id)
		}
		if len(it.mapped) > 1 {
			p.provide(it)
		}
	}
	// The derived resources, all at once: they depend on the primary
	// resource alone, and each has its own identifier, so one write is
	// still in flight per identifier. An administration's vital signs then
	// cost one round trip, not eight (the EHR client's slots bound the
	// requests in flight). A transient failure of one does not hold up the
	// others; a retry sends only those that failed, after one wait.
	if err := e.writeDerived(ctx, it); err != nil {
		return e.failed(it, err)
	}
	stale := staleDerived(r.Derived, it.mapped)
	for it.retired < len(stale) {
		if err := e.retire(ctx, stale[it.retired]); err != nil {
			return e.failed(it, err)
		}
		it.retired++
		it.progressed()
	}
	return result{out: store.Outcome{State: store.StateSynced, EHRID: it.id, EHRVersion: it.ver,
		SentHash: it.sentHash, Derived: derivedKeys(it.mapped), SetDerived: true}}
}

// prepare resolves an item's dependencies and maps it, once per claim.
// It returns nil when the item is mapped, or the result that ends this
// attempt (waiting, parked, dead, retry).
func (e *Engine) prepare(ctx context.Context, p *pipeline, it *item) *result {
	rec := it.rec
	lk := &lookup{refs: map[mapping.Dependency]string{}, orders: map[string]*mapping.Order{}}
	if rec.Kind != mapping.KindPatient {
		if res := e.resolve(ctx, p, it, lk); res != nil {
			return res
		}
		lk.refs[it.key()] = primaryType(rec.Kind) + "/" + selfID
	}
	res, err := e.mapper.Map(rec, lk)
	if err != nil {
		return &result{out: e.mappingFailure(rec, err)}
	}
	e.metrics.Mapped(it.row.Kind)
	it.mapped, it.sentHash = res, fhirHash(res)
	return nil
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

// failed turns an error from the EHR into a result. It keeps what the
// attempt taught (the primary resource's id and version), so that a retry
// from the outbox updates it in place.
func (e *Engine) failed(it *item, err error) result {
	out := store.Outcome{ErrorClass: ehr.Reason(err), EHRID: it.id, EHRVersion: it.ver}
	switch ehr.Classify(err) {
	case ehr.ClassPermanent:
		out.State = store.StateDead
		var rej *ehr.RejectedError
		if errors.As(err, &rej) {
			out.ErrorDetail = rejectionDetail(rej)
		} else {
			out.ErrorDetail = err.Error()
		}
		return result{out: out}
	case ehr.ClassCanceled:
		out.State, out.NextAttemptAt, out.ErrorClass = store.StateRetrying, e.now(), ClassCanceled
		return result{out: out}
	case ehr.ClassAuth:
		out.State, out.NextAttemptAt, out.ErrorClass, out.ErrorDetail = store.StateRetrying, e.now(), ClassAuth, err.Error()
		return result{out: out, auth: err}
	}
	// Transient, or a version conflict that survived a re-read: try again
	// after the EHR's Retry-After, else the backoff.
	var retryAfter time.Duration
	var te *ehr.TransientError
	if errors.As(err, &te) {
		retryAfter = te.RetryAfter
	}
	out.State, out.ErrorDetail = store.StateRetrying, err.Error()
	if retryAfter > 0 {
		// The EHR said when to come back: then, not later. Backing off
		// beyond it would only stretch the tail of a sync under random
		// faults; a real rate limit is the pacer's to follow, for every
		// request at once.
		return result{out: out, retry: true, delay: retryAfter}
	}
	// No time given: back off, doubling per such try in a row (item.retried).
	return result{out: out, retry: true, delay: e.shortRetry.Delay(it.blind+1, 0), blind: true}
}

// holdPatient resolves a patient by MRN when patients.create is false:
// synced with the EHR's id, or held by policy.
func (e *Engine) holdPatient(ctx context.Context, it *item) result {
	id, err := e.findPatient(ctx, it.rec.Patient.MRN)
	if err != nil {
		return e.failed(it, err)
	}
	if id == "" {
		// Held by policy: RequeueHeld checks it again later.
		return result{out: store.Outcome{State: store.StateWaiting, ErrorClass: ClassPatientUnknown,
			ErrorDetail: "the EHR has no patient with this MRN and patients.create is false"}}
	}
	return result{out: store.Outcome{State: store.StateSynced, EHRID: id}}
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

// resolve fills lk with the EHR references of an item's dependencies. It
// returns nil when all are synced, else the result that ends the attempt:
// parked behind a dependency this pipeline holds, or waiting in the
// outbox.
func (e *Engine) resolve(ctx context.Context, p *pipeline, it *item, lk *lookup) *result {
	for _, dep := range it.rec.Dependencies() {
		row, ok := it.deps[dep]
		if (!ok || row.EHRID == "") && !it.settled[dep] {
			recent, held, known := p.lookupDep(dep)
			if held {
				d := dep
				return &result{park: &d}
			}
			if known {
				row, ok = recent, true
				it.deps[dep] = row
			}
			if !known {
				// Synced since the claim, perhaps: look again.
				var err error
				row, err = e.store.Get(ctx, string(dep.Kind), dep.ID)
				switch {
				case errors.Is(err, store.ErrNotFound):
					if dep.Kind != mapping.KindPatient {
						return wait(dep, ClassDependencyMissing)
					}
					id, err := e.findPatient(ctx, dep.ID)
					if err != nil {
						res := e.failed(it, err)
						return &res
					}
					if id == "" {
						return wait(dep, ClassPatientUnknown)
					}
					lk.refs[dep] = "Patient/" + id
					continue
				case err != nil:
					if ctx.Err() != nil {
						return &result{out: canceled(it.row, e.now())}
					}
					res := e.failed(it, &ehr.TransientError{Reason: "store"})
					return &res
				}
				it.deps[dep] = row
			}
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
			return wait(dep, class)
		}
		lk.refs[dep] = primaryType(dep.Kind) + "/" + row.EHRID
		if dep.Kind == mapping.KindOrder {
			order, ok := p.order(row)
			if !ok {
				return wait(dep, ClassDependencyDead)
			}
			lk.orders[dep.ID] = order
		}
	}
	return nil
}

// wait is the result of a row that waits in the outbox for dep.
func wait(dep mapping.Dependency, class string) *result {
	return &result{out: store.Outcome{State: store.StateWaiting, WaitKind: string(dep.Kind), WaitID: dep.ID, ErrorClass: class}}
}

// retire takes a derived resource that the record no longer produces out
// of the EHR's current data: by default it marks it entered-in-error with
// a conditional update on its identifier; with sync.stale_derived delete
// it deletes it conditionally. A resource the EHR no longer has is done.
func (e *Engine) retire(ctx context.Context, key string) error {
	typ, ident, ok := parseDerivedKey(key)
	if !ok {
		return nil // not a key this engine wrote: nothing to retire
	}
	path := typ + "?" + ident.Query()
	if e.cfg.Sync.StaleDerived == "delete" {
		_, err := e.client.Do(ctx, ehr.Request{Method: http.MethodDelete, Path: path, ResourceType: typ})
		var rej *ehr.RejectedError
		if errors.As(err, &rej) && (rej.Status == http.StatusNotFound || rej.Status == http.StatusGone) {
			return nil
		}
		return err
	}
	entries, err := e.client.Search(ctx, typ, ident.Query())
	if err != nil || len(entries) == 0 {
		return err
	}
	var res map[string]json.RawMessage
	if err := json.Unmarshal(entries[0].Resource, &res); err != nil {
		return fmt.Errorf("adapter: reading a stale %s: %w", typ, ehr.ErrBadResponse)
	}
	if string(res["status"]) == `"entered-in-error"` {
		return nil
	}
	res["status"] = json.RawMessage(`"entered-in-error"`)
	delete(res, "meta")
	body, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = e.client.Do(ctx, ehr.Request{Method: http.MethodPut, Path: path, ResourceType: typ, Body: body})
	return err
}

// write makes one idempotent write and returns the resource's EHR id and
// version. With a known id it updates in place with If-Match, re-reading
// the version once on 412; otherwise it writes conditionally on the
// business identifier by the configured strategy.
func (e *Engine) write(ctx context.Context, res mapping.Resource, knownID, knownVersion string) (string, string, error) {
	if knownID != "" {
		id, v, err := e.updateByID(ctx, res, knownID, knownVersion)
		var rej *ehr.RejectedError
		if errors.As(err, &rej) && (rej.Status == http.StatusNotFound || rej.Status == http.StatusGone) {
			// Deleted in the EHR since: write it again conditionally.
			return e.writeConditional(ctx, res, false)
		}
		return id, v, err
	}
	return e.writeConditional(ctx, res, false)
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

// writeConditional writes res on its business identifier. minimal asks a
// conditional update for no body back (Prefer: return=minimal), which
// saves both sides the resource's JSON: for a derived resource, whose id
// nothing needs (the id and version it returns are then those the EHR's
// headers give, if any).
func (e *Engine) writeConditional(ctx context.Context, res mapping.Resource, minimal bool) (string, string, error) {
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
	req := ehr.Request{Method: http.MethodPut, Path: res.Type + "?" + query, ResourceType: res.Type, Body: res.JSON}
	if minimal {
		req.Prefer = "return=minimal"
	}
	resp, err := e.client.Do(ctx, req)
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
