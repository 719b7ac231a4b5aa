package adapter

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// The delivery pipeline, shaped like river's producer and completer and
// Benthos' batching:
//
//	claimer ──> ready queue ──> workers ──> completer (group commit)
//	   │            ^  ^           │  │
//	   │            │  └─ delayed <┘  └─> parked dependents woken
//	   └─> batcher ─┘ (transaction Bundles per patient: size or linger)
//
//   - The claimer keeps up to Concurrency + BatchSize rows claimed
//     (claim-ahead), in dependency order, parsed once, their dependency
//     rows fetched in one query per claim.
//   - Workers take units (one row, or one Bundle of rows) from the ready
//     queue and deliver them. Nothing waits for a batch or for a kind.
//   - A row whose dependency is held by this pipeline parks until that
//     dependency completes, or until its primary resource is in the EHR
//     while its derived ones are still being written (provide); one whose
//     dependency is elsewhere waits in the outbox (state waiting) and is
//     woken by the store.
//   - A request answered 429/503 or lost goes to the delayed set until its
//     Retry-After or backoff ends, holding no worker; after ehr.retry_max
//     such tries, or for a long wait, the row goes back to the outbox.
//   - Outcomes go to the completer, which commits them in groups (one
//     store transaction per group) and wakes the claimer.
//   - A renewer extends the leases of every held row, so a slow delivery
//     never loses its row to another process.
//   - An authorization failure pauses claiming; rows come back to the
//     outbox with reason auth; one probe row is tried per auth_probe
//     interval and delivery resumes by itself when it succeeds.

// runMode says when a pipeline run ends.
type runMode int

const (
	// modeDrain ends when no row is claimable now and nothing is held.
	modeDrain runMode = iota
	// modeSync ends when no row is pending, in flight or retrying.
	modeSync
	// modeServe ends only when the claim context ends.
	modeServe
)

// ErrAuthorization is returned (wrapped) by Sync and Drain when delivery
// stopped because the EHR refused the adapter's authorization. The rows
// stay queued with reason "auth".
var ErrAuthorization = errors.New("adapter: delivery paused: the EHR refused our authorization")

// ClassAuth is the error class of rows held back by an authorization
// failure.
const ClassAuth = "auth"

// item is one claimed row travelling through the pipeline.
type item struct {
	row      store.Record
	rec      *mapping.Record // parsed once at claim; nil when parseErr is set
	parseErr error
	deps     map[mapping.Dependency]store.Record // dependency rows known so far
	settled  map[mapping.Dependency]bool         // deps whose outcome this pipeline just gave: deps holds it
	tries    int                                 // in-memory tries since the last request that went through
	blind    int                                 // the last of those in a row that got no Retry-After: the backoff's exponent
	due      time.Time                           // when a delayed item may go again
	tx       bool                                // delivered in transaction Bundles
	probe    bool                                // claimed alone to test a paused authorization
	reqID    string                              // X-Request-Id of the current attempt's requests

	// Progress kept across in-memory retries, so a retry resumes where the
	// last attempt stopped.
	mapped      []mapping.Resource
	sentHash    string
	id, ver     string // the primary resource in the EHR, once written
	derivedDone []bool // which derived resources (mapped[1:]) are written
	retired     int    // stale derived resources retired
}

// retried counts a failed try that will be tried again. Only tries that
// got no Retry-After (a lost answer, a connection error, a 5xx without
// one) in a row double the backoff: a try the EHR gave a time for is
// waited out for that time, and it shows the EHR is there. Counting those
// too, a lost answer after four 429s waited 4 s, not 250 ms, and under
// random faults such waits made the tail of a sync (BENCHMARKS.md 6.3).
func (it *item) retried(r result) {
	it.tries++
	if r.blind {
		it.blind++
	} else {
		it.blind = 0
	}
}

// progressed renews the item's in-memory tries: a request went through.
func (it *item) progressed() { it.tries, it.blind = 0, 0 }

