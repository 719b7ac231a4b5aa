package ehr

import "time"

// Backoff is the one backoff schedule of the adapter: the wait after the
// n-th failed attempt (n >= 1; 0 counts as 1) is lo·2^(n-1), capped at
// hi, less up to 20% of it by jitter (a number in [0, 1)), so that requests
// that failed together do not come back together. The client's short
// retries and the adapter's retries (in memory and through the outbox)
// all use it.
func Backoff(lo, hi time.Duration, n int, jitter float64) time.Duration {
	if lo <= 0 {
		lo = time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - time.Duration(float64(d)*0.2*jitter)
}
