package adapter

import (
	"context"
	"errors"
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
	// period (a tenth of a Window) while the rate is what holds requests
	// back (slow start, see Pacer), until the EHR pushes back or the
	// callers cannot use more (then it is unlimited).
	MaxRate float64
	// StartRate is where slow start begins when MaxRate is 0. Defaults to
	// 10 requests per second.
	StartRate float64
	// MinRate is the floor multiplicative decrease stops at. Defaults to 1
	// request per second.
	MinRate float64
	// Window is the period over which answers are counted: after slow
	// start the rate decreases at most once, and increases at most once,
	// per window. Defaults to 1s.
	Window time.Duration
	// Decrease is the factor applied on a decrease, to the rate of
	// successful answers. Defaults to 0.9.
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
//     reports its answer after (Done). A new rate applies to the requests
//     already waiting too. After a decrease, and in every slow-start
//     period, answers to requests sent before are left out of the counts.
//   - Without MaxRate, slow start finds the rate: from StartRate, it
//     doubles every period (a tenth of a Window or more, until 8 answers
//     are in) while the rate is what holds requests back. Doubling the
//     rate doubles the successful answers per second, with random faults
//     or without; under a rate limit they stop growing. So slow start ends
//     at the first period whose successes grew by less than half and
//     whose 429/503 are beyond the noise level or, if higher, the share
//     of 429/503 in the periods before (counting one more, so that a
//     first random fault is not enough), judged on 16 answers at least:
//     the rate drops to a quarter. A period in which the callers use
//     less than half of the rate, or a rate of 100000/s, ends slow start
//     too, with an unlimited rate.
//   - Then, per Window (extended until 16 answers are in): if more answers
//     were 429 or 503 than the noise level explains, by 3 standard
//     deviations (while the level is 0: any), the rate decreases once to
//     Decrease times the rate of successful answers (at most Decrease
//     times the rate, at least MinRate), as a probe.
//   - A window ends early, after a tenth of a Window and 16 answers, when
//     a quarter or more of them are 429/503 beyond the noise level: the
//     first window after slow start ended on a limit, a window at an
//     unlimited rate, and a probe window whose share rose beyond the one
//     that caused its decrease. An API gateway's token bucket with a
//     burst of a second's worth hides its limit from slow start until the
//     rate is far above it, and a quarter of that is still above; a full
//     window there would be mostly 429. Each decrease still counts only
//     answers to requests sent at the rate it judges, so two decreases
//     never answer the same overshoot. A window cut short decreases to a
//     quarter of the rate at least (its few successes are a rough count).
//   - A probe window lasts until it has enough answers to expect five
//     429/503 at the share that caused the decrease (ten windows at
//     most), or ends as soon as, after 8 answers, two or more of them
//     and at least half that share are 429/503 (below a rate limit they
//     stop). If it shows that same share (within 3 standard deviations
//     either way), slowing down did not change it: the answers were
//     random faults, not a rate limit. The share of the two windows
//     becomes the noise level, and the decrease is undone; so are the
//     decreases just before it in a row if that level explains the
//     429/503 that caused the first, and slow start resumes if it
//     explains those that ended slow start. Scattered faults therefore
//     never stall delivery. The level then follows lower shares down but
//     never rises otherwise: a share that rises with the rate is a limit.
//     Nine in ten answers refused in both windows is no noise but an
//     outage: the rate stays low (MinRate when nothing succeeds) and
//     doubles every window back to where it was once answers succeed
//     again.
//   - Per Window without 429/503 beyond the noise, while the rate was
//     what limited the requests (they used 80% of it), it increases by a
//     fixed step (2% of the rate set at the last decrease, at least half
//     of MinRate): additive increase, up to MaxRate. Within 3% of the
//     ceiling, the successes per second of the last window that decreased
//     the rate with three quarters of its answers successes (the rate a
//     token bucket refills at), the step is a quarter: a bucket that
//     refilled below the limit lets a higher rate through until it is
//     empty, and full steps all that time would overshoot far. After
//     slow start, and after the first decrease from an unlimited rate,
//     the climb halves the way back to the rate that was throttled (by an
//     eighth per window at most) instead.
//   - A Retry-After over PauseThreshold pauses every request until then
//     (Pause), those already waiting for the rate included. A shorter one
//     is for the caller to honour for that request alone, holding no
//     worker while it waits.
//
// A Pacer is safe for concurrent use.
type Pacer struct {
	cfg PacerConfig

	mu         sync.Mutex
	limiter    *rate.Limiter // replaced at every change of rate
	gen        int           // counts the voidings of reserved times
	void       chan struct{} // closed when reserved times are voided
	winStart   time.Time
	answers    int // answers in the current window
	throttled  int // 429/503 answers in the current window
	succeeded  int // 2xx answers in the current window
	sent       int // requests let through in the current window
	noise      float64
	probing    bool       // the last window decreased the rate
	probeFrom  rate.Limit // the rate before that decrease
	probeT     int        // the throttled answers that caused it
	probeN     int        // of that many answers
	chainFrom  rate.Limit // the rate before the first of the decreases in a row
	chainT     int        // the throttled answers that caused that one
	chainN     int        // of that many answers (0: no decreases in a row)
	exitT      int        // throttled answers of the period that ended slow start
	exitN      int        // of that many answers (0: slow start did not end on a limit)
	skip       int        // answers still due to requests let through before the last change of rate
	step       rate.Limit
	pauseUntil time.Time
	pauseWhy   string
	paused     chan struct{} // closed when a pause may have ended
	inFlight   int
	slow       bool       // in slow start
	prevOK     float64    // successful answers per second of the last slow-start period
	slowT      int        // throttled answers in slow start
	slowN      int        // of that many answers
	ceiling    rate.Limit // successes per second of the window that last decreased the rate, when most answers were successes (0: none)
	resumeTo   rate.Limit // the rate before an outage: increases double back to it
	afterSlow  bool       // the current window is the first after slow start ended on a limit
	bicMax     rate.Limit // half the rate that ended slow start, or the rate sent at before the first decrease from an unlimited rate: increases climb back to it faster
	shared     share      // this instance's share of the rate (pacer_share.go)
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
	p := &Pacer{cfg: cfg, limiter: rate.NewLimiter(limit, 1), void: make(chan struct{}), paused: make(chan struct{}), slow: slow}
	p.winStart = cfg.Now()
	p.step = rate.Limit(max(cfg.MinRate, cfg.MaxRate*stepShare))
	return p
}

// Wait blocks until a request may be sent: after any pause and at the
// current rate. It returns ctx's error if ctx ends first, and an error at
// once if the rate would let the request go only after ctx's deadline.
// Every Wait that returns nil must be followed by one Done.
func (p *Pacer) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		now := p.cfg.Now()
		if d := p.pauseUntil.Sub(now); d > 0 {
			resumed := p.paused
			p.mu.Unlock()
			if err := sleep(ctx, d, resumed); err != nil {
				return err
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			p.mu.Unlock()
			return err
		}
		r := p.limiter.ReserveN(now, 1)
		d := r.DelayFrom(now)
		if d == 0 {
			p.letThroughLocked()
			p.mu.Unlock()
			return nil
		}
		if deadline, ok := ctx.Deadline(); ok && deadline.Before(now.Add(d)) {
			r.CancelAt(now)
			p.mu.Unlock()
			return errPastDeadline
		}
		gen, void := p.gen, p.void
		p.mu.Unlock()
		err := sleep(ctx, d, void)
		p.mu.Lock()
		if err != nil {
			r.CancelAt(p.cfg.Now())
			p.mu.Unlock()
			return err
		}
		if p.gen == gen {
			p.letThroughLocked()
			p.mu.Unlock()
			return nil
		}
		// The time reserved was voided (a new rate, a pause): ask again.
		p.mu.Unlock()
	}
}

