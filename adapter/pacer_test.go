package adapter

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
)

// The tests of the Pacer run in synctest bubbles: time is virtual, so a
// minute of simulated traffic takes a fraction of a second and every
// duration asserted is exact. Inside a bubble time.Now is the fake clock,
// which is why each test passes it as PacerConfig.Now.

// simEHR is a simulated EHR: it answers 429 when its token bucket (its
// rate limit) is empty, a random 503 or 429 with probability faults, and
// 200 otherwise. It is safe for concurrent use.
type simEHR struct {
	mu     sync.Mutex
	bucket *rate.Limiter // nil: no rate limit
	faults float64
	rng    *rand.Rand
}

// newSimEHR returns an EHR limited to r requests per second with a burst
// of burst (r 0: unlimited) and a share faults of random faults drawn from
// seed.
func newSimEHR(r float64, burst int, faults float64, seed uint64) *simEHR {
	e := &simEHR{faults: faults, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	if r > 0 {
		e.bucket = rate.NewLimiter(rate.Limit(r), burst)
	}
	return e
}

func (e *simEHR) answer() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.faults > 0 && e.rng.Float64() < e.faults {
		if e.rng.IntN(2) == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusTooManyRequests
	}
	if e.bucket != nil && !e.bucket.Allow() {
		return http.StatusTooManyRequests
	}
	return http.StatusOK
}

// simResult counts what the workers of a simulated run saw.
type simResult struct {
	sent      int     // requests let through by Wait
	ok        int     // 200 answers
	throttled int     // 429 and 503 answers
	slow      int     // requests let through in slow start
	slowT     int     // 429 and 503 answers to those
	maxRate   float64 // the highest finite rate
}

// runSim drives p with workers goroutines that loop Wait -> EHR -> Done
// for d, every request taking latency (half of it to reach the EHR, half
// to come back). It must run inside a synctest bubble.
func runSim(p *Pacer, e *simEHR, workers int, latency, d time.Duration) simResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu  sync.Mutex
		res simResult
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				if err := p.Wait(ctx); err != nil {
					return
				}
				// Read just after Wait: a roll by another worker in
				// between can misfile a request or two; the counts
				// asserted on are far larger.
				p.mu.Lock()
				slow := p.slow
				p.mu.Unlock()
				time.Sleep(latency / 2)
				st := e.answer()
				time.Sleep(latency - latency/2)
				p.Done(st, 0)
				r := p.State().Rate

				mu.Lock()
				res.sent++
				throttled := st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable
				if st == http.StatusOK {
					res.ok++
				}
				if throttled {
					res.throttled++
				}
				if slow {
					res.slow++
					if throttled {
						res.slowT++
					}
				}
				if !math.IsInf(r, 1) {
					res.maxRate = max(res.maxRate, r)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res
}

// request is one Wait and Done with status, for tests that drive the pacer
// by hand.
func request(t *testing.T, p *Pacer, status int) {
	t.Helper()
	if err := p.Wait(t.Context()); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	p.Done(status, 0)
}

