// Package ticker runs a function at once and then periodically in a
// goroutine, with a Start and a Stop that may be called from any
// goroutine: the loop behind the API's EHR prober and the console's
// sampler.
package ticker

import (
	"context"
	"sync"
	"time"
)

// Loop calls a function every interval between Start and Stop. The zero
// value is ready to use; a stopped Loop may be started again.
type Loop struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start calls fn with the loop's context at once and then every interval,
// in a goroutine, until Stop is called or ctx ends. Start on a running
// Loop does nothing. fn should return soon after its context ends.
func (l *Loop) Start(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			fn(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the loop, canceling the context of a call in progress, and
// waits for the goroutine to return or for ctx to end (then it returns
// ctx's error). Stop on a Loop that is not running does nothing.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel, l.done = nil, nil
	l.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
