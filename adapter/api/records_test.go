package api_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

const (
	ndjson    = "application/x-ndjson"
	jsonArray = "application/json"
)

// badPatient has a bad sex and holds patient data that must never be
// echoed.
const badPatient = `{"kind":"patient","mrn":"MRN-SECRET-4711","family":"Zyxwvutsrq","given":["Qwertzuiop"],` +
	`"birth_date":"1961-07-14","sex":"robot","phone":"+1-555-0199-7","email":"zyx.secret@example.org"}`

// badOrder has a negative dose.
const badOrder = `{"kind":"order","order_id":"ord-bad-1","mrn":"MRN-SECRET-4711","status":"active",` +
	`"authored_at":"2025-04-01T10:00:00Z","prescriber":{"npi":"1234567893","name":"Dr Test"},` +
	`"medication":"ketamine-10mg-ml","route":"IM","dose":{"value":-5,"unit":"mg"}}`

var badSecrets = []string{"MRN-SECRET-4711", "Zyxwvutsrq", "Qwertzuiop", "1961-07-14", "555-0199", "zyx.secret"}

func TestPostRecordsNDJSONMixed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	recs, lines := clinic(t, 1)
	// A blank line, the clinic, then a bad order, a malformed line and a
	// bad patient.
	body := "\n" + strings.Join(lines, "\n") + "\n" + badOrder + "\n" +
		`{"kind":"patient","mrn":"MRN-SECRET-4711","family":` + "\n" + badPatient + "\n"
	rec := e.authed(http.MethodPost, "/v1/records", ndjson, strings.NewReader(body))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body)
	}
	var got []api.RecordResult
	decode(t, rec, &got)
	n := len(recs)
	if len(got) != n+3 {
		t.Fatalf("got %d results, want %d", len(got), n+3)
	}
	for i, r := range recs {
		g := got[i]
		want := api.RecordResult{Index: i, Line: i + 2, Kind: string(r.Kind), ID: r.ID(), Status: api.StatusAccepted}
		if r.Kind == mapping.KindPatient {
			want.ID = ""
		}
		if fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("result %d = %+v, want %+v", i, g, want)
		}
	}
	bo := got[n]
	if bo.Index != n || bo.Line != n+2 || bo.Kind != "order" || bo.ID != "ord-bad-1" || bo.Status != api.StatusRejected {
		t.Errorf("bad order result = %+v", bo)
	}
	if len(bo.Errors) != 1 || bo.Errors[0].Field != "dose.value" || bo.Errors[0].Reason == "" {
		t.Errorf("bad order errors = %+v, want one on dose.value", bo.Errors)
	}
	mal := got[n+1]
	if mal.Line != n+3 || mal.Status != api.StatusRejected || mal.ID != "" || len(mal.Errors) == 0 {
		t.Errorf("malformed line result = %+v", mal)
	}
	bp := got[n+2]
	if bp.Line != n+4 || bp.Kind != "patient" || bp.ID != "" || bp.Status != api.StatusRejected {
		t.Errorf("bad patient result = %+v", bp)
	}
	if len(bp.Errors) != 1 || bp.Errors[0].Field != "sex" {
		t.Errorf("bad patient errors = %+v, want one on sex", bp.Errors)
	}

	if len(e.b.ingested) != n || e.b.ingestCount() != 1 {
		t.Errorf("ingested %d records in %d calls, want %d in 1", len(e.b.ingested), e.b.ingestCount(), n)
	}
	if e.b.received != n || e.b.rejected != 3 {
		t.Errorf("received %d, rejected %d; want %d, 3", e.b.received, e.b.rejected, n)
	}
	secrets := phi(recs, badSecrets...)
	secrets.Check(t, "the answer", rec.Body.String())
	secrets.Check(t, "the log", e.log.String())
	if !strings.Contains(e.log.String(), `"accepted":`+fmt.Sprint(n)) {
		t.Errorf("log has no ingest summary: %s", e.log)
	}
}

func TestPostRecordsUnchangedOnResend(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, lines := clinic(t, 1)
	body := strings.Join(lines, "\n")
	if rec := e.authed(http.MethodPost, "/v1/records", ndjson, strings.NewReader(body)); rec.Code != http.StatusAccepted {
		t.Fatalf("first post: %d %s", rec.Code, rec.Body)
	}
	rec := e.authed(http.MethodPost, "/v1/records", ndjson, strings.NewReader(body))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("second post: %d %s", rec.Code, rec.Body)
	}
	var got []api.RecordResult
	decode(t, rec, &got)
	for _, g := range got {
		if g.Status != api.StatusUnchanged {
			t.Errorf("result %d status %q, want unchanged", g.Index, g.Status)
		}
	}
}