// TestPacerSlowStart: with no MaxRate the pacer starts at StartRate,
// doubles every period while the callers use the whole rate, drops below
// the rate at which it found the EHR's rate limit, and becomes unlimited
// when the callers do not use the rate. The callers are one goroutine
// (rateLog) doing Wait then Done, so every Wait takes the rate's interval
// of virtual time; the assertions hold whatever the exact period
// boundaries.
func TestPacerSlowStart(t *testing.T) {
	t.Run("doubles while the callers use the rate", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{Now: time.Now})
			if r := p.State().Rate; r != 10 {
				t.Fatalf("initial rate = %v, want StartRate 10", r)
			}
			l := newRateLog(t, p)
			l.run(always(http.StatusOK), forTime(2*time.Second))
			n := doublings(t, l.changes, 10)
			if n != len(l.changes) {
				t.Fatalf("a change that is not a doubling: %+v", l.changes)
			}
			// A period needs minAnswers answers: 8 requests at 10/s
			// take 0.7s.
			if first := l.changes[0].at; first < 700*time.Millisecond {
				t.Errorf("first doubling at %v, before 8 answers at 10/s", first)
			}
			// 0.7s at 10/s, 0.4s at 20/s, 0.2s at 40/s, then a period
			// each: at least 6 doublings in 2s.
			if n < 6 {
				t.Errorf("%d doublings in 2s, want at least 6: %+v", n, l.changes)
			}
			t.Logf("%d doublings in 2s, to %v/s", n, l.rate())
		})
	})

	t.Run("StartRate is configurable", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{StartRate: 4, Now: time.Now})
			if r := p.State().Rate; r != 4 {
				t.Fatalf("initial rate = %v, want StartRate 4", r)
			}
			l := newRateLog(t, p)
			l.run(always(http.StatusOK), forTime(3*time.Second))
			if n := doublings(t, l.changes, 4); n < 2 {
				t.Errorf("%d doublings in 3s from 4/s, want at least 2: %+v", n, l.changes)
			}
		})
	})

	t.Run("a few 429s in an early period do not end it", func(t *testing.T) {
		// After a first period of 8 answers without a 429, 3 of the 8
		// answers of the second are within what so few answers tell
		// about the noise, though they halve the growth of successes.
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{Now: time.Now})
			l := newRateLog(t, p)
			n := 0
			l.run(func() int {
				if n++; n >= 10 && n <= 12 { // the second period, at 20/s
					return http.StatusTooManyRequests
				}
				return http.StatusOK
			}, forTime(2*time.Second))
			if d := doublings(t, l.changes, 10); d != len(l.changes) || d < 6 {
				t.Errorf("three 429s ended slow start: %d doublings, changes %+v", d, l.changes)
			}
		})
	})

	// A burst of a tenth of a second: found with a handful of 429s.
	t.Run("drops below the rate that found the limit", func(t *testing.T) {
		dropsBelowLimit(t, 10, 0.05)
	})
	// A burst of a whole second: the limit shows only once the rate is
	// far above it, and a quarter of that rate is still above it. The
	// window after slow start must not take the same share of 429 at a
	// quarter of the rate for random faults and resume slow start; it
	// ends as soon as its answers show the limit. The 429 of the whole
	// run of 5s are those of finding a limit that a second of burst hid.
	t.Run("drops below the rate that found the limit, a burst of 1s", func(t *testing.T) {
		dropsBelowLimit(t, 100, 0.1)
	})

	t.Run("unlimited when the callers do not use the rate", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			latency time.Duration
			want    []float64 // the rates before +Inf
		}{
			{"1/s against 10/s", time.Second, []float64{10}},
			// 8/s uses over half of 10/s, so it doubles, not of 20/s.
			{"8/s against 10/s then 20/s", 125 * time.Millisecond, []float64{10, 20}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					p := NewPacer(PacerConfig{Now: time.Now})
					l := newRateLog(t, p)
					l.run(func() int {
						time.Sleep(tc.latency)
						return http.StatusOK
					}, func() bool { return math.IsInf(l.rate(), 1) || time.Since(l.start) > 10*time.Second })
					if !math.IsInf(l.rate(), 1) {
						t.Fatalf("rate %v/s after 10s, want +Inf: %+v", l.rate(), l.changes)
					}
					var got []float64
					for _, c := range l.changes {
						got = append(got, c.from)
					}
					if len(got) != len(tc.want) || !slices.Equal(got, tc.want) {
						t.Errorf("rates before +Inf = %v, want %v: %+v", got, tc.want, l.changes)
					}
				})
			})
		}
	})
}

// TestPacerTracksRateLimit runs workers against an EHR with a token-bucket
// rate limit: the pacer must deliver close to that rate with hardly any
// 429.
//
// The pacer starts with slow start (no MaxRate), so the bar of under 1%
// 429s holds over the whole run, the start included.
func TestPacerTracksRateLimit(t *testing.T) {
	const (
		workers  = 16
		latency  = 25 * time.Millisecond // workers alone: 640 requests/s
		duration = 60 * time.Second
	)
	for _, tc := range []struct {
		name     string
		rate     float64
		burst    int
		maxShare float64 // of 429 answers
	}{
		// A burst of a tenth of a second, as API gateways allow.
		{"50/s", 50, 5, 0.01},
		{"200/s", 200, 20, 0.01},
		// A burst of a whole second's worth, a token bucket's usual
		// size: slow start runs far past the limit before the first
		// 429, and a quarter of that rate is still above it. Finding
		// it costs 30-100 429s, 1% of a minute's requests by
		// themselves; then the climb slows down near the EHR's rate,
		// for the bucket refilled below it hides the limit again.
		{"50/s/burst-1s", 50, 50, 0.015},
		{"200/s/burst-1s", 200, 200, 0.015},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{Now: time.Now})
				e := newSimEHR(tc.rate, tc.burst, 0, 1)
				res := runSim(p, e, workers, latency, duration)

				delivered := float64(res.ok) / duration.Seconds()
				t.Logf("R=%v: delivered %.1f/s (%.3f R); 429 %.2f%% (%d of %d), %d of them in slow start (%d requests); "+
					"highest rate %.1f/s, final %.1f/s",
					tc.rate, delivered, delivered/tc.rate,
					100*float64(res.throttled)/float64(res.sent), res.throttled, res.sent, res.slowT, res.slow,
					res.maxRate, p.State().Rate)

				if delivered < 0.9*tc.rate {
					t.Errorf("delivered %.1f/s, want at least 0.9 R = %.1f/s", delivered, 0.9*tc.rate)
				}
				if overall := float64(res.throttled) / float64(res.sent); overall >= tc.maxShare {
					t.Errorf("%d of %d answers (%.2f%%) were 429, want under %.1f%%", res.throttled, res.sent, 100*overall, 100*tc.maxShare)
				}
			})
		})
	}
}

