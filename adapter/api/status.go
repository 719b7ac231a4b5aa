package api

import (
	"context"
	"errors"
	"net/http"
	"time"

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
	// EHR says whether the EHR answered within the ready timeout.
	EHR EHRStatus `json:"ehr"`
}

// EHRStatus is the EHR check of GET /v1/status.
type EHRStatus struct {
	Reachable bool `json:"reachable"`
	// Error is why it is not reachable (free of patient data).
	Error string `json:"error,omitempty"`
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
	if t := s.b.LastSync(); !t.IsZero() {
		t = t.UTC()
		out.LastSync = &t
	}
	if err := s.pingEHR(ctx); err != nil {
		out.EHR.Error = err.Error()
	} else {
		out.EHR.Reachable = true
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// pingEHR checks the EHR within the ready timeout.
func (s *server) pingEHR(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.ready)
	defer cancel()
	err := s.b.PingEHR(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errors.New("no answer within " + s.ready.String())
	}
	return err
}

// healthz is GET /healthz: the process is up and serving.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness is the answer of GET /readyz.
type Readiness struct {
	// Status is "ok" or "unavailable".
	Status string `json:"status"`
	// Checks maps each check ("store", "ehr") to "ok" or "failed".
	Checks map[string]string `json:"checks"`
}

// readyz is GET /readyz: 200 when the store and the EHR answer within the
// ready timeout, else 503 naming the failed check. Being unauthenticated,
// it says which check failed, not why; failures are logged.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	type result struct {
		name string
		err  error
	}
	ch := make(chan result, 2)
	go func() {
		c, cancel := context.WithTimeout(ctx, s.ready)
		defer cancel()
		ch <- result{"store", s.b.Store().Ping(c)}
	}()
	go func() { ch <- result{"ehr", s.pingEHR(ctx)} }()
	out := Readiness{Status: "ok", Checks: map[string]string{}}
	for range 2 {
		res := <-ch
		if res.err != nil {
			out.Status = "unavailable"
			out.Checks[res.name] = "failed"
			s.log.Warn("readiness check failed", "check", res.name, "request_id", requestID(r), "err", res.err)
			continue
		}
		out.Checks[res.name] = "ok"
	}
	status := http.StatusOK
	if out.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	s.writeJSON(w, r, status, out)
}