func TestPostRecordsJSONArray(t *testing.T) {
	t.Parallel()
	e := setup(t)
	recs, lines := clinic(t, 1)
	// One element per line after "[": element i is on line i+2.
	body := "[\n" + strings.Join(append(lines[:3:3], badOrder), ",\n") + "\n]\n"
	rec := e.authed(http.MethodPost, "/v1/records", jsonArray+"; charset=utf-8", strings.NewReader(body))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	var got []api.RecordResult
	decode(t, rec, &got)
	if len(got) != 4 {
		t.Fatalf("got %d results, want 4: %s", len(got), rec.Body)
	}
	for i := 0; i < 3; i++ {
		if got[i].Index != i || got[i].Line != i+2 || got[i].Status != api.StatusAccepted || got[i].Kind != string(recs[i].Kind) {
			t.Errorf("result %d = %+v", i, got[i])
		}
	}
	if got[3].Line != 5 || got[3].Status != api.StatusRejected || got[3].ID != "ord-bad-1" {
		t.Errorf("bad order result = %+v", got[3])
	}
	if len(e.b.ingested) != 3 {
		t.Errorf("ingested %d records, want 3", len(e.b.ingested))
	}
	phi(recs).Check(t, "the answer", rec.Body.String())
}

func TestPostRecordsAllInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"ndjson", ndjson, badPatient + "\n" + badOrder + "\n"},
		{"json array", jsonArray, "[" + badPatient + "," + badOrder + "]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			rec := e.authed(http.MethodPost, "/v1/records", tc.contentType, strings.NewReader(tc.body))
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400; body %s", rec.Code, rec.Body)
			}
			var got []api.RecordResult
			decode(t, rec, &got)
			if len(got) != 2 || got[0].Status != api.StatusRejected || got[1].Status != api.StatusRejected {
				t.Fatalf("results = %+v, want two rejected", got)
			}
			if got[0].Kind != "patient" || got[0].ID != "" || got[1].ID != "ord-bad-1" {
				t.Errorf("results = %+v", got)
			}
			if n := e.b.ingestCount(); n != 0 {
				t.Errorf("Ingest called %d times, want 0", n)
			}
			phi(nil, badSecrets...).Check(t, "the answer", rec.Body.String())
			phi(nil, badSecrets...).Check(t, "the log", e.log.String())
		})
	}
}

func TestPostRecordsBadBodies(t *testing.T) {
	t.Parallel()
	_, lines := clinic(t, 1)
	big := strings.Repeat(lines[0]+"\n", (64<<10)/len(lines[0])+1)
	for _, tc := range []struct {
		name, contentType, body string
		unknownLength           bool
		status                  int
	}{
		{"no content type", "", lines[0], false, http.StatusUnsupportedMediaType},
		{"text/plain", "text/plain", lines[0], false, http.StatusUnsupportedMediaType},
		{"csv", "text/csv", "mrn,family\n", false, http.StatusUnsupportedMediaType},
		{"latin-1", "application/json; charset=iso-8859-1", "[" + lines[0] + "]", false, http.StatusUnsupportedMediaType},
		{"bad media type", "application/", lines[0], false, http.StatusUnsupportedMediaType},
		{"oversized with length", ndjson, big, false, http.StatusRequestEntityTooLarge},
		{"oversized chunked", ndjson, big, true, http.StatusRequestEntityTooLarge},
		{"oversized json array", jsonArray, "[" + big + "]", true, http.StatusRequestEntityTooLarge},
		{"empty ndjson", ndjson, "", false, http.StatusBadRequest},
		{"blank ndjson", ndjson, "\n\n  \n", false, http.StatusBadRequest},
		{"empty array", jsonArray, "[]", false, http.StatusBadRequest},
		{"object not array", jsonArray, lines[0], false, http.StatusBadRequest},
		{"truncated array", jsonArray, "[" + lines[0] + ",\n" + `{"kind":"patient","mrn":"MRN-SECRET-4711"`, false, http.StatusBadRequest},
		{"unterminated array", jsonArray, "[" + lines[0], false, http.StatusBadRequest},
		{"trailing data", jsonArray, "[" + lines[0] + "] [" + lines[0] + "]", false, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			var body io.Reader = strings.NewReader(tc.body)
			if tc.unknownLength {
				body = io.MultiReader(body) // no Len: sent chunked
			}
			msg := errorAnswer(t, e.authed(http.MethodPost, "/v1/records", tc.contentType, body), tc.status)
			if n := e.b.ingestCount(); n != 0 {
				t.Errorf("Ingest called %d times, want 0", n)
			}
			phi(nil, badSecrets...).Check(t, "the answer", msg)
		})
	}
}

