package main

import (
	"io"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// counter is a progressSource the test moves: done of a fixed total.
type counter struct {
	done, total atomic.Int64
	calls       atomic.Int64
}

func (c *counter) source() (int64, int64) {
	c.calls.Add(1)
	return c.done.Load(), c.total.Load()
}

// TestProgressLogLines: off a terminal, one line every 10s with this
// run's done and total, percent, rate, ETA and elapsed time, and a last
// line at Stop; then the goroutine is gone (synctest.Test would report
// it).
func TestProgressLogLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		c.done.Store(500) // done before the run: not this run's work
		c.total.Store(1500)
		var logs testutil.Buffer
		p := startProgress(progressConfig{Job: "sync", Unit: unitRecords, Mode: progressLog, Log: testutil.JSONLogger(&logs)}, c.source)
		lines := func() []map[string]any { return testutil.JSONLines(t, logs.String()) }
		for sec := 1; sec <= 25; sec++ {
			c.done.Add(10) // 10 records a second
			time.Sleep(time.Second)
			synctest.Wait()
			want := sec / 10
			if got := len(lines()); got != want {
				t.Fatalf("after %ds: %d lines, want %d", sec, got, want)
			}
		}
		if n := c.calls.Load(); n != 26 {
			t.Errorf("source read %d times in 25s, want once at the start and once a second", n)
		}
		p.Stop()
		p.Stop() // idempotent
		got := lines()
		want := []map[string]any{
			{"msg": "sync progress", "done": 100.0, "total": 1000.0, "percent": 10.0, "unit": "records", "rate_per_second": 10.0, "eta": "1m30s", "elapsed": "10s"},
			{"msg": "sync progress", "done": 200.0, "total": 1000.0, "percent": 20.0, "unit": "records", "rate_per_second": 10.0, "eta": "1m20s", "elapsed": "20s"},
			{"msg": "sync progress", "done": 250.0, "total": 1000.0, "percent": 25.0, "unit": "records", "rate_per_second": 10.0, "eta": "1m15s", "elapsed": "25s"},
		}
		if len(got) != len(want) {
			t.Fatalf("%d lines, want %d: %v", len(got), len(want), got)
		}
		for i := range want {
			for k, v := range want[i] {
				if got[i][k] != v {
					t.Errorf("line %d: %s = %v, want %v (line %v)", i+1, k, got[i][k], v, got[i])
				}
			}
			if got[i]["level"] != "INFO" {
				t.Errorf("line %d: level %v", i+1, got[i]["level"])
			}
		}
	})
}

func TestProgressLogLinesUnknownTotal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter // total 0: unknown (an import from stdin)
		var logs testutil.Buffer
		p := startProgress(progressConfig{Job: "import", Unit: unitBytes, Mode: progressLog, Log: testutil.JSONLogger(&logs)}, c.source)
		c.done.Store(4096)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		p.Stop()
		lines := testutil.JSONLines(t, logs.String())
		if len(lines) != 2 {
			t.Fatalf("lines = %v, want 2", lines)
		}
		l := lines[0]
		if l["msg"] != "import progress" || l["done"] != 4096.0 || l["unit"] != "bytes" || l["elapsed"] != "10s" {
			t.Errorf("line = %v", l)
		}
		for _, k := range []string{"total", "percent", "eta"} {
			if _, ok := l[k]; ok {
				t.Errorf("line has %s with an unknown total: %v", k, l)
			}
		}
	})
}

// TestProgressOff: --quiet starts nothing, reads nothing, writes nothing.
func TestProgressOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		c.total.Store(10)
		var out testutil.Buffer
		p := startProgress(progressConfig{Job: "sync", Unit: unitRecords, Mode: progressOff, Out: &out, Log: testutil.JSONLogger(&out)}, c.source)
		time.Sleep(time.Minute)
		synctest.Wait()
		p.Stop()
		if p != nil || c.calls.Load() != 0 || out.Len() != 0 {
			t.Errorf("progress off: reporter %v, %d source reads, output %q", p, c.calls.Load(), out.String())
		}
	})
}

