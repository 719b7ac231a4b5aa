package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/metrics"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Error classes the engine records on outbox rows (besides the EHR
// client's reasons such as "http_503" or "http_422"). They are bounded and
// free of patient data, so they also serve as metric labels.
const (
	ClassInvalidRecord     = "invalid_record"     // the stored record no longer passes the checks (config changed)
	ClassMapping           = "mapping"            // the record could not be mapped to FHIR
	ClassDependencyPending = "dependency_pending" // waits for a record not synced yet
	ClassDependencyMissing = "dependency_missing" // waits for a record the adapter has not received
	ClassDependencyDead    = "dependency_dead"    // waits for a record that is in the dead letters
	ClassPatientUnknown    = "patient_unknown"    // the EHR does not know the MRN (held or waiting for the patient record)
	ClassCanceled          = "canceled"           // delivery was interrupted by shutdown
)

// Options are the collaborators of an Engine besides its config and store.
type Options struct {
	// Logger receives PHI-free logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Metrics records metrics; nil records none.
	Metrics *metrics.Metrics
	// HTTPClient is the base HTTP client for the EHR (tests, TLS). Optional.
	HTTPClient *http.Client
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Owner names this instance in leases. Defaults to hostname/pid.
	Owner string
}

// Engine ingests checked records into the outbox and delivers them to the
// EHR: dependency order, idempotent conditional writes, retries through the
// outbox, dead letters for permanent rejections. Start/Stop run it
// continuously (serve); Drain and Sync deliver what is deliverable (sync).
type Engine struct {
	cfg     *Config
	store   store.Store
	client  *ehr.Client
	mapper  *mapping.Mapper
	parser  *mapping.Parser
	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time
	owner   string
	retry   RetryPolicy
	limit   *limiter

	patientIDs sync.Map // MRN -> EHR Patient id, for patients found by search

	lastSync  sync.Mutex
	lastSyncT time.Time

	runMu   sync.Mutex
	running *run
	wake    chan struct{}
}