func TestPostRecordsIngestFails(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.b.ingestErr = errBoom
	_, lines := clinic(t, 1)
	rec := e.authed(http.MethodPost, "/v1/records", ndjson, strings.NewReader(strings.Join(lines, "\n")))
	errorAnswer(t, rec, http.StatusServiceUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if !strings.Contains(e.log.String(), errBoom.Error()) {
		t.Errorf("the outbox error is not logged: %s", e.log)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	_, lines := clinic(t, 1)
	routes := []struct {
		method, target, contentType, body string
		okStatus                          int
	}{
		{http.MethodPost, "/v1/records", ndjson, lines[0], http.StatusAccepted},
		{http.MethodGet, "/v1/status", "", "", http.StatusOK},
		{http.MethodGet, "/v1/deadletters", "", "", http.StatusOK},
		{http.MethodPost, "/v1/deadletters/1/retry", "", "", http.StatusOK},
	}
	cases := []struct {
		name      string
		header    []string
		status    int
		challenge string // prefix of WWW-Authenticate; "" for none
	}{
		{"no header", nil, http.StatusUnauthorized, "Bearer"},
		{"basic", []string{"Authorization", "Basic dXNlcjpwYXNz"}, http.StatusUnauthorized, `Bearer realm="ketamine-fhir", error="invalid_request"`},
		{"bearer without token", []string{"Authorization", "Bearer"}, http.StatusUnauthorized, `Bearer realm="ketamine-fhir", error="invalid_request"`},
		{"bearer empty token", []string{"Authorization", "Bearer "}, http.StatusUnauthorized, "Bearer"},
		{"two tokens", []string{"Authorization", "Bearer " + testToken + " extra"}, http.StatusUnauthorized, "Bearer"},
		{"wrong token", []string{"Authorization", "Bearer not-the-token"}, http.StatusForbidden, ""},
		{"token prefix", []string{"Authorization", "Bearer " + testToken[:5]}, http.StatusForbidden, ""},
		{"token in other case", []string{"Authorization", "Bearer " + strings.ToUpper(testToken)}, http.StatusForbidden, ""},
		{"right token", []string{"Authorization", "Bearer " + testToken}, 0, ""},
		{"lower-case scheme", []string{"Authorization", "bearer " + testToken}, 0, ""},
	}
	for _, rt := range routes {
		for _, tc := range cases {
			t.Run(rt.method+" "+rt.target+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := setup(t)
				e.b.store.rows = deadRows()
				rec := e.do(rt.method, rt.target, rt.contentType, strings.NewReader(rt.body), tc.header...)
				want := tc.status
				if want == 0 {
					want = rt.okStatus
				}
				if rec.Code != want {
					t.Fatalf("status = %d, want %d; body %s", rec.Code, want, rec.Body)
				}
				if tc.status == 0 {
					return
				}
				errorAnswer(t, rec, want)
				if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, tc.challenge) || (tc.challenge == "") != (got == "") {
					t.Errorf("WWW-Authenticate = %q, want prefix %q", got, tc.challenge)
				}
				if n := e.b.ingestCount(); n != 0 {
					t.Errorf("Ingest called %d times without a valid token", n)
				}
				if e.b.store.state(1) != "dead" {
					t.Error("a dead letter was re-queued without a valid token")
				}
				if strings.Contains(e.log.String(), "not-the-token") || strings.Contains(e.log.String(), testToken) {
					t.Error("a token was logged")
				}
			})
		}
	}
}

func TestEmptyTokenRefusesEverything(t *testing.T) {
	t.Parallel()
	e := setup(t, func(o *api.Options) { o.Token = "" })
	for _, h := range []string{"Bearer x", "Bearer " + testToken} {
		rec := e.do(http.MethodGet, "/v1/status", "", nil, "Authorization", h)
		errorAnswer(t, rec, http.StatusForbidden)
	}
	// The open routes stay open.
	if rec := e.do(http.MethodGet, "/healthz", "", nil); rec.Code != http.StatusOK {
		t.Errorf("/healthz = %d", rec.Code)
	}
}

func TestAPIRequestMetric(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.do(http.MethodPost, "/v1/records", ndjson, strings.NewReader("{}"))
	e.authed(http.MethodPost, "/v1/deadletters/99/retry", "", nil)
	e.do(http.MethodGet, "/no/such/route", "", nil)
	e.do(http.MethodGet, "/healthz", "", nil)
	for _, tc := range []struct {
		route string
		code  string
		want  float64
	}{
		{"/v1/records", "401", 1},
		{"/v1/deadletters/{id}/retry", "404", 1},
		{"unmatched", "404", 1},
		{"/healthz", "200", 1},
	} {
		if got := testutil.ToFloat64(e.metrics.APIRequests.WithLabelValues(tc.route, tc.code)); got != tc.want {
			t.Errorf("api_requests_total{route=%q,code=%q} = %v, want %v", tc.route, tc.code, got, tc.want)
		}
	}
}