// TestPacerRandomFaultsDoNotStall: an EHR without a rate limit that
// answers 30% of requests (and, to show the detector is not tuned to one
// level, 2% and 60%) with a random 503 or 429. The pacer must tell these
// from a rate limit and keep letting requests through at nearly the rate
// the same workers reach when the EHR makes no faults.
func TestPacerRandomFaultsDoNotStall(t *testing.T) {
	const (
		workers  = 16
		latency  = 25 * time.Millisecond
		duration = 30 * time.Second
	)
	for _, tc := range []struct {
		name    string
		maxRate float64
		faults  float64
		seed    uint64
	}{
		{"unlimited/30%/seed1", 0, 0.3, 1},
		{"unlimited/30%/seed2", 0, 0.3, 2},
		{"max300/30%/seed1", 300, 0.3, 1},
		{"max300/30%/seed2", 300, 0.3, 2},
		{"unlimited/2%", 0, 0.02, 1},
		{"max300/2%", 300, 0.02, 1},
		{"unlimited/60%", 0, 0.6, 1},
		{"max300/60%", 300, 0.6, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clean, faulty simResult
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{MaxRate: tc.maxRate, Now: time.Now})
				clean = runSim(p, newSimEHR(0, 0, 0, tc.seed), workers, latency, duration)
			})
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{MaxRate: tc.maxRate, Now: time.Now})
				faulty = runSim(p, newSimEHR(0, 0, tc.faults, tc.seed), workers, latency, duration)
			})
			cleanRate := float64(clean.sent) / duration.Seconds()
			faultyRate := float64(faulty.sent) / duration.Seconds()
			t.Logf("max rate %v, %.0f%% faults (%.1f%% seen), seed %d: %.1f requests/s let through, %.1f/s without faults: %.3f",
				tc.maxRate, 100*tc.faults, 100*float64(faulty.throttled)/float64(faulty.sent), tc.seed, faultyRate, cleanRate, faultyRate/cleanRate)
			if faultyRate < 0.8*cleanRate {
				t.Errorf("with %.0f%% random faults %.1f requests/s were let through, want at least 0.8 x %.1f/s (no faults)", 100*tc.faults, faultyRate, cleanRate)
			}
		})
	}
}

// doublings checks that changes, up to the first that is not one, double
// the rate from want0, at least a slow-start period (a tenth of the
// default Window) apart, and returns how many there are.
func doublings(t *testing.T, changes []rateChange, want0 float64) int {
	t.Helper()
	const period = 100 * time.Millisecond
	n := 0
	for i, c := range changes {
		if c.to != 2*c.from {
			break
		}
		if i == 0 && c.from != want0 {
			t.Fatalf("first doubling from %v, want from StartRate %v", c.from, want0)
		}
		if i > 0 && c.at-changes[i-1].at < period {
			t.Fatalf("doublings %v apart, want at least a period (%v): %+v", c.at-changes[i-1].at, period, changes)
		}
		n++
	}
	return n
}

