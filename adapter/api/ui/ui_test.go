package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/api/ui"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

const (
	apiToken = "api-token-for-console-tests-0001"
	uiToken  = "ui-token-for-console-tests-0002"
	// The patients' local ids are MRNs: the console must never show them.
	patientMRN = "MRN-CONSOLE-7781"
	heldMRN    = "MRN-CONSOLE-7782"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// backend is a ui.Backend over a real SQLite outbox.
type backend struct {
	st       store.Store
	woken    atomic.Int32
	delivery adapter.DeliveryStatus
}

func (b *backend) Store() store.Store               { return b.st }
func (b *backend) Delivery() adapter.DeliveryStatus { return b.delivery }
func (b *backend) LastSync() time.Time              { return t0.Add(-time.Minute) }
func (b *backend) Wake()                            { b.woken.Add(1) }
func (b *backend) counts(t *testing.T) store.Counts { return must(b.st.Counts(context.Background())) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// env is a console over a seeded outbox, served over TLS (the session
// cookie is Secure).
type env struct {
	b       *backend
	console *ui.Console
	srv     *httptest.Server
	clock   *testutil.Clock
	log     *testutil.Buffer
	ids     map[string]int64 // "kind/local" -> outbox id
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.MemoryPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{b: &backend{st: st, delivery: adapter.DeliveryStatus{Paused: adapter.ClassAuth, PausedError: "the EHR refuses the adapter's credentials: check ehr.auth"}}, clock: testutil.NewClock(t0), log: &testutil.Buffer{}, ids: map[string]int64{}}
	e.seed(t)
	e.console = ui.New(e.b, ui.Options{
		APIToken: apiToken, UIToken: uiToken, Logger: testutil.JSONLogger(e.log), Now: e.clock.Now,
		Version: "test", Settings: []ui.Setting{{Key: "store", Value: "sqlite"}},
		EHR: func() ui.EHRState {
			return ui.EHRState{Checked: true, Reachable: false, CheckedAt: t0, ErrorClass: "http_503"}
		},
		Sampler: ui.NewSampler(func() (float64, error) { return 0, nil }, ui.SamplerOptions{}),
	})
	e.srv = httptest.NewTLSServer(e.console)
	t.Cleanup(e.srv.Close)
	return e
}

// seed puts rows in every state the console shows: a dead patient (its
// local id is an MRN), two dead administrations with the EHR's
// OperationOutcome, a waiting order and score, a synced order.
func (e *env) seed(t *testing.T) {
	ctx := context.Background()
	st := e.b.st
	recs := []store.NewRecord{
		{Kind: "patient", LocalID: patientMRN},
		{Kind: "order", LocalID: "ORD-1"},
		{Kind: "order", LocalID: "ORD-2"},
		{Kind: "administration", LocalID: "ADM-1"},
		{Kind: "administration", LocalID: "ADM-2"},
		{Kind: "score", LocalID: "SC-1"},
		{Kind: "score", LocalID: "SC-2"},
		{Kind: "patient", LocalID: heldMRN},
	}
	for i := range recs {
		recs[i].Hash = "h-" + recs[i].LocalID
		recs[i].Payload = []byte(`{"family":"Quixote","mrn":"` + patientMRN + `"}`)
	}
	if _, err := st.Upsert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	claimed, err := st.Claim(ctx, "w", 10, t0, time.Minute)
	if err != nil || len(claimed) != len(recs) {
		t.Fatalf("claim: %d rows, %v", len(claimed), err)
	}
	detail := `{"status":422,"issues":[{"severity":"error","code":"business-rule","diagnostics":"dose above the protocol maximum","expression":["MedicationAdministration.dosage.dose"]}]}`
	for _, r := range claimed {
		e.ids[r.Kind+"/"+r.LocalID] = r.ID
		out := store.Outcome{Hash: r.Hash, RequestID: fmt.Sprintf("req-%d", r.ID)}
		switch r.LocalID {
		case patientMRN:
			out.State, out.ErrorClass, out.ErrorDetail = store.StateDead, "http_409", `{"status":409,"issues":[{"severity":"error","code":"multiple-matches","diagnostics":"2 patients in the EHR hold this MRN"}]}`
		case "ADM-1", "ADM-2":
			out.State, out.ErrorClass, out.ErrorDetail = store.StateDead, "http_422", detail
		case "ORD-1":
			out.State, out.EHRID, out.EHRVersion = store.StateSynced, "mr-1", "1"
		case "ORD-2":
			out.State, out.WaitKind, out.WaitID, out.ErrorClass = store.StateWaiting, "patient", patientMRN, adapter.ClassDependencyDead
		case "SC-1":
			out.State, out.WaitKind, out.WaitID, out.ErrorClass = store.StateWaiting, "administration", "ADM-9", adapter.ClassDependencyMissing
		case "SC-2":
			out.State, out.NextAttemptAt, out.ErrorClass, out.ErrorDetail = store.StateRetrying, t0, adapter.ClassAuth, "ehr: token endpoint refused the client: invalid_client"
		case heldMRN:
			out.State, out.ErrorClass, out.ErrorDetail = store.StateWaiting, adapter.ClassPatientUnknown, "the EHR has no patient with this MRN and patients.create is false"
		}
		if err := st.Finish(ctx, r.ID, "w", out, t0); err != nil {
			t.Fatal(err)
		}
	}
}

// client returns a browser-like client (cookie jar, no redirects followed).
func (e *env) client(t *testing.T) *http.Client {
	c := e.srv.Client()
	c.Jar = must(cookiejar.New(nil))
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (e *env) get(t *testing.T, c *http.Client, path string) answer {
	t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func (e *env) post(t *testing.T, c *http.Client, path string, form url.Values) answer {
	t.Helper()
	resp, err := c.PostForm(e.srv.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// scriptRE matches a script element and what follows its start tag.
var scriptRE = regexp.MustCompile(`<script([^>]*)>([^<]*)`)

// inlineScript says whether html holds script other than an empty element
// loading one of the console's own files.
func inlineScript(html string) bool {
	for _, m := range scriptRE.FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[1], ` src="/ui/static/`) || strings.TrimSpace(m[2]) != "" {
			return true
		}
	}
	return false
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field in the page")
	}
	return m[1]
}

// signIn signs c in with token and returns the session's CSRF token.
func (e *env) signIn(t *testing.T, c *http.Client, token string) string {
	t.Helper()
	page := e.get(t, c, "/ui/signin")
	a := e.post(t, c, "/ui/signin", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {token}, "next": {"/ui/"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/" {
		t.Fatalf("sign-in: %d to %q, want 303 to /ui/", a.status, a.header.Get("Location"))
	}
	return csrfOf(t, e.get(t, c, "/ui/").body)
}

func TestWithoutSessionRedirectsOrRefuses(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	for _, path := range []string{"/ui/", "/ui/deadletters", "/ui/waiting", "/ui/records/1", "/ui/nope"} {
		a := e.get(t, c, path)
		want := "/ui/signin?next=" + url.QueryEscape(path)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != want {
			t.Errorf("GET %s without a session: %d to %q, want 303 to %q", path, a.status, a.header.Get("Location"), want)
		}
	}
	if a := e.get(t, c, "/ui"); a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want 303 to /ui/", a.status, a.header.Get("Location"))
	}
	for _, path := range []string{"/ui/retry", "/ui/signout"} {
		if a := e.post(t, c, path, url.Values{"id": {"1"}, "confirm": {"yes"}}); a.status != http.StatusForbidden {
			t.Errorf("POST %s without a session: %d, want 403", path, a.status)
		}
	}
	if got := e.b.counts(t)["administration"][store.StateDead]; got != 2 {
		t.Errorf("dead administrations: %d, want 2 (nothing re-queued)", got)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	e.signIn(t, c, apiToken)
	for _, path := range []string{"/ui/signin", "/ui/", "/ui/deadletters", "/ui/static/console.css", "/ui/records/999"} {
		a := e.get(t, c, path)
		h := a.header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-") ||
			!strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q: want default-src 'none', script-src 'self' only, frame-ancestors 'none'", path, csp)
		}
		for k, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
			"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", path, k, got, want)
			}
		}
		if inlineScript(a.body) || strings.Contains(a.body, " style=") || strings.Contains(a.body, "<style") ||
			regexp.MustCompile(` on[a-z]+=`).MatchString(a.body) {
			t.Errorf("%s: inline script, event handler or style in the page", path)
		}
	}
}

