package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineWriter collects output and sends each complete line on a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   strings.Builder
	part  string
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 100)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.part += string(p)
	for {
		i := strings.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		select {
		case w.lines <- w.part[:i]:
		default:
		}
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startEHR runs runEHR on a free port and returns its base URL, a stop
// function returning the exit code, and the outputs.
func startEHR(t *testing.T, args ...string) (base string, stop func() int, stdout, stderr *lineWriter) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = newLineWriter(), newLineWriter()
	code := make(chan int, 1)
	go func() { code <- runEHR(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), stdout, stderr) }()
	select {
	case line := <-stdout.lines:
		const prefix = "fhirtest EHR serving FHIR R4 at "
		if !strings.HasPrefix(line, prefix) {
			cancel()
			t.Fatalf("first line %q", line)
		}
		base = strings.TrimPrefix(line, prefix)
	case c := <-code:
		cancel()
		t.Fatalf("runEHR exited %d: %s", c, stderr)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("runEHR did not start")
	}
	var once sync.Once
	result := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			result = <-code
		})
		return result
	}
	t.Cleanup(func() { stop() })
	return base, stop, stdout, stderr
}

func request(t *testing.T, method, u, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestRunEHRServesFHIR uses the command like a plain HTTP client would:
// create, search, transact, then stop.
func TestRunEHRServesFHIR(t *testing.T) {
	base, stop, stdout, _ := startEHR(t, "--update-create=false")
	if !strings.HasSuffix(base, "/fhir/R4") {
		t.Fatalf("base URL %q does not end in /fhir/R4", base)
	}
	resp, body := request(t, "GET", base+"/metadata", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"resourceType":"CapabilityStatement"`) || !strings.Contains(body, `"updateCreate":false`) {
		t.Fatalf("metadata: %d %.200s", resp.StatusCode, body)
	}
	patient := `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"M1"}]}`
	resp, body = request(t, "POST", base+"/Patient", patient)
	if resp.StatusCode != 201 || resp.Header.Get("Location") != base+"/Patient/1/_history/1" {
		t.Fatalf("create: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	resp, body = request(t, "GET", base+"/Patient?identifier="+url.QueryEscape("urn:mrn|M1"), "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"total":1`) {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"fullUrl":"urn:uuid:0b9e6c64-4a4c-4b8e-9a53-2f0c1e7d9a01","resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"M2"}]},"request":{"method":"POST","url":"Patient"}},` +
		`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:0b9e6c64-4a4c-4b8e-9a53-2f0c1e7d9a01"}},"request":{"method":"POST","url":"Observation"}}]}`
	resp, body = request(t, "POST", base, tx)
	if resp.StatusCode != 200 || !strings.Contains(body, `"transaction-response"`) || !strings.Contains(body, `"reference":"Patient/2"`) {
		t.Fatalf("transaction: %d %s", resp.StatusCode, body)
	}
	resp, _ = request(t, "PUT", base+"/Patient/mine", `{"resourceType":"Patient","id":"mine"}`)
	if resp.StatusCode != 405 {
		t.Errorf("update as create with --update-create=false: %d", resp.StatusCode)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := stdout.String()
	for _, want := range []string{"resources: Observation=1, Patient=2", "duplicate identifiers: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestRunEHRFaultFlags(t *testing.T) {
	base, stop, stdout, stderr := startEHR(t, "--fail-next", "2", "--fail-next-status", "429", "--retry-after", "3s", "--lose-next", "1", "--lose-mode", "503", "--log-requests")
	for i := 0; i < 2; i++ {
		resp, _ := request(t, "GET", base+"/metadata", "")
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
			t.Fatalf("request %d: %d Retry-After=%q", i, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	resp, _ := request(t, "POST", base+"/Patient?x=1", `{"resourceType":"Patient"}`)
	if resp.StatusCode != 503 {
		t.Fatalf("lost response: %d", resp.StatusCode)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if out := stdout.String(); !strings.Contains(out, "faults: fail next 2 with 429; lose next 1 write responses (503)") || !strings.Contains(out, "resources: Patient=1") || !strings.Contains(out, "lose-503=1") {
		t.Errorf("stdout:\n%s", out)
	}
	logged := stderr.String()
	if !strings.Contains(logged, "POST /fhir/R4/Patient 503") || strings.Contains(logged, "x=1") {
		t.Errorf("request log (no queries allowed):\n%s", logged)
	}
}

// TestRunEHRRejectIdentifier: --reject-identifier refuses the writes of a
// resource holding that identifier value with 422 business-rule, lets the
// others through, and the banner and the summary say so.
func TestRunEHRRejectIdentifier(t *testing.T) {
	base, stop, stdout, _ := startEHR(t, "--reject-identifier", "M9", "--reject-identifier", "M8")
	for _, tt := range []struct {
		mrn  string
		want int
	}{{"M9", 422}, {"M1", 201}, {"M8", 422}} {
		resp, body := request(t, "POST", base+"/Patient", `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"`+tt.mrn+`"}]}`)
		if resp.StatusCode != tt.want || tt.want == 422 && !strings.Contains(body, `"business-rule"`) {
			t.Errorf("create of %s: %d %s, want %d", tt.mrn, resp.StatusCode, body, tt.want)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := stdout.String()
	for _, want := range []string{"refuse writes of 2 identifier value(s)", "rejected=2", "resources: Patient=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

func TestRunEHRBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--fail-rate", "1.5"},
		{"--fail-status", "200"},
		{"--fail-status", "abc"},
		{"--lose-mode", "maybe"},
		{"--latency", "fast"},
		{"--latency", "200ms-10ms"},
		{"--drop-next", "-1"},
		{"--no-such-flag"},
		{"extra-argument"},
	} {
		stderr := newLineWriter()
		if code := runEHR(context.Background(), args, io.Discard, stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if stderr.String() == "" {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
}

func TestRunEHRListenFailure(t *testing.T) {
	stderr := newLineWriter()
	if code := runEHR(context.Background(), []string{"--addr", "256.0.0.1:1"}, io.Discard, stderr); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	if !sc.Scan() || !strings.Contains(sc.Text(), "listen") {
		t.Errorf("stderr: %s", stderr)
	}
}