// dropsBelowLimit is TestPacerSlowStart's case of a rate limit of 100/s
// with a burst of burst: slow start ends above the limit, and the rate is
// under it within a window (at once after the first drop with a small
// burst), never to rise above where the limit was found, with at most
// maxShare of the answers 429.
func dropsBelowLimit(t *testing.T, burst int, maxShare float64) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 100
		p := NewPacer(PacerConfig{Now: time.Now})
		e := newSimEHR(limit, burst, 0, 1)
		l := newRateLog(t, p)
		answers, throttled := 0, 0
		l.run(func() int {
			st := e.answer()
			answers++
			if st == http.StatusTooManyRequests {
				throttled++
			}
			return st
		}, forTime(5*time.Second))
		n := doublings(t, l.changes, 10)
		if n == len(l.changes) {
			t.Fatalf("no decrease with a rate limit of %v/s: %+v", limit, l.changes)
		}
		found, drop := l.changes[n-1].to, l.changes[n]
		if found <= limit {
			t.Fatalf("slow start ended at %v/s, under the limit %v/s: %+v", found, limit, l.changes)
		}
		if drop.to >= found {
			t.Fatalf("slow start ended at %v/s with a change to %v/s, want a drop", found, drop.to)
		}
		under := -1
		for i, c := range l.changes[n:] {
			if c.to <= limit {
				under = n + i
				break
			}
		}
		switch {
		case under < 0:
			t.Errorf("the rate never went under the limit %v/s: %+v", limit, l.changes)
		case l.changes[under].at-drop.at > time.Second:
			t.Errorf("under the limit at %v, more than a window after slow start ended (%v): %+v", l.changes[under].at, drop.at, l.changes)
		}
		// No more slow start: the rate stays under the one that found
		// the limit.
		if l.max > found {
			t.Errorf("rate rose to %v/s after finding the limit at %v/s", l.max, found)
		}
		for _, c := range l.changes[n+1:] {
			if c.to > found {
				t.Errorf("rate back to %v/s at %v, above %v/s where the limit was found: %+v", c.to, c.at, found, l.changes)
				break
			}
		}
		if float64(throttled) > maxShare*float64(answers) {
			t.Errorf("%d of %d answers were 429, want at most %.0f%%", throttled, answers, 100*maxShare)
		}
		t.Logf("limit %v/s, burst %d: found at %v/s, dropped to %v/s, under the limit at %v; %d of %d answers 429",
			limit, burst, found, drop.to, l.changes[max(under, n)].at, throttled, answers)
	})
}

// TestPacerOutageIsNotNoise: an EHR that answers every request 503 for
// 20s (maintenance with a short Retry-After, or none) is down, not making
// random faults: the pacer must not take the share of 1 for a noise level
// and send at the old rate all through the outage, and must be back near
// the old rate within a minute once the EHR answers again.
func TestPacerOutageIsNotNoise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxRate = 100
		p := NewPacer(PacerConfig{MaxRate: maxRate, Now: time.Now})
		l := newRateLog(t, p)
		l.run(always(http.StatusOK), forTime(3*time.Second))

		outage := time.Since(l.start)
		sent := 0
		l.run(func() int {
			if time.Since(l.start) > outage+10*time.Second {
				sent++ // the second half of the outage
			}
			return http.StatusServiceUnavailable
		}, forTime(outage+20*time.Second))
		if r := l.rate(); r > maxRate/10 {
			t.Errorf("rate %v/s at the end of a 20s outage, want at most a tenth of %v/s: %+v", r, maxRate, l.changes)
		}
		if sent > 10*10 {
			t.Errorf("%d requests in the outage's last 10s, want at most 10/s", sent)
		}
		p.mu.Lock()
		noise := p.noise
		p.mu.Unlock()
		if noise > 0.5 {
			t.Errorf("noise level %v after the outage, want the outage not taken for noise", noise)
		}

		back := time.Since(l.start)
		l.run(always(http.StatusOK), func() bool {
			return l.rate() >= 0.9*maxRate || time.Since(l.start) > back+time.Minute
		})
		if r := l.rate(); r < 0.9*maxRate {
			t.Errorf("rate %v/s a minute after the outage, want back to at least 0.9 x %v/s: %+v", r, maxRate, l.changes)
		}
		t.Logf("rate at the end of the outage: low; back to %.0f/s %v after it", l.rate(), time.Since(l.start)-back)
	})
}

// rateLog drives a pacer from one goroutine, Wait then Done at once, and
// records every rate change.
type rateLog struct {
	t       *testing.T
	p       *Pacer
	start   time.Time
	changes []rateChange
	max     float64
}

type rateChange struct {
	at       time.Duration
	from, to float64
}

func newRateLog(t *testing.T, p *Pacer) *rateLog {
	return &rateLog{t: t, p: p, start: time.Now(), max: p.State().Rate}
}

// run sends requests answered by answer until until returns true.
func (l *rateLog) run(answer func() int, until func() bool) {
	l.t.Helper()
	for !until() {
		before := l.p.State().Rate
		request(l.t, l.p, answer())
		after := l.p.State().Rate
		l.max = max(l.max, after)
		if after != before {
			l.changes = append(l.changes, rateChange{time.Since(l.start), before, after})
		}
	}
}

