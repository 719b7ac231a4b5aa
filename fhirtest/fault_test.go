package fhirtest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// serve calls the handler directly (no network).
func serve(s *Server, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://fhir.test"+s.BasePath()+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	return w
}

// statuses sends n reads and returns the statuses.
func statuses(s *Server, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = serve(s, "GET", "/Patient/none", "").Code
	}
	return out
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer(WithClock(fixedClock))
	defer s.Close()
	s.FailNext(3, 429)
	for i := 0; i < 3; i++ {
		w := serve(s, "GET", "/Patient/none", "")
		if w.Code != 429 || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), `"throttled"`) {
			t.Fatalf("request %d: %d Retry-After=%q %s", i, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if w := serve(s, "GET", "/Patient/none", ""); w.Code != 404 {
		t.Fatalf("after the failures: %d", w.Code)
	}
	s.SetRetryAfter(2500 * time.Millisecond)
	s.FailNext(1, 503)
	if w := serve(s, "GET", "/Patient/none", ""); w.Code != 503 || w.Header().Get("Retry-After") != "3" {
		t.Errorf("503: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
	s.FailNext(1, 500)
	if w := serve(s, "GET", "/Patient/none", ""); w.Code != 500 || w.Header().Get("Retry-After") != "" {
		t.Errorf("500: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
	// A failed write is not processed.
	s.FailNext(1, 502)
	if w := serve(s, "POST", "/Patient", patientJSON("", "M1")); w.Code != 502 {
		t.Errorf("POST: %d", w.Code)
	}
	if n := s.Count("Patient"); n != 0 {
		t.Errorf("a failed POST was stored: Count = %d", n)
	}
	log := s.Requests()
	if len(log) != 7 {
		t.Fatalf("%d requests logged, want 7", len(log))
	}
	want := RequestLog{Method: "GET", Path: "/fhir/R4/Patient/none", Proto: "HTTP/1.1", Time: t0, Status: 429, Fault: FaultStatus, End: t0}
	if log[0] != want {
		t.Errorf("log[0] = %+v, want %+v", log[0], want)
	}
	if log[3].Fault != FaultNone || log[3].Status != 404 || log[3].HandlerStatus != 404 {
		t.Errorf("log[3] = %+v", log[3])
	}
}

func TestFailureRateIsRepeatable(t *testing.T) {
	t.Parallel()
	const n, rate = 1000, 0.3
	run := func(seed int64) []int {
		s := NewUnstartedServer(WithSeed(seed))
		defer s.Close()
		s.SetFailureRate(rate, 429, 503)
		return statuses(s, n)
	}
	a, b := run(42), run(42)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave different fault sequences")
	}
	if reflect.DeepEqual(a, run(43)) {
		t.Error("another seed gave the same sequence")
	}
	count := map[int]int{}
	for _, st := range a {
		count[st]++
	}
	failed := float64(count[429]+count[503]) / n
	if failed < rate-0.05 || failed > rate+0.05 {
		t.Errorf("failure fraction %.3f, want about %.2f (%v)", failed, rate, count)
	}
	if count[429] == 0 || count[503] == 0 || count[404]+count[429]+count[503] != n {
		t.Errorf("statuses %v", count)
	}
}

func TestSetSeedRestartsTheSequence(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	s.SetFailureRate(0.5)
	s.SetSeed(7)
	a := statuses(s, 100)
	s.SetSeed(7)
	if b := statuses(s, 100); !reflect.DeepEqual(a, b) {
		t.Error("SetSeed did not restart the sequence")
	}
	s.ClearFaults()
	for _, st := range statuses(s, 50) {
		if st != 404 {
			t.Fatalf("ClearFaults left a fault: %d", st)
		}
	}
}

func TestLatencyDraws(t *testing.T) {
	t.Parallel()
	f := newFaults(1)
	f.latMin, f.latMax = 10*time.Millisecond, 20*time.Millisecond
	seen := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		d := f.plan(t0, false).delay
		if d < f.latMin || d > f.latMax {
			t.Fatalf("delay %v outside [%v, %v]", d, f.latMin, f.latMax)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays", len(seen))
	}
	f.latMax = f.latMin
	if d := f.plan(t0, false).delay; d != f.latMin {
		t.Errorf("fixed latency %v, want %v", d, f.latMin)
	}
}

func TestLatencyDelaysRequests(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	s.SetLatency(30*time.Millisecond, 30*time.Millisecond)
	start := time.Now()
	if w := serve(s, "GET", "/Patient/none", ""); w.Code != 404 {
		t.Fatalf("status %d", w.Code)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("request took %v, want at least the 30ms latency", d)
	}
}

func TestCloseEndsLatencyWaits(t *testing.T) {
	t.Parallel()
	s := NewServer()
	s.SetLatency(time.Hour, time.Hour)
	done := make(chan int, 1)
	go func() {
		resp, err := s.Client().Get(s.URL + "/metadata")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: a latency wait held it")
	}
	if st := <-done; st != 0 && st != 503 {
		t.Errorf("request during Close: %d, want 503 or a connection error", st)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock(t0)
	s := NewUnstartedServer(WithClock(clock.Now))
	defer s.Close()
	s.SetRateLimit(2, 2)
	if got := statuses(s, 3); !reflect.DeepEqual(got, []int{404, 404, 429}) {
		t.Fatalf("burst: %v", got)
	}
	w := serve(s, "GET", "/Patient/none", "")
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Errorf("limited: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
	clock.Set(t0.Add(500 * time.Millisecond)) // one token back
	if got := statuses(s, 2); !reflect.DeepEqual(got, []int{404, 429}) {
		t.Errorf("after 0.5s: %v", got)
	}
	clock.Set(t0.Add(10 * time.Second)) // bucket full again, not beyond
	if got := statuses(s, 3); !reflect.DeepEqual(got, []int{404, 404, 429}) {
		t.Errorf("after 10s: %v", got)
	}
	s.SetRateLimit(0.2, 1) // one request per 5 s
	serve(s, "GET", "/Patient/none", "")
	if w := serve(s, "GET", "/Patient/none", ""); w.Code != 429 || w.Header().Get("Retry-After") != "5" {
		t.Errorf("slow limit: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
	s.SetRateLimit(0, 0)
	if got := statuses(s, 5); !reflect.DeepEqual(got, []int{404, 404, 404, 404, 404}) {
		t.Errorf("limit removed: %v", got)
	}
	var limited int
	for _, r := range s.Requests() {
		if r.Fault == FaultRateLimit {
			limited++
			if r.Status != 429 || r.HandlerStatus != 0 {
				t.Errorf("rate-limited entry %+v", r)
			}
		}
	}
	if limited != 5 {
		t.Errorf("%d rate-limited requests logged, want 5", limited)
	}
}

// post sends a create over the network and returns the status, or 0 when
// the connection failed.
func post(t *testing.T, s *Server, path, body string, hdr ...string) int {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDrop(t *testing.T) {
	t.Parallel()
	s := NewServer()
	defer s.Close()
	s.DropNext(2)
	for i := 0; i < 2; i++ {
		if st := post(t, s, "/Patient", patientJSON("", fmt.Sprint("D", i))); st != 0 {
			t.Fatalf("dropped request %d answered %d", i, st)
		}
	}
	if n := s.Count("Patient"); n != 0 {
		t.Fatalf("a dropped request was processed: Count = %d", n)
	}
	if st := post(t, s, "/Patient", patientJSON("", "D9")); st != 201 {
		t.Fatalf("after the drops: %d", st)
	}
	log := s.Requests()
	if len(log) != 3 || log[0].Fault != FaultDrop || log[0].Status != 0 || log[0].HandlerStatus != 0 || log[2].Status != 201 {
		t.Errorf("log = %+v", log)
	}
}

func TestDropRate(t *testing.T) {
	t.Parallel()
	const n, rate = 200, 0.2
	s := NewServer(WithSeed(3))
	defer s.Close()
	s.SetDropRate(rate)
	ok := 0
	for i := 0; i < n; i++ {
		switch st := post(t, s, "/Patient", patientJSON("", fmt.Sprint("M", i))); st {
		case 201:
			ok++
		case 0:
		default:
			t.Fatalf("status %d", st)
		}
	}
	dropped := float64(n-ok) / n
	if dropped < rate-0.07 || dropped > rate+0.07 {
		t.Errorf("dropped fraction %.3f, want about %.2f", dropped, rate)
	}
	if got := s.Count("Patient"); got != ok {
		t.Errorf("Count = %d, want the %d answered creates", got, ok)
	}
}

func TestLoseNextDrop(t *testing.T) {
	t.Parallel()
	s := NewServer()
	defer s.Close()
	s.LoseNext(1, LoseDrop)
	// Reads are not affected.
	if resp, err := s.Client().Get(s.URL + "/Patient/none"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("read while a loss is pending: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	body := patientJSON("", "M1")
	if st := post(t, s, "/Patient", body); st != 0 {
		t.Fatalf("lost response answered %d", st)
	}
	if n := s.Count("Patient"); n != 1 {
		t.Fatalf("the write was not committed: Count = %d", n)
	}
	last := s.Requests()[1]
	if last.Fault != FaultLoseDrop || last.Status != 0 || last.HandlerStatus != 201 {
		t.Errorf("log entry %+v", last)
	}
	// A naive retry duplicates; a conditional one does not.
	if st := post(t, s, "/Patient", body, "If-None-Exist", "identifier=urn:mrn|M1"); st != 200 {
		t.Errorf("conditional retry: %d, want 200", st)
	}
	if d := s.DuplicateIdentifiers(); len(d) != 0 {
		t.Errorf("duplicates after a conditional retry: %v", d)
	}
	if st := post(t, s, "/Patient", body); st != 201 {
		t.Fatalf("naive retry: %d", st)
	}
	want := []DuplicateIdentifier{{ResourceType: "Patient", System: "urn:mrn", Value: "M1", IDs: []string{"1", "2"}}}
	if d := s.DuplicateIdentifiers(); !reflect.DeepEqual(d, want) {
		t.Errorf("DuplicateIdentifiers = %v, want %v", d, want)
	}
	if h := s.IdentifierHolders("urn:mrn", "M1"); !reflect.DeepEqual(h, []string{"Patient/1", "Patient/2"}) {
		t.Errorf("IdentifierHolders = %v", h)
	}
}

func TestLoseNext503(t *testing.T) {
	t.Parallel()
	s := NewServer()
	defer s.Close()
	s.LoseNext(1, Lose503)
	req, _ := http.NewRequest("PUT", s.URL+"/Patient?identifier="+url.QueryEscape("urn:mrn|M1"), strings.NewReader(patientJSON("", "M1")))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := s.Count("Patient"); n != 1 {
		t.Fatalf("the write was not committed: Count = %d", n)
	}
	if e := s.Requests()[0]; e.Fault != FaultLose503 || e.Status != 503 || e.HandlerStatus != 201 {
		t.Errorf("log entry %+v", e)
	}
}

func TestLoseNextHang(t *testing.T) {
	t.Parallel()
	s := NewServer()
	defer s.Close()
	s.LoseNext(1, LoseHang)
	c := s.Client()
	c.Timeout = 300 * time.Millisecond
	req, _ := http.NewRequest("PUT", s.URL+"/Patient?identifier="+url.QueryEscape("urn:mrn|M1"), strings.NewReader(patientJSON("", "M1")))
	req.Header.Set("Content-Type", "application/fhir+json")
	start := time.Now()
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a lost answer came: %d", resp.StatusCode)
	}
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("err = %v, want the client's timeout", err)
	}
	if took := time.Since(start); took < c.Timeout {
		t.Errorf("gave up after %v, before the client's timeout %v", took, c.Timeout)
	}
	if n := s.Count("Patient"); n != 1 {
		t.Fatalf("the write was not committed: Count = %d", n)
	}
	if e := s.Requests()[0]; e.Fault != FaultLoseHang || e.Status != 0 || e.HandlerStatus != 201 {
		t.Errorf("log entry %+v", e)
	}
	// The next request is answered.
	if st := post(t, s, "/Patient", patientJSON("", "M2")); st != 201 {
		t.Errorf("next write: %d, want 201", st)
	}
}

func TestLoseHangEndsOnClose(t *testing.T) {
	t.Parallel()
	s := NewServer()
	s.LoseNext(1, LoseHang)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.URL+"/Patient", strings.NewReader(patientJSON("", "M1")))
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for len(s.Requests()) == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Close() // must not wait for the client forever
	if err := <-done; err == nil {
		t.Error("the held request was answered")
	}
}

func TestLoseRate(t *testing.T) {
	t.Parallel()
	const n, rate = 400, 0.25
	s := NewUnstartedServer(WithSeed(11))
	defer s.Close()
	s.SetLoseRate(rate, Lose503)
	lost := 0
	for i := 0; i < n; i++ {
		id := fmt.Sprint("M", i)
		w := serve(s, "PUT", "/Patient?identifier="+url.QueryEscape("urn:mrn|"+id), patientJSON("", id))
		switch w.Code {
		case 503:
			lost++
		case 201:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	frac := float64(lost) / n
	if frac < rate-0.05 || frac > rate+0.05 {
		t.Errorf("lost fraction %.3f, want about %.2f", frac, rate)
	}
	if got := s.Count("Patient"); got != n {
		t.Errorf("Count = %d, want all %d writes committed", got, n)
	}
}

func TestFaultArgumentsArePanics(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	for name, fn := range map[string]func(){
		"rate above 1":     func() { s.SetFailureRate(1.5) },
		"negative rate":    func() { s.SetDropRate(-0.1) },
		"success status":   func() { s.FailNext(1, 200) },
		"unknown LoseMode": func() { s.LoseNext(1, LoseMode(9)) },
		"max below min":    func() { s.SetLatency(time.Second, time.Millisecond) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}