// TestProgressBarForced renders the bar into a buffer (not a terminal),
// with other output going through the same termOutput.
func TestProgressBarForced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		c.total.Store(100)
		var screen testutil.Buffer
		other, barOut := progressOutputs(progressBar, &screen)
		if other == io.Writer(&screen) {
			t.Fatal("bar mode: other output is not routed around the bar")
		}
		p := startProgress(progressConfig{Job: "sync", Unit: unitRecords, Mode: progressBar, Out: barOut}, c.source)
		for range 5 {
			c.done.Add(10)
			time.Sleep(time.Second)
			synctest.Wait()
		}
		s := screen.String()
		// Description, percent, count, rate and [elapsed:ETA]; the rate
		// and ETA are progressbar's rolling estimates.
		last := s[strings.LastIndex(s, "\r\rsync")+2:]
		if !regexp.MustCompile(`^sync  50% \|█+ +\| \(50/100, \d+ records/s\) \[5s:\d+s\]$`).MatchString(last) {
			t.Errorf("the bar after 5s: %q", last)
		}
		// Other output erases the bar's line first.
		other.Write([]byte("a log line\n"))
		if !strings.HasSuffix(screen.String(), "\r\x1b[Ka log line\n") {
			t.Errorf("other output does not erase the bar: %q", screen.String()[len(s):])
		}
		c.done.Store(100)
		p.Stop()
		s = screen.String()
		if !strings.Contains(s, "100%") || !strings.Contains(s, "100/100") || !strings.HasSuffix(s, "\n") {
			t.Errorf("the finished bar: %q", s)
		}
		// After the bar's final newline, other output needs no erasing.
		other.Write([]byte("summary\n"))
		if !strings.HasSuffix(screen.String(), "\nsummary\n") {
			t.Errorf("after Stop: %q", screen.String())
		}
	})
}

// TestProgressBarUnfinished: a job that stops short (a sync deadline)
// leaves the bar at its last value, not full.
func TestProgressBarUnfinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		c.total.Store(100)
		var screen testutil.Buffer
		_, barOut := progressOutputs(progressBar, &screen)
		p := startProgress(progressConfig{Job: "sync", Unit: unitRecords, Mode: progressBar, Out: barOut}, c.source)
		c.done.Store(30)
		time.Sleep(time.Second)
		synctest.Wait()
		p.Stop()
		s := screen.String()
		if strings.Contains(s, "100%") || !strings.Contains(s, "30/100") || !strings.HasSuffix(s, "\n") {
			t.Errorf("the bar of an unfinished job: %q", s)
		}
	})
}

func TestProgressModeFor(t *testing.T) {
	t.Parallel()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	for _, tc := range []struct {
		name  string
		quiet bool
		w     io.Writer
		want  progressMode
	}{
		{"quiet", true, devNull, progressOff},
		{"buffer", false, &testutil.Buffer{}, progressLog},
		// A character device but not a terminal.
		{"/dev/null", false, devNull, progressLog},
		{"under a bar", false, newTermOutput(devNull), progressLog},
	} {
		if got := progressModeFor(tc.quiet, tc.w); got != tc.want {
			t.Errorf("%s: mode %v, want %v", tc.name, got, tc.want)
		}
	}
}

var progressLine = regexp.MustCompile(`"msg":"(import|sync) progress"`)

// TestImportSyncQuiet: off a terminal, import and sync log their progress
// (here only the last line, being quick); --quiet turns it off.
func TestImportSyncQuiet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newClinic(t, dir, 2, 5)
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	cfg := writeConfig(t, dir, ehr.URL, "")
	for _, tc := range []struct {
		name string
		args []string
		want int // progress lines
	}{
		{"import", []string{"import", "--config", cfg, c.path}, 1},
		{"import --quiet", []string{"import", "--quiet", "--config", cfg, c.path}, 0},
		{"sync --quiet", []string{"sync", "--quiet", "--config", cfg}, 0},
		{"sync", []string{"sync", "--config", cfg}, 1},
	} {
		r := runCLI(t, "", tc.args...)
		r.want(t, exitOK, tc.name)
		if got := len(progressLine.FindAllString(r.stderr, -1)); got != tc.want {
			t.Errorf("%s: %d progress lines on stderr, want %d:\n%s", tc.name, got, tc.want, clip(r.stderr))
		}
		if strings.Contains(r.stdout, "progress") {
			t.Errorf("%s: progress on stdout: %s", tc.name, clip(r.stdout))
		}
	}
}