func (l *rateLog) rate() float64 { return l.p.State().Rate }

func always(status int) func() int { return func() int { return status } }

func forTime(d time.Duration) func() bool {
	end := time.Now().Add(d)
	return func() bool { return !time.Now().Before(end) }
}

// TestPacerMaxRateAdditiveIncrease: with MaxRate the rate starts there,
// never exceeds it, and after a decrease climbs back by a constant step
// per window.
func TestPacerMaxRateAdditiveIncrease(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxRate float64
	}{
		{"max100", 100},
		{"max400", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{MaxRate: tc.maxRate, Now: time.Now})
				if r := p.State().Rate; r != tc.maxRate {
					t.Fatalf("initial rate = %v, want MaxRate %v", r, tc.maxRate)
				}
				l := newRateLog(t, p)
				l.run(always(http.StatusOK), forTime(5*time.Second))
				if len(l.changes) != 0 || l.rate() != tc.maxRate {
					t.Fatalf("rate changed with only 200s at MaxRate: %+v", l.changes)
				}

				// Every other answer a 429 until the rate decreases.
				n := 0
				l.run(func() int {
					n++
					if n%2 == 0 {
						return http.StatusTooManyRequests
					}
					return http.StatusOK
				}, func() bool { return l.rate() < tc.maxRate })
				low := l.rate()
				if low > 0.9*tc.maxRate {
					t.Fatalf("rate after a window of half 429s = %v, want at most 0.9 x %v", low, tc.maxRate)
				}

				// Only 200s: the rate climbs back one window at a time.
				l.changes = nil
				l.run(always(http.StatusOK), func() bool { return l.rate() >= tc.maxRate })
				if len(l.changes) < 10 {
					t.Fatalf("climb back from %v to %v took %d changes, want at least 10 steps: %+v", low, tc.maxRate, len(l.changes), l.changes)
				}
				step := l.changes[0].to - l.changes[0].from
				if want := 0.02 * low; math.Abs(step-want) > 1e-9 {
					t.Errorf("first step = %v, want 2%% of the rate set at the decrease (%v)", step, want)
				}
				last := len(l.changes) - 1 // the last step may stop at MaxRate
				for i, c := range l.changes[:last] {
					if d := c.to - c.from; math.Abs(d-step) > 1e-9 {
						t.Fatalf("step %d = %v (%v -> %v), want a constant %v (additive)", i, d, c.from, c.to, step)
					}
					if i > 0 {
						if gap := c.at - l.changes[i-1].at; gap < time.Second {
							t.Fatalf("steps %d and %d %v apart, want one per window (1s)", i-1, i, gap)
						}
					}
				}
				// Additive, so each step is a smaller ratio than the last.
				r0 := l.changes[1].to / l.changes[1].from
				r1 := l.changes[last-1].to / l.changes[last-1].from
				if !(r1 < r0) {
					t.Errorf("growth ratio %v at the end not below %v at the start: multiplicative", r1, r0)
				}
				if l.max > tc.maxRate || l.rate() != tc.maxRate {
					t.Errorf("highest rate %v, final %v, want at most and back at MaxRate %v", l.max, l.rate(), tc.maxRate)
				}
				t.Logf("decreased to %.1f/s, climbed back to %.0f/s in %d steps of %.3f/s", low, tc.maxRate, len(l.changes), step)

				// More windows of 200s at MaxRate stay there.
				l.run(always(http.StatusOK), forTime(3*time.Second))
				if l.max > tc.maxRate {
					t.Errorf("rate went to %v above MaxRate %v", l.max, tc.maxRate)
				}
			})
		})
	}
}