func TestSignIn(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct{ name, token, who string }{
		{"api token", apiToken, "api_token"},
		{"ui token", uiToken, "ui_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(t)
			page := e.get(t, c, "/ui/signin")
			a := e.post(t, c, "/ui/signin", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {tc.token}, "next": {"/ui/waiting"}})
			if a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/waiting" {
				t.Fatalf("sign-in: %d to %q, want 303 to /ui/waiting", a.status, a.header.Get("Location"))
			}
			var session *http.Cookie
			for _, ck := range (&http.Response{Header: a.header}).Cookies() {
				if ck.Name == "kf_session" {
					session = ck
				}
			}
			if session == nil || !session.Secure || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/ui" {
				t.Fatalf("session cookie %+v: want Secure, HttpOnly, SameSite=Strict, Path=/ui", session)
			}
			if a := e.get(t, c, "/ui/waiting"); a.status != http.StatusOK {
				t.Errorf("GET /ui/waiting signed in: %d", a.status)
			}
			if !strings.Contains(e.log.String(), `"who":"`+tc.who+`"`) {
				t.Errorf("the log does not say who signed in (%s)", tc.who)
			}
		})
	}
	if strings.Contains(e.log.String(), apiToken) || strings.Contains(e.log.String(), uiToken) {
		t.Error("the log holds a token")
	}

	t.Run("wrong token", func(t *testing.T) {
		c := e.client(t)
		page := e.get(t, c, "/ui/signin")
		a := e.post(t, c, "/ui/signin", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {apiToken + "x"}})
		if a.status != http.StatusUnauthorized || !strings.Contains(a.body, "not valid") {
			t.Errorf("wrong token: %d, want 401 with a message", a.status)
		}
		if a := e.get(t, c, "/ui/"); a.status != http.StatusSeeOther {
			t.Errorf("after a failed sign-in, GET /ui/: %d, want 303 to sign-in", a.status)
		}
	})
	t.Run("no CSRF token", func(t *testing.T) {
		c := e.client(t)
		e.get(t, c, "/ui/signin")
		if a := e.post(t, c, "/ui/signin", url.Values{"token": {apiToken}}); a.status != http.StatusForbidden {
			t.Errorf("sign-in without the form's CSRF token: %d, want 403", a.status)
		}
	})
	t.Run("open redirect", func(t *testing.T) {
		c := e.client(t)
		page := e.get(t, c, "/ui/signin")
		a := e.post(t, c, "/ui/signin", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {apiToken}, "next": {"//evil.example/ui/"}})
		if loc := a.header.Get("Location"); loc != "/ui/" {
			t.Errorf("next=//evil.example: redirected to %q, want /ui/", loc)
		}
	})
}

