package ui

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
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
}

// record is GET /ui/records/{id}: one outbox row without its payload.
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
	if row.State == store.StateRetrying {
		d.NextAt = row.NextAttemptAt
	}
	p := page{Title: "Record " + strconv.FormatInt(id, 10), Nav: "", Data: d}
	if r.URL.Query().Get("requeued") != "" {
		p.Flash = "Re-queued for delivery. This page shows the state at the time it was loaded: reload it to follow the record."
	}
	c.render(w, r, se, http.StatusOK, "record", p)
}
