package adapter

import (
	"math/rand/v2"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
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
	now := p.Now
	if now == nil {
		now = time.Now
	}
	return now().Add(p.Delay(attempts, retryAfter))
}

// Delay is the wait of Next: ehr.Backoff's schedule from Min to Max, or
// the EHR's Retry-After when that is later (capped at Max).
func (p RetryPolicy) Delay(attempts int, retryAfter time.Duration) time.Duration {
	minD, maxD := p.Min, p.Max
	if minD <= 0 {
		minD = time.Second
	}
	if maxD < minD {
		maxD = 5 * time.Minute
	}
	jitter := p.Jitter
	if jitter == nil {
		jitter = rand.Float64
	}
	d := ehr.Backoff(minD, maxD, attempts, jitter())
	if retryAfter > d {
		d = min(retryAfter, maxD)
	}
	return d
}