func TestSignInRateLimited(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	var statuses []int
	for range 7 {
		page := e.get(t, c, "/ui/signin")
		a := e.post(t, c, "/ui/signin", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {"wrong"}})
		statuses = append(statuses, a.status)
	}
	if fmt.Sprint(statuses) != "[401 401 401 401 401 429 429]" {
		t.Errorf("statuses of 7 quick wrong attempts: %v, want 5x401 then 429", statuses)
	}
	// Even the right token waits while the clock stands still...
	page := e.get(t, c, "/ui/signin")
	if a := e.post(t, c, "/ui/signin", url.Values{"csrf": {csrfOf(t, page.body)}, "token": {apiToken}}); a.status != http.StatusTooManyRequests {
		t.Errorf("right token while limited: %d, want 429", a.status)
	}
	// ...and goes through once time has passed.
	e.clock.Add(10 * time.Second)
	e.signIn(t, c, apiToken)
}

func TestSignOutAndExpiry(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	csrf := e.signIn(t, c, apiToken)
	if a := e.post(t, c, "/ui/signout", nil); a.status != http.StatusForbidden {
		t.Errorf("sign-out without CSRF: %d, want 403", a.status)
	}
	if a := e.post(t, c, "/ui/signout", url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Errorf("sign-out: %d, want 303", a.status)
	}
	if a := e.get(t, c, "/ui/"); a.status != http.StatusSeeOther {
		t.Errorf("GET /ui/ after sign-out: %d, want 303", a.status)
	}
	if n := e.console.Sessions(); n != 0 {
		t.Errorf("%d sessions after sign-out, want 0", n)
	}

	e.signIn(t, c, apiToken)
	e.clock.Add(ui.IdleTimeout - time.Second)
	if a := e.get(t, c, "/ui/"); a.status != http.StatusOK {
		t.Errorf("GET /ui/ just before the idle timeout: %d", a.status)
	}
	e.clock.Add(ui.IdleTimeout)
	if a := e.get(t, c, "/ui/"); a.status != http.StatusSeeOther {
		t.Errorf("GET /ui/ after the idle timeout: %d, want 303", a.status)
	}
}