// TestPacerDecreasesOncePerWindow: the pacer at a rate far above the EHR's
// rate limit gets hundreds of 429s in one window and decreases once, when
// the window ends; later decreases are at least a window apart.
func TestPacerDecreasesOncePerWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{
		{"window1s", time.Second},
		{"window250ms", 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{MaxRate: 1000, Window: tc.window, Now: time.Now})
				e := newSimEHR(100, 10, 0, 1)
				l := newRateLog(t, p)
				throttledBefore := 0
				l.run(func() int {
					st := e.answer()
					if st == http.StatusTooManyRequests && len(l.changes) == 0 {
						throttledBefore++
					}
					return st
				}, forTime(10*time.Second))

				if len(l.changes) == 0 {
					t.Fatal("the rate never changed")
				}
				first := l.changes[0]
				if first.to >= first.from {
					t.Fatalf("first change %+v is not a decrease", first)
				}
				if first.at < tc.window {
					t.Errorf("first decrease at %v, before the window (%v) ended", first.at, tc.window)
				}
				if least := int(0.5 * tc.window.Seconds() * 1000); throttledBefore < least {
					t.Fatalf("only %d 429s before the first decrease, want at least %d for the test to mean anything", throttledBefore, least)
				}
				var last time.Duration = -1
				decreases := 0
				for _, c := range l.changes {
					if c.to >= c.from {
						continue
					}
					decreases++
					if last >= 0 && c.at-last < tc.window {
						t.Errorf("decreases at %v and %v, less than a window (%v) apart: %+v", last, c.at, tc.window, l.changes)
					}
					last = c.at
				}
				t.Logf("%d 429s in the first window, then %d decreases in 10s; first %.0f -> %.1f at %v",
					throttledBefore, decreases, first.from, first.to, first.at)
			})
		})
	}
}

// TestPacerPause covers pauses: a Retry-After over PauseThreshold holds
// every Wait until it ends, a shorter one holds none, Resume ends a pause
// early, and a Wait whose context ends during a pause returns its error.
//
// The pacers have a MaxRate of 1e9/s: a rate so high that it holds
// requests back by a nanosecond at most (slow start would start at
// 10/s), so that what is tested is pauses, not the rate.
func TestPacerPause(t *testing.T) {
	const unpaced = 1e9
	t.Run("long Retry-After pauses every Wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{MaxRate: unpaced, Now: time.Now})
			start := time.Now()
			request(t, p, http.StatusOK)
			if err := p.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			end := time.Now().Add(2 * time.Minute) // the answer comes now
			p.Done(http.StatusServiceUnavailable, 2*time.Minute)
			if s := p.State(); !s.PausedUntil.Equal(end) || s.PauseReason != "retry_after" {
				t.Fatalf("state = %+v, want paused until %v for retry_after", s, end)
			}
			var wg sync.WaitGroup
			returned := make([]time.Time, 8)
			for i := range returned {
				wg.Go(func() {
					if err := p.Wait(t.Context()); err != nil {
						t.Errorf("Wait: %v", err)
					}
					returned[i] = time.Now()
					p.Done(http.StatusOK, 0)
				})
			}
			time.Sleep(time.Minute)
			synctest.Wait()
			if n := p.State().InFlight; n != 0 {
				t.Fatalf("%d requests let through a minute into a 2-minute pause", n)
			}
			wg.Wait()
			for i, at := range returned {
				if at.Before(end) {
					t.Errorf("Wait %d returned at %v, before the pause ended at +2m", i, at.Sub(start))
				}
			}
			if s := p.State(); !s.PausedUntil.IsZero() || s.PauseReason != "" {
				t.Errorf("state after the pause = %+v, want no pause", s)
			}
		})
	})
	for _, ra := range []time.Duration{time.Second, 10 * time.Second, 30 * time.Second} {
		t.Run("Retry-After "+ra.String()+" pauses nothing", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{MaxRate: unpaced, Now: time.Now}) // PauseThreshold 30s
				if err := p.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				p.Done(http.StatusTooManyRequests, ra)
				if s := p.State(); !s.PausedUntil.IsZero() {
					t.Fatalf("state = %+v, want no pause", s)
				}
				time.Sleep(time.Millisecond) // past the rate's nanosecond
				start := time.Now()
				request(t, p, http.StatusOK)
				if d := time.Since(start); d != 0 {
					t.Errorf("Wait took %v after a Retry-After of %v, want 0", d, ra)
				}
			})
		})
	}
	t.Run("long Retry-After holds the Waits already waiting for the rate", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{MaxRate: 1, Now: time.Now})
			if err := p.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			// Three Waits get times at 1/s: +1s, +2s, +3s.
			var wg sync.WaitGroup
			returned := make([]time.Time, 3)
			for i := range returned {
				wg.Go(func() {
					if err := p.Wait(t.Context()); err != nil {
						t.Errorf("Wait: %v", err)
					}
					returned[i] = time.Now()
					p.Done(http.StatusOK, 0)
				})
			}
			synctest.Wait()
			end := time.Now().Add(time.Minute)
			p.Done(http.StatusServiceUnavailable, time.Minute)
			wg.Wait()
			for i, at := range returned {
				if at.Before(end) {
					t.Errorf("Wait %d returned at %v, before the pause ended at %v", i, at, end)
				}
			}
		})
	})
	t.Run("PauseThreshold is configurable", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{MaxRate: unpaced, PauseThreshold: 5 * time.Second, Now: time.Now})
			if err := p.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			p.Done(http.StatusTooManyRequests, 10*time.Second)
			start := time.Now()
			request(t, p, http.StatusOK)
			if d := time.Since(start); d != 10*time.Second {
				t.Errorf("Wait took %v, want the 10s Retry-After", d)
			}
		})
	})
	t.Run("Resume ends a pause early", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{MaxRate: unpaced, Now: time.Now})
			start := time.Now()
			p.Pause(start.Add(time.Hour), "maintenance")
			done := make(chan time.Duration)
			for range 3 {
				go func() {
					if err := p.Wait(t.Context()); err != nil {
						t.Errorf("Wait: %v", err)
					}
					done <- time.Since(start)
				}()
			}
			time.Sleep(5 * time.Second)
			synctest.Wait()
			select {
			case d := <-done:
				t.Fatalf("Wait returned at %v during the pause", d)
			default:
			}
			p.Resume()
			for range 3 {
				// The three go a nanosecond apart, at the rate.
				if d := <-done; d < 5*time.Second || d > 5*time.Second+time.Microsecond {
					t.Errorf("Wait returned at %v, want at Resume (5s)", d)
				}
			}
			if s := p.State(); !s.PausedUntil.IsZero() || s.PauseReason != "" {
				t.Errorf("state after Resume = %+v, want no pause", s)
			}
		})
	})
	t.Run("a pause is never shortened", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{MaxRate: unpaced, Now: time.Now})
			end := time.Now().Add(time.Hour)
			p.Pause(end, "maintenance")
			p.Pause(time.Now().Add(time.Minute), "outage")
			if s := p.State(); !s.PausedUntil.Equal(end) || s.PauseReason != "maintenance" {
				t.Errorf("state = %+v, want the longer pause kept", s)
			}
		})
	})
	for _, tc := range []struct {
		name   string
		ctx    func(context.Context) (context.Context, context.CancelFunc)
		cancel bool // cancel at 3s; else the context ends by itself then
		want   error
	}{
		{"canceled", context.WithCancel, true, context.Canceled},
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 3*time.Second)
		}, false, context.DeadlineExceeded},
	} {
		t.Run("context "+tc.name+" during a pause", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{MaxRate: unpaced, Now: time.Now})
				start := time.Now()
				p.Pause(start.Add(time.Hour), "outage")
				ctx, cancel := tc.ctx(t.Context())
				defer cancel()
				type result struct {
					err error
					at  time.Duration
				}
				done := make(chan result)
				go func() {
					err := p.Wait(ctx)
					done <- result{err, time.Since(start)}
				}()
				if tc.cancel {
					time.Sleep(3 * time.Second)
					cancel()
				}
				r := <-done
				if !errors.Is(r.err, tc.want) || r.err != ctx.Err() {
					t.Errorf("Wait = %v, want ctx.Err() = %v", r.err, tc.want)
				}
				if r.at != 3*time.Second {
					t.Errorf("Wait returned at %v, want when the context ended (3s)", r.at)
				}
				if n := p.State().InFlight; n != 0 {
					t.Errorf("InFlight = %d after a failed Wait, want 0", n)
				}
			})
		})
	}
}

