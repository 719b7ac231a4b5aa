package ui

import (
	"context"
	"net/http"
	"slices"
	"sort"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Waiting page limits.
const (
	maxWaitingScan = 5000 // rows read per state
	groupRows      = 25   // rows listed per group
)

// waitingRow is a waiting (or auth-held) row and what it waits for.
type waitingRow struct {
	rowView
	Reason string
	// WaitKind is the kind of the record it waits for; WaitLocal its local
	// id unless it is a patient (an MRN); DepID its outbox id when the
	// adapter has it (0 otherwise).
	WaitKind  string
	WaitLocal string
	DepID     int64
	DepState  string
}

// reasonInfo explains a waiting reason and what releases it.
type reasonInfo struct {
	Title, Release string
}

// reasons, by error class, in the order the page lists them.
var reasonOrder = []string{
	adapter.ClassDependencyPending, adapter.ClassDependencyMissing, adapter.ClassDependencyDead,
	adapter.ClassPatientUnknown, adapter.ClassAuth,
}

var reasons = map[string]reasonInfo{
	adapter.ClassDependencyPending: {"Dependency pending",
		"Released by itself when the record it waits for is synced. If that record is stuck, look at it: it may be waiting or retrying itself."},
	adapter.ClassDependencyMissing: {"Dependency missing",
		"The adapter has not received the record this one refers to. Send it (file import or POST /v1/records); the waiting record goes out once it is synced."},
	adapter.ClassDependencyDead: {"Dependency in the dead letters",
		"The record this one refers to was rejected by the EHR. Fix it at the source or in the EHR and retry it from the dead letters; this one follows once it is synced."},
	adapter.ClassPatientUnknown: {"Patient unknown to the EHR",
		"The EHR has no patient with this record's MRN and patients.create is false. Register the patient in the EHR (or send the patient record with patients.create true); held records are checked again every sync.held_recheck."},
	adapter.ClassAuth: {"EHR authorization",
		"The EHR refuses the adapter's credentials, so delivery is paused and these records stay queued. Fix ehr.auth (token, client id, key, scopes); delivery resumes by itself once the EHR accepts them."},
	"": {"Other",
		"Held for a reason the console does not know; see the record's error class."},
}

// waitGroup is one reason's rows.
type waitGroup struct {
	Class  string
	Info   reasonInfo
	Count  int
	ByKind []kindCount
	Rows   []waitingRow
	More   int
}

type kindCount struct {
	Kind  string
	Count int
}

// waitingData is what the waiting page shows.
type waitingData struct {
	Groups      []*waitGroup
	Capped      bool
	PausedError string
}

// waitingRows resolves what each row waits for (the dependency's outbox
// id, when the adapter has it).
func (c *Console) waitingRows(ctx context.Context, rows []store.Record) ([]waitingRow, error) {
	var keys []store.Key
	for _, r := range rows {
		if r.WaitKind != "" {
			keys = append(keys, store.Key{Kind: r.WaitKind, LocalID: r.WaitID})
		}
	}
	deps := map[store.Key]store.Record{}
	if len(keys) > 0 {
		var err error
		if deps, err = c.b.Store().GetMany(ctx, keys); err != nil {
			return nil, err
		}
	}
	out := make([]waitingRow, 0, len(rows))
	for _, r := range rows {
		wr := waitingRow{rowView: viewRow(r), Reason: r.ErrorClass, WaitKind: r.WaitKind}
		if r.WaitKind != string(mapping.KindPatient) {
			wr.WaitLocal = r.WaitID
		}
		if dep, ok := deps[store.Key{Kind: r.WaitKind, LocalID: r.WaitID}]; ok && r.WaitKind != "" {
			wr.DepID, wr.DepState = dep.ID, string(dep.State)
		}
		out = append(out, wr)
	}
	return out, nil
}

// waiting is GET /ui/waiting: waiting rows, and rows held by an auth
// failure, grouped by reason.
func (c *Console) waiting(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	st := c.b.Store()
	var held []store.Record
	d := waitingData{PausedError: c.b.Delivery().PausedError}
	for _, state := range []store.State{store.StateWaiting, store.StateRetrying} {
		var after int64
		read := 0
		for {
			batch, err := st.List(ctx, state, after, scanBatch)
			if err != nil {
				c.internalError(w, r, se, "listing waiting records", err)
				return
			}
			for _, row := range batch {
				after = row.ID
				if state == store.StateWaiting || row.ErrorClass == adapter.ClassAuth {
					held = append(held, row)
				}
			}
			read += len(batch)
			if len(batch) < scanBatch {
				break
			}
			if read >= maxWaitingScan {
				d.Capped = true
				break
			}
		}
	}
	groups := map[string]*waitGroup{}
	byKind := map[string]map[string]int{}
	var show []store.Record
	for _, row := range held {
		class := row.ErrorClass
		if _, ok := reasons[class]; !ok {
			class = ""
		}
		g, ok := groups[class]
		if !ok {
			g = &waitGroup{Class: class, Info: reasons[class]}
			groups[class] = g
			byKind[class] = map[string]int{}
		}
		g.Count++
		byKind[class][row.Kind]++
		if g.Count <= groupRows {
			show = append(show, row)
		} else {
			g.More++
		}
	}
	rows, err := c.waitingRows(ctx, show)
	if err != nil {
		c.internalError(w, r, se, "reading dependencies", err)
		return
	}
	for _, wr := range rows {
		class := wr.Reason
		if _, ok := reasons[class]; !ok {
			class = ""
		}
		groups[class].Rows = append(groups[class].Rows, wr)
	}
	for _, class := range slices.Concat(reasonOrder, []string{""}) {
		g, ok := groups[class]
		if !ok {
			continue
		}
		for k, n := range byKind[class] {
			g.ByKind = append(g.ByKind, kindCount{k, n})
		}
		sort.Slice(g.ByKind, func(i, j int) bool { return kindOrder(g.ByKind[i].Kind) < kindOrder(g.ByKind[j].Kind) })
		d.Groups = append(d.Groups, g)
	}
	c.render(w, r, se, http.StatusOK, "waiting", page{Title: "Waiting records", Nav: "waiting", Data: d})
}
