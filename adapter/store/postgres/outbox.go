package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/column"
)

// recordCols are the columns of a store.Record, in scanRecord's order.
const recordCols = `id, kind, local_id, hash, state, attempts, next_attempt_at,
	lease_owner, lease_expires, wait_kind, wait_id, error_class, error_detail,
	ehr_id, ehr_version, synced_hash, sent_hash, derived, created_at, updated_at, synced_at, payload`

func scanRecord(sc pgx.Row) (store.Record, error) {
	var (
		r                                      store.Record
		state, derived                         string
		next, lease, created, updated, syncedT int64
	)
	if err := sc.Scan(&r.ID, &r.Kind, &r.LocalID, &r.Hash, &state, &r.Attempts, &next,
		&r.LeaseOwner, &lease, &r.WaitKind, &r.WaitID, &r.ErrorClass, &r.ErrorDetail,
		&r.EHRID, &r.EHRVersion, &r.SyncedHash, &r.SentHash, &derived, &created, &updated, &syncedT, &r.Payload); err != nil {
		return store.Record{}, err
	}
	var err error
	if r.Derived, err = column.DecodeDerived(derived); err != nil {
		return store.Record{}, fmt.Errorf("row %d: %w", r.ID, err)
	}
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	r.State = store.State(state)
	r.NextAttemptAt = column.FromNanos(next)
	r.LeaseExpires = column.FromNanos(lease)
	r.CreatedAt = column.FromNanos(created)
	r.UpdatedAt = column.FromNanos(updated)
	r.SyncedAt = column.FromNanos(syncedT)
	return r, nil
}

