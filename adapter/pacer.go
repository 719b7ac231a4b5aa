package adapter

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// PacerConfig tunes a Pacer. The zero value of each field means its
// default.
type PacerConfig struct {
	// MaxRate is a ceiling in requests per second; the rate starts from it.
	// 0 means no ceiling: the rate starts at StartRate and doubles every
	// tenth of a Window while requests go through and the rate is what
	// holds them back (slow start), until the EHR pushes back or the
	// callers cannot use more (then it is unlimited).
	MaxRate float64
	// StartRate is where slow start begins when MaxRate is 0. Defaults to
	// 10 requests per second.
	StartRate float64
	// MinRate is the floor multiplicative decrease stops at. Defaults to 1
	// request per second.
	MinRate float64
	// Window is the period over which answers are counted: the rate
	// decreases at most once, and increases at most once, per window.
	// Defaults to 1s.
	Window time.Duration
	// Decrease is the factor applied on a decrease. Defaults to 0.9.
	Decrease float64
	// PauseThreshold: a Retry-After longer than this (an outage or a
	// maintenance window) pauses every request until it ends; a shorter
	// one holds back only the request that got it. Defaults to 30s.
	PauseThreshold time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Pacer sets the pace of every request to one EHR: a request rate
// (golang.org/x/time/rate) that adapts to the EHR's answers, and pauses.
//
//   - Every request waits for the rate before it is sent (Wait) and
//     reports its answer after (Done).
//   - Without MaxRate, the rate starts with slow start (see
//     PacerConfig.MaxRate and rollSlow), so that an EHR's rate limit is
//     found with a handful of 429s, not a burst of them.
//   - Per Window, if more answers were 429 or 503 than the share seen
//     before (the noise level) explains, by 3 standard deviations (while
//     the level is 0: any), the rate decreases once to
//     Decrease times the rate of successful answers. If the next window,
//     leaving out answers to requests let through at the old rate, shows
//     the decrease did not lower that share, the answers were random
//     faults, not a rate limit: the decrease is undone and the share of
//     the two windows becomes the noise level. Scattered faults therefore
//     never stall delivery. The level then follows lower shares down but
//     never rises otherwise: a share that rises with the rate is a limit.
//   - Per Window without such answers, while the rate was what limited the
//     requests, it increases by a fixed step (2% of the rate set at the
//     last decrease): additive increase, up to MaxRate.
//   - A Retry-After over PauseThreshold pauses every request until then
//     (Pause). A shorter one is for the caller to honour for that request
//     alone, holding no worker while it waits.
//
// A Pacer is safe for concurrent use.
type Pacer struct {
	cfg     PacerConfig
	limiter *rate.Limiter

	mu         sync.Mutex
	winStart   time.Time
	answers    int // answers in the current window
	throttled  int // 429/503 answers in the current window
	succeeded  int // 2xx answers in the current window
	sent       int // requests let through in the current window
	noise      float64
	probing    bool       // the last window decreased the rate
	probeFrom  rate.Limit // the rate before that decrease
	probeShare float64    // the throttled share that caused it
	skip       int        // answers still due to requests let through at the rate before the last decrease
	waiting    int        // Waits holding a time to go at the current rate
	step       rate.Limit
	pauseUntil time.Time
	pauseWhy   string
	paused     chan struct{} // closed when a pause may have ended
	inFlight   int
	slow       bool    // in slow start
	prevOK     float64 // successful answers per second of the last slow-start period
	probeSlow  bool    // the probing decrease ended slow start
}

// NewPacer returns a Pacer for cfg.
func NewPacer(cfg PacerConfig) *Pacer {
	if cfg.MinRate <= 0 {
		cfg.MinRate = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Second
	}
	if cfg.Decrease <= 0 || cfg.Decrease >= 1 {
		cfg.Decrease = 0.9
	}
	if cfg.PauseThreshold <= 0 {
		cfg.PauseThreshold = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StartRate <= 0 {
		cfg.StartRate = 10
	}
	limit, slow := rate.Limit(cfg.StartRate), true
	if cfg.MaxRate > 0 {
		limit, slow = rate.Limit(cfg.MaxRate), false
	}
	p := &Pacer{cfg: cfg, limiter: rate.NewLimiter(limit, 1), paused: make(chan struct{}), slow: slow}
	p.limiter.SetBurstAt(cfg.Now(), 1)
	p.winStart = cfg.Now()
	p.step = rate.Limit(max(cfg.MinRate, cfg.MaxRate*0.02))
	return p
}

// Wait blocks until a request may be sent: after any pause and at the
// current rate. It returns ctx's error if ctx ends first. Every Wait that
// returns nil must be followed by one Done.
func (p *Pacer) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		until, ch := p.pauseUntil, p.paused
		p.mu.Unlock()
		d := until.Sub(p.cfg.Now())
		if d <= 0 {
			break
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-ch:
			t.Stop()
		}
	}
	p.mu.Lock()
	p.waiting++
	p.mu.Unlock()
	err := p.limiter.Wait(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiting--
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	p.inFlight++
	p.sent++
	return nil
}

// Done reports the answer to a request let through by Wait: its HTTP
// status (0 when no answer came) and its Retry-After (0 when none).
func (p *Pacer) Done(status int, retryAfter time.Duration) {
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	throttled := status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
	if throttled && retryAfter > p.cfg.PauseThreshold {
		p.pauseLocked(now.Add(retryAfter), "retry_after")
	}
	p.roll(now) // before inFlight--: this request is one sent before any change it makes
	p.inFlight--
	if p.skip > 0 {
		// Sent at the rate before the last decrease: it says nothing
		// about the new one, and counting its 429 would make a real rate
		// limit look like random faults, or decrease twice.
		p.skip--
		return
	}
	if status == 0 {
		return // a lost answer says nothing about the EHR's rate
	}
	p.answers++
	switch {
	case throttled:
		p.throttled++
	case status >= 200 && status < 300:
		p.succeeded++
	}
}

// minAnswers is how many answers a window needs before it is judged;
// a quieter window is extended.
const minAnswers = 8

// noiseSigmas is how many standard deviations above the noise level the
// throttled answers of a window must be to count as a rate limit: at a
// noise level of 0, any 429 or 503 does.
const noiseSigmas = 3

// roll closes the current window if it has ended and adjusts the rate.
// p.mu is held.
func (p *Pacer) roll(now time.Time) {
	elapsed := now.Sub(p.winStart)
	if p.slow {
		// A period needs a tenth of a window and enough answers to judge.
		if elapsed >= p.cfg.Window/10 && (p.answers >= minAnswers || elapsed >= p.cfg.Window) && p.answers > 0 {
			p.rollSlow(now, elapsed)
		}
		return
	}
	if elapsed < p.cfg.Window {
		return
	}
	if p.answers < minAnswers && elapsed < 10*p.cfg.Window {
		return
	}
	answers, throttled, succeeded, sent := p.answers, p.throttled, p.succeeded, p.sent
	p.winStart, p.answers, p.throttled, p.succeeded, p.sent = now, 0, 0, 0, 0
	if answers == 0 {
		return
	}
	share := float64(throttled) / float64(answers)
	limit := p.limiter.Limit()
	wasProbing := p.probing
	p.probing = false
	over := p.beyondNoise(throttled, answers)
	switch {
	case wasProbing && throttled > 0 && share >= 0.3*p.probeShare:
		// Slowing down did not lower the share: random faults, not a
		// rate limit. Undo (back into slow start if it came from there),
		// and learn the level.
		p.setLimit(now, p.probeFrom)
		p.slow = p.probeSlow
		p.noise = (p.probeShare + share) / 2
	case over:
		okRate := rate.Limit(float64(succeeded) / elapsed.Seconds())
		base := min(limit, okRate)
		next := max(rate.Limit(p.cfg.MinRate), base*rate.Limit(p.cfg.Decrease))
		if next < limit {
			p.probing, p.probeFrom, p.probeShare, p.probeSlow = true, limit, share, false
			p.setLimit(now, next)
			p.step = max(rate.Limit(p.cfg.MinRate)/2, next*0.02)
			// The requests in flight (this answer's included) and
			// those already given a time to go went at the old rate.
			p.skip = p.inFlight + p.waiting
		}
	default:
		// Within the noise. Its level follows the answers down, never
		// up: a share rising with the rate is a rate limit, and only a
		// decrease that changes nothing (above) raises the level.
		if share < p.noise {
			p.noise = 0.8*p.noise + 0.2*share
		}
		// Grow only while the rate is what holds requests back.
		sentRate := rate.Limit(float64(sent) / elapsed.Seconds())
		if limit != rate.Inf && sentRate >= 0.8*limit {
			next := limit + p.step
			if p.cfg.MaxRate > 0 {
				next = min(next, rate.Limit(p.cfg.MaxRate))
			}
			p.setLimit(now, next)
		}
	}
}

// slowStartCap ends slow start: a rate this high is no limit.
const slowStartCap = 100000

// beyondNoise reports whether throttled of answers are more than the
// noise level explains (binomial: the expected count plus noiseSigmas
// standard deviations; at a level of 0, any).
func (p *Pacer) beyondNoise(throttled, answers int) bool {
	n := float64(answers)
	return float64(throttled) > p.noise*n+noiseSigmas*math.Sqrt(n*p.noise*(1-p.noise))
}

// rollSlow closes a slow-start period. p.mu is held.
//
// While the rate doubles, so does the rate of successful answers, with
// random faults or without; under a rate limit it stops growing. So slow
// start ends at the first period with 429/503 beyond the noise whose
// successes grew by less than half: the rate drops to a quarter (below
// the limit even when the EHR's burst made the last periods look
// better), as a probe that is undone if the next window shows the same
// share of 429/503.
func (p *Pacer) rollSlow(now time.Time, elapsed time.Duration) {
	throttled, succeeded, sent, answers := p.throttled, p.succeeded, p.sent, p.answers
	p.winStart, p.answers, p.throttled, p.succeeded, p.sent = now, 0, 0, 0, 0
	limit := p.limiter.Limit()
	okRate := float64(succeeded) / elapsed.Seconds()
	prevOK := p.prevOK
	p.prevOK = okRate
	switch {
	case p.beyondNoise(throttled, answers) && okRate < 1.5*prevOK:
		p.slow = false
		next := max(rate.Limit(p.cfg.MinRate), limit/4)
		p.probing, p.probeFrom, p.probeShare, p.probeSlow = true, limit, float64(throttled)/float64(answers), true
		p.setLimit(now, next)
		p.step = max(rate.Limit(p.cfg.MinRate)/2, next*0.02)
		p.skip = p.inFlight + p.waiting
	case float64(sent)/elapsed.Seconds() >= 0.5*float64(limit):
		// The rate holds the callers back: double it.
		if limit*2 >= slowStartCap {
			p.slow = false
			p.setLimit(now, rate.Inf)
			return
		}
		p.setLimit(now, limit*2)
	default:
		// The callers do not use the rate (the EHR's latency or the
		// workers bound them): no rate limit is in sight.
		p.slow = false
		p.setLimit(now, rate.Inf)
	}
}

func (p *Pacer) setLimit(now time.Time, l rate.Limit) {
	p.limiter.SetLimitAt(now, l)
}

// Pause holds every request until until (a Retry-After over the threshold,
// an outage). why is a bounded reason for status and logs. A pause never
// shortens one already in force.
func (p *Pacer) Pause(until time.Time, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pauseLocked(until, why)
}

func (p *Pacer) pauseLocked(until time.Time, why string) {
	if until.After(p.pauseUntil) {
		p.pauseUntil, p.pauseWhy = until, why
	}
}

// Resume ends any pause now.
func (p *Pacer) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pauseUntil, p.pauseWhy = time.Time{}, ""
	close(p.paused)
	p.paused = make(chan struct{})
}

// PacerState is a snapshot of a Pacer for status pages and metrics.
type PacerState struct {
	// Rate is the current request rate per second; +Inf when unlimited.
	Rate float64
	// InFlight is the number of requests sent and not yet answered.
	InFlight int
	// PausedUntil is the end of a pause in force (zero if none), and
	// PauseReason its bounded reason.
	PausedUntil time.Time
	PauseReason string
}

// State returns the pacer's current state.
func (p *Pacer) State() PacerState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PacerState{Rate: float64(p.limiter.Limit()), InFlight: p.inFlight}
	if p.limiter.Limit() == rate.Inf {
		s.Rate = math.Inf(1)
	}
	if p.pauseUntil.After(p.cfg.Now()) {
		s.PausedUntil, s.PauseReason = p.pauseUntil, p.pauseWhy
	}
	return s
}
