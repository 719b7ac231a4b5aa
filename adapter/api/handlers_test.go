package api_test

import (
	"encoding/json"
	"errors"
	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// deadRows is an outbox with dead letters 1 (order), 2 (patient) and 4
// (score), a waiting row 3 and a synced row 5.
func deadRows() []store.Record {
	upd := time.Date(2026, 5, 30, 8, 0, 0, 0, time.UTC)
	return []store.Record{
		{ID: 1, Kind: "order", LocalID: "ord-17", State: store.StateDead, Attempts: 1, ErrorClass: "http_422", UpdatedAt: upd,
			ErrorDetail: `{"status":422,"issues":[{"severity":"error","code":"invalid","diagnostics":"dose too high"}]}`},
		{ID: 2, Kind: "patient", LocalID: "MRN-SECRET-0002", State: store.StateDead, Attempts: 2, ErrorClass: "http_400", UpdatedAt: upd,
			ErrorDetail: "plain text reason"},
		{ID: 3, Kind: "administration", LocalID: "adm-3", State: store.StateWaiting, ErrorClass: "dependency_pending", UpdatedAt: upd},
		{ID: 4, Kind: "score", LocalID: "sc-4", State: store.StateDead, Attempts: 3, ErrorClass: "mapping", UpdatedAt: upd},
		{ID: 5, Kind: "order", LocalID: "ord-5", State: store.StateSynced, UpdatedAt: upd},
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.b.store.rows = deadRows()
	e.b.store.oldest = now.Add(-90 * time.Second)
	e.b.lastSync = now.Add(-time.Minute)
	e.prober.Probe(t.Context())
	rec := e.authed(http.MethodGet, "/v1/status", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	var got api.Status
	decode(t, rec, &got)
	if got.Outbox["order"]["dead"] != 1 || got.Outbox["order"]["synced"] != 1 || got.Outbox["order"]["pending"] != 0 {
		t.Errorf("outbox[order] = %v", got.Outbox["order"])
	}
	if len(got.Outbox["patient"]) != len(store.States) {
		t.Errorf("outbox[patient] lists %d states, want all %d", len(got.Outbox["patient"]), len(store.States))
	}
	if got.Totals["dead"] != 3 || got.Totals["waiting"] != 1 || got.Totals["synced"] != 1 {
		t.Errorf("totals = %v", got.Totals)
	}
	if got.OldestPendingAgeSeconds != 90 {
		t.Errorf("oldest pending age = %v, want 90", got.OldestPendingAgeSeconds)
	}
	if got.LastSync == nil || !got.LastSync.Equal(now.Add(-time.Minute)) {
		t.Errorf("last sync = %v", got.LastSync)
	}
	if !got.EHR.Reachable || got.EHR.ErrorClass != "" || got.EHR.CheckedAt == nil || !got.EHR.CheckedAt.Equal(now) {
		t.Errorf("ehr = %+v, want reachable, checked at %v", got.EHR, now)
	}
}

func TestStatusShowsDelivery(t *testing.T) {
	t.Parallel()
	e := setup(t)
	rate := 40.0
	e.b.mu.Lock()
	e.b.delivery = adapter.DeliveryStatus{Paused: "auth", PausedError: "ehr: authentication failed: 403 (forbidden): check the scopes",
		RateLimit: &rate, InFlight: 3, Queued: 70}
	e.b.mu.Unlock()
	rec := e.authed(http.MethodGet, "/v1/status", "", nil)
	var raw map[string]json.RawMessage
	decode(t, rec, &raw)
	want := `{"paused":"auth","paused_error":"ehr: authentication failed: 403 (forbidden): check the scopes","rate_limit":40,"in_flight":3,"queued":70}`
	if string(raw["delivery"]) != want {
		t.Errorf("delivery = %s, want %s", raw["delivery"], want)
	}
	e.b.mu.Lock()
	e.b.delivery = adapter.DeliveryStatus{}
	e.b.mu.Unlock()
	rec = e.authed(http.MethodGet, "/v1/status", "", nil)
	decode(t, rec, &raw)
	if want := `{"rate_limit":null,"in_flight":0,"queued":0}`; string(raw["delivery"]) != want {
		t.Errorf("delivery while running unlimited = %s, want %s", raw["delivery"], want)
	}
}

func TestStatusEmptyAndEHRDown(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// Before the first probe: not reachable, never checked.
	rec := e.authed(http.MethodGet, "/v1/status", "", nil)
	var raw map[string]json.RawMessage
	decode(t, rec, &raw)
	if string(raw["ehr"]) != `{"reachable":false,"checked_at":null}` {
		t.Errorf("ehr before the first probe = %s", raw["ehr"])
	}
	if e.b.pingCount() != 0 {
		t.Errorf("GET /v1/status pinged the EHR %d times; it reports the prober's last result", e.b.pingCount())
	}

	e.b.setPing(nil, true) // no answer within the probe timeout
	e.prober.Probe(t.Context())
	rec = e.authed(http.MethodGet, "/v1/status", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	decode(t, rec, &raw)
	if string(raw["last_sync"]) != "null" {
		t.Errorf("last_sync = %s, want null", raw["last_sync"])
	}
	var got api.Status
	decode(t, rec, &got)
	if got.EHR.Reachable || got.EHR.ErrorClass != "timeout" || got.EHR.CheckedAt == nil {
		t.Errorf("ehr = %+v, want unreachable, class timeout, checked", got.EHR)
	}
	if got.OldestPendingAgeSeconds != 0 || len(got.Outbox) != 0 || got.Totals["pending"] != 0 {
		t.Errorf("status of an empty outbox = %+v", got)
	}
}

func TestStatusStoreFails(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.b.store.err = errBoom
	rec := e.authed(http.MethodGet, "/v1/status", "", nil)
	msg := errorAnswer(t, rec, http.StatusInternalServerError)
	if strings.Contains(msg, errBoom.Error()) {
		t.Errorf("the answer shows the internal error: %q", msg)
	}
	if !strings.Contains(e.log.String(), errBoom.Error()) {
		t.Error("the store error is not logged")
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.b.store.rows = deadRows()
	rec := e.authed(http.MethodGet, "/v1/deadletters", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	var page api.DeadLetterPage
	decode(t, rec, &page)
	if len(page.Items) != 3 || page.NextAfter != 0 {
		t.Fatalf("page = %+v, want 3 items and no next page", page)
	}
	o, p, s := page.Items[0], page.Items[1], page.Items[2]
	if o.ID != 1 || o.Kind != "order" || o.LocalID != "ord-17" || o.Reason != "http_422" || o.Attempts != 1 ||
		!o.UpdatedAt.Equal(time.Date(2026, 5, 30, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("order dead letter = %+v", o)
	}
	var diag struct {
		Status int `json:"status"`
		Issues []struct {
			Diagnostics string `json:"diagnostics"`
		} `json:"issues"`
	}
	if err := json.Unmarshal(o.Diagnostics, &diag); err != nil || diag.Status != 422 || len(diag.Issues) != 1 || diag.Issues[0].Diagnostics != "dose too high" {
		t.Errorf("order diagnostics = %s (%v), want the EHR's issues as JSON", o.Diagnostics, err)
	}
	if p.Kind != "patient" || p.LocalID != "" || string(p.Diagnostics) != `"plain text reason"` {
		t.Errorf("patient dead letter = %+v (diagnostics %s)", p, p.Diagnostics)
	}
	if s.ID != 4 || s.Diagnostics != nil {
		t.Errorf("score dead letter = %+v", s)
	}
	phi(nil, "MRN-SECRET-0002").Check(t, "the answer", rec.Body.String())
	// Diagnostics may hold submitted values: never logged.
	phi(nil, "dose too high", "plain text reason", "MRN-SECRET-0002").Check(t, "the log", e.log.String())
}

func TestDeadLettersPaging(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.b.store.rows = deadRows()
	var ids []int64
	after := "0"
	for pages := 0; pages < 10; pages++ {
		rec := e.authed(http.MethodGet, "/v1/deadletters?limit=2&after="+after+"&mrn=MRN-SECRET-QUERY", "", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
		}
		var page api.DeadLetterPage
		decode(t, rec, &page)
		if len(page.Items) > 2 {
			t.Fatalf("page of %d items with limit 2", len(page.Items))
		}
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if page.NextAfter == 0 {
			break
		}
		after = strings.TrimSpace(string(mustJSON(t, page.NextAfter)))
	}
	if got := mustJSON(t, ids); string(got) != "[1,2,4]" {
		t.Errorf("paged ids = %s, want [1,2,4]", got)
	}
	if strings.Contains(e.log.String(), "MRN-SECRET-QUERY") || strings.Contains(e.log.String(), "limit=") {
		t.Errorf("the query string is logged: %s", e.log)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeadLettersBadQuery(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after=-1", "after=abc", "limit=2.5"} {
		t.Run(q, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			errorAnswer(t, e.authed(http.MethodGet, "/v1/deadletters?"+q, "", nil), http.StatusBadRequest)
		})
	}
}

func TestRetryDeadLetter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		path   string
		id     int64
		status int
		after  store.State
		woken  int
	}{
		{"dead", "/v1/deadletters/1/retry", 1, http.StatusOK, store.StatePending, 1},
		{"waiting is not dead", "/v1/deadletters/3/retry", 3, http.StatusNotFound, store.StateWaiting, 0},
		{"synced is not dead", "/v1/deadletters/5/retry", 5, http.StatusNotFound, store.StateSynced, 0},
		{"unknown id", "/v1/deadletters/42/retry", 42, http.StatusNotFound, "", 0},
		{"zero", "/v1/deadletters/0/retry", 0, http.StatusNotFound, "", 0},
		{"not a number", "/v1/deadletters/abc/retry", 0, http.StatusNotFound, "", 0},
		{"too big", "/v1/deadletters/99999999999999999999/retry", 0, http.StatusNotFound, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			e.b.store.rows = deadRows()
			rec := e.authed(http.MethodPost, tc.path, "", nil)
			if tc.status == http.StatusOK {
				if rec.Code != http.StatusOK {
					t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
				}
				var got api.Requeued
				decode(t, rec, &got)
				if got.ID != tc.id || got.State != "pending" {
					t.Errorf("answer = %+v", got)
				}
			} else {
				errorAnswer(t, rec, tc.status)
			}
			if tc.id != 0 {
				if got := e.b.store.state(tc.id); got != tc.after {
					t.Errorf("row %d is %q, want %q", tc.id, got, tc.after)
				}
			}
			if e.b.woken != tc.woken {
				t.Errorf("woken %d times, want %d", e.b.woken, tc.woken)
			}
		})
	}
}

func TestRetryRouteIsLoggedByTemplate(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.b.store.rows = deadRows()
	e.authed(http.MethodPost, "/v1/deadletters/1/retry", "", nil)
	log := e.log.String()
	if !strings.Contains(log, `"route":"/v1/deadletters/{id}/retry"`) {
		t.Errorf("access log lacks the route template: %s", log)
	}
	if strings.Contains(log, "/v1/deadletters/1/retry") {
		t.Errorf("access log holds the path: %s", log)
	}
}

func TestHealthzAndMetricsNeedNoToken(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if rec := e.do(http.MethodGet, "/healthz", "", nil); rec.Code != http.StatusOK {
		t.Errorf("/healthz = %d %s", rec.Code, rec.Body)
	}
	rec := e.do(http.MethodGet, "/metrics", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics = %d %s", rec.Code, rec.Body)
	}
	// The /healthz call above is counted by the time /metrics is scraped.
	if !strings.Contains(rec.Body.String(), `ketamine_fhir_api_requests_total{code="200",route="/healthz"} 1`) {
		t.Errorf("/metrics lacks the API request count:\n%s", rec.Body)
	}
}

func TestMetricsRouteWithoutGatherer(t *testing.T) {
	t.Parallel()
	e := setup(t, func(o *api.Options) { o.Gatherer = nil })
	errorAnswer(t, e.do(http.MethodGet, "/metrics", "", nil), http.StatusNotFound)
}

// TestReadyz: readiness is "the store is usable and the API can accept
// records". An EHR outage does not make the adapter unready: it still
// accepts and stores records.
func TestReadyz(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		storeErr error
		ehrErr   error
		ehrWait  bool
		status   int
	}{
		{"ready", nil, nil, false, http.StatusOK},
		{"store down", errBoom, nil, false, http.StatusServiceUnavailable},
		{"ehr refuses", nil, errors.New("connection refused"), false, http.StatusOK},
		{"ehr silent", nil, nil, true, http.StatusOK},
		{"both down", errBoom, errors.New("x"), false, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			e.b.store.pingErr = tc.storeErr
			e.b.setPing(tc.ehrErr, tc.ehrWait)
			e.prober.Probe(t.Context())
			if st := e.prober.Status(); st.Reachable != (tc.ehrErr == nil && !tc.ehrWait) {
				t.Fatalf("prober status = %+v", st)
			}
			pings := e.b.pingCount()
			rec := e.do(http.MethodGet, "/readyz", "", nil) // no token needed
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			var got api.Readiness
			decode(t, rec, &got)
			want := map[string]string{"store": "ok"}
			if tc.storeErr != nil {
				want["store"] = "failed"
			}
			if len(got.Checks) != 1 || got.Checks["store"] != want["store"] {
				t.Errorf("checks = %v, want %v", got.Checks, want)
			}
			if (got.Status == "ok") != (tc.status == http.StatusOK) {
				t.Errorf("status field = %q", got.Status)
			}
			if tc.storeErr != nil && strings.Contains(rec.Body.String(), tc.storeErr.Error()) {
				t.Error("/readyz (unauthenticated) shows the error text")
			}
			if n := e.b.pingCount() - pings; n != 0 {
				t.Errorf("/readyz pinged the EHR %d times", n)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := setup(t)
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name, in string
		keep     bool
	}{
		{"absent", "", false},
		{"caller's", "clinic-app.7f3a:001", true},
		{"with spaces", "Jane Doe 1961", false},
		{"too long", strings.Repeat("a", 129), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.in != "" {
				hdr = []string{"X-Request-Id", tc.in}
			}
			rec := e.do(http.MethodGet, "/v1/status", "", nil, hdr...)
			id := rec.Header().Get("X-Request-Id")
			if tc.keep && id != tc.in {
				t.Errorf("request id = %q, want the caller's %q", id, tc.in)
			}
			if !tc.keep && !hex32.MatchString(id) {
				t.Errorf("request id = %q, want a new 32-hex id", id)
			}
			if !strings.Contains(e.log.String(), `"request_id":"`+id+`"`) {
				t.Errorf("the access log lacks request id %s", id)
			}
		})
	}
	if strings.Contains(e.log.String(), "Jane Doe") {
		t.Error("an unsafe caller request id was logged")
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.authed(http.MethodGet, "/v1/status", "", nil)
	var line struct {
		Msg        string  `json:"msg"`
		Method     string  `json:"method"`
		Route      string  `json:"route"`
		Status     int     `json:"status"`
		DurationMS float64 `json:"duration_ms"`
		RequestID  string  `json:"request_id"`
	}
	found := false
	for _, l := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if line.Msg == "http request" {
			found = true
			break
		}
	}
	if !found || line.Method != "GET" || line.Route != "/v1/status" || line.Status != 200 || line.RequestID == "" {
		t.Errorf("access log line = %+v (found %v)", line, found)
	}
	if strings.Contains(e.log.String(), testToken) {
		t.Error("the token is logged")
	}
}

func TestMethodNotAllowedAndUnknownRoute(t *testing.T) {
	t.Parallel()
	e := setup(t)
	errorAnswer(t, e.authed(http.MethodGet, "/v1/records", "", nil), http.StatusMethodNotAllowed)
	errorAnswer(t, e.authed(http.MethodDelete, "/v1/status", "", nil), http.StatusMethodNotAllowed)
	errorAnswer(t, e.authed(http.MethodGet, "/v2/records", "", nil), http.StatusNotFound)
}

func TestPanicIsRecovered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.b.panicking = true
	rec := e.authed(http.MethodGet, "/v1/status", "", nil)
	errorAnswer(t, rec, http.StatusInternalServerError)
	log := e.log.String()
	if !strings.Contains(log, "handler panicked") || !strings.Contains(log, `"route":"/v1/status"`) {
		t.Errorf("the panic is not logged with its route: %s", log)
	}
	// The panic value is not a runtime error: its text is not logged.
	if strings.Contains(log, "MRN-PANIC-0001") {
		t.Error("the panic value was logged")
	}
	if !strings.Contains(log, `"status":500`) {
		t.Error("the access log does not show the 500")
	}
	// The server goes on serving.
	e.b.panicking = false
	if rec := e.authed(http.MethodGet, "/v1/status", "", nil); rec.Code != http.StatusOK {
		t.Errorf("after a panic: %d", rec.Code)
	}
}
