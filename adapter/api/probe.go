package api

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/internal/ticker"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/metrics"
)

// EHRStatus is what the adapter last learned of the EHR: the result of the
// last probe of an EHRProber. It is in GET /v1/status.
type EHRStatus struct {
	// Reachable says whether the EHR answered the last probe.
	Reachable bool `json:"reachable"`
	// CheckedAt is when the last probe ended; null before the first.
	CheckedAt *time.Time `json:"checked_at"`
	// ErrorClass is why the last probe failed, as a bounded class such as
	// "timeout", "connection", "auth" or "http_503": never an error text,
	// a URL or patient data. Empty when the EHR answered.
	ErrorClass string `json:"error_class,omitempty"`
}

// Defaults of ProberOptions.
const (
	DefaultProbeInterval = 30 * time.Second
	DefaultProbeTimeout  = 2 * time.Second
)

// ProberOptions configures an EHRProber.
type ProberOptions struct {
	// Interval is the time between probes. Defaults to 30s.
	Interval time.Duration
	// Timeout bounds one probe. Defaults to 2s.
	Timeout time.Duration
	// Classify turns a failed probe's error into a bounded, PHI-free class
	// (ehr.Reason in serve). Defaults to "timeout" when the probe ran out
	// of time and "error" otherwise.
	Classify func(error) string
	// Metrics receives the ketamine_fhir_ehr_up gauge; nil records none.
	Metrics *metrics.Metrics
	// Logger receives one line each time the EHR goes down or comes back
	// (with the class, never the error text). Defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock of CheckedAt. Defaults to time.Now.
	Now func() time.Time
}

// EHRProber checks the EHR every Interval in a goroutine of its own and
// keeps the result for GET /v1/status (Status) and the
// ketamine_fhir_ehr_up gauge. EHR reachability is not readiness: the
// adapter accepts and stores records while the EHR is down, so /readyz
// does not look at the EHR.
//
// Start runs the probes until Stop, which the owner (serve) calls on
// shutdown. Probe runs one probe now. The zero EHRProber is not usable;
// use NewEHRProber.
type EHRProber struct {
	ping     func(context.Context) error
	interval time.Duration
	timeout  time.Duration
	classify func(error) string
	metrics  *metrics.Metrics
	log      *slog.Logger
	now      func() time.Time

	mu     sync.Mutex
	last   EHRStatus
	probed bool

	loop ticker.Loop
}

// NewEHRProber returns a prober that checks the EHR with ping (the
// engine's PingEHR). Until its first probe, Status reports the EHR as
// not reachable and never checked, and the gauge is 0.
func NewEHRProber(ping func(context.Context) error, opts ProberOptions) *EHRProber {
	p := &EHRProber{
		ping: ping, interval: opts.Interval, timeout: opts.Timeout,
		classify: opts.Classify, metrics: opts.Metrics, log: opts.Logger, now: opts.Now,
	}
	if p.interval <= 0 {
		p.interval = DefaultProbeInterval
	}
	if p.timeout <= 0 {
		p.timeout = DefaultProbeTimeout
	}
	if p.classify == nil {
		p.classify = defaultClassify
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.metrics.SetEHRUp(false)
	return p
}

func defaultClassify(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "error"
}

// Status returns the result of the last probe.
func (p *EHRProber) Status() EHRStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.last
	if st.CheckedAt != nil {
		t := *st.CheckedAt
		st.CheckedAt = &t
	}
	return st
}

// Probe checks the EHR once, within the timeout, records the result and
// returns it. A probe cut short by ctx (shutdown) records nothing and
// returns the previous status.
func (p *EHRProber) Probe(ctx context.Context) EHRStatus {
	pctx, cancel := context.WithTimeout(ctx, p.timeout)
	err := p.ping(pctx)
	cancel()
	if ctx.Err() != nil {
		return p.Status()
	}
	at := p.now().UTC()
	st := EHRStatus{Reachable: err == nil, CheckedAt: &at}
	if err != nil {
		st.ErrorClass = p.classify(err)
		if st.ErrorClass == "" {
			st.ErrorClass = "error"
		}
	}
	p.mu.Lock()
	was, first := p.last.Reachable, !p.probed
	p.last, p.probed = st, true
	p.mu.Unlock()
	p.metrics.SetEHRUp(st.Reachable)
	switch {
	case !st.Reachable && (was || first):
		p.log.Warn("the EHR does not answer; records are still accepted and stored", "class", st.ErrorClass)
	case st.Reachable && !was:
		p.log.Info("the EHR answers")
	}
	return p.Status()
}

// Start probes the EHR at once and then every interval, in a goroutine,
// until Stop is called or ctx ends. Start on a running prober does
// nothing.
func (p *EHRProber) Start(ctx context.Context) {
	p.loop.Start(ctx, p.interval, func(ctx context.Context) { p.Probe(ctx) })
}

// Stop ends the probes, cutting one in flight short, and waits for the
// goroutine to return or ctx to end. Stop is idempotent, and a stopped
// prober may be started again.
func (p *EHRProber) Stop(ctx context.Context) error {
	return p.loop.Stop(ctx)
}
