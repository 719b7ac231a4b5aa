package adapter

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// share is a Pacer's share of the EHR's rate when several instances
// deliver to one EHR (see SetShare).
type share struct {
	set     bool
	n       int     // the live instances the rate is divided by
	fullMax float64 // MaxRate as configured, before division
}

// SetShare tells the pacer that n instances (this one included) deliver to
// the same EHR, so that together they keep to its rate: the ceiling
// (MaxRate) becomes the configured ceiling divided by n, and the current
// rate is scaled by the old share over the new one (then kept between
// MinRate and the new ceiling). Each instance's AIMD goes on from there on
// its own answers. An unlimited rate (slow start found no limit) stays
// unlimited: with no ceiling configured there is nothing to divide, and
// 429s from the EHR slow each instance down as they would one. n below 1
// counts as 1.
func (p *Pacer) SetShare(n int) {
	n = max(n, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.shared
	if !s.set {
		s.set, s.n, s.fullMax = true, 1, p.cfg.MaxRate
	}
	if n == s.n {
		return
	}
	old := s.n
	s.n = n
	if s.fullMax > 0 {
		p.cfg.MaxRate = s.fullMax / float64(n)
		p.step = rate.Limit(max(p.cfg.MinRate, p.cfg.MaxRate*stepShare))
	}
	if p.bicMax > 0 && p.bicMax != rate.Inf {
		// The rate increases climb back to is scaled the same way.
		p.bicMax = p.bicMax * rate.Limit(old) / rate.Limit(n)
	}
	l := p.limiter.Limit()
	if l == rate.Inf {
		return
	}
	next := l * rate.Limit(old) / rate.Limit(n)
	if p.cfg.MaxRate > 0 {
		next = min(next, rate.Limit(p.cfg.MaxRate))
	}
	p.setLimit(p.cfg.Now(), max(next, rate.Limit(p.cfg.MinRate)))
}

// Share returns the number of instances the rate is divided by (1 until
// SetShare says otherwise).
func (p *Pacer) Share() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.shared.n, 1)
}

// shareRate records this engine as a live instance in a shared store
// (store.Instances) every postgres.heartbeat while a pipeline runs, and
// divides the pacer's rate by the live instances. It returns when ctx
// ends, after removing the instance, or at once for a store that is not
// shared. Its owner is the pipeline's run, which cancels ctx.
func (e *Engine) shareRate(ctx context.Context) {
	inst, ok := e.store.(store.Instances)
	if !ok {
		return
	}
	every := e.cfg.Postgres.Heartbeat.D()
	if every <= 0 {
		every = 5 * time.Second
	}
	beat := func() {
		n, err := inst.Heartbeat(ctx, e.owner, e.now(), 3*every)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("recording this instance as live failed; keeping the last rate share", "err", err)
			}
			return
		}
		if n != e.pacer.Share() {
			e.log.Info("instances sharing the EHR's rate", "instances", n)
			e.pacer.SetShare(n)
		}
	}
	beat()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			leaveCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := inst.Leave(leaveCtx, e.owner); err != nil {
				e.log.Warn("removing this instance from the live ones failed; it expires on its own", "err", err)
			}
			return
		case <-t.C:
			beat()
		}
	}
}

// storeNotify returns the store's notification channel when other
// processes share it (store.Notifier), or nil, which never fires.
func (e *Engine) storeNotify() <-chan struct{} {
	if n, ok := e.store.(store.Notifier); ok {
		return n.Notify()
	}
	return nil
}

// Instances returns how many live instances share the EHR's rate with
// this engine, as its last heartbeat counted them (1 with a store of its
// own).
func (e *Engine) Instances() int { return e.pacer.Share() }
