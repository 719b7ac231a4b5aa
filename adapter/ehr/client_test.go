package ehr

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPathJoining(t *testing.T) {
	t.Parallel()
	e := setup(t, status(200, `{}`))
	tests := []struct {
		name      string
		path      string
		wantPath  string
		wantQuery string
		wantIdent string // decoded identifier parameter, when checked
	}{
		{"read", "Observation/123", basePath + "/Observation/123", "", ""},
		{"leading slash", "/Observation/123", basePath + "/Observation/123", "", ""},
		{"base for transactions", "", basePath, "", ""},
		{"history", "Patient/p1/_history/3", basePath + "/Patient/p1/_history/3", "", ""},
		{"encoded query kept as is", "Patient?" + mrnQuery, basePath + "/Patient", mrnQuery,
			"https://clinic.example/id/patient|" + mrn},
		{"raw query made valid", "Patient?identifier=https://clinic.example/id/patient|A B", basePath + "/Patient",
			"identifier=https://clinic.example/id/patient%7CA%20B", "https://clinic.example/id/patient|A B"},
		{"FHIR escapes survive", `Observation?identifier=sys%7Ca%5C%7Cb`, basePath + "/Observation",
			`identifier=sys%7Ca%5C%7Cb`, `sys|a\|b`},
		{"stray percent encoded", "Patient?name=100%", basePath + "/Patient", "name=100%25", ""},
		{"several parameters", "Observation?subject=Patient/1&code=http://loinc.org%7C44261-6", basePath + "/Observation",
			"subject=Patient/1&code=http://loinc.org%7C44261-6", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: tt.path}); err != nil {
				t.Fatalf("Do: %v", err)
			}
			got := e.ehr.requests()[i]
			if got.Path != tt.wantPath || got.RawQuery != tt.wantQuery {
				t.Errorf("server saw %q ? %q, want %q ? %q", got.Path, got.RawQuery, tt.wantPath, tt.wantQuery)
			}
			if tt.wantIdent != "" {
				q, err := url.ParseQuery(got.RawQuery)
				if err != nil || q.Get("identifier") != tt.wantIdent {
					t.Errorf("identifier = %q (%v), want %q", q.Get("identifier"), err, tt.wantIdent)
				}
			}
		})
	}
}

func TestBaseURLWithTrailingSlash(t *testing.T) {
	t.Parallel()
	e := setup(t, status(200, `{}`), func(c *Config) { c.BaseURL += "/" })
	if _, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/1"}); err != nil {
		t.Fatal(err)
	}
	if got := e.ehr.requests()[0].Path; got != basePath+"/Patient/1" {
		t.Errorf("path = %q", got)
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	e := setup(t, status(200, `{}`))
	tests := []struct {
		name string
		req  Request
	}{
		{"dot dot", Request{Method: http.MethodGet, Path: "../admin"}},
		{"absolute URL", Request{Method: http.MethodGet, Path: "https://evil.example/Patient"}},
		{"method", Request{Method: "TRACE", Path: "Patient"}},
		{"If-Match quote", Request{Method: http.MethodPut, Path: "Patient/1", IfMatch: `3"`}},
		{"header injection", Request{Method: http.MethodPost, Path: "Patient", IfNoneExist: "identifier=a\r\nX-Evil: 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.Do(ctxT(t), tt.req)
			if !errors.Is(err, ErrInvalidRequest) || Classify(err) != ClassPermanent {
				t.Errorf("err = %v (class %v), want ErrInvalidRequest, permanent", err, Classify(err))
			}
		})
	}
	if n := e.ehr.count(); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}