// New builds an engine on a validated config and an open store.
func New(cfg *Config, st store.Store, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Owner == "" {
		host, _ := os.Hostname()
		opts.Owner = host + "/" + strconv.Itoa(os.Getpid())
	}
	mapper, err := mapping.NewMapper(&cfg.Mapping)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	e := &Engine{
		cfg: cfg, store: st, mapper: mapper,
		parser: mapping.NewParser(&cfg.Mapping, opts.Now),
		log:    opts.Logger, metrics: opts.Metrics, now: opts.Now, owner: opts.Owner,
		retry: RetryPolicy{Min: cfg.Sync.RetryMin.D(), Max: cfg.Sync.RetryBackoffMax.D(), Now: opts.Now},
		limit: newLimiter(cfg.Sync.Concurrency),
		wake:  make(chan struct{}, 1),
	}
	var key []byte
	if cfg.EHR.Auth.PrivateKey != "" {
		key = []byte(cfg.EHR.Auth.PrivateKey)
	}
	e.client, err = ehr.New(ehr.Config{
		BaseURL:      cfg.EHR.BaseURL,
		Timeout:      cfg.EHR.Timeout.D(),
		RetryMax:     retryMax(cfg.EHR.RetryMax),
		RetryWaitMax: cfg.EHR.RetryWaitMax.D(),
		UserAgent:    "ketamine-fhir",
		HTTPClient:   opts.HTTPClient,
		Logger:       opts.Logger,
		Auth: ehr.AuthConfig{
			Mode: cfg.EHR.Auth.Mode, Token: cfg.EHR.Auth.Token,
			ClientID: cfg.EHR.Auth.ClientID, ClientSecret: cfg.EHR.Auth.ClientSecret,
			PrivateKeyPEM: key, KeyID: cfg.EHR.Auth.KeyID,
			Scopes: cfg.EHR.Auth.Scopes, TokenURL: cfg.EHR.Auth.TokenURL,
		},
		Hooks: ehr.Hooks{
			OnRequest: func(rt, method string, status int, d time.Duration) {
				e.metrics.EHRRequest(rt, method, status, d)
				switch {
				case status == http.StatusTooManyRequests:
					e.limit.throttled()
				case status >= 200 && status < 300:
					e.limit.succeeded()
				}
			},
			OnRetry:        e.metrics.Retry,
			OnTokenRefresh: e.metrics.TokenRefresh,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	return e, nil
}

// Parser returns the engine's record parser (the HTTP API parses with it).
func (e *Engine) Parser() *mapping.Parser { return e.parser }

// Store returns the engine's outbox.
func (e *Engine) Store() store.Store { return e.store }

// PingEHR checks that the EHR answers its capability statement.
func (e *Engine) PingEHR(ctx context.Context) error { return e.client.Ping(ctx) }

// LastSync returns when a record was last delivered (zero if never, in
// this process).
func (e *Engine) LastSync() time.Time {
	e.lastSync.Lock()
	defer e.lastSync.Unlock()
	return e.lastSyncT
}

// IngestResult is the outcome of one record offered to Ingest.
type IngestResult struct {
	Kind    mapping.Kind
	ID      string
	Outcome store.UpsertOutcome
}

// Ingest commits checked records to the outbox in one transaction and
// reports per record whether it was inserted, updated or unchanged. Only
// after it returns nil are the records durable and may be acknowledged to
// their source.
func (e *Engine) Ingest(ctx context.Context, recs []*mapping.Record) ([]IngestResult, error) {
	batch := make([]store.NewRecord, len(recs))
	for i, r := range recs {
		payload, err := r.CanonicalJSON()
		if err != nil {
			return nil, fmt.Errorf("adapter: encoding %s record (line %d): %w", r.Kind, r.Line, err)
		}
		batch[i] = store.NewRecord{Kind: string(r.Kind), LocalID: r.ID(), Hash: r.Hash(), Payload: payload}
	}
	outs, err := e.store.Upsert(ctx, batch)
	if err != nil {
		return nil, fmt.Errorf("adapter: committing %d records to the outbox: %w", len(recs), err)
	}
	res := make([]IngestResult, len(recs))
	changed := false
	for i, r := range recs {
		res[i] = IngestResult{Kind: r.Kind, ID: r.ID(), Outcome: outs[i]}
		changed = changed || outs[i] != store.Unchanged
	}
	if changed {
		e.Wake()
	}
	return res, nil
}

// Wake tells a running engine that new work may be there.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Stats counts what one Drain or Sync did.
type Stats struct {
	Synced, Retrying, Waiting, Dead int
}

func (s *Stats) add(o store.State) {
	switch o {
	case store.StateSynced:
		s.Synced++
	case store.StateRetrying, store.StatePending:
		s.Retrying++
	case store.StateWaiting:
		s.Waiting++
	case store.StateDead:
		s.Dead++
	}
}

// Drain rescues expired leases, then claims and delivers batches until no
// row is deliverable now (rows retrying later are left for later).
func (e *Engine) Drain(ctx context.Context) (Stats, error) {
	var total Stats
	for ctx.Err() == nil {
		// Rescue before every claim, not only at the start: a crashed
		// run's leases expire while a long sync is under way.
		if n, err := e.store.Rescue(ctx, e.now()); err != nil {
			return total, fmt.Errorf("adapter: rescuing expired leases: %w", err)
		} else if n > 0 {
			e.log.Info("rescued rows whose lease expired", "rows", n)
		}
		rows, err := e.store.Claim(ctx, e.owner, e.cfg.Sync.BatchSize, e.now(), e.cfg.Sync.Lease.D())
		if err != nil {
			return total, fmt.Errorf("adapter: claiming work: %w", err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		st := e.deliverBatch(ctx, rows)
		total.Synced += st.Synced
		total.Retrying += st.Retrying
		total.Waiting += st.Waiting
		total.Dead += st.Dead
	}
	return total, ctx.Err()
}

// RequeueHeld moves rows held because the EHR did not know their patient
// back to pending, so they are checked again.
func (e *Engine) RequeueHeld(ctx context.Context) (int, error) {
	n := 0
	var after int64
	for {
		rows, err := e.store.List(ctx, store.StateWaiting, after, 500)
		if err != nil {
			return n, err
		}
		if len(rows) == 0 {
			return n, nil
		}
		for _, r := range rows {
			after = r.ID
			if r.ErrorClass != ClassPatientUnknown {
				continue
			}
			if err := e.store.Requeue(ctx, r.ID, e.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
				return n, err
			}
			n++
		}
	}
}

// Sync delivers everything deliverable, waiting out backoffs, until no row
// is pending, in flight or retrying, or until deadline (zero: no deadline)
// or ctx ends. It is the body of `ketamine-fhir sync`.
func (e *Engine) Sync(ctx context.Context, deadline time.Time) (Stats, error) {
	var total Stats
	if _, err := e.RequeueHeld(ctx); err != nil {
		return total, fmt.Errorf("adapter: re-checking held records: %w", err)
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	for {
		st, err := e.Drain(ctx)
		total.Synced += st.Synced
		total.Dead += st.Dead
		if err != nil {
			if ctx.Err() != nil {
				return total, nil
			}
			return total, err
		}
		busy, err := e.undelivered(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return total, nil
			}
			return total, err
		}
		if !busy {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, nil
		case <-time.After(e.cfg.Sync.PollInterval.D()):
		case <-e.wake:
		}
	}
}

// undelivered reports whether any row is pending, in flight or retrying.
func (e *Engine) undelivered(ctx context.Context) (bool, error) {
	counts, err := e.store.Counts(ctx)
	if err != nil {
		return false, err
	}
	for _, states := range counts {
		if states[store.StatePending]+states[store.StateInFlight]+states[store.StateRetrying] > 0 {
			return true, nil
		}
	}
	return false, nil
}

// run is one Start..Stop lifetime.
type run struct {
	cancelClaim context.CancelFunc // soft stop: no new claims
	cancelWork  context.CancelFunc // hard stop: abort deliveries
	done        chan struct{}
}

// Start runs delivery in the background until Stop: it drains the outbox,
// then waits for Wake or the poll interval, and re-checks held records
// every sync.held_recheck. Start on a running engine does nothing.
func (e *Engine) Start(ctx context.Context) {
	e.runMu.Lock()
	defer e.runMu.Unlock()
	if e.running != nil {
		return
	}
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	claimCtx, cancelClaim := context.WithCancel(workCtx)
	r := &run{cancelClaim: cancelClaim, cancelWork: cancelWork, done: make(chan struct{})}
	e.running = r
	go func() {
		defer close(r.done)
		e.loop(claimCtx, workCtx)
	}()
}

// Stop stops claiming new work and waits until in-flight deliveries finish
// or ctx ends; then it aborts them (their rows are released for retry,
// being idempotent). Stop is idempotent.
func (e *Engine) Stop(ctx context.Context) error {
	e.runMu.Lock()
	r := e.running
	e.running = nil
	e.runMu.Unlock()
	if r == nil {
		return nil
	}
	r.cancelClaim()
	select {
	case <-r.done:
		r.cancelWork()
		return nil
	case <-ctx.Done():
		r.cancelWork()
		<-r.done
		return ctx.Err()
	}
}

func (e *Engine) loop(claimCtx, workCtx context.Context) {
	held := time.NewTicker(e.cfg.Sync.HeldRecheck.D())
	defer held.Stop()
	poll := time.NewTicker(e.cfg.Sync.PollInterval.D())
	defer poll.Stop()
	for claimCtx.Err() == nil {
		if _, err := e.drainUntilStop(claimCtx, workCtx); err != nil && claimCtx.Err() == nil {
			e.log.Error("delivery pass failed", "err", err)
		}
		select {
		case <-claimCtx.Done():
			return
		case <-e.wake:
		case <-poll.C:
		case <-held.C:
			if _, err := e.RequeueHeld(claimCtx); err != nil && claimCtx.Err() == nil {
				e.log.Error("re-checking held records failed", "err", err)
			}
		}
	}
}

// drainUntilStop is Drain where claiming stops with claimCtx but the
// deliveries of a claimed batch run under workCtx, so a soft stop finishes
// them.
func (e *Engine) drainUntilStop(claimCtx, workCtx context.Context) (Stats, error) {
	var total Stats
	for claimCtx.Err() == nil {
		if _, err := e.store.Rescue(claimCtx, e.now()); err != nil {
			return total, err
		}
		rows, err := e.store.Claim(claimCtx, e.owner, e.cfg.Sync.BatchSize, e.now(), e.cfg.Sync.Lease.D())
		if err != nil {
			return total, err
		}
		if len(rows) == 0 {
			return total, nil
		}
		st := e.deliverBatch(workCtx, rows)
		total.Synced += st.Synced
		total.Dead += st.Dead
	}
	return total, nil
}

// deliverBatch delivers claimed rows kind by kind in dependency order, the
// rows of one kind concurrently (bounded by the adaptive limiter), so a
// patient and its order claimed together go out in the right order.
func (e *Engine) deliverBatch(ctx context.Context, rows []store.Record) Stats {
	var st Stats
	for _, kind := range mapping.Kinds {
		var group []store.Record
		for _, r := range rows {
			if r.Kind == string(kind) {
				group = append(group, r)
			}
		}
		if len(group) == 0 {
			continue
		}
		for _, out := range e.deliverKind(ctx, kind, group) {
			st.add(out)
		}
	}
	for _, r := range rows {
		if !mapping.Kind(r.Kind).Valid() {
			st.add(e.finish(r, store.Outcome{State: store.StateDead, Hash: r.Hash,
				ErrorClass: ClassInvalidRecord, ErrorDetail: "unknown record kind"}))
		}
	}
	return st
}

// deliverKind delivers the rows of one kind and returns their new states.
func (e *Engine) deliverKind(ctx context.Context, kind mapping.Kind, rows []store.Record) []store.State {
	if e.cfg.EHR.Strategy(primaryType(kind)) == "transaction" {
		return e.deliverTransactions(ctx, kind, rows)
	}
	states := make([]store.State, len(rows))
	var wg sync.WaitGroup
	for i, r := range rows {
		if err := e.limit.acquire(ctx); err != nil {
			states[i] = e.finish(r, canceled(r, e.now()))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer e.limit.release()
			states[i] = e.finish(r, e.deliver(ctx, r))
		}()
	}
	wg.Wait()
	return states
}

func canceled(r store.Record, now time.Time) store.Outcome {
	return store.Outcome{State: store.StateRetrying, Hash: r.Hash, NextAttemptAt: now, ErrorClass: ClassCanceled}
}

// finish commits a row's outcome. It uses its own context: an outcome the
// EHR has answered must be recorded even while shutting down.
func (e *Engine) finish(r store.Record, out store.Outcome) store.State {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out.Hash == "" {
		out.Hash = r.Hash
	}
	err := e.store.Finish(ctx, r.ID, e.owner, out, e.now())
	attrs := []any{"outbox_id", r.ID, "kind", r.Kind}
	if r.Kind != string(mapping.KindPatient) {
		attrs = append(attrs, "local_id", r.LocalID) // a patient's local id is its MRN: never logged
	}
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		e.log.Warn("lease lost before the outcome was recorded; another worker owns the row", attrs...)
		return store.StateInFlight
	case err != nil:
		// The lease will expire and the row will be delivered again
		// (idempotently): nothing is lost.
		e.log.Error("recording an outcome failed", append(attrs, "err", err)...)
		return store.StateInFlight
	}
	switch out.State {
	case store.StateSynced:
		now := e.now()
		e.metrics.Synced(r.Kind, now)
		e.lastSync.Lock()
		e.lastSyncT = now
		e.lastSync.Unlock()
		e.log.Debug("synced", append(attrs, "resource_id", out.EHRID, "version", out.EHRVersion)...)
	case store.StateDead:
		e.metrics.Dead(r.Kind, out.ErrorClass)
		e.log.Warn("dead letter", append(attrs, "class", out.ErrorClass)...)
	case store.StateRetrying:
		e.log.Info("will retry", append(attrs, "class", out.ErrorClass, "attempts", r.Attempts, "next_attempt", out.NextAttemptAt)...)
	case store.StateWaiting:
		e.log.Info("waiting", append(attrs, "class", out.ErrorClass, "wait_kind", out.WaitKind)...)
	}
	return out.State
}

// failure turns an error from the EHR client into an outcome.
func (e *Engine) failure(r store.Record, err error) store.Outcome {
	out := store.Outcome{Hash: r.Hash, ErrorClass: ehr.Reason(err)}
	switch ehr.Classify(err) {
	case ehr.ClassPermanent:
		out.State = store.StateDead
		var rej *ehr.RejectedError
		if errors.As(err, &rej) {
			out.ErrorDetail = rejectionDetail(rej)
		} else {
			out.ErrorDetail = err.Error()
		}
	case ehr.ClassCanceled:
		return canceled(r, e.now())
	default: // transient, conflict, auth: the outbox retries later
		out.State = store.StateRetrying
		var retryAfter time.Duration
		var te *ehr.TransientError
		if errors.As(err, &te) {
			retryAfter = te.RetryAfter
		}
		out.NextAttemptAt = e.retry.Next(r.Attempts, retryAfter)
		out.ErrorDetail = err.Error()
		e.metrics.Retry("outbox_" + out.ErrorClass)
	}
	return out
}

// rejectionDetail keeps the EHR's OperationOutcome issues, diagnostics
// included, for the dead-letter list. It is stored, never logged.
func rejectionDetail(rej *ehr.RejectedError) string {
	b, err := json.Marshal(struct {
		Status int         `json:"status"`
		Issues []ehr.Issue `json:"issues"`
	}{rej.Status, rej.Issues})
	if err != nil {
		return rej.Error()
	}
	return string(b)
}

// Depth returns the outbox rows per kind and state (metrics.OutboxSource).
func (e *Engine) Depth(ctx context.Context) (map[string]map[string]int, error) {
	counts, err := e.store.Counts(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]int, len(counts))
	for kind, states := range counts {
		m := make(map[string]int, len(store.States))
		for _, s := range store.States {
			m[string(s)] = states[s]
		}
		out[kind] = m
	}
	return out, nil
}

// OldestPending returns the creation time of the oldest row not yet synced
// or dead (metrics.OutboxSource).
func (e *Engine) OldestPending(ctx context.Context) (time.Time, bool, error) {
	return e.store.OldestPending(ctx)
}

// Received counts a record read from a source.
func (e *Engine) Received(rec *mapping.Record) { e.metrics.Received(string(rec.Kind)) }

// Rejected counts a record that failed the checks. The reason label is a
// bounded class, never a field path with indexes or a value.
func (e *Engine) Rejected(re *mapping.RecordError) {
	kind := string(re.Kind)
	if !re.Kind.Valid() {
		kind = "unknown"
	}
	e.metrics.Received(kind)
	e.metrics.Rejected(kind, "invalid_record")
}

// retryMax converts ehr.retry_max (0: no short retries) to the client's
// convention (0: its default, negative: none).
func retryMax(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
