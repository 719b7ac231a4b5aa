package main

import (
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressSource reports how far a job is: done units of total. A total
// of 0 or less means unknown (an import from stdin). It is called from the
// reporter's goroutine, about once a second, so it must be safe to call
// concurrently with the job.
type progressSource func() (done, total int64)

// progressMode is how a progress reporter shows progress.
type progressMode int

const (
	progressOff progressMode = iota // --quiet: nothing
	progressBar                     // on a terminal: a bar with count, rate and ETA
	progressLog                     // off a terminal: a log line every progressLogEvery
)

// Cadence of the progress reporter.
const (
	progressPollEvery = time.Second      // how often the source is read
	progressLogEvery  = 10 * time.Second // how often progressLog writes a line
)

// Progress units.
const (
	unitRecords = "records"
	unitBytes   = "bytes"
)

// progressModeFor is the mode of a command: off with --quiet, a bar when
// w is a terminal, log lines otherwise.
func progressModeFor(quiet bool, w io.Writer) progressMode {
	switch {
	case quiet:
		return progressOff
	case isTerminal(w):
		return progressBar
	}
	return progressLog
}

// isTerminal reports whether w is a terminal (or a termOutput over one,
// so that log.format auto still picks text under a progress bar).
func isTerminal(w io.Writer) bool {
	switch w := w.(type) {
	case *termOutput:
		return isTerminal(w.w)
	case *os.File:
		return term.IsTerminal(int(w.Fd()))
	}
	return false
}

// progressOutputs returns the writer a command gives its logs and other
// stderr output, and the one the bar draws with. For progressBar both are
// sides of one termOutput over stderr; otherwise both are stderr.
func progressOutputs(mode progressMode, stderr io.Writer) (other, bar io.Writer) {
	if mode != progressBar {
		return stderr, stderr
	}
	t := newTermOutput(stderr)
	return t, t.barWriter()
}

// progressConfig says what a progress reporter shows and where.
type progressConfig struct {
	// Job names the job in the bar and the log lines ("import", "sync").
	Job string
	// Unit is unitRecords or unitBytes.
	Unit string
	// Mode is how to show progress.
	Mode progressMode
	// Out receives the bar (progressBar): normally a *termOutput over
	// stderr, so that other output does not run into the bar.
	Out io.Writer
	// Log receives the lines of progressLog.
	Log *slog.Logger
}

// progress shows the progress of one job from its progressSource: the
// numbers are counted from the first reading (what was already done when
// the job started is not this run's work), with the rate since the start
// and the ETA it gives. It polls the source in a goroutine of its own,
// which Stop ends; a nil *progress (mode off) does nothing.
type progress struct {
	cfg   progressConfig
	src   progressSource
	bar   *progressbar.ProgressBar
	start time.Time
	done0 int64 // source's done at the start

	stopOnce sync.Once
	stop     chan struct{}
	stopped  chan struct{}
}

// startProgress reads src once, draws the initial bar (progressBar) and
// starts polling. With progressOff it returns nil and starts nothing.
func startProgress(cfg progressConfig, src progressSource) *progress {
	if cfg.Mode == progressOff {
		return nil
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	p := &progress{cfg: cfg, src: src, start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
	done, total := src()
	p.done0 = done
	if cfg.Mode == progressBar {
		p.bar = newBar(cfg, p.runTotal(total))
	}
	go p.run()
	return p
}

// newBar builds the bar for a run of total units (0 or less: unknown).
func newBar(cfg progressConfig, total int64) *progressbar.ProgressBar {
	max := total
	if max <= 0 {
		max = -1 // unknown: a spinner with count and rate
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(cfg.Out),
		progressbar.OptionSetDescription(cfg.Job),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(max > 0),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100 * time.Millisecond),
		// The spinner of an unknown total moves when we poll: no
		// goroutine of the bar's own.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetRenderBlankState(true),
	}
	if cfg.Unit == unitBytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString(cfg.Unit))
	}
	return progressbar.NewOptions64(max, opts...)
}

// runTotal is this run's share of a source total.
func (p *progress) runTotal(total int64) int64 {
	if total <= 0 {
		return 0
	}
	return max(total-p.done0, 0)
}

func (p *progress) run() {
	defer close(p.stopped)
	poll := time.NewTicker(progressPollEvery)
	defer poll.Stop()
	lastLog := p.start
	for {
		select {
		case <-p.stop:
			return
		case now := <-poll.C:
			done, total := p.src()
			if p.bar != nil {
				p.setBar(done, total)
			} else if now.Sub(lastLog) >= progressLogEvery {
				lastLog = now
				p.logLine(done, total, now)
			}
		}
	}
}

// setBar moves the bar to a source reading.
func (p *progress) setBar(done, total int64) {
	if t := p.runTotal(total); t > 0 && t != p.bar.GetMax64() {
		p.bar.ChangeMax64(t)
	}
	_ = p.bar.Set64(max(done-p.done0, 0))
}

// logLine writes one progress line: done and total of this run, percent,
// rate since the start and ETA when the total is known, and the time
// elapsed.
func (p *progress) logLine(done, total int64, now time.Time) {
	n, t := max(done-p.done0, 0), p.runTotal(total)
	elapsed := now.Sub(p.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(n) / s
	}
	attrs := []any{"done", n}
	if t > 0 {
		attrs = append(attrs, "total", t, "percent", math.Round(1000*float64(n)/float64(t))/10)
	}
	attrs = append(attrs, "unit", p.cfg.Unit, "rate_per_second", math.Round(10*rate)/10)
	if t > 0 && n < t && rate > 0 {
		eta := time.Duration(float64(t-n) / rate * float64(time.Second))
		attrs = append(attrs, "eta", eta.Round(time.Second).String())
	}
	attrs = append(attrs, "elapsed", elapsed.Round(time.Second).String())
	p.cfg.Log.Info(p.cfg.Job+" progress", attrs...)
}

// Stop ends the polling goroutine and shows the final reading: the bar at
// its last value (full only if the job is complete) followed by a newline,
// or one last log line. Stop is idempotent and a no-op on nil.
func (p *progress) Stop() {
	if p == nil {
		return
	}
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.stopped
		done, total := p.src()
		if p.bar == nil {
			p.logLine(done, total, time.Now())
			return
		}
		p.setBar(done, total)
		if n, t := done-p.done0, p.runTotal(total); t > 0 && n >= t {
			_ = p.bar.Finish()
		} else {
			_ = p.bar.Exit()
		}
		io.WriteString(p.cfg.Out, "\n")
	})
}

// termOutput shares one terminal between a progress bar and the other
// output of a command (logs, bad records): before any other output it
// erases the bar's line, so that output starts in column 0 and the bar is
// drawn again below it at its next update.
type termOutput struct {
	mu      sync.Mutex
	w       io.Writer
	showing bool // the bar is on the current line
}

func newTermOutput(w io.Writer) *termOutput { return &termOutput{w: w} }

// Write writes other output, erasing the bar first.
func (t *termOutput) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.showing {
		t.showing = false
		if _, err := io.WriteString(t.w, "\r\033[K"); err != nil {
			return 0, err
		}
	}
	return t.w.Write(p)
}

// barWriter is the writer the bar draws with.
func (t *termOutput) barWriter() io.Writer { return barSide{t} }

type barSide struct{ t *termOutput }

func (b barSide) Write(p []byte) (int, error) {
	b.t.mu.Lock()
	defer b.t.mu.Unlock()
	n, err := b.t.w.Write(p)
	// The final newline of Stop leaves the bar above: nothing to erase.
	b.t.showing = len(p) == 0 || p[len(p)-1] != '\n'
	return n, err
}