func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	e := setup(t, status(201, ""), func(c *Config) {
		c.UserAgent = "ketamine-fhir/test"
		c.Auth = AuthConfig{Mode: AuthBearer, Token: "tok-1"}
	})
	body := []byte(`{"resourceType":"Observation"}`)
	_, err := e.c.Do(ctxT(t), Request{Method: http.MethodPost, Path: "Observation", Body: body,
		IfNoneExist: mrnQuery, Prefer: "return=minimal"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.Do(ctxT(t), Request{Method: http.MethodPut, Path: "Observation/o1", Body: body, IfMatch: "3"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Observation/o1"})
	if err != nil {
		t.Fatal(err)
	}
	r := e.ehr.requests()
	checks := []struct {
		req          int
		header, want string
	}{
		{0, "Accept", "application/fhir+json"},
		{0, "Content-Type", "application/fhir+json"},
		{0, "If-None-Exist", mrnQuery},
		{0, "Prefer", "return=minimal"},
		{0, "User-Agent", "ketamine-fhir/test"},
		{0, "Authorization", "Bearer tok-1"},
		{0, "If-Match", ""},
		{1, "If-Match", `W/"3"`},
		{1, "If-None-Exist", ""},
		{2, "Content-Type", ""},
		{2, "Accept", "application/fhir+json"},
	}
	for _, ch := range checks {
		if got := r[ch.req].Header.Get(ch.header); got != ch.want {
			t.Errorf("request %d %s = %q, want %q", ch.req, ch.header, got, ch.want)
		}
	}
	if r[0].Body != string(body) {
		t.Errorf("body = %q", r[0].Body)
	}
}

func TestResponseParsing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		header      map[string]string
		body        string
		rt          string
		wantID      string
		wantVersion string
		wantLM      time.Time
	}{
		{"location with history", map[string]string{"Location": "https://ehr.example/api/FHIR/R4/Observation/o9/_history/4"},
			"", "Observation", "o9", "4", time.Time{}},
		{"relative location and etag", map[string]string{"Location": "Observation/o9", "ETag": `W/"7"`},
			"", "Observation", "o9", "7", time.Time{}},
		{"body id and meta", map[string]string{"Last-Modified": "Tue, 04 Mar 2025 10:00:00 GMT"},
			`{"resourceType":"Observation","id":"o3","meta":{"versionId":"2","lastUpdated":"2025-03-04T09:00:00Z"}}`,
			"Observation", "o3", "2", time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)},
		{"body lastUpdated", nil,
			`{"resourceType":"Observation","id":"o3","meta":{"versionId":"2","lastUpdated":"2025-03-04T09:00:00Z"}}`,
			"Observation", "o3", "2", time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)},
		{"outcome body gives no id", nil, `{"resourceType":"OperationOutcome","id":"oo1"}`, "Observation", "", "", time.Time{}},
		{"content-location", map[string]string{"Content-Location": "Patient/p1/_history/1"}, "", "Patient", "p1", "1", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(200)
				io.WriteString(w, tt.body)
			})
			resp, err := e.c.Do(ctxT(t), Request{Method: http.MethodPut, Path: tt.rt + "?" + mrnQuery, ResourceType: tt.rt, Body: []byte("{}")})
			if err != nil {
				t.Fatal(err)
			}
			if resp.ID != tt.wantID || resp.Version != tt.wantVersion || !resp.LastModified.Equal(tt.wantLM) {
				t.Errorf("got id %q version %q lm %v, want %q %q %v", resp.ID, resp.Version, resp.LastModified, tt.wantID, tt.wantVersion, tt.wantLM)
			}
			if string(resp.Body) != tt.body || resp.Status != 200 {
				t.Errorf("status %d body %q", resp.Status, resp.Body)
			}
		})
	}
}

const outcome422 = `{"resourceType":"OperationOutcome","issue":[
 {"severity":"error","code":"processing","diagnostics":"Observation.code: unknown code 'X-` + mrn + `'","expression":["Observation.code"]},
 {"severity":"error","code":"required","details":{"text":"status is required"},"location":["Observation.status"]}]}`

func TestStatusClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		code       int
		body       string
		ifMatch    string
		wantClass  Class
		wantReason string
		wantTries  int // RetryMax is 2
	}{
		{"422 with outcome", 422, outcome422, "", ClassPermanent, "http_422", 1},
		{"400", 400, "", "", ClassPermanent, "http_400", 1},
		{"403 is the client's authorization, not the record's", 403, "", "", ClassAuth, "auth", 1},
		{"404", 404, "", "", ClassPermanent, "http_404", 1},
		{"409", 409, "", "", ClassPermanent, "http_409", 1},
		{"410", 410, "", "", ClassPermanent, "http_410", 1},
		{"412 with If-Match", 412, "", "3", ClassConflict, "http_412", 1},
		{"412 without If-Match", 412, "", "", ClassPermanent, "http_412", 1},
		{"501", 501, "", "", ClassPermanent, "http_501", 1},
		{"302 on a write", 302, "", "", ClassPermanent, "http_302", 1},
		{"408", 408, "", "", ClassTransient, "http_408", 3},
		{"429", 429, "", "", ClassTransient, "http_429", 3},
		{"500", 500, "", "", ClassTransient, "http_500", 3},
		{"502", 502, "", "", ClassTransient, "http_502", 3},
		{"503", 503, "", "", ClassTransient, "http_503", 3},
		{"504", 504, "", "", ClassTransient, "http_504", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if tt.code == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				status(tt.code, tt.body)(w, r, n)
			})
			_, err := e.c.Do(ctxT(t), Request{Method: http.MethodPut, Path: "Observation?" + mrnQuery,
				ResourceType: "Observation", Body: []byte(`{"resourceType":"Observation"}`), IfMatch: tt.ifMatch})
			if err == nil {
				t.Fatal("no error")
			}
			if got := Classify(err); got != tt.wantClass {
				t.Errorf("Classify = %v, want %v (err %v)", got, tt.wantClass, err)
			}
			if got := Reason(err); got != tt.wantReason {
				t.Errorf("Reason = %q, want %q", got, tt.wantReason)
			}
			if got := e.ehr.count(); got != tt.wantTries {
				t.Errorf("%d attempts, want %d", got, tt.wantTries)
			}
			noPHI(t, "error", err.Error())
			noPHI(t, "logs", e.logs.String())
			switch tt.wantClass {
			case ClassTransient:
				var te *TransientError
				if !errors.As(err, &te) || te.Status != tt.code || te.Attempts != 3 || te.Method != "PUT" || te.ResourceType != "Observation" {
					t.Errorf("err = %#v", err)
				}
			case ClassAuth:
				var ae *AuthError
				if !errors.As(err, &ae) || ae.Status != tt.code || ae.Reason != "forbidden" {
					t.Errorf("err = %#v", err)
				}
			default:
				var rej *RejectedError
				if !errors.As(err, &rej) || rej.Status != tt.code || rej.IfMatch != tt.ifMatch {
					t.Errorf("err = %#v", err)
				}
			}
		})
	}
}

func TestRejectedWithOutcome(t *testing.T) {
	t.Parallel()
	e := setup(t, status(422, outcome422))
	_, err := e.c.Do(ctxT(t), Request{Method: http.MethodPut, Path: "Observation?" + mrnQuery, ResourceType: "Observation", Body: []byte("{}")})
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("err = %v, want *RejectedError", err)
	}
	const want = "ehr: PUT Observation rejected: 422 (2 issues: error processing at Observation.code; error required at Observation.status)"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
	wantIssues := []Issue{
		{Severity: "error", Code: "processing", Diagnostics: "Observation.code: unknown code 'X-" + mrn + "'", Expression: []string{"Observation.code"}},
		{Severity: "error", Code: "required", Details: "status is required", Expression: []string{"Observation.status"}},
	}
	if !reflect.DeepEqual(rej.Issues, wantIssues) {
		t.Errorf("Issues = %#v", rej.Issues)
	}
	if d := rej.Diagnostics(); !strings.Contains(d, "X-"+mrn) || !strings.Contains(d, "status is required") {
		t.Errorf("Diagnostics() = %q, want the server's texts", d)
	}
}

