package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records failures instead of failing the
// test; Fatalf ends the calling goroutine like the real one. Methods it
// does not define panic (the embedded TB is nil): the helpers must not
// call them.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatals []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	runtime.Goexit()
}

// run calls f with r in a goroutine of its own, as the testing package
// runs a test, and waits for it to end (normally or by Fatalf).
func (r *recorder) run(f func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

func TestBufferConcurrentWriters(t *testing.T) {
	t.Parallel()
	var b Buffer
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				fmt.Fprintf(&b, "writer %d line %d\n", w, i)
				_ = b.String() // readers run while writers write
			}
		}()
	}
	wg.Wait()
	if got := len(b.Lines()); got != 800 {
		t.Errorf("%d lines, want 800", got)
	}
	for _, l := range b.Lines() {
		if !strings.HasPrefix(l, "writer ") {
			t.Fatalf("interleaved line %q", l)
		}
	}
	if b.Len() != len(b.String()) {
		t.Errorf("Len %d, String has %d bytes", b.Len(), len(b.String()))
	}
}

func TestBufferLines(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"partial", nil},
		{"one\n", []string{"one"}},
		{"one\n\n  \ntwo\nthr", []string{"one", "two"}},
	} {
		var b Buffer
		b.Write([]byte(tc.in))
		if got := b.Lines(); strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("Lines of %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLoggers(t *testing.T) {
	t.Parallel()
	var j, x Buffer
	JSONLogger(&j).Debug("hello", "n", 3)
	TextLogger(&x).Debug("hello", "n", 3)
	lines := JSONLines(t, j.String())
	if len(lines) != 1 || lines[0]["msg"] != "hello" || lines[0]["level"] != "DEBUG" || lines[0]["n"] != 3.0 {
		t.Errorf("JSON log lines = %v", lines)
	}
	if s := x.String(); !strings.Contains(s, "level=DEBUG") || !strings.Contains(s, "msg=hello n=3") {
		t.Errorf("text log = %q", s)
	}
}

func TestJSONLinesFailsOnText(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	r.run(func(tb testing.TB) { JSONLines(tb, "{\"msg\":\"ok\"}\nMRN-SECRET plain text\n") })
	if len(r.fatals) != 1 || !strings.Contains(r.fatals[0], "line 2") || strings.Contains(r.fatals[0], "MRN-SECRET") {
		t.Errorf("fatals = %q, want one naming line 2 without its text", r.fatals)
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	go func() {
		time.Sleep(30 * time.Millisecond)
		ready.Store(true)
	}()
	calls := 0
	WaitFor(t, 10*time.Second, "ready", func() bool { calls++; return ready.Load() })
	if calls < 2 {
		t.Errorf("cond called %d times, want it polled", calls)
	}

	r := &recorder{}
	start := time.Now()
	r.run(func(tb testing.TB) {
		WaitFor(tb, 50*time.Millisecond, "the impossible", func() bool { return false })
		tb.Errorf("WaitFor returned after timing out")
	})
	if len(r.fatals) != 1 || !strings.Contains(r.fatals[0], "waiting for the impossible") {
		t.Errorf("fatals = %q", r.fatals)
	}
	if len(r.errors) != 0 {
		t.Errorf("the test went on after the timeout: %q", r.errors)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", took)
	}
}

func TestPHIFind(t *testing.T) {
	t.Parallel()
	var p PHI
	p.Values("MRN-0042", "1961-07-14", "+1 555-0100", "a<b@example.org", "")
	p.Words("Ng", "Zoë", "")
	p.Values("MRN-0042") // a repeat
	if p.Len() != 6 {
		t.Errorf("Len = %d, want 6 (empty strings and repeats ignored)", p.Len())
	}
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"clean", `{"msg":"synced","kind":"order","local_id":"ord-1"}`, nil},
		{"value", `error for MRN-0042`, []string{"value #0 (8 bytes)"}},
		{"value in any case", `identifier=mrn-0042`, []string{"value #0 (8 bytes)"}},
		{"value inside a word", `xMRN-0042x`, []string{"value #0 (8 bytes)"}},
		{"URL-escaped value", `Patient?phone=%2B1+555-0100`, []string{"value #2 (11 bytes)"}},
		{"JSON-escaped value", `{"email":"a\u003cb@example.org"}`, []string{"value #3 (15 bytes)"}},
		{"word", `{"family":"Ng"}`, []string{"word #0 (2 bytes)"}},
		{"word at the ends", `Ng`, []string{"word #0 (2 bytes)"}},
		{"word inside a word", `Warning: Ngx`, nil},
		{"word in another case", `ng`, nil},
		{"non-ASCII word", `given=Zoë,`, []string{"word #1 (4 bytes)"}},
		{"URL-escaped word", `name=Zo%C3%AB&x`, []string{"word #1 (4 bytes)"}},
		{"several", `Ng 1961-07-14`, []string{"value #1 (10 bytes)", "word #0 (2 bytes)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Find(tc.text)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("Find(%q) = %q, want %q", tc.text, got, tc.want)
			}
		})
	}
	var zero PHI
	if got := zero.Find("MRN-0042 Ng"); got != nil {
		t.Errorf("the zero PHI found %q", got)
	}
}

func TestPHICheckDoesNotRepeatWhatItFound(t *testing.T) {
	t.Parallel()
	var p PHI
	p.Values("MRN-SECRET-1")
	p.Words("Hornblower")
	r := &recorder{}
	r.run(func(tb testing.TB) { p.Check(tb, "the log", "MRN-SECRET-1 and Hornblower") })
	if len(r.errors) != 2 {
		t.Fatalf("errors = %q, want 2", r.errors)
	}
	for _, e := range r.errors {
		if !strings.HasPrefix(e, "the log contains patient data: ") || strings.Contains(e, "SECRET") || strings.Contains(e, "Hornblower") {
			t.Errorf("error %q", e)
		}
	}
	r = &recorder{}
	r.run(func(tb testing.TB) { p.Check(tb, "the log", "nothing here") })
	if len(r.errors)+len(r.fatals) != 0 {
		t.Errorf("clean text failed: %q %q", r.errors, r.fatals)
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	if !c.Now().Equal(t0) {
		t.Errorf("Now = %v", c.Now())
	}
	c.Add(90 * time.Second)
	if want := t0.Add(90 * time.Second); !c.Now().Equal(want) {
		t.Errorf("after Add: %v, want %v", c.Now(), want)
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Errorf("after Set: %v", c.Now())
	}
	var zero Clock
	if !zero.Now().IsZero() {
		t.Errorf("zero Clock reads %v", zero.Now())
	}
	// Safe for concurrent use.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Add(time.Second)
				_ = c.Now()
			}
		}()
	}
	wg.Wait()
	if want := t0.Add(400 * time.Second); !c.Now().Equal(want) {
		t.Errorf("after concurrent Adds: %v, want %v", c.Now(), want)
	}
}