func TestOverview(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	e.signIn(t, c, uiToken)
	a := e.get(t, c, "/ui/")
	for _, want := range []string{
		`<body data-refresh-seconds="15">`, `<script src="/ui/static/refresh.js" defer></script>`,
		`<button type="button" id="refresh-toggle" aria-pressed="false" hidden>Pause auto-refresh</button>`,
		`<section id="s-records" data-refresh`,
		`<th scope="row">administration</th><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td><td>2</td><td>2</td>`,
		`<th scope="row">order</th><td>0</td><td>1</td><td>0</td><td>0</td><td>1</td><td>0</td><td>2</td>`,
		`<span id="dead-count">3</span>`, `<span id="waiting-count">3</span>`, `<strong>paused (auth)</strong>`,
		`<dd id="ehr-reachable">no</dd>`, `<code>http_503</code>`,
		`<svg class="chart"`, `<dt>store</dt><dd>sqlite</dd>`,
		fmt.Sprintf(`<a href="/ui/records/%d">record %d</a> (order), reason <code>dependency_dead</code>`, e.ids["order/ORD-2"], e.ids["order/ORD-2"]),
	} {
		if !strings.Contains(a.body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
}

func TestDeadLettersAndRetryOne(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	csrf := e.signIn(t, c, apiToken)

	a := e.get(t, c, "/ui/deadletters?kind=administration&class=http_422")
	for _, want := range []string{"ADM-1", "ADM-2", "business-rule", "MedicationAdministration.dosage.dose"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("dead letters filtered: lacks %q", want)
		}
	}
	if strings.Contains(a.body, "multiple-matches") {
		t.Error("the kind filter let the patient through")
	}
	if a := e.get(t, c, "/ui/deadletters?kind=nope"); a.status != http.StatusBadRequest || !strings.Contains(a.body, "kind: not one of") {
		t.Errorf("bad kind: %d, want 400 naming the field", a.status)
	}
	if a := e.get(t, c, "/ui/deadletters?from=2026-06-02"); strings.Contains(a.body, "ADM-1") {
		t.Error("from after the day they died still lists them")
	}
	if a := e.get(t, c, "/ui/deadletters?from=2026-06-01&to=2026-06-01"); !strings.Contains(a.body, "ADM-1") {
		t.Error("from/to on the day they died does not list them")
	}

	id := e.ids["administration/ADM-1"]
	rec := e.get(t, c, fmt.Sprintf("/ui/records/%d", id))
	for _, want := range []string{"What the EHR answered (HTTP 422)", "<td>error</td>", "<code>business-rule</code>",
		"dose above the protocol maximum", "<code>MedicationAdministration.dosage.dose</code>", `name="id" value="` + fmt.Sprint(id) + `"`,
		"Delivery history", "<td>dead</td>", fmt.Sprintf("<code>req-%d</code>", id)} {
		if !strings.Contains(rec.body, want) {
			t.Errorf("record page lacks %q", want)
		}
	}

	form := url.Values{"id": {fmt.Sprint(id)}}
	if a := e.post(t, c, "/ui/retry", form); a.status != http.StatusForbidden {
		t.Errorf("retry without CSRF: %d, want 403", a.status)
	}
	form.Set("csrf", csrf)
	if a := e.post(t, c, "/ui/retry", form); a.status != http.StatusOK || !strings.Contains(a.body, "Yes, re-queue") {
		t.Errorf("retry: %d, want 200 with a confirmation", a.status)
	}
	if row := must(e.b.st.GetByID(context.Background(), id)); row.State != store.StateDead {
		t.Fatalf("after the first POST the row is %s, want still dead", row.State)
	}
	form.Set("confirm", "yes")
	a = e.post(t, c, "/ui/retry", form)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != fmt.Sprintf("/ui/records/%d?requeued=1", id) {
		t.Errorf("confirmed retry: %d to %q", a.status, a.header.Get("Location"))
	}
	if row := must(e.b.st.GetByID(context.Background(), id)); row.State != store.StatePending {
		t.Errorf("after the confirmed retry the row is %s, want pending", row.State)
	}
	if e.b.woken.Load() != 1 {
		t.Errorf("the engine was woken %d times, want 1", e.b.woken.Load())
	}
	var logged bool
	for _, l := range testutil.JSONLines(t, e.log.String()) {
		if l["msg"] == "console: dead letter re-queued" && l["who"] == "api_token" && l["session"] != "" && l["outbox_id"] == float64(id) {
			logged = true
		}
	}
	if !logged {
		t.Error("no log line says who re-queued the dead letter")
	}
	if a := e.post(t, c, "/ui/retry", form); a.status != http.StatusNotFound {
		t.Errorf("retrying a row no longer dead: %d, want 404", a.status)
	}
}

func TestRetryFilteredSet(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	csrf := e.signIn(t, c, apiToken)
	form := url.Values{"csrf": {csrf}, "kind": {"administration"}, "class": {"http_422"}}
	a := e.post(t, c, "/ui/retry", form)
	if !strings.Contains(a.body, `<strong id="confirm-count">2</strong>`) {
		t.Errorf("confirmation of the filtered set does not say 2")
	}
	form.Set("confirm", "yes")
	a = e.post(t, c, "/ui/retry", form)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/deadletters?requeued=2" {
		t.Errorf("confirmed: %d to %q", a.status, a.header.Get("Location"))
	}
	counts := e.b.counts(t)
	if counts["administration"][store.StatePending] != 2 || counts["patient"][store.StateDead] != 1 {
		t.Errorf("counts after the filtered retry: %v; want both administrations pending, the patient still dead", counts)
	}
}