func TestRetryAfterThenSuccess(t *testing.T) {
	t.Parallel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1") // capped to RetryWaitMax (2ms)
			w.WriteHeader(429)
			return
		}
		w.Header().Set("Location", "Patient/p1/_history/1")
		w.WriteHeader(201)
	})
	resp, err := e.c.Do(ctxT(t), Request{Method: http.MethodPost, Path: "Patient", ResourceType: "Patient",
		Body: []byte(`{"resourceType":"Patient"}`), IfNoneExist: mrnQuery})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 201 || resp.ID != "p1" || resp.Version != "1" {
		t.Errorf("resp = %+v", resp)
	}
	reqs := e.ehr.requests()
	if len(reqs) != 2 || reqs[1].Body != `{"resourceType":"Patient"}` {
		t.Errorf("requests = %+v, want 2 with the body sent again", reqs)
	}
	requests, retries, _ := e.hooks.snapshot()
	if want := []string{"Patient POST 429", "Patient POST 201"}; !reflect.DeepEqual(requests, want) {
		t.Errorf("OnRequest = %q, want %q", requests, want)
	}
	if want := []string{"http_429"}; !reflect.DeepEqual(retries, want) {
		t.Errorf("OnRetry = %q, want %q", retries, want)
	}
}

func TestRetryAfterCapped(t *testing.T) {
	t.Parallel()
	// A Retry-After of an hour must not wait an hour: RetryWaitMax (2ms)
	// caps it. The test context (20s) fails the test if it did.
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(503)
	})
	_, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient?" + mrnQuery, ResourceType: "Patient"})
	var te *TransientError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *TransientError", err)
	}
	if te.Status != 503 || te.Reason != "http_503" || te.Attempts != 3 || te.RetryAfter != time.Hour {
		t.Errorf("err = %+v, want 503 after 3 attempts, RetryAfter 1h for the outbox", te)
	}
	const want = "ehr: GET Patient transient failure: 503 after 3 attempts (http_503, retry after 1h0m0s)"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c, err := New(Config{BaseURL: "https://ehr.example/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	a := &attempts{c: c, spec: &sendSpec{}}
	a.retryAfter = time.Hour
	if got := a.backoff(time.Millisecond, 30*time.Second, 0, nil); got != 30*time.Second {
		t.Errorf("Retry-After 1h with max 30s waits %v", got)
	}
	a.retryAfter = 2 * time.Second
	if got := a.backoff(time.Millisecond, 30*time.Second, 0, nil); got != 2*time.Second {
		t.Errorf("Retry-After 2s waits %v", got)
	}
	a.retryAfter = 0
	for n := 0; n < 40; n++ {
		d := min(500*time.Millisecond<<min(n, 20), 30*time.Second)
		if n > 20 {
			d = 30 * time.Second
		}
		got := a.backoff(500*time.Millisecond, 30*time.Second, n, nil)
		if got < d/2 || got > d {
			t.Errorf("attempt %d waits %v, want in [%v, %v]", n, got, d/2, d)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"Tue, 04 Mar 2025 10:00:30 GMT", 30 * time.Second},
		{"Tuesday, 04-Mar-25 10:01:00 GMT", time.Minute},
		{"Tue, 04 Mar 2025 09:00:00 GMT", 0},
		{"99999999999", maxRetryAfter},
		{"999999999999999999999", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPerAttemptTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			<-r.Context().Done() // hang until the client gives up on the attempt
			return
		}
		w.WriteHeader(200)
	}, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	if _, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient?" + mrnQuery}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	// On a loaded machine the second attempt may time out too; what must
	// hold is: timed-out attempts (status 0) retried for "timeout", then
	// the 200.
	requests, retries, _ := e.hooks.snapshot()
	if n := len(requests); n < 2 || requests[0] != "Patient GET 0" || requests[n-1] != "Patient GET 200" || len(retries) != n-1 {
		t.Errorf("OnRequest = %q, OnRetry = %q", requests, retries)
	}
	for _, r := range retries {
		if r != "timeout" {
			t.Errorf("OnRetry = %q, want only timeout", retries)
		}
	}
	noPHI(t, "logs", e.logs.String())
}

func TestTimeoutsExhausted(t *testing.T) {
	t.Parallel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		<-r.Context().Done()
	}, func(c *Config) { c.Timeout = 20 * time.Millisecond; c.RetryMax = 1 })
	_, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient?" + mrnQuery, ResourceType: "Patient"})
	var te *TransientError
	if !errors.As(err, &te) || te.Reason != "timeout" || te.Status != 0 || te.Attempts != 2 {
		t.Fatalf("err = %v, want a timeout TransientError after 2 attempts", err)
	}
	if Classify(err) != ClassTransient {
		t.Errorf("class %v: a per-attempt timeout is not a cancellation", Classify(err))
	}
	noPHI(t, "error", err.Error())
	noPHI(t, "logs", e.logs.String())
}

