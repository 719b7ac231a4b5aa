package ehr

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// basePath is where the fake EHRs serve FHIR: a client that drops it when
// joining URLs gets 404s.
const basePath = "/api/FHIR/R4"

// mrn is an MRN-like value put in conditional queries; it must appear in
// no error string and no log line.
const mrn = "MRN0042XYZ"

// mrnQuery is a conditional query carrying mrn, URL-encoded as the engine
// builds it.
const mrnQuery = "identifier=https%3A%2F%2Fclinic.example%2Fid%2Fpatient%7C" + mrn

// seen is one request as the fake EHR received it.
type seen struct {
	Method   string
	Path     string // r.URL.EscapedPath()
	RawQuery string
	Header   http.Header
	Body     string
}

// fakeEHR records every request and answers with handle, called with the
// request's 1-based number.
type fakeEHR struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []seen
	handle func(w http.ResponseWriter, r *http.Request, n int)
}

func (f *fakeEHR) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), string(body)})
	n := len(f.reqs)
	f.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.handle(w, r, n)
}

func (f *fakeEHR) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fakeEHR) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// hookLog records hook calls.
type hookLog struct {
	mu       sync.Mutex
	requests []string // "Patient PUT 503"
	retries  []string
	refresh  []error
}

func (h *hookLog) hooks() Hooks {
	return Hooks{
		OnRequest: func(rt, method string, status int, _ time.Duration) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.requests = append(h.requests, rt+" "+method+" "+strconv.Itoa(status))
		},
		OnRetry: func(reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.retries = append(h.retries, reason)
		},
		OnTokenRefresh: func(err error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.refresh = append(h.refresh, err)
		},
	}
}

func (h *hookLog) snapshot() (requests, retries []string, refresh []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.requests...), append([]string(nil), h.retries...), append([]error(nil), h.refresh...)
}

// env is what setup returns.
type env struct {
	ehr   *fakeEHR
	c     *Client
	logs  *testutil.Buffer
	hooks *hookLog
}

// setup starts a fake EHR with handle and a client for it with fast
// retries (RetryMax 2, waits of a millisecond or two), debug logs captured
// and hooks recorded. edit adjusts the Config before New.
func setup(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int), edit ...func(*Config)) *env {
	t.Helper()
	f := &fakeEHR{handle: handle}
	f.Server = httptest.NewServer(f)
	t.Cleanup(f.Close)
	logs := &testutil.Buffer{}
	hl := &hookLog{}
	cfg := Config{
		BaseURL:      f.URL + basePath,
		RetryMax:     2,
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: 2 * time.Millisecond,
		Timeout:      5 * time.Second,
		Logger:       testutil.TextLogger(logs),
		Hooks:        hl.hooks(),
	}
	for _, e := range edit {
		e(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return &env{ehr: f, c: c, logs: logs, hooks: hl}
}

// status answers every request with code and body.
func status(code int, body string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		if body != "" {
			w.Header().Set("Content-Type", "application/fhir+json")
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// noPHI fails the test when s contains the MRN, in any case, raw or
// escaped.
func noPHI(t *testing.T, what, s string) {
	t.Helper()
	var p testutil.PHI
	p.Values(mrn)
	p.Check(t, what, s)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