// key is the dependency key of the item's own record.
func (it *item) key() mapping.Dependency {
	return mapping.Dependency{Kind: mapping.Kind(it.row.Kind), ID: it.row.LocalID}
}

// result is what a delivery attempt says about an item.
type result struct {
	out       store.Outcome // the outcome to commit, unless retry or park
	retry     bool          // try again in memory after delay
	blind     bool          // delay is the backoff: the EHR gave no Retry-After
	delay     time.Duration
	park      *mapping.Dependency // wait in memory for this held dependency
	unchanged bool                // synced without a request: the FHIR output did not change
	auth      error               // an authorization failure (out is retrying, class auth)
}

// unit is one piece of work for a worker: a single row, or the rows of
// one transaction Bundle.
type unit struct {
	items []*item
	tx    bool
}

// completion is an outcome on its way to the completer.
type completion struct {
	it        *item
	out       store.Outcome
	unchanged bool
}

// pipeline is one run of the delivery pipeline. The Engine owns it: run
// starts its goroutines and returns when they have all stopped.
type pipeline struct {
	e        *Engine
	mode     runMode
	claimCtx context.Context // no new claims once done
	workCtx  context.Context // deliveries abort once done
	workers  int
	capacity int // rows held at most (claim-ahead)

	mu       sync.Mutex
	held     map[int64]*item
	local    map[mapping.Dependency]int64 // held rows by key
	parked   map[mapping.Dependency][]*item
	recent   map[mapping.Dependency]store.Record // rows finished here and not yet committed, with their outcome
	progress map[int64]progress                  // rows sent back to the outbox part-written (remember)
	provided map[mapping.Dependency]store.Record // held rows whose primary resource the EHR has (provide)
	ready    []unit
	again    []unit // units with a row tried before: taken before ready (enqueue)
	delayed  delayHeap
	batches  map[string]*txBatch
	stopping bool // no more dispatch to workers: finish what is held
	closed   bool // the ready queue is closed: workers exit when it is empty

	readyCh  chan struct{} // a unit was queued (or the queue closed)
	kick     chan struct{} // the claimer may have work or room
	delayKey chan struct{} // the delayed set changed
	compl    chan completion

	authMu    sync.Mutex
	authErr   error     // set while paused for authorization
	authProbe time.Time // when the next probe row may be claimed

	statsMu sync.Mutex
	stats   Stats

	committing atomic.Int32 // groups taken by the completer and not yet committed

	ordersMu sync.Mutex
	orders   map[orderKey]*mapping.Order // parsed orders of dependency rows (order)
}

// orderKey is an order row's content: its id and the hash of its payload.
type orderKey struct {
	id   int64
	hash string
}

// maxOrders bounds the parsed orders a pipeline keeps; past it they are
// forgotten all at once and parsed again as needed.
const maxOrders = 4096

// order returns the order in row, an order record's outbox row, parsing
// its payload once per pipeline and content: an order is a dependency of
// each of its administrations, and was parsed again for every one of them.
// The *mapping.Order is shared, and only read (the mapper reads its
// product).
func (p *pipeline) order(row store.Record) (*mapping.Order, bool) {
	k := orderKey{id: row.ID, hash: row.Hash}
	p.ordersMu.Lock()
	o, ok := p.orders[k]
	p.ordersMu.Unlock()
	if ok {
		return o, true
	}
	rec, err := p.e.parser.Parse(row.Payload, 0)
	if err != nil || rec.Order == nil {
		return nil, false
	}
	p.ordersMu.Lock()
	if len(p.orders) >= maxOrders {
		clear(p.orders)
	}
	p.orders[k] = rec.Order
	p.ordersMu.Unlock()
	return rec.Order, true
}