func hijackClose(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

func TestConnectionDropRetried(t *testing.T) {
	t.Parallel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			hijackClose(t, w) // before any response
		case 2:
			// Headers, then half the body, then the connection is lost.
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			io.WriteString(w, `{"resourceType":`)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		default:
			w.Header().Set("ETag", `W/"2"`)
			w.WriteHeader(200)
			io.WriteString(w, `{"resourceType":"Observation","id":"o1"}`)
		}
	})
	body := `{"resourceType":"Observation","status":"final"}`
	resp, err := e.c.Do(ctxT(t), Request{Method: http.MethodPut, Path: "Observation?" + mrnQuery, ResourceType: "Observation", Body: []byte(body)})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if resp.ID != "o1" || resp.Version != "2" {
		t.Errorf("resp = %+v", resp)
	}
	for i, r := range e.ehr.requests() {
		if r.Body != body {
			t.Errorf("attempt %d body %q, want the full body again", i+1, r.Body)
		}
	}
	_, retries, _ := e.hooks.snapshot()
	if want := []string{"connection", "connection"}; !reflect.DeepEqual(retries, want) {
		t.Errorf("OnRetry = %q, want %q", retries, want)
	}
	noPHI(t, "logs", e.logs.String())
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL + basePath
	srv.Close()
	hl := &hookLog{}
	c, err := New(Config{BaseURL: base, RetryMax: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond, Hooks: hl.hooks()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient?" + mrnQuery})
	var te *TransientError
	if !errors.As(err, &te) || te.Reason != "connection" || te.Attempts != 2 {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "identifier") || strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error carries the URL: %v", err)
	}
	requests, _, _ := hl.snapshot()
	if want := []string{"Patient GET 0", "Patient GET 0"}; !reflect.DeepEqual(requests, want) {
		t.Errorf("OnRequest = %q, want %q", requests, want)
	}
}

