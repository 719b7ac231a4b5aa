package adapter

import (
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
)

// TestBackoffDoublesOnBlindTriesOnly: an in-memory retry waits the EHR's
// Retry-After when it gave one; otherwise the backoff doubles for each try
// in a row that got none. Tries answered with a Retry-After do not make a
// later lost answer wait longer.
func TestBackoffDoublesOnBlindTriesOnly(t *testing.T) {
	e := &Engine{shortRetry: RetryPolicy{Min: 250 * time.Millisecond, Max: 30 * time.Second, Jitter: func() float64 { return 0 }}}
	it := &item{}
	throttled := &ehr.TransientError{Reason: "http_429", RetryAfter: time.Second}
	lost := &ehr.TransientError{Reason: "connection"}
	steps := []struct {
		err  error
		want time.Duration
	}{
		{throttled, time.Second},
		{throttled, time.Second},
		{throttled, time.Second},
		{throttled, time.Second},
		{lost, 250 * time.Millisecond}, // not 4 s: the 429s gave their time
		{lost, 500 * time.Millisecond},
		{lost, time.Second},
		{throttled, time.Second},
		{lost, 250 * time.Millisecond}, // the EHR answered in between
	}
	for i, s := range steps {
		r := e.failed(it, s.err)
		if !r.retry {
			t.Fatalf("step %d: failed(%v) gave no retry: %+v", i, s.err, r)
		}
		if r.delay != s.want {
			t.Errorf("step %d: failed(%v) waits %v, want %v", i, s.err, r.delay, s.want)
		}
		it.retried(r)
	}
	if it.tries != len(steps) {
		t.Errorf("tries = %d, want %d: every failed try counts against ehr.retry_max", it.tries, len(steps))
	}
	it.progressed()
	if r := e.failed(it, lost); r.delay != 250*time.Millisecond {
		t.Errorf("after progress a lost answer waits %v, want 250ms", r.delay)
	}
}