var errPastDeadline = errors.New("pacer: the rate lets the request go only after the context's deadline")

// sleep waits for d, or until wake is closed. It returns ctx's error if
// ctx ends first.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-wake:
	}
	return nil
}

func (p *Pacer) letThroughLocked() {
	p.inFlight++
	p.sent++
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
		// Sent at the rate before the last change: it says nothing
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

// minAnswers is how many answers a window needs before it is judged (a
// quieter window is extended), and a slow-start period before it ends
// slow start on a limit. Among 8 answers, 6 or more random faults come
// in about 1 of 90 windows at a 30% share of them, 1 of 50 at a third:
// a sync with few requests to send at its start took such clusters for
// a rate limit, and crawled at a few requests per second when its
// requests came (TestPacerRandomFaultsAfterQuietStart).
const minAnswers = 16

// minSlowAnswers is how many answers a slow-start period needs, and a
// probe window to end early on 429/503 that go on.
const minSlowAnswers = 8

// noiseSigmas is how many standard deviations above the noise level the
// throttled answers of a window must be to count as a rate limit: at a
// noise level of 0, any 429 or 503 does.
const noiseSigmas = 3

// probeExpect is how many throttled answers a probe window must expect,
// at the share that caused the decrease, before it is judged: a shorter
// one would see none by chance and take random faults for a rate limit.
const probeExpect = 5

// ceilingNear is how close to the successes per second of the window
// that last decreased the rate (the ceiling) the additive increase slows
// to a quarter of its step.
const ceilingNear = 0.97

// stepShare is the additive increase per window, as a share of the rate
// set at the last decrease.
const stepShare = 0.02

// roll closes the current window if it has ended and adjusts the rate.
// p.mu is held.
func (p *Pacer) roll(now time.Time) {
	elapsed := now.Sub(p.winStart)
	if p.slow {
		// A period needs enough answers to judge, and a tenth of a
		// window unless they already show a rate limit; to end slow
		// start on a limit, as many as a window (minAnswers).
		if p.answers == 0 || p.answers < minSlowAnswers && elapsed < p.cfg.Window {
			return
		}
		_, limited := p.slowLimited(elapsed)
		if limited && p.answers < minAnswers && elapsed < p.cfg.Window {
			return
		}
		if limited || elapsed >= p.cfg.Window/10 {
			p.rollSlow(now, elapsed)
		}
		return
	}
	// A probe window whose 429/503 go on at the share that caused its
	// decrease may end whenever that shows, before a full Window or
	// before the answers a longer probe waits for.
	early := elapsed < p.cfg.Window && p.limitShown(elapsed) || p.noiseShown(elapsed)
	if elapsed < p.cfg.Window && !early {
		return
	}
	need := minAnswers
	if p.probing {
		need = max(need, int(math.Ceil(probeExpect*float64(p.probeN)/float64(p.probeT))))
	}
	if !early && p.answers < need && elapsed < 10*p.cfg.Window {
		return
	}
	p.afterSlow = false
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
	// Nine in ten answers refused, before slowing down and after: the
	// EHR is down (maintenance answering 503 with a short Retry-After
	// or none), not making random faults. Taken for noise, a level of
	// 1 would let every request through at the old rate all through
	// the outage, and hide any rate limit for long after it.
	down := wasProbing && 10*throttled >= 9*answers && 10*p.probeT >= 9*p.probeN
	// A decrease goes to Decrease times the successes per second, at
	// most Decrease times the rate, at least MinRate.
	okRate := rate.Limit(float64(succeeded) / elapsed.Seconds())
	lower := max(rate.Limit(p.cfg.MinRate), min(limit, okRate)*rate.Limit(p.cfg.Decrease))
	switch {
	case down:
		// Stay as slow as the answers say (MinRate when none
		// succeeds), and double back to the old rate once they
		// succeed.
		from := p.probeFrom
		if p.chainN > 0 {
			from = p.chainFrom
		}
		p.decrease(now, lower, throttled, answers)
		p.resumeTo, p.ceiling = from, 0
	case wasProbing && throttled > 0 && sameShare(p.probeT, p.probeN, throttled, answers):
		// Slowing down did not change the share: random faults, not a
		// rate limit. Undo, and learn the level from both windows.
		p.noise = float64(p.probeT+throttled) / float64(p.probeN+answers)
		if p.chainN > 0 && !p.beyondNoise(p.chainT, p.chainN) {
			// The decreases before it in a row were for noise too.
			p.setLimit(now, p.chainFrom)
		} else {
			p.setLimit(now, p.probeFrom)
		}
		p.chainN, p.bicMax, p.ceiling = 0, 0, 0
		if p.exitN > 0 && !p.beyondNoise(p.exitT, p.exitN) {
			// The 429/503 that ended slow start were noise too.
			p.slow, p.prevOK, p.exitN = true, 0, 0
			p.skip = p.inFlight
		}
	case over:
		next := lower
		if early && limit != rate.Inf {
			// The few successes of a window cut short are a rough
			// count: a quarter of the rate at most.
			next = max(next, limit/4)
		}
		p.decrease(now, next, throttled, answers)
		// Most requests went through: the successes are the EHR's
		// rate (a token bucket refilling), and the climb slows down
		// near them. A gateway's burst lets a rate above its limit
		// through until the bucket is empty; climbing at full steps
		// all that time would overshoot far, and the window that
		// finds the bucket empty would see many 429.
		p.ceiling = 0
		if float64(succeeded) >= 0.75*float64(answers) {
			p.ceiling = okRate
		}
		if limit == rate.Inf {
			// The first limit met after slow start ended without one.
			// The successes of such a window, with requests sent in
			// bursts (a request held by its Retry-After goes with the
			// others held as long), say little of the EHR's rate: climb
			// back halfway to the rate requests were sent at, as after
			// slow start, rather than a step a window.
			p.bicMax = rate.Limit(float64(sent) / elapsed.Seconds())
		}
	default:
		p.chainN = 0
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
			if p.ceiling > 0 && limit >= p.ceiling*ceilingNear {
				next = limit + p.step/4
			}
			if p.resumeTo > limit {
				// Back from an outage: double per window to the
				// rate before it.
				next = max(next, min(2*limit, p.resumeTo))
			}
			if p.bicMax > limit {
				// Climbing back after slow start or the first
				// decrease from an unlimited rate: halve the way to
				// the rate that was throttled (BIC), by at most an
				// eighth per window, so that the first overshoot is
				// small.
				next = max(next, min(limit*9/8, limit+(p.bicMax-limit)/2))
			}
			if p.cfg.MaxRate > 0 {
				next = min(next, rate.Limit(p.cfg.MaxRate))
			}
			p.setLimit(now, next)
		}
	}
}