func TestTLSCertificateNotRetried(t *testing.T) {
	t.Parallel()
	f := &fakeEHR{handle: status(200, "")}
	f.Server = httptest.NewUnstartedServer(f)
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake is expected
	f.StartTLS()
	defer f.Close()
	c, err := New(Config{BaseURL: f.URL + basePath, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient?" + mrnQuery})
	var te *TransientError
	if !errors.As(err, &te) || te.Reason != "tls_certificate" || te.Attempts != 1 {
		t.Fatalf("err = %v, want tls_certificate after 1 attempt", err)
	}
	// With the test server's client (its CA trusted) it works.
	c2, err := New(Config{BaseURL: f.URL + basePath, HTTPClient: f.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Do(ctxT(t), Request{Method: http.MethodGet, Path: "metadata"}); err != nil {
		t.Fatal(err)
	}
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		cancel() // the caller gives up while the EHR answers 503
		w.WriteHeader(503)
	}, func(c *Config) { c.RetryWaitMin, c.RetryWaitMax = time.Minute, time.Minute })
	_, err := e.c.Do(ctx, Request{Method: http.MethodGet, Path: "Patient?" + mrnQuery, ResourceType: "Patient"})
	if !errors.Is(err, context.Canceled) || Classify(err) != ClassCanceled || Reason(err) != "canceled" {
		t.Fatalf("err = %v (class %v), want context.Canceled", err, Classify(err))
	}
	if e.ehr.count() != 1 {
		t.Errorf("%d attempts after cancel, want 1", e.ehr.count())
	}
	noPHI(t, "error", err.Error())
	if !strings.Contains(err.Error(), "/Patient?…") {
		t.Errorf("error %q should name the redacted path", err)
	}
}

func TestNoPHIInErrorsAndLogs(t *testing.T) {
	t.Parallel()
	// Every failure path with an MRN in the query: no error string, no log
	// line may contain it.
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch r.URL.Query().Get("case") {
		case "503":
			w.WriteHeader(503)
		case "422":
			status(422, outcome422)(w, r, n)
		case "drop":
			hijackClose(t, w)
		case "401":
			w.WriteHeader(401)
		case "html":
			io.WriteString(w, "<html>"+mrn+"</html>")
		case "page":
			io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"`+
				"http://"+r.Host+basePath+"/Patient?case=page&"+mrnQuery+`"}]}`)
		default:
			w.WriteHeader(200)
		}
	}, func(c *Config) {
		c.Auth = AuthConfig{Mode: AuthBearer, Token: "t"}
		c.MaxSearchPages = 3
	})
	ctx := ctxT(t)
	var errs []error
	for _, cs := range []string{"503", "422", "drop", "401", "ok"} {
		_, err := e.c.Do(ctx, Request{Method: http.MethodPut, Path: "Patient?case=" + cs + "&" + mrnQuery, Body: []byte("{}"),
			IfNoneExist: mrnQuery})
		errs = append(errs, err)
	}
	for _, cs := range []string{"html", "page", "503"} {
		_, err := e.c.Search(ctx, "Patient", "case="+cs+"&"+mrnQuery)
		errs = append(errs, err)
	}
	for i, err := range errs {
		if i == 4 {
			if err != nil {
				t.Errorf("ok case: %v", err)
			}
			continue
		}
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		noPHI(t, "error", err.Error())
	}
	logs := e.logs.String()
	noPHI(t, "logs", logs)
	if !strings.Contains(logs, "path=/Patient?…") || !strings.Contains(logs, "ehr retry") {
		t.Errorf("logs should record requests and retries with redacted paths:\n%s", logs)
	}
	if strings.Contains(logs, "{}") || strings.Contains(logs, "Bearer") {
		t.Errorf("logs carry a body or a token:\n%s", logs)
	}
}

