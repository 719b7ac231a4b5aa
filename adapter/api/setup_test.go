package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/metrics"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

const testToken = "s3cret-token-for-tests"

// now is after every record synth generates by default (they lie before
// 2026-01-01), so none is "in the future".
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// fakeBackend is a hand-written api.Backend: a real parser, an in-memory
// outbox of ingested records and a fake store for the rest.
type fakeBackend struct {
	delivery adapter.DeliveryStatus // what Delivery reports
	parser   *mapping.Parser
	store    *fakeStore

	mu        sync.Mutex
	hashes    map[string]string // kind/id -> hash
	ingests   int
	ingested  []*mapping.Record
	received  int
	rejected  int
	woken     int
	ingestErr error
	pingErr   error // PingEHR's answer (set with setPing)
	pingWait  bool  // PingEHR waits for its context to end
	pings     int
	lastSync  time.Time
	panicking bool // Store panics
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		parser: mapping.NewParser(mapping.DefaultConfig(), func() time.Time { return now }),
		store:  &fakeStore{},
		hashes: map[string]string{},
	}
}

func (f *fakeBackend) Parser() *mapping.Parser { return f.parser }

func (f *fakeBackend) Ingest(_ context.Context, recs []*mapping.Record) ([]adapter.IngestResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ingests++
	if f.ingestErr != nil {
		return nil, f.ingestErr
	}
	out := make([]adapter.IngestResult, len(recs))
	for i, r := range recs {
		key := string(r.Kind) + "/" + r.ID()
		h := r.Hash()
		o := store.Inserted
		switch old, ok := f.hashes[key]; {
		case ok && old == h:
			o = store.Unchanged
		case ok:
			o = store.Updated
		}
		f.hashes[key] = h
		f.ingested = append(f.ingested, r)
		out[i] = adapter.IngestResult{Kind: r.Kind, ID: r.ID(), Outcome: o}
	}
	return out, nil
}

func (f *fakeBackend) Received(*mapping.Record) { f.mu.Lock(); f.received++; f.mu.Unlock() }

func (f *fakeBackend) Rejected(*mapping.RecordError) { f.mu.Lock(); f.rejected++; f.mu.Unlock() }

func (f *fakeBackend) Store() store.Store {
	if f.panicking {
		panic("fake store exploded with MRN-PANIC-0001")
	}
	return f.store
}

// PingEHR is what the EHR prober calls (the engine's PingEHR in serve).
func (f *fakeBackend) PingEHR(ctx context.Context) error {
	f.mu.Lock()
	f.pings++
	wait, err := f.pingWait, f.pingErr
	f.mu.Unlock()
	if wait {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// setPing sets what PingEHR answers: err, or no answer at all (wait).
func (f *fakeBackend) setPing(err error, wait bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pingErr, f.pingWait = err, wait
}

func (f *fakeBackend) pingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pings
}

func (f *fakeBackend) LastSync() time.Time { return f.lastSync }

func (f *fakeBackend) Wake() { f.mu.Lock(); f.woken++; f.mu.Unlock() }

func (f *fakeBackend) Delivery() adapter.DeliveryStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivery
}

func (f *fakeBackend) ingestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ingests
}

// fakeStore serves the store calls of the API from a slice of rows. The
// embedded nil interface makes any other call panic (the API must not make
// it).
type fakeStore struct {
	store.Store

	mu      sync.Mutex
	rows    []store.Record
	oldest  time.Time
	err     error // returned by every call
	pingErr error
}

func (s *fakeStore) Counts(context.Context) (store.Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	c := store.Counts{}
	for _, r := range s.rows {
		if c[r.Kind] == nil {
			c[r.Kind] = map[store.State]int{}
		}
		c[r.Kind][r.State]++
	}
	return c, nil
}

func (s *fakeStore) OldestPending(context.Context) (time.Time, bool, error) {
	if s.err != nil {
		return time.Time{}, false, s.err
	}
	return s.oldest, !s.oldest.IsZero(), nil
}

func (s *fakeStore) List(_ context.Context, state store.State, after int64, limit int) ([]store.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	var out []store.Record
	for _, r := range s.rows {
		if r.State == state && r.ID > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *fakeStore) GetByID(_ context.Context, id int64) (store.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return store.Record{}, s.err
	}
	for _, r := range s.rows {
		if r.ID == id {
			return r, nil
		}
	}
	return store.Record{}, store.ErrNotFound
}

