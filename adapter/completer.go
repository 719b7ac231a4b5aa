package adapter

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Group commit: the completer gathers outcomes and commits up to
// completeBatch of them in one store transaction, after at most
// completeLinger (river's BatchCompleter). Nothing in the pipeline waits
// for a commit (dependents learn an outcome when it is finished, the
// claimer gets room at once), so the linger costs no throughput; it sets
// how many outcomes share a transaction's fixed cost (begin, commit, the
// WAL frames of the indexes). At 5 ms a 4,200-record sync committed 4 rows
// per transaction, 1,000 transactions, half of FinishMany's CPU in begin
// and commit; at 20 ms about 10 per transaction.
const (
	completeBatch  = 64
	completeLinger = 20 * time.Millisecond
)

// complete is the completer: it runs until p.compl is closed and drained.
func (p *pipeline) complete() {
	batch := make([]completion, 0, completeBatch)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c, ok := <-p.compl
		if !ok {
			return
		}
		p.committing.Add(1)
		batch = append(batch[:0], c)
		timer.Reset(completeLinger)
	gather:
		for len(batch) < completeBatch {
			select {
			case c, ok := <-p.compl:
				if !ok {
					break gather
				}
				batch = append(batch, c)
			case <-timer.C:
				break gather
			}
		}
		p.commit(batch)
		p.committing.Add(-1)
		p.signal(p.kick) // the claimer may be waiting to see the run end
	}
}

// commit records a group of outcomes in one transaction. Outcomes that
// could not be recorded are logged; their leases expire and the rows are
// delivered again, idempotently: nothing is lost.
func (p *pipeline) commit(batch []completion) {
	e := p.e
	items := make([]store.Completion, len(batch))
	for i, c := range batch {
		items[i] = store.Completion{ID: c.it.row.ID, Outcome: c.out}
	}
	// Its own context: an outcome the EHR has answered must be recorded
	// even while shutting down.
	var (
		errs []error
		err  error
	)
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs, err = e.store.FinishMany(ctx, e.owner, items, e.now())
		cancel()
		if err == nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	p.committed(batch)
	for i, c := range batch {
		var ierr error
		if err != nil {
			ierr = err
		} else if i < len(errs) {
			ierr = errs[i]
		}
		p.recorded(c, ierr)
	}
}

// recorded logs and counts one committed outcome.
func (p *pipeline) recorded(c completion, err error) {
	e := p.e
	r, out := c.it.row, c.out
	attrs := []any{"outbox_id", r.ID, "kind", r.Kind}
	if r.Kind != string(mapping.KindPatient) {
		attrs = append(attrs, "local_id", r.LocalID) // a patient's local id is its MRN: never logged
	}
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		e.log.Warn("lease lost before the outcome was recorded; another worker owns the row", attrs...)
		return
	case err != nil:
		e.log.Error("recording an outcome failed; the row will be delivered again", append(attrs, "err", err)...)
		return
	}
	p.count(out, c.unchanged)
	switch out.State {
	case store.StateSynced:
		now := e.now()
		e.metrics.Synced(r.Kind, now)
		e.lastSync.Lock()
		e.lastSyncT = now
		e.lastSync.Unlock()
		if e.log.Enabled(context.Background(), slog.LevelDebug) { // else the arguments are built for nothing
			e.log.Debug("synced", append(attrs, "resource_id", out.EHRID, "version", out.EHRVersion, "unchanged", c.unchanged)...)
		}
	case store.StateDead:
		e.metrics.Dead(r.Kind, out.ErrorClass)
		e.log.Warn("dead letter", append(attrs, "class", out.ErrorClass)...)
	case store.StateRetrying:
		e.log.Info("will retry", append(attrs, "class", out.ErrorClass, "attempts", r.Attempts, "next_attempt", out.NextAttemptAt)...)
	case store.StateWaiting:
		e.log.Info("waiting", append(attrs, "class", out.ErrorClass, "wait_kind", out.WaitKind)...)
	}
}

// count adds a recorded outcome to the run's stats.
func (p *pipeline) count(out store.Outcome, unchanged bool) {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	p.stats.add(out, unchanged)
	if out.State == store.StateSynced || out.State == store.StateDead {
		p.e.progress.Add(1)
	}
}

// authGate reports the authorization failure delivery is paused for (nil
// when not paused) and whether a probe row may be tried now.
func (p *pipeline) authGate() (error, bool) {
	p.authMu.Lock()
	defer p.authMu.Unlock()
	if p.authErr == nil {
		return nil, false
	}
	if p.mode != modeServe {
		return p.authErr, false // sync and drain report it and end
	}
	if !p.e.now().Before(p.authProbe) {
		p.authProbe = p.e.now().Add(p.e.cfg.Sync.AuthProbe.D())
		return p.authErr, true
	}
	return p.authErr, false
}

// authFailed pauses delivery for an authorization failure, logging once.
func (p *pipeline) authFailed(err error) {
	p.authMu.Lock()
	first := p.authErr == nil
	p.authErr = err
	if first {
		p.authProbe = p.e.now().Add(p.e.cfg.Sync.AuthProbe.D())
	}
	p.authMu.Unlock()
	if first {
		p.e.setAuthPaused(err)
	}
}

// authSucceeded resumes delivery after a delivery that authenticated.
func (p *pipeline) authSucceeded() {
	p.authMu.Lock()
	was := p.authErr != nil
	p.authErr = nil
	p.authMu.Unlock()
	if was || p.e.AuthPaused() != nil {
		// A delivery went through: the pause (of this run or an earlier
		// one) is over.
		p.e.setAuthPaused(nil)
		p.signal(p.kick)
	}
}

// authFailure returns the authorization failure delivery is paused for.
func (p *pipeline) authFailure() error {
	p.authMu.Lock()
	defer p.authMu.Unlock()
	return p.authErr
}

// authOutcome sends a row back to the outbox, claimable at once, with
// reason auth.
func (p *pipeline) authOutcome(it *item, err error) store.Outcome {
	return store.Outcome{State: store.StateRetrying, NextAttemptAt: p.e.now(), ErrorClass: ClassAuth,
		ErrorDetail: err.Error()}
}
