package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

const consoleUIToken = "console-ui-token-0123456789"

// findBrowser returns the Chromium to drive: $KETAMINE_FHIR_TEST_BROWSER,
// else chromium, chromium-browser or google-chrome on PATH. Without one
// the test is skipped, except in CI (CI=true), where it fails.
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KETAMINE_FHIR_TEST_BROWSER"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no browser for the console's browser test: CI must have Debian's chromium (.ci/run installs it)")
	}
	t.Skip("no browser found (chromium, chromium-browser, google-chrome or $KETAMINE_FHIR_TEST_BROWSER): skipping the console's browser test; install Debian's chromium to run it")
	return ""
}

// rejecter is an EHR in front of fhirtest that answers 422 with an
// OperationOutcome to every write of a MedicationAdministration whose
// business identifier value is in reject, until accept is called.
type rejecter struct {
	next http.Handler
	mu   sync.Mutex
	ids  map[string]bool
}

func (rj *rejecter) accept() { rj.mu.Lock(); rj.ids = nil; rj.mu.Unlock() }

func (rj *rejecter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.HasSuffix(r.URL.Path, "/MedicationAdministration") {
		_, value, _ := strings.Cut(r.URL.Query().Get("identifier"), "|")
		rj.mu.Lock()
		reject := rj.ids[value]
		rj.mu.Unlock()
		if reject {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule",`+
				`"diagnostics":"Dose exceeds the protocol maximum for this order",`+
				`"expression":["MedicationAdministration.dosage.dose"]}]}`)
			return
		}
	}
	rj.next.ServeHTTP(w, r)
}

// browserRun is a browser tab driven by a test: each step fails the test
// with the path of the screenshots taken so far.
type browserRun struct {
	t     *testing.T
	ctx   context.Context
	base  string
	dir   string // screenshots
	shots int
	pages map[string]string // name -> HTML, for the PHI scan
}

func (b *browserRun) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %s: %v (screenshots in %s)", what, err, b.dir)
	}
}

func run1[T any](b *browserRun, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %s: %v (screenshots in %s)", what, err, b.dir)
	}
	return v
}

// snap saves a full-page screenshot and keeps the page's HTML.
func (b *browserRun) snap(name string) string {
	b.t.Helper()
	png := run1(b, "screenshot of "+name, chromedp.FullScreenshot(100))
	b.shots++
	path := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shots, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	html := run1(b, "HTML of "+name, chromedp.OuterHTML(chromedp.CSS("html")))
	b.pages[name] = html
	return html
}

func (b *browserRun) location() string {
	b.t.Helper()
	return run1(b, "location", chromedp.Location())
}