func (s *fakeStore) Requeue(_ context.Context, id int64, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.rows {
		if r.ID == id && (r.State == store.StateDead || r.State == store.StateWaiting) {
			s.rows[i].State = store.StatePending
			s.rows[i].Attempts = 0
			return nil
		}
	}
	return store.ErrNotFound
}

func (s *fakeStore) Ping(context.Context) error { return s.pingErr }

func (s *fakeStore) state(id int64) store.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		if r.ID == id {
			return r.State
		}
	}
	return ""
}

// env is what a test needs: the router over a fake backend, its EHR
// prober (not started: tests call Probe), its metrics and its captured
// log.
type env struct {
	b       *fakeBackend
	h       http.Handler
	prober  *api.EHRProber
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	log     *testutil.Buffer
}

func setup(t *testing.T, mod ...func(*api.Options)) *env {
	t.Helper()
	e := &env{b: newFakeBackend(), reg: prometheus.NewRegistry(), log: &testutil.Buffer{}}
	e.metrics = metrics.New(e.reg)
	e.prober = api.NewEHRProber(e.b.PingEHR, api.ProberOptions{
		Timeout: 50 * time.Millisecond,
		Metrics: e.metrics,
		Logger:  testutil.JSONLogger(e.log),
		Now:     func() time.Time { return now },
	})
	opts := api.Options{
		EHR:          e.prober,
		Token:        testToken,
		MaxBodyBytes: 64 << 10,
		ReadyTimeout: 50 * time.Millisecond,
		Gatherer:     e.reg,
		Metrics:      e.metrics,
		Logger:       testutil.JSONLogger(e.log),
		Now:          func() time.Time { return now },
	}
	for _, m := range mod {
		m(&opts)
	}
	e.h = api.NewRouter(e.b, opts)
	return e
}

// do serves one request and returns the recorded answer.
func (e *env) do(method, target, contentType string, body io.Reader, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// authed serves a request with the right token.
func (e *env) authed(method, target, contentType string, body io.Reader) *httptest.ResponseRecorder {
	return e.do(method, target, contentType, body, "Authorization", "Bearer "+testToken)
}

// decode unmarshals a JSON answer into v, failing the test otherwise.
func decode(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json; body %s", ct, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("answer is not the expected JSON: %v; body %s", err, rec.Body)
	}
}

// errorAnswer checks an error answer: status, JSON body with a request id
// equal to the X-Request-Id header. It returns the error text.
func errorAnswer(t *testing.T, rec *httptest.ResponseRecorder, status int) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	var body struct {
		Error     string `json:"error"`
		RequestID string `json:"request_id"`
	}
	decode(t, rec, &body)
	if body.Error == "" {
		t.Errorf("error answer without an error text: %s", rec.Body)
	}
	if body.RequestID == "" || body.RequestID != rec.Header().Get("X-Request-Id") {
		t.Errorf("request_id %q, X-Request-Id %q: want equal and set", body.RequestID, rec.Header().Get("X-Request-Id"))
	}
	return body.Error
}

// clinic returns the records of a small synthetic clinic and their
// canonical JSON lines.
func clinic(t *testing.T, patients int) ([]*mapping.Record, []string) {
	t.Helper()
	var recs []*mapping.Record
	if err := synth.Generate(synth.Options{Patients: patients, Seed: 7}, func(r *mapping.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lines := make([]string, len(recs))
	for i, r := range recs {
		b, err := r.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		lines[i] = string(b)
	}
	return recs, lines
}

// phi returns a scanner for the patient data of the patient records in
// recs (MRNs, birth dates, phones and emails as values, names as words)
// and for extra values, none of which may appear in an answer or a log.
func phi(recs []*mapping.Record, extra ...string) *testutil.PHI {
	p := &testutil.PHI{}
	for _, r := range recs {
		if pt := r.Patient; pt != nil {
			p.Values(pt.MRN, pt.BirthDate, pt.Phone, pt.Email)
			p.Words(pt.Family)
			p.Words(pt.Given...)
		}
	}
	p.Values(extra...)
	return p
}

var errBoom = errors.New("disk I/O error")