func (e *Engine) newPipeline(mode runMode, claimCtx, workCtx context.Context) *pipeline {
	c := e.cfg.Sync.Concurrency
	workers := c + spareWorkers(c)
	capacity := workers + e.cfg.Sync.BatchSize
	if e.usesTransactions() {
		// Enough rows to fill a Bundle per worker while the next ones
		// gather.
		capacity = 2*workers*e.cfg.EHR.TransactionSize + e.cfg.Sync.BatchSize
	}
	return &pipeline{
		e: e, mode: mode, claimCtx: claimCtx, workCtx: workCtx,
		workers:  workers,
		capacity: capacity,
		held:     map[int64]*item{},
		local:    map[mapping.Dependency]int64{},
		parked:   map[mapping.Dependency][]*item{},
		recent:   map[mapping.Dependency]store.Record{},
		progress: map[int64]progress{},
		provided: map[mapping.Dependency]store.Record{},
		batches:  map[string]*txBatch{},
		orders:   map[orderKey]*mapping.Order{},
		readyCh:  make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		delayKey: make(chan struct{}, 1),
		compl:    make(chan completion, 4*c+64),
		stats:    newStats(),
	}
}

// spareWorkers is how many workers run beyond the c requests the EHR
// client lets be in flight (ehr.Config.MaxInFlight): while c workers wait for
// answers, the spare ones map the next records and build the next Bundle,
// then wait for a slot, so a freed slot is taken at once. Without them a
// worker's slot stood empty while it mapped: at 50 ms, 5.5 transaction
// Bundles of 9 resources were in flight at C = 8, not 8 (BENCHMARKS.md
// section 2.4).
func spareWorkers(c int) int { return max(2, c/2) }

// usesTransactions reports whether any resource type is written with
// transaction Bundles.
func (e *Engine) usesTransactions() bool {
	for _, s := range e.cfg.EHR.WriteStrategy {
		if s == "transaction" {
			return true
		}
	}
	return false
}

// run runs the pipeline until its mode says it is done, or claimCtx ends;
// then it finishes what it holds and returns the stats. err is non-nil for
// a store failure or ErrAuthorization (modes drain and sync).
func (p *pipeline) run() (Stats, error) {
	var workers, aux sync.WaitGroup
	for range p.workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			p.work()
		}()
	}
	complDone := make(chan struct{})
	go func() {
		defer close(complDone)
		p.complete()
	}()
	auxCtx, stopAux := context.WithCancel(context.Background())
	aux.Add(4)
	go func() {
		defer aux.Done()
		p.renew(auxCtx)
	}()
	go func() {
		defer aux.Done()
		p.e.shareRate(auxCtx) // several instances on one store (pacer_share.go)
	}()
	go func() {
		defer aux.Done()
		p.gauges(auxCtx)
	}()
	go func() {
		defer aux.Done()
		p.release(auxCtx)
	}()

	err := p.claim()

	// Finish what is held: no new work goes to workers; delayed and parked
	// rows go back to the outbox; queued units are still delivered.
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.flushBatches()
	p.returnWaiting()
	p.waitEmpty()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal(p.readyCh)
	workers.Wait()
	stopAux()
	aux.Wait()
	// Every caller of finish (workers, the claimer, the releaser, this
	// goroutine) has returned: nothing sends on p.compl any more.
	close(p.compl)
	<-complDone

	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	st := p.stats
	if err == nil && p.mode != modeServe {
		if aerr := p.authFailure(); aerr != nil {
			err = fmt.Errorf("%w: %v", ErrAuthorization, aerr)
		}
	}
	return st, err
}