// limitShown reports whether the current window may end before a full
// Window (after a tenth of one, with minAnswers answers or more) because
// a quarter or more of its answers are 429/503 and they show a limit the
// rate is still above: in the first window after slow start ended on a
// limit (when a gateway's burst hid the limit, a quarter of the rate can
// still be far above it), in a window at an unlimited rate, or in a probe
// window whose share of 429/503 rose beyond the one that caused the
// decrease. Every request sent at such a rate until the window ends would
// be refused. p.mu is held.
func (p *Pacer) limitShown(elapsed time.Duration) bool {
	if elapsed < p.cfg.Window/10 || p.answers < minAnswers || 4*p.throttled < p.answers {
		return false
	}
	switch {
	case p.probing:
		return beyond(float64(p.probeT)/float64(p.probeN), p.throttled, p.answers)
	case p.afterSlow || p.limiter.Limit() == rate.Inf:
		return p.beyondNoise(p.throttled, p.answers)
	}
	return false
}

// noiseShown reports whether a probe window may end early (after a tenth
// of a Window, with minSlowAnswers answers or more) because its
// 429/503 went on at the share that caused the decrease: two or more, at
// least half that share. Below a rate limit they stop; random faults go
// on at any rate. The full probe, a Window and answers enough to expect
// probeExpect 429/503, is for a share that dropped: at a low rate it
// lasted seconds while the rows it held back piled up, once or twice in
// every sync under random faults (TestPacerRandomFaultsAfterQuietStart,
// BENCHMARKS.md section 6.6). p.mu is held.
func (p *Pacer) noiseShown(elapsed time.Duration) bool {
	if !p.probing || elapsed < p.cfg.Window/10 || p.answers < minSlowAnswers || p.throttled < 2 {
		return false
	}
	if 2*p.throttled*p.probeN < p.answers*p.probeT {
		return false
	}
	return sameShare(p.probeT, p.probeN, p.throttled, p.answers)
}