func TestWaiting(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	e.signIn(t, c, apiToken)
	a := e.get(t, c, "/ui/waiting")
	for _, want := range []string{
		"Dependency in the dead letters", "Dependency missing", "retry it from the dead letters",
		fmt.Sprintf(`patient (<a href="/ui/records/%d">record %d</a>, dead)`, e.ids["patient/"+patientMRN], e.ids["patient/"+patientMRN]),
		"administration ADM-9 (not received)",
		"Patient unknown to the EHR", "held by policy", "EHR authorization",
		"the EHR refuses the adapter&#39;s credentials: check ehr.auth",
	} {
		if !strings.Contains(a.body, want) {
			t.Errorf("waiting page lacks %q", want)
		}
	}
}

// TestNoPatientData: no page shows the patient's MRN (its local id) or
// anything of a payload.
func TestNoPatientData(t *testing.T) {
	e := setup(t)
	c := e.client(t)
	csrf := e.signIn(t, c, apiToken)
	var phi testutil.PHI
	phi.Values(patientMRN, heldMRN)
	phi.Words("Quixote")
	pages := []string{"/ui/", "/ui/deadletters", "/ui/waiting", "/ui/signin"}
	for _, id := range e.ids {
		pages = append(pages, fmt.Sprintf("/ui/records/%d", id))
	}
	for _, p := range pages {
		phi.Check(t, p, e.get(t, c, p).body)
	}
	phi.Check(t, "the confirmation", e.post(t, c, "/ui/retry", url.Values{"csrf": {csrf}, "id": {fmt.Sprint(e.ids["patient/"+patientMRN])}}).body)
	phi.Check(t, "the log", e.log.String())
}

func TestSampler(t *testing.T) {
	var v float64
	clock := testutil.NewClock(t0)
	s := ui.NewSampler(func() (float64, error) { return v, nil }, ui.SamplerOptions{Now: clock.Now})
	for _, next := range []float64{10, 15, 15, 40, 3} { // 3: the counter restarted
		s.Sample()
		v = next
		clock.Add(time.Minute)
	}
	s.Sample()
	var got []float64
	for _, p := range s.Points() {
		got = append(got, p.Delivered)
	}
	if fmt.Sprint(got) != "[10 5 0 25 3]" {
		t.Errorf("points %v, want [10 5 0 25 3]", got)
	}
	for range 70 {
		v++
		s.Sample()
	}
	if n := len(s.Points()); n != ui.SamplePoints {
		t.Errorf("%d points after 75 samples, want %d", n, ui.SamplePoints)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("Stop of a sampler never started: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.Start(ctx)
	s.Start(ctx) // idempotent
	cancel()
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
}