func (p *pipeline) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// claim is the claimer: it keeps the pipeline filled until the run is
// done. It returns a store error, or nil.
func (p *pipeline) claim() error {
	e := p.e
	poll := time.NewTicker(e.cfg.Sync.PollInterval.D())
	defer poll.Stop()
	notify := e.storeNotify() // other instances' new work; nil if none
	var held <-chan time.Time
	if p.mode == modeServe {
		t := time.NewTicker(e.cfg.Sync.HeldRecheck.D())
		defer t.Stop()
		held = t.C
	}
	var lastRescue time.Time
	for p.claimCtx.Err() == nil {
		free, busy := p.room()
		want, probing := free, false
		if aerr, probe := p.authGate(); aerr != nil {
			want = 0
			if probe && busy == 0 {
				want, probing = 1, true // one row tells whether authorization works again
			}
		}
		// Claim when a worker's count of rows is free, or the workers
		// run short. (Waiting for half the claim-ahead to be free made
		// fewer, larger claims, but rows held out waiting for a
		// Retry-After then kept the claimer from refilling the queue:
		// BENCHMARKS.md section 5.3.)
		lowWater := max(1, min(p.workers, p.capacity/4))
		if want > 0 && (want >= lowWater || busy < p.workers) {
			now := e.now()
			if now.Sub(lastRescue) >= time.Second {
				// A crashed run's leases expire while a long run is under
				// way: rescue before claiming, at most once a second.
				n, err := e.store.Rescue(p.claimCtx, now)
				if err != nil {
					if stop, serr := p.storeFailed("rescuing expired leases", err); stop {
						return serr
					}
					continue
				}
				if n > 0 {
					e.log.Info("rescued rows whose lease expired", "rows", n)
				}
				lastRescue = now
			}
			rows, err := e.store.Claim(p.claimCtx, e.owner, want, now, e.cfg.Sync.Lease.D())
			if err != nil {
				if stop, serr := p.storeFailed("claiming work", err); stop {
					return serr
				}
				continue
			}
			if len(rows) > 0 {
				if err := p.admit(rows, probing); err != nil {
					if stop, serr := p.storeFailed("reading dependencies", err); stop {
						return serr
					}
				}
				continue
			}
		}
		done, err := p.done(busy)
		if err != nil {
			if stop, serr := p.storeFailed("counting the outbox", err); stop {
				return serr
			}
			continue
		}
		if done {
			return nil
		}
		select {
		case <-p.claimCtx.Done():
		case <-p.kick:
		case <-e.wake:
		case <-notify:
		case <-poll.C:
		case <-held:
			if _, err := e.RequeueHeld(p.claimCtx); err != nil && p.claimCtx.Err() == nil {
				e.log.Error("re-checking held records failed", "err", err)
			}
		}
	}
	return nil
}

// storeFailed handles a store failure of the claimer: under serve it is
// logged and retried after a poll interval (a lost database connection is
// not fatal); under sync and drain it ends the run with the error. stop
// says whether the claimer returns serr. A canceled claim context is no
// failure.
func (p *pipeline) storeFailed(what string, err error) (stop bool, serr error) {
	if p.claimCtx.Err() != nil {
		return true, nil
	}
	if p.mode != modeServe {
		return true, fmt.Errorf("adapter: %s: %w", what, err)
	}
	p.e.log.Error("delivery: "+what+" failed; trying again", "err", err)
	t := time.NewTimer(p.e.cfg.Sync.PollInterval.D())
	defer t.Stop()
	select {
	case <-p.claimCtx.Done():
		return true, nil
	case <-t.C:
		return false, nil
	}
}

// room returns how many more rows may be claimed, and how many are held.
func (p *pipeline) room() (free, busy int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.capacity - len(p.held), len(p.held)
}

// done reports whether the run is over: nothing is held or committing and
// the mode's condition holds.
func (p *pipeline) done(busy int) (bool, error) {
	if busy > 0 || len(p.compl) > 0 || p.committing.Load() > 0 {
		return false, nil
	}
	switch p.mode {
	case modeDrain:
		return true, nil
	case modeSync:
		if p.authFailure() != nil {
			return true, nil
		}
		left, err := p.e.undelivered(p.claimCtx)
		if err != nil {
			return false, err
		}
		return !left, nil
	}
	return false, nil
}