// decrease lowers the rate to next, if lower, as a probe (see roll).
// throttled of answers caused it.
func (p *Pacer) decrease(now time.Time, next rate.Limit, throttled, answers int) {
	limit := p.limiter.Limit()
	if next >= limit {
		return
	}
	p.probing, p.probeFrom, p.probeT, p.probeN = true, limit, throttled, answers
	p.bicMax, p.resumeTo = 0, 0
	if p.chainN == 0 {
		p.chainFrom, p.chainT, p.chainN = limit, throttled, answers
	}
	p.setLimit(now, next)
	p.step = max(rate.Limit(p.cfg.MinRate)/2, next*rate.Limit(stepShare))
	// The requests in flight (this answer's included) went at the old
	// rate; those waiting are given a time at the new one.
	p.skip = p.inFlight
}

// slowStartCap ends slow start: a rate this high is no limit.
const slowStartCap = 100000

// beyondNoise reports whether throttled of answers are more than the
// noise level explains (binomial: the expected count plus noiseSigmas
// standard deviations; at a level of 0, any).
func (p *Pacer) beyondNoise(throttled, answers int) bool {
	return beyond(p.noise, throttled, answers)
}

// beyond reports whether throttled of answers are more than a share level
// explains: the expected count plus noiseSigmas standard deviations.
func beyond(level float64, throttled, answers int) bool {
	n := float64(answers)
	return float64(throttled) > level*n+noiseSigmas*math.Sqrt(n*level*(1-level))
}

