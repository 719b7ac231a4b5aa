package adapter

import (
	"math/rand/v2"
	"time"
)

// RetryPolicy says when a record that failed transiently is tried again.
//
// The schedule doubles from Min for each attempt already made, capped at
// Max, with up to 20% random jitter subtracted so that records that failed
// together do not come back together:
//
//	attempt 1 failed: Min        (1s by default)
//	attempt 2 failed: 2*Min      (2s)
//	attempt 3 failed: 4*Min      (4s)
//	...
//	attempt n failed: min(Max, Min*2^(n-1))  (capped at 5m by default)
//
// When the EHR asked for a later time (Retry-After), that time wins. A
// transient failure never sends a record to the dead letters: it waits in
// the outbox, in state retrying, for as long as it takes.
type RetryPolicy struct {
	// Min is the first delay. Defaults to 1s.
	Min time.Duration
	// Max caps the delay. Defaults to 5m.
	Max time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1). Defaults to math/rand/v2.Float64.
	Jitter func() float64
}

// Next returns when a record whose attempts-th attempt just failed may be
// claimed again; retryAfter is the EHR's Retry-After (0 if none).
func (p RetryPolicy) Next(attempts int, retryAfter time.Duration) time.Time {
	minD, maxD := p.Min, p.Max
	if minD <= 0 {
		minD = time.Second
	}
	if maxD < minD {
		maxD = 5 * time.Minute
	}
	now, jitter := p.Now, p.Jitter
	if now == nil {
		now = time.Now
	}
	if jitter == nil {
		jitter = rand.Float64
	}
	d := minD
	for i := 1; i < attempts && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	d -= time.Duration(float64(d) * 0.2 * jitter())
	if retryAfter > d {
		d = min(retryAfter, maxD)
	}
	return now().Add(d)
}
