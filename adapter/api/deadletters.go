package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// DeadLetter is one row of GET /v1/deadletters.
type DeadLetter struct {
	// ID is the outbox id, used to retry the row.
	ID int64 `json:"id"`
	// Kind is the record kind.
	Kind string `json:"kind"`
	// LocalID is the record's local id; empty for patients (the MRN).
	LocalID string `json:"local_id,omitempty"`
	// Reason is the bounded class of the failure ("http_422", "mapping", ...).
	Reason string `json:"reason"`
	// Attempts is how many deliveries were tried.
	Attempts int `json:"attempts"`
	// UpdatedAt is when the row became dead.
	UpdatedAt time.Time `json:"updated_at"`
	// Diagnostics is what the EHR said: {"status": N, "issues": [...]} with
	// the OperationOutcome issues, or a text. It may echo submitted values
	// (patient data): it is returned to authenticated callers, never logged.
	Diagnostics json.RawMessage `json:"diagnostics,omitempty"`
}

// DeadLetterPage is the answer of GET /v1/deadletters.
type DeadLetterPage struct {
	Items []DeadLetter `json:"items"`
	// NextAfter is the after= value of the next page; 0 when this page is
	// the last.
	NextAfter int64 `json:"next_after,omitempty"`
}

// listDeadLetters is GET /v1/deadletters?after=ID&limit=N: dead rows with
// an id above after, by id, at most limit (default 100, at most 1000).
func (s *server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, limit := int64(0), defaultDeadLetterPage
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, http.StatusBadRequest, "after must be an outbox id (a whole number, 0 or more)")
			return
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadLetterPage {
			s.writeError(w, r, http.StatusBadRequest, "limit must be a whole number from 1 to "+strconv.Itoa(maxDeadLetterPage))
			return
		}
		limit = n
	}
	// One more row than asked tells whether another page follows.
	rows, err := s.b.Store().List(r.Context(), store.StateDead, after, limit+1)
	if err != nil {
		s.internalError(w, r, "listing dead letters", err)
		return
	}
	page := DeadLetterPage{Items: make([]DeadLetter, 0, min(len(rows), limit))}
	for i, row := range rows {
		if i == limit {
			page.NextAfter = rows[i-1].ID
			break
		}
		dl := DeadLetter{
			ID: row.ID, Kind: row.Kind, Reason: row.ErrorClass,
			Attempts: row.Attempts, UpdatedAt: row.UpdatedAt.UTC(),
			Diagnostics: diagnostics(row.ErrorDetail),
		}
		if row.Kind != string(mapping.KindPatient) {
			dl.LocalID = row.LocalID
		}
		page.Items = append(page.Items, dl)
	}
	s.writeJSON(w, r, http.StatusOK, page)
}

// diagnostics returns a row's ErrorDetail as JSON: as is when it is JSON
// (the EHR's issues), else as a JSON string.
func diagnostics(detail string) json.RawMessage {
	if detail == "" {
		return nil
	}
	if json.Valid([]byte(detail)) {
		return json.RawMessage(detail)
	}
	b, _ := json.Marshal(detail) // a string always marshals
	return b
}

// Requeued is the answer of POST /v1/deadletters/{id}/retry.
type Requeued struct {
	ID    int64  `json:"id"`
	State string `json:"state"`
}

// retryDeadLetter is POST /v1/deadletters/{id}/retry: the dead row goes
// back to pending and the delivery loop is woken. 404 when no dead row has
// the id.
func (s *server) retryDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id < 1 {
		s.writeError(w, r, http.StatusNotFound, "no dead letter has this id")
		return
	}
	st := s.b.Store()
	row, err := st.GetByID(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && row.State != store.StateDead):
		s.writeError(w, r, http.StatusNotFound, "no dead letter has this id")
		return
	case err != nil:
		s.internalError(w, r, "reading the outbox", err)
		return
	}
	// Requeue also takes waiting rows; the check above keeps this route to
	// dead letters. A row that stopped being dead in between is not found.
	if err := st.Requeue(r.Context(), id, s.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.writeError(w, r, http.StatusNotFound, "no dead letter has this id")
			return
		}
		s.internalError(w, r, "re-queueing a dead letter", err)
		return
	}
	s.b.Wake()
	s.log.Info("dead letter re-queued", "outbox_id", id, "kind", row.Kind, "request_id", requestID(r))
	s.writeJSON(w, r, http.StatusOK, Requeued{ID: id, State: string(store.StatePending)})
}
