package api

import (
	"context"
	"net/http"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// Status is the answer of GET /v1/status.
type Status struct {
	// Outbox counts rows per record kind and state (every state listed).
	Outbox map[string]map[string]int `json:"outbox"`
	// Totals counts rows per state over all kinds.
	Totals map[string]int `json:"totals"`
	// OldestPendingAgeSeconds is the age of the oldest row not yet synced
	// or dead (pending, waiting or retrying); 0 when there is none.
	OldestPendingAgeSeconds float64 `json:"oldest_pending_age_seconds"`
	// LastSync is when this process last delivered a record; null if never.
	LastSync *time.Time `json:"last_sync"`
	// EHR is the result of the last background probe of the EHR (see
	// EHRProber); the request itself does not contact the EHR.
	EHR EHRStatus `json:"ehr"`
	// Delivery says whether delivery runs or is paused (and why: "auth"
	// when the EHR refuses the adapter's authorization; records stay
	// queued), the pacer's rate, the requests in flight and the rows the
	// pipeline holds.
	Delivery adapter.DeliveryStatus `json:"delivery"`
}

// getStatus is GET /v1/status.
func (s *server) getStatus(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	st := s.b.Store()
	counts, err := st.Counts(ctx)
	if err != nil {
		s.internalError(w, r, "reading the outbox counts", err)
		return
	}
	oldest, ok, err := st.OldestPending(ctx)
	if err != nil {
		s.internalError(w, r, "reading the oldest pending record", err)
		return
	}
	now := s.now()
	out := Status{
		Outbox: make(map[string]map[string]int, len(counts)),
		Totals: make(map[string]int, len(store.States)),
	}
	for _, state := range store.States {
		out.Totals[string(state)] = 0
	}
	for kind, states := range counts {
		m := make(map[string]int, len(store.States))
		for _, state := range store.States {
			m[string(state)] = states[state]
			out.Totals[string(state)] += states[state]
		}
		out.Outbox[kind] = m
	}
	if ok {
		out.OldestPendingAgeSeconds = sinceSeconds(now, oldest)
	}
	out.Delivery = s.b.Delivery()
	if t := s.b.LastSync(); !t.IsZero() {
		t = t.UTC()
		out.LastSync = &t
	}
	if s.ehr != nil {
		out.EHR = s.ehr.Status()
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// healthz is GET /healthz: the process is up and serving.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness is the answer of GET /readyz.
type Readiness struct {
	// Status is "ok" or "unavailable".
	Status string `json:"status"`
	// Checks maps each check ("store") to "ok" or "failed".
	Checks map[string]string `json:"checks"`
}

// readyz is GET /readyz: 200 when the store answers a ping within the
// ready timeout, so the API can accept records, else 503. It does not look
// at the EHR: records are accepted and stored while the EHR is down (its
// reachability is in /v1/status and ketamine_fhir_ehr_up). Being
// unauthenticated, it says which check failed, not why; failures are
// logged.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.ready)
	defer cancel()
	out := Readiness{Status: "ok", Checks: map[string]string{"store": "ok"}}
	status := http.StatusOK
	if err := s.b.Store().Ping(ctx); err != nil {
		out.Status, out.Checks["store"] = "unavailable", "failed"
		status = http.StatusServiceUnavailable
		s.log.Warn("readiness check failed", "check", "store", "request_id", requestID(r), "err", err)
	}
	s.writeJSON(w, r, status, out)
}