func (b *browserRun) text(sel string) string {
	b.t.Helper()
	return run1(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func (b *browserRun) h1() string { b.t.Helper(); return b.text("h1") }

// axeViolation is one rule axe-core found broken.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axeCheck runs axe-core (testdata/axe, WCAG 2.1 A and AA rules) on the
// current page and fails the test for each violation.
func (b *browserRun) axeCheck(name string, axeJS string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](axeJS)); err != nil {
		b.t.Fatalf("injecting axe-core into %s: %v", name, err)
	}
	out, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
		.then(r => JSON.stringify({passes: r.passes.length, incomplete: r.incomplete.map(v => v.id + ' ' + v.nodes.map(n => n.target.join(' ') + ': ' + ((n.any[0]||{}).message||'')).join('; ')), violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))}))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("running axe-core on %s: %v", name, err)
	}
	var res struct {
		Passes     int            `json:"passes"`
		Incomplete []string       `json:"incomplete"`
		Violations []axeViolation `json:"violations"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		b.t.Fatalf("axe-core result on %s: %v", name, err)
	}
	if res.Passes == 0 {
		b.t.Errorf("axe-core checked no rule on %s", name)
	}
	for _, v := range res.Violations {
		b.t.Errorf("accessibility (axe-core) on %s: %s (%s): %s at %v", name, v.ID, v.Impact, v.Help, v.Nodes)
	}
	// Incomplete: rules axe-core could not decide (it asks for a person to
	// look), logged for the record.
	b.t.Logf("axe-core on %s: %d rules passed, %d violated, needs review: %v", name, res.Passes, len(res.Violations), res.Incomplete)
}

// TestConsoleInBrowser drives headless Chromium through the operator
// console of a real serve whose EHR rejects one administration: sign in,
// read the counts, open the dead letter and its OperationOutcome, fail a
// retry without the CSRF token, retry it for real once the EHR accepts it
// and watch it reach the EHR, sign out, and be sent to sign-in without a
// session. The overview and dead-letter pages are checked with axe-core;
// every page and the log are scanned for the test patients' data.
func TestConsoleInBrowser(t *testing.T) {
	browser := findBrowser(t)
	axeJS, err := os.ReadFile(filepath.Join("testdata", "axe", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}

	recs, body := serveClinic(t, 2)
	var rejected string // an administration a score refers to
	admins := 0
	for _, r := range recs {
		if r.Kind == mapping.KindAdministration {
			admins++
		}
		if r.Score != nil && r.Score.AdminID != "" && rejected == "" {
			rejected = r.Score.AdminID
		}
	}
	if rejected == "" {
		t.Fatal("the synthetic clinic has no score that refers to an administration")
	}
	fs := fhirtest.NewUnstartedServer()
	defer fs.Close()
	rj := &rejecter{next: fs.Handler(), ids: map[string]bool{rejected: true}}
	ehrSrv := httptest.NewServer(rj)
	defer ehrSrv.Close()

	dir := t.TempDir()
	cfg := serveConfig(t, dir, ehrSrv.URL+fs.BasePath(), "", "  token: "+serveTestToken+"\n  ui_token: "+consoleUIToken)
	s := startServe(t, cfg, "http")
	c := &http.Client{Timeout: 30 * time.Second}
	if resp, b := servePost(t, c, s.base, "Bearer "+serveTestToken, "application/x-ndjson", body); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/records: %d %s", resp.StatusCode, b)
	}
	testutil.WaitFor(t, 60*time.Second, "the records delivered or held", func() bool {
		st := serveStatus(t, c, s.base)
		return st.Totals["dead"] == 1 && st.Totals["pending"]+st.Totals["retrying"]+st.Totals["in_flight"] == 0
	})
	if got := fs.Count("MedicationAdministration"); got != admins-1 {
		t.Fatalf("the EHR holds %d administrations, want %d (all but the rejected one)", got, admins-1)
	}
	st := serveStatus(t, c, s.base)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(browser),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.WindowSize(1280, 900),
			chromedp.UserDataDir(t.TempDir()),
		)...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()
	b := &browserRun{t: t, ctx: ctx, base: s.base, dir: t.ArtifactDir(), pages: map[string]string{}}
	t.Logf("console screenshots: %s (kept with go test -artifacts -outputdir DIR)", b.dir)

	// Without a session the console sends the browser to sign in.
	b.do("open the overview", chromedp.Navigate(s.base+"/ui/"))
	if loc := b.location(); loc != s.base+"/ui/signin?next=%2Fui%2F" {
		t.Fatalf("without a session /ui/ went to %s, want the sign-in page", loc)
	}
	b.snap("signin")
	b.axeCheck("the sign-in page", string(axeJS))

	// A wrong token is refused; the console token signs in (the Secure
	// session cookie is kept over http://127.0.0.1, a secure context).
	b.do("sign in with a wrong token",
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	b.do("sign in",
		chromedp.SendKeys(chromedp.CSS("#token"), consoleUIToken),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#dead-count")))
	if h := b.h1(); h != "Overview" {
		t.Fatalf("after sign-in the page is %q, want Overview", h)
	}
	if ck := run1(b, "document.cookie", chromedp.Evaluate[string](`document.cookie`)); ck != "" {
		t.Errorf("the page's script can read cookies (%d bytes): the session cookie must be HttpOnly", len(ck))
	}
	if got, want := b.text("#dead-count"), fmt.Sprint(st.Totals["dead"]); got != want {
		t.Errorf("overview: %s dead letters, want %s", got, want)
	}
	if got, want := b.text("#waiting-count"), fmt.Sprint(st.Totals["waiting"]); got != want {
		t.Errorf("overview: %s waiting, want %s", got, want)
	}
	if got := b.text("#ehr-reachable"); got != "yes" {
		t.Errorf("overview: EHR reachable %q, want yes", got)
	}
	// Keyboard: the first Tab reaches the skip link, which shows itself.
	b.do("press Tab", chromedp.KeyEvent("\t"))
	if got := run1(b, "focused element", chromedp.Evaluate[string](`document.activeElement.className + ' ' + document.activeElement.getBoundingClientRect().left`)); !strings.HasPrefix(got, "skip ") || strings.HasPrefix(got, "skip -") {
		t.Errorf("the first Tab focuses %q, want the visible skip link", got)
	}
	b.snap("overview-skip-link")
	// The refresh script runs under the CSP (it shows its pause button),
	// and the button pauses it.
	// From the keyboard (focus, Enter), not a click at coordinates, which
	// the skip link just shown can cover; then wait for the script's
	// answer rather than read it at once.
	b.do("pause auto-refresh", chromedp.WaitVisible(chromedp.CSS("#refresh-toggle")),
		chromedp.Focus(chromedp.CSS("#refresh-toggle")), chromedp.KeyEvent("\r"))
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.getElementById('refresh-toggle').getAttribute('aria-pressed') === 'true'`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		got := run1(b, "pause state", chromedp.AttributeValue(chromedp.CSS("#refresh-toggle"), "aria-pressed"))
		t.Errorf("after Enter on the auto-refresh button it has aria-pressed %q, want true (%v)", got.Value, err)
	}
	b.snap("overview")
	b.axeCheck("the overview", string(axeJS))

	// The dead letter, its OperationOutcome.
	b.do("open the dead letters", chromedp.Click(chromedp.CSS(`a[href="/ui/deadletters"]`)), chromedp.WaitVisible(chromedp.CSS("#h-filter")))
	b.do("filter by kind", chromedp.SetValue(chromedp.CSS("#f-kind"), "administration"),
		chromedp.SetValue(chromedp.CSS("#f-class"), "http_422"),
		chromedp.Submit(chromedp.CSS("#f-class")), chromedp.WaitVisible(chromedp.CSS("table.list")))
	if list := b.text("table.list tbody"); !strings.Contains(list, rejected) || !strings.Contains(list, "business-rule") {
		t.Errorf("the dead-letter list does not show the rejected administration and its issue code:\n%s", list)
	}
	b.snap("deadletters")
	b.axeCheck("the dead-letter list", string(axeJS))

	b.do("open the dead letter", chromedp.Click(chromedp.CSS(`table.list tbody a`)), chromedp.WaitVisible(chromedp.CSS("table.outcome")))
	outcome := b.text("table.outcome")
	for _, want := range []string{"error", "business-rule", "Dose exceeds the protocol maximum for this order", "MedicationAdministration.dosage.dose"} {
		if !strings.Contains(outcome, want) {
			t.Errorf("the dead letter's OperationOutcome lacks %q:\n%s", want, outcome)
		}
	}
	if got := b.text("#record-state"); got != "dead" {
		t.Errorf("record state %q, want dead", got)
	}
	recordURL := b.location()
	b.snap("deadletter")
	b.axeCheck("a dead letter", string(axeJS))

	// The waiting page shows the score held behind the dead administration.
	b.do("open the waiting page", chromedp.Click(chromedp.CSS(`a[href="/ui/waiting"]`)), chromedp.WaitVisible(chromedp.CSS("h1")))
	if w := b.text("main"); !strings.Contains(w, "Dependency in the dead letters") || !strings.Contains(w, "administration "+rejected) {
		t.Errorf("the waiting page does not show the score waiting for the dead administration")
	}
	b.snap("waiting")
	b.axeCheck("the waiting page", string(axeJS))

	// A form without the CSRF token is refused and changes nothing.
	b.do("back to the dead letter", chromedp.Navigate(recordURL), chromedp.WaitVisible(chromedp.CSS("form.retry-one")))
	run1(b, "drop the CSRF token", chromedp.Evaluate[any](`document.querySelector('form.retry-one input[name=csrf]').remove()`))
	b.do("retry without CSRF", chromedp.Click(chromedp.CSS("form.retry-one button")), chromedp.WaitVisible(chromedp.CSS("p.problem")))
	if h := b.h1(); h != "Forbidden" {
		t.Errorf("a retry form without the CSRF token answered %q, want Forbidden", h)
	}
	b.snap("csrf-refused")
	if got := serveStatus(t, c, s.base).Totals["dead"]; got != 1 {
		t.Errorf("after the refused form %d dead letters, want 1", got)
	}

	// The EHR is fixed; retry with the confirmation, and watch the record
	// reach the EHR.
	rj.accept()
	b.do("back to the dead letter", chromedp.Navigate(recordURL), chromedp.WaitVisible(chromedp.CSS("form.retry-one")))
	b.do("retry", chromedp.Click(chromedp.CSS("form.retry-one button")), chromedp.WaitVisible(chromedp.CSS("form.confirm")))
	b.snap("confirm")
	b.axeCheck("the retry confirmation", string(axeJS))
	b.do("confirm", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.CSS("p.flash")))
	testutil.WaitFor(t, 30*time.Second, "the retried administration in the EHR", func() bool {
		return fs.Count("MedicationAdministration") == admins
	})
	testutil.WaitFor(t, 30*time.Second, "the record page to show synced", func() bool {
		b.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#record-state")))
		return b.text("#record-state") == "synced"
	})
	// Its history: the rejection, then the delivery, whose request id the
	// EHR saw.
	if h := b.text("table.history tbody"); !strings.Contains(h, "http_422") || !strings.Contains(h, "synced") || !strings.Contains(h, "dead") {
		t.Errorf("the record's history lacks the rejection or the delivery:\n%s", h)
	}
	newest := run1(b, "newest request id", chromedp.Text(chromedp.CSS("table.history tbody tr:first-child td:nth-child(8)")))
	seen := false
	for _, req := range fs.Requests() {
		seen = seen || (newest != "" && req.RequestID == newest)
	}
	if !seen {
		t.Errorf("the history's newest request id %q is not one the EHR received", newest)
	}
	b.snap("synced")
	testutil.WaitFor(t, 30*time.Second, "every record synced", func() bool {
		return serveStatus(t, c, s.base).Totals["synced"] == len(recs)
	})
	serveAssertExactlyOnce(t, fs, recs)

	// Sign out; the console then refuses pages without a session.
	b.do("sign out", chromedp.Click(chromedp.CSS("form.signout button")), chromedp.WaitVisible(chromedp.CSS("#token")))
	if !strings.Contains(b.text("main"), "You are signed out.") {
		t.Error("sign-out does not say so")
	}
	b.snap("signed-out")
	b.do("open the dead letters signed out", chromedp.Navigate(s.base+"/ui/deadletters"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := b.location(); loc != s.base+"/ui/signin?next=%2Fui%2Fdeadletters" {
		t.Errorf("signed out, /ui/deadletters went to %s, want the sign-in page", loc)
	}

	// The console answers hold no patient data, nor does the log.
	phi := newPHIChecker(t, recs)
	for name, html := range b.pages {
		phi.Check(t, "console page "+name, html)
	}
	phi.Check(t, "serve's log", s.log.String())
	if strings.Contains(s.log.String(), consoleUIToken) {
		t.Error("serve's log holds the console token")
	}
	var who bool
	for _, l := range testutil.JSONLines(t, s.log.String()) {
		if l["msg"] == "console: dead letter re-queued" && l["who"] == "ui_token" {
			who = true
		}
	}
	if !who {
		t.Error("the log does not say who re-queued the dead letter")
	}
	if t.Failed() {
		t.Logf("screenshots of the console: %s", b.dir)
	}
}
