package adapter

import (
	"context"
	"sync"
)

// limiter bounds the deliveries in flight and adapts the bound to the EHR:
// when the EHR answers 429 the limit halves (down to 1), and after as many
// successes in a row as the current limit it grows by one again (up to
// max): additive increase, multiplicative decrease, as TCP does.
type limiter struct {
	mu        sync.Mutex
	max       int
	limit     int
	inUse     int
	successes int
	changed   chan struct{} // closed and replaced whenever a slot may be free
}

func newLimiter(max int) *limiter {
	return &limiter{max: max, limit: max, changed: make(chan struct{})}
}

// acquire waits for a slot or ctx.
func (l *limiter) acquire(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.inUse < l.limit {
			l.inUse++
			l.mu.Unlock()
			return nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *limiter) release() {
	l.mu.Lock()
	l.inUse--
	l.signal()
	l.mu.Unlock()
}

// throttled records a 429 from the EHR.
func (l *limiter) throttled() {
	l.mu.Lock()
	l.limit = max(1, l.limit/2)
	l.successes = 0
	l.mu.Unlock()
}

// succeeded records a successful request.
func (l *limiter) succeeded() {
	l.mu.Lock()
	l.successes++
	if l.successes >= l.limit && l.limit < l.max {
		l.limit++
		l.successes = 0
		l.signal()
	}
	l.mu.Unlock()
}

// current returns the current limit.
func (l *limiter) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// signal wakes waiters; l.mu is held.
func (l *limiter) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}