// TestPacerNewRateAppliesToWaiting: the Waits already waiting for the
// rate go at a new rate, lower or higher, not at the times they had.
func TestPacerNewRateAppliesToWaiting(t *testing.T) {
	for _, tc := range []struct {
		name     string
		to       float64
		from, by time.Duration // the first at least from, the others at least by apart
		within   time.Duration // all within
	}{
		{"lower", 1, time.Second, time.Second, 4 * time.Second},
		{"higher", 100, 0, 10 * time.Millisecond, 40 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := NewPacer(PacerConfig{MaxRate: 10, Now: time.Now})
				if err := p.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				// Four Waits get times at 10/s: +100ms to +400ms.
				var (
					wg  sync.WaitGroup
					mu  sync.Mutex
					ats []time.Duration
				)
				start := time.Now()
				for range 4 {
					wg.Go(func() {
						if err := p.Wait(t.Context()); err != nil {
							t.Errorf("Wait: %v", err)
						}
						mu.Lock()
						ats = append(ats, time.Since(start))
						mu.Unlock()
					})
				}
				synctest.Wait()
				p.mu.Lock()
				p.setLimit(time.Now(), rate.Limit(tc.to))
				p.mu.Unlock()
				wg.Wait()
				slices.Sort(ats)
				if ats[0] < tc.from || ats[len(ats)-1] > tc.within {
					t.Errorf("Waits returned at %v, want from %v, within %v", ats, tc.from, tc.within)
				}
				for i := 1; i < len(ats); i++ {
					if ats[i]-ats[i-1] < tc.by {
						t.Errorf("Waits returned at %v, want %v apart at %v/s", ats, tc.by, tc.to)
						break
					}
				}
			})
		})
	}
}