func TestHooksLabels(t *testing.T) {
	t.Parallel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(502)
			return
		}
		io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[]}`)
	})
	ctx := ctxT(t)
	if _, err := e.c.Transaction(ctx, []byte(`{"resourceType":"Bundle","type":"transaction"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Do(ctx, Request{Method: http.MethodGet, Path: "MedicationRequest/m1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Do(ctx, Request{Method: http.MethodGet, Path: "$weird-op", ResourceType: "Patient\nX"}); err != nil {
		t.Fatal(err)
	}
	requests, retries, _ := e.hooks.snapshot()
	want := []string{"Bundle POST 502", "Bundle POST 200", "MedicationRequest GET 200", "other GET 200"}
	if !reflect.DeepEqual(requests, want) {
		t.Errorf("OnRequest = %q, want %q", requests, want)
	}
	if want := []string{"http_502"}; !reflect.DeepEqual(retries, want) {
		t.Errorf("OnRetry = %q, want %q", retries, want)
	}
}

func TestNoRetries(t *testing.T) {
	t.Parallel()
	e := setup(t, status(503, ""), func(c *Config) { c.RetryMax = -1 })
	_, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/1"})
	var te *TransientError
	if !errors.As(err, &te) || te.Attempts != 1 || e.ehr.count() != 1 {
		t.Fatalf("err = %v after %d requests, want one attempt", err, e.ehr.count())
	}
}

func TestGETFollowsRedirectWritesDoNot(t *testing.T) {
	t.Parallel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, "/old") {
			http.Redirect(w, r, basePath+"/Patient/new", http.StatusMovedPermanently)
			return
		}
		io.WriteString(w, `{"resourceType":"Patient","id":"new"}`)
	})
	resp, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/old"})
	if err != nil || resp.ID != "new" {
		t.Fatalf("GET: %v %+v", err, resp)
	}
	_, err = e.c.Do(ctxT(t), Request{Method: http.MethodPut, Path: "Patient/old", Body: []byte("{}")})
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.Status != 301 {
		t.Fatalf("PUT: err = %v, want a 301 rejection", err)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no base", Config{}, "BaseURL is required"},
		{"scheme", Config{BaseURL: "ftp://ehr.example/fhir"}, "http or https"},
		{"no host", Config{BaseURL: "https:///fhir"}, "no host"},
		{"query", Config{BaseURL: "https://ehr.example/fhir?x=1"}, "query"},
		{"user info", Config{BaseURL: "https://u:p@ehr.example/fhir"}, "user info"},
		{"negative timeout", Config{BaseURL: "https://ehr.example/fhir", Timeout: -1}, "Timeout"},
		{"mode", Config{BaseURL: "https://ehr.example/fhir", Auth: AuthConfig{Mode: "kerberos"}}, "not one of"},
		{"bearer token", Config{BaseURL: "https://ehr.example/fhir", Auth: AuthConfig{Mode: AuthBearer}}, "needs a token"},
		{"client id", Config{BaseURL: "https://ehr.example/fhir", Auth: AuthConfig{Mode: AuthClientSecret, ClientSecret: "s"}}, "client id"},
		{"secret", Config{BaseURL: "https://ehr.example/fhir", Auth: AuthConfig{Mode: AuthClientSecret, ClientID: "c"}}, "client secret"},
		{"token url", Config{BaseURL: "https://ehr.example/fhir", Auth: AuthConfig{Mode: AuthClientSecret, ClientID: "c", ClientSecret: "s", TokenURL: "/token"}}, "token URL"},
		{"no key", Config{BaseURL: "https://ehr.example/fhir", Auth: AuthConfig{Mode: AuthSMARTBackend, ClientID: "c"}}, "private key"},
		{"bad key", Config{BaseURL: "https://ehr.example/fhir", Auth: AuthConfig{Mode: AuthSMARTBackend, ClientID: "c", PrivateKeyPEM: []byte("not pem")}}, "no PEM private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestMaxInFlight: with MaxInFlight 2, six concurrent requests reach the
// server at most two at a time, and all six are answered.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	cur, peak := 0, 0
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		<-release
		mu.Lock()
		cur--
		mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Patient","id":"p"}`)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, MaxInFlight: 2, RetryMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 6)
	for range 6 {
		go func() {
			_, err := c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/p"})
			errs <- err
		}()
	}
	// Let requests in one at a time; every time, no more than two are in.
	for range 6 {
		time.Sleep(20 * time.Millisecond) // room for a third to arrive, if it could
		release <- struct{}{}
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Errorf("Do: %v", err)
		}
	}
	if peak != 2 {
		t.Errorf("at most %d requests reached the server at once, want 2", peak)
	}
}

// TestPingTakesNoSlot: with every slot held by a request the EHR has not
// answered, Ping still gets through.
func TestPingTakesNoSlot(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.URL.Path == "/metadata" {
			io.WriteString(w, `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1"}`)
			return
		}
		arrived <- struct{}{}
		<-release
		io.WriteString(w, `{"resourceType":"Patient","id":"p"}`)
	}))
	defer srv.Close()
	defer close(release)
	c, err := New(Config{BaseURL: srv.URL, MaxInFlight: 1, RetryMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Patient/p"}) }() // answered when the test ends
	<-arrived                                                                                // the only slot is held
	ctx, cancel := context.WithTimeout(ctxT(t), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping with every slot held: %v, want it through", err)
	}
}