// sameShare reports whether t1 of n1 answers are the share t0 of n0 was:
// within noiseSigmas standard deviations of the count that share
// predicts, either way (a share that rises after a decrease is a limit
// not yet reached).
func sameShare(t0, n0, t1, n1 int) bool {
	share := float64(t0) / float64(n0)
	n := float64(n1)
	return math.Abs(float64(t1)-share*n) <= noiseSigmas*math.Sqrt(n*share*(1-share))
}

// rollSlow closes a slow-start period (see Pacer). p.mu is held.
//
// The rate drops to a quarter at the end: below the limit even when the
// EHR's burst made the last periods look better.
//
// A period counts only answers to requests let through in it, and its
// successes per second are the rate requests were let through at times
// the share of successful answers: both are exact however long requests
// take.
func (p *Pacer) rollSlow(now time.Time, elapsed time.Duration) {
	throttled, answers, sent := p.throttled, p.answers, p.sent
	limit := p.limiter.Limit()
	okRate, limited := p.slowLimited(elapsed)
	p.slowT += throttled
	p.slowN += answers
	p.winStart, p.answers, p.throttled, p.succeeded, p.sent = now, 0, 0, 0, 0
	sentRate := float64(sent) / elapsed.Seconds()
	p.prevOK = okRate
	switch {
	case limited:
		p.slow = false
		p.exitT, p.exitN = throttled, answers
		p.decrease(now, max(rate.Limit(p.cfg.MinRate), limit/4), throttled, answers)
		p.bicMax = limit / 2 // the last rate that did not look limited
		// Not a probe: a slow-start period is short, and when a
		// gateway's burst let the rate run far past its limit, a
		// quarter of it is still above the limit and shows the same
		// share of 429 as the period did. Taking that for random
		// faults would resume slow start into the limit; the next
		// window judges the new rate as any other does (a decrease
		// from it is a probe, and undoes this one too if the answers
		// were noise).
		p.probing = false
		p.afterSlow = true
	case sentRate >= 0.5*float64(limit):
		// The rate holds the callers back: double it.
		p.skip = p.inFlight
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

// slowLimited returns the successful answers per second of the current
// slow-start period, and whether they show a rate limit: successes that
// grew by less than half since the last period, with 429/503 beyond the
// noise level or, if higher, the share of 429/503 in the periods before
// counting one more. p.mu is held.
func (p *Pacer) slowLimited(elapsed time.Duration) (okRate float64, limited bool) {
	okRate = float64(p.sent) / elapsed.Seconds() * float64(p.succeeded) / float64(p.answers)
	level := max(p.noise, float64(p.slowT+1)/float64(p.slowN+1))
	return okRate, okRate < 1.5*p.prevOK && beyond(level, p.throttled, p.answers)
}

// setLimit sets the rate. It applies to the requests already waiting as
// well: their times, reserved at the old rate, are voided and they reserve
// again at the new one, the first a full interval from now.
func (p *Pacer) setLimit(now time.Time, l rate.Limit) {
	if l == p.limiter.Limit() {
		return
	}
	p.limiter = rate.NewLimiter(l, 1)
	p.limiter.ReserveN(now, 1)
	p.voidLocked()
}

// voidLocked voids every time reserved by a waiting Wait. p.mu is held.
func (p *Pacer) voidLocked() {
	p.gen++
	close(p.void)
	p.void = make(chan struct{})
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
		p.voidLocked() // the requests waiting for the rate wait for the pause
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
