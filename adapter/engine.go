package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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
	retry   RetryPolicy // the outbox's schedule
	// shortRetry is the schedule of in-memory retries (ehr.retry_wait_min
	// to ehr.retry_wait_max).
	shortRetry RetryPolicy
	pacer      *Pacer

	progress atomic.Int64 // rows recorded synced or dead by this engine's runs
	queued   atomic.Int64 // rows the running pipeline holds

	authMu  sync.Mutex
	authErr error // the authorization failure delivery is paused for

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
		retry:      RetryPolicy{Min: cfg.Sync.RetryMin.D(), Max: cfg.Sync.RetryBackoffMax.D(), Now: opts.Now},
		shortRetry: RetryPolicy{Min: min(cfg.EHR.RetryWaitMin.D(), cfg.EHR.RetryWaitMax.D()), Max: cfg.EHR.RetryWaitMax.D(), Now: opts.Now},
		pacer: NewPacer(PacerConfig{MaxRate: cfg.EHR.MaxRate, PauseThreshold: cfg.EHR.PauseThreshold.D(), Now: opts.Now,
			// Slow start from 4 requests per worker per second: a 250 ms
			// round trip keeps every worker busy from the first period,
			// and a faster EHR is found in a few doublings.
			StartRate: float64(max(10, 4*cfg.Sync.Concurrency))}),
		wake: make(chan struct{}, 1),
	}
	var key []byte
	if cfg.EHR.Auth.PrivateKey != "" {
		key = []byte(cfg.EHR.Auth.PrivateKey)
	}
	e.client, err = ehr.New(ehr.Config{
		BaseURL:          cfg.EHR.BaseURL,
		Timeout:          cfg.EHR.Timeout.D(),
		AnswerTimeoutMin: answerTimeoutMin(cfg.EHR.AnswerTimeoutMin.D()),
		// The pipeline retries, holding no worker while it waits: no
		// short retries inside a request.
		RetryMax:            -1,
		RetryWaitMax:        cfg.EHR.RetryWaitMax.D(),
		Pacer:               e.pacer,
		MaxIdleConnsPerHost: 2 * cfg.Sync.Concurrency,
		// sync.concurrency requests in flight, whatever the number of
		// workers (the pipeline runs more, see spareWorkers).
		MaxInFlight: cfg.Sync.Concurrency,
		UserAgent:   "ketamine-fhir",
		HTTPClient:  opts.HTTPClient,
		Logger:      opts.Logger,
		Auth: ehr.AuthConfig{
			Mode: cfg.EHR.Auth.Mode, Token: cfg.EHR.Auth.Token,
			ClientID: cfg.EHR.Auth.ClientID, ClientSecret: cfg.EHR.Auth.ClientSecret,
			PrivateKeyPEM: key, KeyID: cfg.EHR.Auth.KeyID,
			Scopes: cfg.EHR.Auth.Scopes, TokenURL: cfg.EHR.Auth.TokenURL,
		},
		TLS: ehr.TLSConfig{ClientCert: cfg.EHR.TLS.ClientCert, ClientKey: cfg.EHR.TLS.ClientKey, CABundle: cfg.EHR.TLS.CABundle},
		Hooks: ehr.Hooks{
			OnRequest:      e.metrics.EHRRequest,
			OnRetry:        e.metrics.Retry,
			OnTokenRefresh: e.metrics.TokenRefresh,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	return e, nil
}

// Progress returns how many rows this engine's runs have recorded synced
// or dead (each row once per delivery), for progress bars: it only grows.
func (e *Engine) Progress() int64 { return e.progress.Load() }

// DeliveryStatus says how delivery is going, for /v1/status. It holds no
// patient data and no secret.
type DeliveryStatus struct {
	// Paused is why delivery is paused ("auth"), or "" while it runs.
	Paused string `json:"paused,omitempty"`
	// PausedError says what failed and what to check.
	PausedError string `json:"paused_error,omitempty"`
	// RateLimit is the pacer's request rate per second; null while it is
	// not limited.
	RateLimit *float64 `json:"rate_limit"`
	// PausedUntil is the end of a pause the EHR asked for with a long
	// Retry-After; null when none.
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// InFlight is the requests sent to the EHR and not yet answered.
	InFlight int `json:"in_flight"`
	// Queued is the rows the delivery pipeline holds (claimed ahead,
	// delayed, parked or in delivery).
	Queued int `json:"queued"`
}

// Delivery returns the current DeliveryStatus.
func (e *Engine) Delivery() DeliveryStatus {
	ps := e.pacer.State()
	d := DeliveryStatus{InFlight: ps.InFlight, Queued: int(e.queued.Load())}
	if !math.IsInf(ps.Rate, 1) {
		r := ps.Rate
		d.RateLimit = &r
	}
	if !ps.PausedUntil.IsZero() {
		t := ps.PausedUntil.UTC()
		d.PausedUntil = &t
	}
	if err := e.AuthPaused(); err != nil {
		d.Paused, d.PausedError = ClassAuth, err.Error()
	}
	return d
}

// Pacer returns the pacer of the engine's EHR requests.
func (e *Engine) Pacer() *Pacer { return e.pacer }

// Client returns the engine's EHR client, with its auth and pacer, for
// other work against the same EHR (Bulk Data export). It makes no short
// retries: callers retry on their own schedule.
func (e *Engine) Client() *ehr.Client { return e.client }

// AuthPaused returns the authorization failure delivery is paused for,
// or nil. Its text names what to check and holds no secret.
func (e *Engine) AuthPaused() error {
	e.authMu.Lock()
	defer e.authMu.Unlock()
	return e.authErr
}

// setAuthPaused records (err non-nil) or clears an authorization pause,
// logging each change once.
func (e *Engine) setAuthPaused(err error) {
	e.authMu.Lock()
	was := e.authErr
	e.authErr = err
	e.authMu.Unlock()
	switch {
	case err != nil && was == nil:
		e.log.Error("delivery paused: the EHR refused the adapter's authorization; records stay queued with reason auth",
			"class", ehr.Reason(err), "err", err)
		e.metrics.DeliveryPaused(ClassAuth, true)
	case err == nil && was != nil:
		e.log.Info("delivery resumed: the EHR accepts the adapter's authorization again")
		e.metrics.DeliveryPaused(ClassAuth, false)
	}
}

// mappingMetaKey is the outbox meta key of the mapping fingerprint.
const mappingMetaKey = "mapping_fingerprint"

// checkMapping compares the mapping configuration with the one the outbox
// last delivered under. When it changed, every synced row is queued again
// (Resync): each is mapped anew and sent only if its FHIR output changed.
func (e *Engine) checkMapping(ctx context.Context) error {
	fp := e.mapper.Fingerprint()
	old, err := e.store.Meta(ctx, mappingMetaKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("adapter: reading the mapping fingerprint: %w", err)
	case old != fp:
		n, err := e.store.Resync(ctx, "", time.Time{}, e.now())
		if err != nil {
			return fmt.Errorf("adapter: re-queueing synced records after a mapping change: %w", err)
		}
		e.log.Info("the mapping configuration changed: synced records are compared again; those whose FHIR output changed are sent", "records", n)
	default:
		return nil
	}
	if err := e.store.SetMeta(ctx, mappingMetaKey, fp); err != nil {
		return fmt.Errorf("adapter: recording the mapping fingerprint: %w", err)
	}
	return nil
}

// Resync queues synced records again (of kind, or all kinds when kind is
// ""; synced at or after since unless since is zero) and reports how many.
// Each is mapped anew and sent only if its FHIR output changed.
func (e *Engine) Resync(ctx context.Context, kind string, since time.Time) (int, error) {
	n, err := e.store.Resync(ctx, kind, since, e.now())
	if err != nil {
		return 0, fmt.Errorf("adapter: resync: %w", err)
	}
	if n > 0 {
		e.Wake()
	}
	return n, nil
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

// Stats counts the outcomes one Drain, Sync or serve run recorded. A row
// that goes back to the outbox and is tried again in the same run counts
// once per outcome.
type Stats struct {
	// Synced counts rows recorded synced: delivered, or found unchanged.
	Synced int
	// Unchanged counts, of Synced, the rows whose FHIR output was the same
	// as what the EHR already holds: recorded synced with no request.
	Unchanged int
	// Retrying counts outcomes that sent a row back to the outbox for a
	// later attempt (a transient failure, an authorization pause, a
	// shutdown).
	Retrying int
	// Waiting counts outcomes that left a row waiting for a dependency or
	// held by policy.
	Waiting int
	// Dead counts rows moved to the dead letters.
	Dead int
	// Reasons counts the Retrying and Waiting outcomes by their error
	// class ("http_503", "auth", "dependency_pending", ...).
	Reasons map[string]int
}

func newStats() Stats { return Stats{Reasons: map[string]int{}} }

func (s *Stats) add(out store.Outcome, unchanged bool) {
	switch out.State {
	case store.StateSynced:
		s.Synced++
		if unchanged {
			s.Unchanged++
		}
	case store.StateRetrying, store.StatePending:
		s.Retrying++
		s.Reasons[out.ErrorClass]++
	case store.StateWaiting:
		s.Waiting++
		s.Reasons[out.ErrorClass]++
	case store.StateDead:
		s.Dead++
	}
}

// Drain delivers until no row is deliverable now: rows retrying later
// are left for later. It returns ErrAuthorization (wrapped) when the EHR
// refused the adapter's authorization.
func (e *Engine) Drain(ctx context.Context) (Stats, error) {
	if err := e.checkMapping(ctx); err != nil {
		return newStats(), err
	}
	return e.newPipeline(modeDrain, ctx, ctx).run()
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
// or ctx ends. It is the body of `ketamine-fhir sync`. It returns
// ErrAuthorization (wrapped) when the EHR refused the adapter's
// authorization: the rows stay queued with reason auth.
func (e *Engine) Sync(ctx context.Context, deadline time.Time) (Stats, error) {
	if _, err := e.RequeueHeld(ctx); err != nil {
		return newStats(), fmt.Errorf("adapter: re-checking held records: %w", err)
	}
	if err := e.checkMapping(ctx); err != nil {
		return newStats(), err
	}
	claimCtx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		claimCtx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	// At the deadline no new row is claimed; rows in flight finish.
	return e.newPipeline(modeSync, claimCtx, ctx).run()
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

// Start runs delivery in the background until Stop: the pipeline claims
// whatever becomes deliverable, woken by Wake and polling every
// sync.poll_interval, and re-checks held records every sync.held_recheck.
// Start on a running engine does nothing.
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
		if err := e.checkMapping(claimCtx); err != nil && claimCtx.Err() == nil {
			e.log.Error("comparing the mapping configuration failed", "err", err)
		}
		if _, err := e.newPipeline(modeServe, claimCtx, workCtx).run(); err != nil && claimCtx.Err() == nil {
			e.log.Error("delivery stopped", "err", err)
		}
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

func canceled(r store.Record, now time.Time) store.Outcome {
	return store.Outcome{State: store.StateRetrying, Hash: r.Hash, NextAttemptAt: now, ErrorClass: ClassCanceled}
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

// answerTimeoutMin is ehr.answer_timeout_min as ehr.Config takes it: 0
// (off) is negative there, where 0 means the default.
func answerTimeoutMin(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