// TestPacerWaitDeadline: a Wait that the rate would let go only after its
// context's deadline returns an error at once; one that it lets go before
// waits.
func TestPacerWaitDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPacer(PacerConfig{MaxRate: 1, Now: time.Now})
		request(t, p, http.StatusOK) // the next may go in 1s
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := p.Wait(ctx); err == nil {
			t.Fatal("Wait with a deadline before the rate's time returned nil")
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Wait returned its error after %v, want at once", d)
		}
		if n := p.State().InFlight; n != 0 {
			t.Errorf("InFlight = %d after a failed Wait, want 0", n)
		}
		ctx, cancel = context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if err := p.Wait(ctx); err != nil {
			t.Fatalf("Wait with a deadline after the rate's time: %v", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("Wait returned after %v, want at the rate's time (1s)", d)
		}
	})
}

// TestPacerState: InFlight counts Waits not yet Done; PausedUntil and
// PauseReason show a pause while it lasts.
func TestPacerState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPacer(PacerConfig{MaxRate: 10, Now: time.Now})
		want := PacerState{Rate: 10}
		check := func(what string) {
			t.Helper()
			if s := p.State(); s != want {
				t.Fatalf("%s: state = %+v, want %+v", what, s, want)
			}
		}
		check("new")
		for i := range 5 {
			if err := p.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			want.InFlight = i + 1
			check("after Wait")
		}
		for i := range 5 {
			p.Done(http.StatusOK, 0)
			want.InFlight = 4 - i
			check("after Done")
		}
		// A lost answer (status 0) and a 4xx end a request all the same.
		for _, st := range []int{0, http.StatusBadRequest, http.StatusInternalServerError} {
			if err := p.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			want.InFlight = 1
			check("after Wait")
			p.Done(st, 0)
			want.InFlight = 0
			check("after Done " + http.StatusText(st))
		}

		now := time.Now()
		p.Pause(now.Add(time.Minute), "outage")
		want.PausedUntil, want.PauseReason = now.Add(time.Minute), "outage"
		check("paused")
		time.Sleep(59 * time.Second)
		check("paused a second before the end")
		time.Sleep(time.Second)
		want.PausedUntil, want.PauseReason = time.Time{}, ""
		check("pause over")

		if err := p.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		now = time.Now()
		p.Done(http.StatusTooManyRequests, time.Hour)
		want.PausedUntil, want.PauseReason = now.Add(time.Hour), "retry_after"
		check("after a Retry-After of an hour")
		p.Resume()
		want.PausedUntil, want.PauseReason = time.Time{}, ""
		check("after Resume")
	})
}

// TestPacerRandomFaultsAfterQuietStart: random faults while few requests
// go out (a sync's patients, each alone), then many (their records). The
// first windows have few answers: a cluster of faults among them must not
// leave the rate low when the requests come.
func TestPacerRandomFaultsAfterQuietStart(t *testing.T) {
	const (
		latency = 60 * time.Millisecond
		quiet   = 1500 * time.Millisecond
		busy    = 5 * time.Second
	)
	worst := math.Inf(1)
	for seed := uint64(1); seed <= 20; seed++ {
		var clean, faulty simResult
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{Now: time.Now})
			e := newSimEHR(0, 0, 0, seed)
			runSim(p, e, 2, latency, quiet)
			clean = runSim(p, e, 16, latency, busy)
		})
		synctest.Test(t, func(t *testing.T) {
			p := NewPacer(PacerConfig{Now: time.Now})
			e := newSimEHR(0, 0, 0.33, seed)
			runSim(p, e, 2, latency, quiet)
			faulty = runSim(p, e, 16, latency, busy)
		})
		ratio := float64(faulty.sent) / float64(clean.sent)
		worst = min(worst, ratio)
		if ratio < 0.8 {
			t.Errorf("seed %d: after a quiet start, %d requests let through with 33%% random faults against %d without: %.3f, want at least 0.8",
				seed, faulty.sent, clean.sent, ratio)
		}
	}
	t.Logf("worst of 20 seeds: %.3f of the requests let through without faults", worst)
}
