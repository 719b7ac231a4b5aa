package ehr

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// recordingPacer records what the client tells a Pacer.
type recordingPacer struct {
	mu    sync.Mutex
	waits int
	done  []int
	after []time.Duration
}

func (p *recordingPacer) Wait(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waits++
	return nil
}

func (p *recordingPacer) Done(status int, retryAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = append(p.done, status)
	p.after = append(p.after, retryAfter)
}

func TestPacerSeesEveryAttempt(t *testing.T) {
	t.Parallel()
	pacer := &recordingPacer{}
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		status(http.StatusOK, `{"resourceType":"Observation","id":"o1"}`)(w, r, n)
	}, func(c *Config) {
		c.Pacer = pacer
		c.RetryMax = 1
		c.RetryWaitMin = time.Millisecond
		c.RetryWaitMax = 5 * time.Second
	})
	if _, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Observation/o1"}); err != nil {
		t.Fatal(err)
	}
	pacer.mu.Lock()
	defer pacer.mu.Unlock()
	if pacer.waits != 2 || len(pacer.done) != 2 {
		t.Fatalf("waits %d, done %v; want 2 and 2", pacer.waits, pacer.done)
	}
	if pacer.done[0] != http.StatusTooManyRequests || pacer.after[0] != time.Second || pacer.done[1] != http.StatusOK {
		t.Errorf("done %v after %v; want [429 200] with Retry-After 1s first", pacer.done, pacer.after)
	}
}

// refusingPacer refuses every request.
type refusingPacer struct{}

func (refusingPacer) Wait(ctx context.Context) error { return context.Canceled }
func (refusingPacer) Done(int, time.Duration)        {}

func TestPacerRefusalSendsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, status(http.StatusOK, `{}`), func(c *Config) { c.Pacer = refusingPacer{}; c.RetryMax = -1 })
	if _, err := e.c.Do(ctxT(t), Request{Method: http.MethodGet, Path: "Observation/o1"}); err == nil {
		t.Fatal("no error")
	}
	if n := e.ehr.count(); n != 0 {
		t.Errorf("%d requests reached the EHR, want 0", n)
	}
}