// admit takes claimed rows into the pipeline: parse each payload once,
// fetch the rows of their dependencies in one query, dispatch.
func (p *pipeline) admit(rows []store.Record, probe bool) error {
	items := make([]*item, len(rows))
	var keys []store.Key
	seen := map[store.Key]bool{}
	for i, r := range rows {
		it := &item{row: r, deps: map[mapping.Dependency]store.Record{}, probe: probe}
		it.rec, it.parseErr = p.e.parser.Parse(r.Payload, 0)
		if it.rec != nil {
			it.tx = p.e.cfg.EHR.Strategy(primaryType(it.rec.Kind)) == "transaction"
			for _, d := range it.rec.Dependencies() {
				k := store.Key{Kind: string(d.Kind), LocalID: d.ID}
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
		items[i] = it
	}
	var found map[store.Key]store.Record
	if len(keys) > 0 {
		var err error
		if found, err = p.e.store.GetMany(p.claimCtx, keys); err != nil {
			// Release what we claimed: its leases expire otherwise.
			for _, it := range items {
				p.hold(it)
				p.finish(it, canceled(it.row, p.e.now()), false)
			}
			return err
		}
	}
	for _, it := range items {
		if it.rec != nil {
			for _, d := range it.rec.Dependencies() {
				if row, ok := found[store.Key{Kind: string(d.Kind), LocalID: d.ID}]; ok {
					it.deps[d] = row
				}
			}
		}
		p.hold(it)
		if p.recall(it) && len(it.mapped) > 1 {
			p.provide(it)
		}
		p.dispatch(it)
	}
	return nil
}

// progress is how far a row sent back to the outbox had got: what it
// mapped to, and which of its resources the EHR already has.
type progress struct {
	hash        string // the row's hash then: a new version starts over
	mapped      []mapping.Resource
	sentHash    string
	id, ver     string
	derivedDone []bool
	retired     int
}

// maxProgress bounds the rows remember keeps: their mapped resources stay
// in memory until the row is claimed again (an administration's are about
// 15 KB), and a row another instance claims is never recalled here.
const maxProgress = 1000

// remember keeps the progress of an item going back to the outbox part
// written (it used up ehr.retry_max in-memory tries), so that claimed
// again in this run it resumes where it stopped instead of writing every
// resource again, each exposed to the same faults. Without it, an
// administration one of whose vital signs drew nine faults in a row
// rewrote its MedicationAdministration and all its vital signs.
func (p *pipeline) remember(it *item) {
	if it.mapped == nil || it.id == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.progress) >= maxProgress {
		return
	}
	p.progress[it.row.ID] = progress{hash: it.row.Hash, mapped: it.mapped, sentHash: it.sentHash,
		id: it.id, ver: it.ver, derivedDone: append([]bool(nil), it.derivedDone...), retired: it.retired}
}

// recall restores what remember kept of a claimed row, once, if the row
// has not changed since; it reports whether it did.
func (p *pipeline) recall(it *item) bool {
	p.mu.Lock()
	pr, ok := p.progress[it.row.ID]
	delete(p.progress, it.row.ID)
	p.mu.Unlock()
	if !ok || pr.hash != it.row.Hash || it.rec == nil {
		return false
	}
	it.mapped, it.sentHash = pr.mapped, pr.sentHash
	it.id, it.ver, it.derivedDone, it.retired = pr.id, pr.ver, pr.derivedDone, pr.retired
	return true
}

// hold registers a claimed item.
func (p *pipeline) hold(it *item) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held[it.row.ID] = it
	p.local[it.key()] = it.row.ID
}