func scanRecords(rows pgx.Rows) ([]store.Record, error) {
	defer rows.Close()
	var recs []store.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

const (
	upsertReadSQL   = `SELECT id, hash, state FROM outbox WHERE kind = $1 AND local_id = $2 FOR UPDATE`
	upsertInsertSQL = `INSERT INTO outbox (kind, local_id, kind_rank, hash, state, created_at, updated_at, payload)
		VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6) ON CONFLICT (kind, local_id) DO NOTHING`
	upsertInFlightSQL = `UPDATE outbox SET hash = $1, payload = $2, updated_at = $3 WHERE id = $4`
	upsertResetSQL    = `UPDATE outbox SET hash = $1, payload = $2, updated_at = $3,
			state = 'pending', attempts = 0, next_attempt_at = 0, lease_owner = '', lease_expires = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = ''
		WHERE id = $4`

	// claimSQL: $1 owner, $2 lease expiry, $3 now, $4 limit. SKIP LOCKED:
	// rows another transaction is changing (another instance's Claim, a
	// Finish waking them) are left for the next Claim.
	claimSQL = `WITH c AS (
			SELECT id FROM outbox
			WHERE state IN ('pending', 'retrying') AND (state = 'pending' OR next_attempt_at <= $3)
			ORDER BY kind_rank, id
			LIMIT $4
			FOR UPDATE SKIP LOCKED)
		UPDATE outbox o SET state = 'in_flight', lease_owner = $1, lease_expires = $2,
			attempts = o.attempts + 1, updated_at = $3
		FROM c WHERE o.id = c.id
		RETURNING ` + `o.id, o.kind, o.local_id, o.hash, o.state, o.attempts, o.next_attempt_at,
			o.lease_owner, o.lease_expires, o.wait_kind, o.wait_id, o.error_class, o.error_detail,
			o.ehr_id, o.ehr_version, o.synced_hash, o.sent_hash, o.derived, o.created_at, o.updated_at,
			o.synced_at, o.payload`

	finishReadSQL   = `SELECT kind, local_id, hash, state, lease_owner, attempts FROM outbox WHERE id = $1 FOR UPDATE`
	finishSyncedSQL = `UPDATE outbox SET state = $1, synced_hash = $2,
			attempts = CASE WHEN $3::boolean THEN 0 ELSE attempts END,
			ehr_id = COALESCE(NULLIF($4::text, ''), ehr_id), ehr_version = COALESCE(NULLIF($5::text, ''), ehr_version),
			sent_hash = COALESCE(NULLIF($6::text, ''), sent_hash),
			derived = CASE WHEN $7::boolean THEN $8::text ELSE derived END,
			synced_at = $9, updated_at = $9, next_attempt_at = 0, lease_owner = '', lease_expires = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = ''
		WHERE id = $10`
	wakeSQL = `UPDATE outbox SET state = 'pending', wait_kind = '', wait_id = '',
			error_class = '', error_detail = '', next_attempt_at = 0, updated_at = $1
		WHERE state = 'waiting' AND wait_kind = $2 AND wait_id = $3`
	finishRetryingSQL = `UPDATE outbox SET state = 'retrying', next_attempt_at = $1,
			error_class = $2, error_detail = $3,
			ehr_id = COALESCE(NULLIF($4::text, ''), ehr_id), ehr_version = COALESCE(NULLIF($5::text, ''), ehr_version),
			updated_at = $6, lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = ''
		WHERE id = $7`
	finishDeadSQL = `UPDATE outbox SET state = 'dead', next_attempt_at = 0,
			error_class = $1, error_detail = $2,
			ehr_id = COALESCE(NULLIF($3::text, ''), ehr_id), ehr_version = COALESCE(NULLIF($4::text, ''), ehr_version),
			updated_at = $5, lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = ''
		WHERE id = $6`
	depStateSQL      = `SELECT state FROM outbox WHERE kind = $1 AND local_id = $2`
	finishWaitingSQL = `UPDATE outbox SET state = 'waiting', next_attempt_at = 0,
			wait_kind = $1, wait_id = $2, error_class = $3, error_detail = $4,
			ehr_id = COALESCE(NULLIF($5::text, ''), ehr_id), ehr_version = COALESCE(NULLIF($6::text, ''), ehr_version),
			updated_at = $7, lease_owner = '', lease_expires = 0
		WHERE id = $8`
	toPendingSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = '',
			error_class = '', error_detail = '',
			ehr_id = COALESCE(NULLIF($1::text, ''), ehr_id), ehr_version = COALESCE(NULLIF($2::text, ''), ehr_version),
			updated_at = $3
		WHERE id = $4`
	// depLockSQL: a transaction-scoped advisory lock of a dependency's key,
	// taken by a waiting outcome before it reads the dependency's state and
	// by a synced outcome before it wakes the dependency's waiters. Under
	// READ COMMITTED, without it, a waiter's transaction could read the
	// dependency as not synced while the dependency's transaction wakes
	// waiters without seeing the uncommitted waiter: a lost wake-up.
	depLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1::text || '|' || $2::text, 0))`

	renewSQL = `UPDATE outbox SET lease_expires = $1
		WHERE state = 'in_flight' AND lease_owner = $2 AND id = ANY($3)`
	requeueSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = '', updated_at = $1
		WHERE id = $2 AND state IN ('dead', 'waiting')`
	requeueAllSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = '', updated_at = $1
		WHERE state = 'dead'`
	resyncSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = '',
			error_class = '', error_detail = '', updated_at = $1
		WHERE state = 'synced' AND ($2::text = '' OR kind = $2::text) AND ($3::bigint = 0 OR synced_at >= $3::bigint)`

	metaSQL    = `SELECT value FROM meta WHERE key = $1`
	setMetaSQL = `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`

	getSQL     = `SELECT ` + recordCols + ` FROM outbox WHERE kind = $1 AND local_id = $2`
	getManySQL = `SELECT ` + recordCols + ` FROM outbox
		WHERE (kind, local_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`
	getByIDSQL = `SELECT ` + recordCols + ` FROM outbox WHERE id = $1`
	listSQL    = `SELECT ` + recordCols + ` FROM outbox WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3`
	countsSQL  = `SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state`
	oldestSQL  = `SELECT MIN(c) FROM (
			(SELECT created_at AS c FROM outbox WHERE state = 'pending' ORDER BY id LIMIT 1)
			UNION ALL (SELECT created_at FROM outbox WHERE state = 'retrying' ORDER BY id LIMIT 1)
			UNION ALL (SELECT created_at FROM outbox WHERE state = 'waiting' ORDER BY id LIMIT 1)) t`
)

// Upsert offers records in one transaction; see store.Store. Every record
// needs a Kind, LocalID and Hash; a record without is an error naming its
// index, and nothing is committed. Two instances offering the same new
// record at once both see it inserted once: the loser of the insert race
// reads the winner's row.
func (s *Store) Upsert(ctx context.Context, recs []store.NewRecord) ([]store.UpsertOutcome, error) {
	for i, r := range recs {
		switch {
		case r.Kind == "":
			return nil, fmt.Errorf("postgres: upsert: record %d: empty kind", i)
		case r.LocalID == "":
			return nil, fmt.Errorf("postgres: upsert: record %d (%s): empty local id", i, r.Kind)
		case r.Hash == "":
			return nil, fmt.Errorf("postgres: upsert: record %d (%s): empty hash", i, r.Kind)
		}
	}
	out := make([]store.UpsertOutcome, len(recs))
	if len(recs) == 0 {
		return out, nil
	}
	now := column.ToNanos(time.Now())
	inserted := false
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		inserted = false
		for i, r := range recs {
			payload := r.Payload
			if payload == nil {
				payload = []byte{}
			}
			for {
				var (
					id          int64
					hash, state string
				)
				err := tx.QueryRow(ctx, upsertReadSQL, r.Kind, r.LocalID).Scan(&id, &hash, &state)
				if errors.Is(err, pgx.ErrNoRows) {
					tag, err := tx.Exec(ctx, upsertInsertSQL, r.Kind, r.LocalID, store.KindRank(r.Kind), r.Hash, now, payload)
					if err != nil {
						return fmt.Errorf("record %d (%s): insert: %w", i, r.Kind, err)
					}
					if tag.RowsAffected() == 0 {
						continue // another transaction inserted it: read it
					}
					out[i], inserted = store.Inserted, true
					break
				}
				if err != nil {
					return fmt.Errorf("record %d (%s): read: %w", i, r.Kind, err)
				}
				if hash == r.Hash {
					out[i] = store.Unchanged
					break
				}
				upd := upsertResetSQL
				if store.State(state) == store.StateInFlight {
					upd = upsertInFlightSQL
				}
				if _, err := tx.Exec(ctx, upd, r.Hash, payload, now, id); err != nil {
					return fmt.Errorf("record %d (%s): update: %w", i, r.Kind, err)
				}
				out[i], inserted = store.Updated, true
				break
			}
		}
		if inserted {
			return s.notifyTx(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: upsert: %w", err)
	}
	return out, nil
}

// Claim leases up to n deliverable rows to owner; see store.Store. owner
// must not be empty and should be unique per worker across instances; lease
// must be positive. Rows locked by another transaction at that moment are
// skipped (SKIP LOCKED), so concurrent Claims never wait for each other.
func (s *Store) Claim(ctx context.Context, owner string, n int, now time.Time, lease time.Duration) ([]store.Record, error) {
	if owner == "" {
		return nil, errors.New("postgres: claim: empty owner")
	}
	if lease <= 0 {
		return nil, fmt.Errorf("postgres: claim: lease %v is not positive", lease)
	}
	if n <= 0 {
		return nil, nil
	}
	var recs []store.Record
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, claimSQL, owner, column.ToNanos(now.Add(lease)), column.ToNanos(now), n)
		if err != nil {
			return err
		}
		recs, err = scanRecords(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	sort.Slice(recs, func(i, j int) bool {
		if ri, rj := store.KindRank(recs[i].Kind), store.KindRank(recs[j].Kind); ri != rj {
			return ri < rj
		}
		return recs[i].ID < recs[j].ID
	})
	return recs, nil
}

// Finish records the outcome of a row leased to owner; see store.Store.
func (s *Store) Finish(ctx context.Context, id int64, owner string, out store.Outcome, now time.Time) error {
	if err := out.Validate(); err != nil {
		return fmt.Errorf("postgres: finish %d: %w", id, err)
	}
	nowN := column.ToNanos(now)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		woke, err := s.finishRow(ctx, tx, id, owner, out, nowN)
		if err == nil && woke {
			err = s.notifyTx(ctx, tx)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: finish %d: %w", id, err)
	}
	return nil
}

// FinishMany records the outcomes of items in one transaction, each as
// Finish would; see store.Store. Per-item ErrLeaseLost and ErrNotFound do
// not stop the others.
func (s *Store) FinishMany(ctx context.Context, owner string, items []store.Completion, now time.Time) ([]error, error) {
	errs := make([]error, len(items))
	valid := 0
	for i, it := range items {
		if err := it.Outcome.Validate(); err != nil {
			errs[i] = fmt.Errorf("postgres: finish %d: %w", it.ID, err)
			continue
		}
		valid++
	}
	if valid == 0 {
		return errs, nil
	}
	nowN := column.ToNanos(now)
	var itemErrs []error
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		itemErrs = slices.Clone(errs) // a retried transaction starts over
		anyWoke := false
		for i, it := range items {
			if itemErrs[i] != nil {
				continue
			}
			woke, err := s.finishRow(ctx, tx, it.ID, owner, it.Outcome, nowN)
			switch {
			case errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound):
				itemErrs[i] = fmt.Errorf("postgres: finish %d: %w", it.ID, err)
			case err != nil:
				return fmt.Errorf("item %d (id %d): %w", i, it.ID, err)
			}
			anyWoke = anyWoke || woke
		}
		if anyWoke {
			return s.notifyTx(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: finish many: %w", err)
	}
	return itemErrs, nil
}

// finishRow records a valid outcome of row id in tx. It returns
// store.ErrNotFound or store.ErrLeaseLost, unwrapped, when it changed
// nothing for those reasons; any other error fails tx. woke reports that
// rows became claimable (a synced outcome woke waiters, or a row went back
// to pending), for NOTIFY.
func (s *Store) finishRow(ctx context.Context, tx pgx.Tx, id int64, owner string, out store.Outcome, nowN int64) (woke bool, err error) {
	var kind, localID, hash, state, leaseOwner string
	var attempts int
	err = tx.QueryRow(ctx, finishReadSQL, id).Scan(&kind, &localID, &hash, &state, &leaseOwner, &attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, store.ErrNotFound
	}
	if err != nil {
		return false, err
	}
	if store.State(state) != store.StateInFlight || leaseOwner != owner {
		return false, store.ErrLeaseLost
	}
	if err := recordAttempt(ctx, tx, id, attempts, out, nowN); err != nil {
		return false, err
	}
	stale := hash != out.Hash

	if out.State == store.StateSynced {
		newState, syncedHash := store.StateSynced, hash
		if stale {
			newState, syncedHash = store.StatePending, out.Hash
		}
		if _, err := tx.Exec(ctx, depLockSQL, kind, localID); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, finishSyncedSQL,
			string(newState), syncedHash, stale, out.EHRID, out.EHRVersion,
			out.SentHash, out.SetDerived, column.EncodeDerived(out.Derived), nowN, id); err != nil {
			return false, err
		}
		tag, err := tx.Exec(ctx, wakeSQL, nowN, kind, localID)
		return stale || tag.RowsAffected() > 0, err
	}

	if stale {
		return true, s.toPending(ctx, tx, id, out, nowN)
	}
	switch out.State {
	case store.StateRetrying:
		_, err = tx.Exec(ctx, finishRetryingSQL,
			column.ToNanos(out.NextAttemptAt), out.ErrorClass, out.ErrorDetail, out.EHRID, out.EHRVersion, nowN, id)
		// A retry due now is claimable at once.
		return !out.NextAttemptAt.After(column.FromNanos(nowN)), err
	case store.StateDead:
		_, err = tx.Exec(ctx, finishDeadSQL,
			out.ErrorClass, out.ErrorDetail, out.EHRID, out.EHRVersion, nowN, id)
	case store.StateWaiting:
		if out.WaitKind != "" {
			if _, err := tx.Exec(ctx, depLockSQL, out.WaitKind, out.WaitID); err != nil {
				return false, err
			}
			var depState string
			err := tx.QueryRow(ctx, depStateSQL, out.WaitKind, out.WaitID).Scan(&depState)
			switch {
			case err == nil && store.State(depState) == store.StateSynced:
				// Synced after the worker looked: its wake-up has run.
				return true, s.toPending(ctx, tx, id, out, nowN)
			case err != nil && !errors.Is(err, pgx.ErrNoRows):
				return false, err
			}
		}
		_, err = tx.Exec(ctx, finishWaitingSQL,
			out.WaitKind, out.WaitID, out.ErrorClass, out.ErrorDetail, out.EHRID, out.EHRVersion, nowN, id)
	}
	return false, err
}

// toPending makes row id pending with attempts reset, lease, wait and
// errors cleared, recording the EHR id and version of out if it has them.
func (s *Store) toPending(ctx context.Context, tx pgx.Tx, id int64, out store.Outcome, now int64) error {
	_, err := tx.Exec(ctx, toPendingSQL, out.EHRID, out.EHRVersion, now, id)
	return err
}

// Renew extends the leases of the rows in ids that are in_flight with owner
// as LeaseOwner; see store.Store. Repeated and foreign ids are skipped.
func (s *Store) Renew(ctx context.Context, owner string, ids []int64, now time.Time, lease time.Duration) (int, error) {
	if owner == "" {
		return 0, errors.New("postgres: renew: empty owner")
	}
	if lease <= 0 {
		return 0, fmt.Errorf("postgres: renew: lease %v is not positive", lease)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, renewSQL, column.ToNanos(now.Add(lease)), owner, ids)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: renew: %w", err)
	}
	return int(n), nil
}

// Rescue moves in_flight rows whose lease expired before now to retrying,
// claimable at once, with ErrorClass store.ErrorClassLeaseExpired. Any instance's
// Rescue returns a dead instance's rows.
func (s *Store) Rescue(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, rescueSQL, column.ToNanos(now), store.ErrorClassLeaseExpired)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n > 0 {
			return s.notifyTx(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: rescue: %w", err)
	}
	return int(n), nil
}

// Get returns the row of kind and local id, or an error wrapping
// store.ErrNotFound. The error does not name the local id.
func (s *Store) Get(ctx context.Context, kind, localID string) (store.Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, getSQL, kind, localID))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, fmt.Errorf("postgres: get %s: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("postgres: get %s: %w", kind, redact(err))
	}
	return r, nil
}

// GetMany returns the rows of the keys that exist, in one query (so one
// snapshot); see store.Store.
func (s *Store) GetMany(ctx context.Context, keys []store.Key) (map[store.Key]store.Record, error) {
	seen := make(map[store.Key]bool, len(keys))
	var kinds, ids []string
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			kinds, ids = append(kinds, k.Kind), append(ids, k.LocalID)
		}
	}
	out := make(map[store.Key]store.Record, len(kinds))
	if len(kinds) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, getManySQL, kinds, ids)
	if err == nil {
		var recs []store.Record
		if recs, err = scanRecords(rows); err == nil {
			for _, r := range recs {
				out[store.Key{Kind: r.Kind, LocalID: r.LocalID}] = r
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get many (%d keys): %w", len(kinds), redact(err))
	}
	return out, nil
}

// GetByID returns the row with id, or an error wrapping store.ErrNotFound.
func (s *Store) GetByID(ctx context.Context, id int64) (store.Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, getByIDSQL, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, fmt.Errorf("postgres: get id %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("postgres: get id %d: %w", id, redact(err))
	}
	return r, nil
}

// List returns up to limit rows in state with id > afterID, by id.
func (s *Store) List(ctx context.Context, state store.State, afterID int64, limit int) ([]store.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, listSQL, string(state), afterID, limit)
	var recs []store.Record
	if err == nil {
		recs, err = scanRecords(rows)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list %s: %w", state, redact(err))
	}
	return recs, nil
}

// exec runs one statement in its own transaction and returns the rows it
// changed; notify sends NOTIFY in the same transaction when rows changed.
func (s *Store) exec(ctx context.Context, notify bool, sql string, args ...any) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n > 0 && notify {
			return s.notifyTx(ctx, tx)
		}
		return nil
	})
	return n, err
}

// Requeue moves a dead or waiting row to pending; see store.Store.
func (s *Store) Requeue(ctx context.Context, id int64, now time.Time) error {
	n, err := s.exec(ctx, true, requeueSQL, column.ToNanos(now), id)
	if err != nil {
		return fmt.Errorf("postgres: requeue %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: requeue %d: no dead or waiting row: %w", id, store.ErrNotFound)
	}
	return nil
}

// RequeueAll moves every dead row to pending and reports how many.
func (s *Store) RequeueAll(ctx context.Context, now time.Time) (int, error) {
	n, err := s.exec(ctx, true, requeueAllSQL, column.ToNanos(now))
	if err != nil {
		return 0, fmt.Errorf("postgres: requeue all: %w", err)
	}
	return int(n), nil
}

// Resync moves synced rows back to pending; see store.Store.
func (s *Store) Resync(ctx context.Context, kind string, since time.Time, now time.Time) (int, error) {
	n, err := s.exec(ctx, true, resyncSQL, column.ToNanos(now), kind, column.ToNanos(since))
	if err != nil {
		return 0, fmt.Errorf("postgres: resync: %w", err)
	}
	return int(n), nil
}

// Counts returns the number of rows per kind and state.
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	rows, err := s.pool.Query(ctx, countsSQL)
	if err != nil {
		return nil, fmt.Errorf("postgres: counts: %w", redact(err))
	}
	defer rows.Close()
	c := store.Counts{}
	for rows.Next() {
		var (
			kind, state string
			n           int64
		)
		if err := rows.Scan(&kind, &state, &n); err != nil {
			return nil, fmt.Errorf("postgres: counts: %w", err)
		}
		if c[kind] == nil {
			c[kind] = map[store.State]int{}
		}
		c[kind][store.State(state)] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: counts: %w", redact(err))
	}
	return c, nil
}

// OldestPending returns the creation time of the oldest row that is
// pending, retrying or waiting (the first by id); see store.Store.
func (s *Store) OldestPending(ctx context.Context) (time.Time, bool, error) {
	var oldest *int64
	if err := s.pool.QueryRow(ctx, oldestSQL).Scan(&oldest); err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: oldest pending: %w", redact(err))
	}
	if oldest == nil {
		return time.Time{}, false, nil
	}
	return column.FromNanos(*oldest), true, nil
}

// Meta returns the value stored under key, or an error wrapping
// store.ErrNotFound. Errors do not name the key.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, metaSQL, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: meta: %w", store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: meta: %w", redact(err))
	}
	return v, nil
}

// SetMeta stores value under key, replacing any value there.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	if _, err := s.exec(ctx, false, setMetaSQL, key, value); err != nil {
		return fmt.Errorf("postgres: set meta: %w", err)
	}
	return nil
}
