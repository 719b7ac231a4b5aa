package ui

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// recordData is what a record's page shows.
type recordData struct {
	Row        waitingRow
	EHRID      string
	EHRVersion string
	Created    time.Time
	Synced     time.Time
	NextAt     time.Time
	Dead       bool
	Waiting    bool
	History    []attemptView
}

// attemptView is one recorded delivery attempt as the record page shows
// it: no payload, and no wait-for local id when it is a patient's (MRN).
type attemptView struct {
	At                time.Time
	Attempt           int
	State             string
	ErrorClass        string
	Outcome           outcome
	WaitKind          string
	WaitLocal         string
	EHRID, EHRVersion string
	RequestID         string
}

// maxDetailText bounds a text error detail in the history table.
const maxDetailText = 300

func viewAttempt(a store.Attempt) attemptView {
	v := attemptView{At: a.At, Attempt: a.Attempt, State: string(a.State), ErrorClass: a.ErrorClass,
		Outcome: parseDetail(a.ErrorDetail), WaitKind: a.WaitKind,
		EHRID: a.EHRID, EHRVersion: a.EHRVersion, RequestID: a.RequestID}
	if a.WaitKind != string(mapping.KindPatient) {
		v.WaitLocal = a.WaitID
	}
	if r := []rune(v.Outcome.Text); len(r) > maxDetailText {
		v.Outcome.Text = string(r[:maxDetailText]) + "…"
	}
	return v
}

// record is GET /ui/records/{id}: one outbox row without its payload, and
// its delivery history (store.History), newest attempt first.
func (c *Console) record(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		c.errorPage(w, r, se, http.StatusNotFound, "No record has this outbox id.")
		return
	}
	row, err := c.b.Store().GetByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		c.errorPage(w, r, se, http.StatusNotFound, "No record has this outbox id.")
		return
	}
	if err != nil {
		c.internalError(w, r, se, "reading the outbox", err)
		return
	}
	wr, err := c.waitingRows(ctx, []store.Record{row})
	if err != nil {
		c.internalError(w, r, se, "reading a dependency", err)
		return
	}
	d := recordData{Row: wr[0], EHRID: row.EHRID, EHRVersion: row.EHRVersion, Created: row.CreatedAt,
		Synced: row.SyncedAt, Dead: row.State == store.StateDead, Waiting: row.State == store.StateWaiting}
	hist, err := c.b.Store().History(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.internalError(w, r, se, "reading the record's history", err)
		return
	}
	for i := len(hist) - 1; i >= 0; i-- { // newest first
		d.History = append(d.History, viewAttempt(hist[i]))
	}
	if row.State == store.StateRetrying {
		d.NextAt = row.NextAttemptAt
	}
	p := page{Title: "Record " + strconv.FormatInt(id, 10), Nav: "", Data: d}
	if r.URL.Query().Get("requeued") != "" {
		p.Flash = "Re-queued for delivery. This page shows the state at the time it was loaded: reload it to follow the record."
	}
	c.render(w, r, se, http.StatusOK, "record", p)
}