// dispatch sends an item on: a dead letter if it cannot be parsed, parked
// behind a held dependency, to the batcher, or to the ready queue.
func (p *pipeline) dispatch(it *item) {
	if it.parseErr != nil {
		p.finish(it, store.Outcome{State: store.StateDead, ErrorClass: ClassInvalidRecord, ErrorDetail: it.parseErr.Error()}, false)
		return
	}
	if !mapping.Kind(it.row.Kind).Valid() {
		p.finish(it, store.Outcome{State: store.StateDead, ErrorClass: ClassInvalidRecord, ErrorDetail: "unknown record kind"}, false)
		return
	}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		p.finish(it, canceled(it.row, p.e.now()), false)
		return
	}
	for _, d := range it.rec.Dependencies() {
		if row, ok := it.deps[d]; ok && row.EHRID != "" {
			continue
		}
		if row, ok := p.provided[d]; ok {
			it.deps[d] = row
			continue
		}
		if _, held := p.local[d]; held {
			p.parked[d] = append(p.parked[d], it)
			p.mu.Unlock()
			return
		}
	}
	p.mu.Unlock()
	if it.tx {
		p.batch(it)
		return
	}
	p.enqueue(unit{items: []*item{it}})
}

// enqueue puts a unit on the ready queue. A unit with a row tried before
// (its Retry-After or backoff waited out in the delayed set) goes ahead
// of the rows not tried yet: it has had its turn once, and it is often
// the head of a dependency chain (a patient whose orders,
// administrations and scores wait for it). Behind a full ready queue,
// each of its tries under random faults waited a second or more on top
// of its Retry-After, and such chains made the tail of a sync
// (BENCHMARKS.md section 6.6).
func (p *pipeline) enqueue(u unit) {
	p.mu.Lock()
	if u.triedBefore() {
		p.again = append(p.again, u)
	} else {
		p.ready = append(p.ready, u)
	}
	p.mu.Unlock()
	p.signal(p.readyCh)
}

// triedBefore reports whether one of the unit's rows was tried before in
// this pipeline.
func (u unit) triedBefore() bool {
	for _, it := range u.items {
		if it.tries > 0 {
			return true
		}
	}
	return false
}

// next takes a unit from the ready queue, waiting for one; ok is false
// when the queue is closed and empty.
func (p *pipeline) next() (unit, bool) {
	for {
		p.mu.Lock()
		q := &p.ready
		if len(p.again) > 0 {
			q = &p.again
		}
		if len(*q) > 0 {
			u := (*q)[0]
			(*q)[0] = unit{}
			*q = (*q)[1:]
			more := len(p.again)+len(p.ready) > 0
			p.mu.Unlock()
			if more {
				p.signal(p.readyCh) // wake another worker
			}
			return u, true
		}
		closed := p.closed
		p.mu.Unlock()
		if closed {
			p.signal(p.readyCh) // let the other workers see it too
			return unit{}, false
		}
		<-p.readyCh
	}
}

// work is one worker: it delivers units until the queue closes.
func (p *pipeline) work() {
	for {
		u, ok := p.next()
		if !ok {
			return
		}
		if aerr := p.authFailure(); aerr != nil && !(len(u.items) == 1 && u.items[0].probe) {
			// Do not knock on a door that is locked: back to the outbox.
			for _, it := range u.items {
				it.reqID = "" // no request made
				p.finish(it, p.authOutcome(it, aerr), false)
			}
			continue
		}
		// One request id per attempt: the rows of a Bundle share it.
		rid := ehr.NewRequestID()
		for _, it := range u.items {
			it.reqID = rid
		}
		ctx := ehr.WithRequestID(p.workCtx, rid)
		if u.tx {
			p.e.deliverBundle(ctx, p, u.items)
			continue
		}
		it := u.items[0]
		p.settle(it, p.e.deliverItem(ctx, p, it))
	}
}

// settle acts on a delivery result.
func (p *pipeline) settle(it *item, r result) {
	e := p.e
	switch {
	case r.park != nil:
		p.mu.Lock()
		if _, held := p.local[*r.park]; held && !p.stopping {
			p.parked[*r.park] = append(p.parked[*r.park], it)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.dispatch(it) // the dependency completed meanwhile
	case r.auth != nil:
		p.authFailed(r.auth)
		p.finish(it, r.out, false)
	case r.retry:
		it.retried(r)
		if it.tries <= e.cfg.EHR.RetryMax && r.delay <= e.cfg.EHR.PauseThreshold.D() {
			// Retry-After (or the backoff), capped at ehr.retry_wait_max,
			// is waited out here, holding no worker.
			e.metrics.Retry("delayed_" + r.out.ErrorClass)
			p.delay(it, min(r.delay, e.cfg.EHR.RetryWaitMax.D()))
			return
		}
		out := r.out
		out.State = store.StateRetrying
		out.NextAttemptAt = e.retry.Next(it.row.Attempts, r.delay)
		e.metrics.Retry("outbox_" + out.ErrorClass)
		p.remember(it)
		p.finish(it, out, false)
	default:
		p.authSucceeded()
		p.finish(it, r.out, r.unchanged)
	}
}

// finish ends an item's life in the pipeline: its outcome goes to the
// completer, its parked dependents are dispatched again, and the claimer
// learns there is room.
func (p *pipeline) finish(it *item, out store.Outcome, unchanged bool) {
	if out.Hash == "" {
		out.Hash = it.row.Hash
	}
	if out.RequestID == "" && !unchanged {
		out.RequestID = it.reqID
	}
	k := it.key()
	// Its dependents learn the outcome here: the store may not have it
	// yet (the completer commits in groups).
	row := it.row
	row.State, row.ErrorClass = out.State, out.ErrorClass
	if out.State == store.StateSynced {
		row.EHRID, row.EHRVersion = orDefault(out.EHRID, row.EHRID), orDefault(out.EHRVersion, row.EHRVersion)
	}
	p.mu.Lock()
	delete(p.held, it.row.ID)
	if p.local[k] == it.row.ID {
		delete(p.local, k)
	}
	p.recent[k] = row
	delete(p.provided, k)
	waiters := p.parked[k]
	delete(p.parked, k)
	p.mu.Unlock()

	p.compl <- completion{it: it, out: out, unchanged: unchanged}

	p.wakeDependents(k, row, waiters)
	p.signal(p.kick)
}

// provide lets an item's dependents go once its primary resource is in
// the EHR, while its derived resources are still being written: a
// dependent references the primary resource alone (DESIGN.md section 4
// orders the Observations that point to a MedicationAdministration after
// it, not after its vital signs). Under faults this takes one hop, the
// one most likely to meet a 429 (all of an administration's vital signs
// must get through), off every chain patient -> order -> administration
// -> score. The item stays held: one write in flight per identifier
// still holds, and its own outcome is committed when it finishes.
func (p *pipeline) provide(it *item) {
	k := it.key()
	row := it.row
	row.EHRID, row.EHRVersion = it.id, orDefault(it.ver, row.EHRVersion)
	p.mu.Lock()
	if p.local[k] != it.row.ID {
		p.mu.Unlock()
		return
	}
	p.provided[k] = row
	waiters := p.parked[k]
	delete(p.parked, k)
	p.mu.Unlock()
	p.wakeDependents(k, row, waiters)
}

// wakeDependents dispatches again the items parked behind dependency k,
// now that row holds what this pipeline knows of it.
func (p *pipeline) wakeDependents(k mapping.Dependency, row store.Record, waiters []*item) {
	for _, w := range waiters {
		w.deps[k] = row
		if w.settled == nil {
			w.settled = map[mapping.Dependency]bool{}
		}
		w.settled[k] = true
		p.dispatch(w)
	}
}

// committed forgets the outcomes the store now has: from now on a
// dependent reads them from the store.
func (p *pipeline) committed(batch []completion) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range batch {
		k := c.it.key()
		if r, ok := p.recent[k]; ok && r.ID == c.it.row.ID {
			delete(p.recent, k)
		}
	}
}

// lookupDep returns what this pipeline knows of a dependency: held means
// it is in delivery here; known means it was finished here, or its
// primary resource is in the EHR (provide), and the store may not have its
// outcome yet (row holds it).
func (p *pipeline) lookupDep(k mapping.Dependency) (row store.Record, held, known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if row, known = p.provided[k]; known {
		return row, false, true
	}
	if _, held = p.local[k]; held {
		return store.Record{}, true, false
	}
	row, known = p.recent[k]
	return row, false, known
}

// delay puts an item aside until d has passed, holding no worker.
func (p *pipeline) delay(it *item, d time.Duration) {
	it.due = p.e.now().Add(d)
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		p.finish(it, store.Outcome{State: store.StateRetrying, NextAttemptAt: it.due, ErrorClass: ClassCanceled}, false)
		return
	}
	heap.Push(&p.delayed, it)
	p.mu.Unlock()
	p.signal(p.delayKey)
}

// release moves delayed items whose time has come back to the queue.
func (p *pipeline) release(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		var due []*item
		now := p.e.now()
		for p.delayed.Len() > 0 && !p.delayed[0].due.After(now) {
			due = append(due, heap.Pop(&p.delayed).(*item))
		}
		wait := time.Hour
		if p.delayed.Len() > 0 {
			wait = p.delayed[0].due.Sub(now)
		}
		p.mu.Unlock()
		for _, it := range due {
			p.dispatch(it)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-p.delayKey:
		case <-t.C:
		}
	}
}

// returnWaiting sends delayed and parked items back to the outbox (the run
// is stopping).
func (p *pipeline) returnWaiting() {
	p.mu.Lock()
	var back []*item
	for p.delayed.Len() > 0 {
		back = append(back, heap.Pop(&p.delayed).(*item))
	}
	for k, ws := range p.parked {
		back = append(back, ws...)
		delete(p.parked, k)
	}
	p.mu.Unlock()
	for _, it := range back {
		next := it.due
		if next.IsZero() {
			next = p.e.now()
		}
		p.finish(it, store.Outcome{State: store.StateRetrying, NextAttemptAt: next, ErrorClass: ClassCanceled}, false)
	}
}

// waitEmpty waits until every held item has finished.
func (p *pipeline) waitEmpty() {
	for {
		p.mu.Lock()
		n := len(p.held)
		var back []*item
		for k, ws := range p.parked {
			back = append(back, ws...)
			delete(p.parked, k)
		}
		p.mu.Unlock()
		for _, it := range back {
			p.finish(it, canceled(it.row, p.e.now()), false)
		}
		if n == 0 {
			return
		}
		select {
		case <-p.kick:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// renew extends the leases of held rows every third of the lease.
func (p *pipeline) renew(ctx context.Context) {
	lease := p.e.cfg.Sync.Lease.D()
	t := time.NewTicker(max(lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		ids := make([]int64, 0, len(p.held))
		for id := range p.held {
			ids = append(ids, id)
		}
		p.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, lease/3)
		_, err := p.e.store.Renew(rctx, p.e.owner, ids, p.e.now(), lease)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.e.log.Error("renewing leases failed; rows may be delivered again (idempotently)", "rows", len(ids), "err", err)
		}
	}
}

// gauges keeps the pipeline's gauges current while it runs.
func (p *pipeline) gauges(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		ps := p.e.pacer.State()
		p.mu.Lock()
		n := len(p.held)
		p.mu.Unlock()
		p.e.metrics.Pipeline(ps.Rate, ps.InFlight, n)
		p.e.queued.Store(int64(n))
		select {
		case <-ctx.Done():
			p.e.metrics.Pipeline(ps.Rate, ps.InFlight, 0)
			p.e.queued.Store(0)
			return
		case <-t.C:
		}
	}
}

// delayHeap orders delayed items by due time.
type delayHeap []*item

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(*item)) }
func (h *delayHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
