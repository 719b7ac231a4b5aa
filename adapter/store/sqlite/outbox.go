package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/column"
)

// scanner is *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanRecord(sc scanner) (store.Record, error) {
	var (
		r                                      store.Record
		state, derived                         string
		next, lease, created, updated, syncedT int64
	)
	dest := []any{&r.ID, &r.Kind, &r.LocalID, &r.Hash, &state, &r.Attempts, &next,
		&r.LeaseOwner, &lease, &r.WaitKind, &r.WaitID, &r.ErrorClass, &r.ErrorDetail,
		&r.EHRID, &r.EHRVersion, &r.SyncedHash, &r.SentHash, &derived, &created, &updated, &syncedT, &r.Payload}
	if err := sc.Scan(dest...); err != nil {
		return store.Record{}, err
	}
	var err error
	if r.Derived, err = column.DecodeDerived(derived); err != nil {
		return store.Record{}, fmt.Errorf("row %d: %w", r.ID, err)
	}
	r.State = store.State(state)
	r.NextAttemptAt = column.FromNanos(next)
	r.LeaseExpires = column.FromNanos(lease)
	r.CreatedAt = column.FromNanos(created)
	r.UpdatedAt = column.FromNanos(updated)
	r.SyncedAt = column.FromNanos(syncedT)
	return r, nil
}

// inTx runs fn in a write transaction and commits it if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback() //nolint:errcheck // the error that matters is fn's
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Upsert offers records in one transaction. A new (kind, local id) is
// inserted pending; a changed hash updates the row as store.Updated
// documents; an equal hash changes nothing. Every record needs a Kind,
// LocalID and Hash; a record without is an error naming its index in recs,
// and nothing is committed.
func (s *Store) Upsert(ctx context.Context, recs []store.NewRecord) ([]store.UpsertOutcome, error) {
	for i, r := range recs {
		switch {
		case r.Kind == "":
			return nil, fmt.Errorf("sqlite: upsert: record %d: empty kind", i)
		case r.LocalID == "":
			return nil, fmt.Errorf("sqlite: upsert: record %d (%s): empty local id", i, r.Kind)
		case r.Hash == "":
			return nil, fmt.Errorf("sqlite: upsert: record %d (%s): empty hash", i, r.Kind)
		}
	}
	out := make([]store.UpsertOutcome, len(recs))
	if len(recs) == 0 {
		return out, nil
	}
	now := column.ToNanos(time.Now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		sel := tx.StmtContext(ctx, s.st.upsertRead)
		ins := tx.StmtContext(ctx, s.st.upsertInsert)
		updInFlight := tx.StmtContext(ctx, s.st.upsertInFlight)
		updReset := tx.StmtContext(ctx, s.st.upsertReset)
		for i, r := range recs {
			payload := r.Payload
			if payload == nil {
				payload = []byte{}
			}
			var (
				id          int64
				hash, state string
			)
			err := sel.QueryRowContext(ctx, r.Kind, r.LocalID).Scan(&id, &hash, &state)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if _, err := ins.ExecContext(ctx, r.Kind, r.LocalID, store.KindRank(r.Kind), r.Hash, now, payload); err != nil {
					return fmt.Errorf("record %d (%s): insert: %w", i, r.Kind, err)
				}
				out[i] = store.Inserted
			case err != nil:
				return fmt.Errorf("record %d (%s): read: %w", i, r.Kind, err)
			case hash == r.Hash:
				out[i] = store.Unchanged
			default:
				upd := updReset
				if store.State(state) == store.StateInFlight {
					upd = updInFlight
				}
				if _, err := upd.ExecContext(ctx, r.Hash, payload, now, id); err != nil {
					return fmt.Errorf("record %d (%s): update: %w", i, r.Kind, err)
				}
				out[i] = store.Updated
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: upsert: %w", err)
	}
	return out, nil
}

// Claim leases up to n deliverable rows to owner; see store.Store. n <= 0
// claims nothing. owner must not be empty (an empty LeaseOwner means "not
// leased") and should be unique per worker, since Finish trusts it: a worker
// whose lease expired and whose row was claimed again under the same owner
// name could not be told apart. lease must be positive.
func (s *Store) Claim(ctx context.Context, owner string, n int, now time.Time, lease time.Duration) ([]store.Record, error) {
	if owner == "" {
		return nil, errors.New("sqlite: claim: empty owner")
	}
	if lease <= 0 {
		return nil, fmt.Errorf("sqlite: claim: lease %v is not positive", lease)
	}
	if n <= 0 {
		return nil, nil
	}
	var recs []store.Record
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.StmtContext(ctx, s.st.claim).QueryContext(ctx, owner, column.ToNanos(now.Add(lease)), column.ToNanos(now), n)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	// RETURNING gives no order guarantee.
	sort.Slice(recs, func(i, j int) bool {
		if ri, rj := store.KindRank(recs[i].Kind), store.KindRank(recs[j].Kind); ri != rj {
			return ri < rj
		}
		return recs[i].ID < recs[j].ID
	})
	return recs, nil
}

// Finish records the outcome of a row leased to owner; see store.Store and
// store.Outcome. An invalid outcome (a state other than synced, retrying,
// waiting or dead; no Hash; half a dependency) is an error and changes
// nothing. A retrying outcome with a zero NextAttemptAt is claimable at once.
func (s *Store) Finish(ctx context.Context, id int64, owner string, out store.Outcome, now time.Time) error {
	if err := out.Validate(); err != nil {
		return fmt.Errorf("sqlite: finish %d: %w", id, err)
	}
	nowN := column.ToNanos(now)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return s.finishRow(ctx, tx, id, owner, out, nowN)
	})
	if err != nil {
		return fmt.Errorf("sqlite: finish %d: %w", id, err)
	}
	return nil
}

// FinishMany records the outcomes of items, rows leased to owner, in one
// write transaction (one commit, one fsync under WithSynchronousFull); see
// store.Store. Items are applied in order, each as Finish would apply it,
// so a later item sees what an earlier one did: a waiting outcome after
// the synced outcome of its dependency leaves its row pending, and a second
// item for the same row gets ErrLeaseLost. Per-item errors are the errors
// Finish would return. The returned slice has one entry per item, nil
// for the items recorded; it is nil when the transaction failed.
func (s *Store) FinishMany(ctx context.Context, owner string, items []store.Completion, now time.Time) ([]error, error) {
	errs := make([]error, len(items))
	valid := 0
	for i, it := range items {
		if err := it.Outcome.Validate(); err != nil {
			errs[i] = fmt.Errorf("sqlite: finish %d: %w", it.ID, err)
			continue
		}
		valid++
	}
	if valid == 0 {
		return errs, nil
	}
	nowN := column.ToNanos(now)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for i, it := range items {
			if errs[i] != nil {
				continue
			}
			err := s.finishRow(ctx, tx, it.ID, owner, it.Outcome, nowN)
			switch {
			case errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound):
				errs[i] = fmt.Errorf("sqlite: finish %d: %w", it.ID, err)
			case err != nil:
				return fmt.Errorf("item %d (id %d): %w", i, it.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish many: %w", err)
	}
	return errs, nil
}

// finishRow records a valid outcome of row id in tx, for Finish and
// FinishMany. It returns store.ErrNotFound or store.ErrLeaseLost, unwrapped,
// when it changed nothing for those reasons; any other error fails tx.
func (s *Store) finishRow(ctx context.Context, tx *sql.Tx, id int64, owner string, out store.Outcome, nowN int64) error {
	var kind, localID, hash, state, leaseOwner string
	var attempts int
	err := tx.StmtContext(ctx, s.st.finishRead).QueryRowContext(ctx, id).
		Scan(&kind, &localID, &hash, &state, &leaseOwner, &attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if store.State(state) != store.StateInFlight || leaseOwner != owner {
		return store.ErrLeaseLost
	}
	if err := s.recordAttempt(ctx, tx, id, attempts, out, nowN); err != nil {
		return err
	}
	stale := hash != out.Hash

	if out.State == store.StateSynced {
		// The delivered content exists in the EHR: record it, and wake
		// the rows waiting on it, even if the row has newer content.
		newState, syncedHash := store.StateSynced, hash
		if stale {
			newState, syncedHash = store.StatePending, out.Hash
		}
		if _, err := tx.StmtContext(ctx, s.st.finishSynced).ExecContext(ctx,
			newState, syncedHash, stale, out.EHRID, out.EHRVersion,
			out.SentHash, out.SetDerived, column.EncodeDerived(out.Derived), nowN, id); err != nil {
			return err
		}
		_, err := tx.StmtContext(ctx, s.st.wake).ExecContext(ctx, nowN, kind, localID)
		return err
	}

	if stale {
		// The outcome is about content the row no longer holds.
		return s.toPending(ctx, tx, id, out, nowN)
	}
	switch out.State {
	case store.StateRetrying:
		_, err = tx.StmtContext(ctx, s.st.finishRetrying).ExecContext(ctx,
			column.ToNanos(out.NextAttemptAt), out.ErrorClass, out.ErrorDetail, out.EHRID, out.EHRVersion, nowN, id)
	case store.StateDead:
		_, err = tx.StmtContext(ctx, s.st.finishDead).ExecContext(ctx,
			out.ErrorClass, out.ErrorDetail, out.EHRID, out.EHRVersion, nowN, id)
	case store.StateWaiting:
		if out.WaitKind != "" {
			var depState string
			err := tx.StmtContext(ctx, s.st.depState).QueryRowContext(ctx, out.WaitKind, out.WaitID).Scan(&depState)
			switch {
			case err == nil && store.State(depState) == store.StateSynced:
				// The dependency was synced after the worker looked:
				// its wake-up has already run, so do not wait for it.
				return s.toPending(ctx, tx, id, out, nowN)
			case err != nil && !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		_, err = tx.StmtContext(ctx, s.st.finishWaiting).ExecContext(ctx,
			out.WaitKind, out.WaitID, out.ErrorClass, out.ErrorDetail, out.EHRID, out.EHRVersion, nowN, id)
	}
	return err
}

// recordAttempt adds out to row id's history and drops what is beyond
// store.HistoryLimit.
func (s *Store) recordAttempt(ctx context.Context, tx *sql.Tx, id int64, attempts int, out store.Outcome, nowN int64) error {
	if _, err := tx.StmtContext(ctx, s.st.attempt).ExecContext(ctx, id, nowN, attempts, out.State,
		out.ErrorClass, out.ErrorDetail, out.WaitKind, out.WaitID, out.EHRID, out.EHRVersion, out.RequestID); err != nil {
		return err
	}
	_, err := tx.StmtContext(ctx, s.st.prune).ExecContext(ctx, id)
	return err
}

// toPending makes row id pending with attempts reset, lease, wait and
// errors cleared, recording the EHR id and version of out if it has them.
func (s *Store) toPending(ctx context.Context, tx *sql.Tx, id int64, out store.Outcome, now int64) error {
	_, err := tx.StmtContext(ctx, s.st.toPending).ExecContext(ctx, out.EHRID, out.EHRVersion, now, id)
	return err
}

// Renew sets the lease of each row in ids that is in_flight with owner as
// LeaseOwner to expire at now+lease, and reports how many rows it renewed;
// see store.Store. A lease that expired but that Rescue has not yet
// returned is still the owner's and is renewed, as Finish would accept it.
// Ids of other rows (another owner's, no longer in flight, unknown) are
// skipped, and so are repeated ids. A renewal does not change UpdatedAt.
// owner must not be empty and lease must be positive, as for Claim.
func (s *Store) Renew(ctx context.Context, owner string, ids []int64, now time.Time, lease time.Duration) (int, error) {
	if owner == "" {
		return 0, errors.New("sqlite: renew: empty owner")
	}
	if lease <= 0 {
		return 0, fmt.Errorf("sqlite: renew: lease %v is not positive", lease)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	// Once each, so that an id repeated in two chunks is not counted twice.
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	expires := column.ToNanos(now.Add(lease))
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(ids, chunkSize) {
			args := make([]any, 0, 2+len(chunk))
			args = append(args, expires, owner)
			for _, id := range chunk {
				args = append(args, id)
			}
			res, err := tx.ExecContext(ctx, fmt.Sprintf(renewSQL, inList("?", len(chunk))), args...)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: renew: %w", err)
	}
	return int(n), nil
}

// Rescue moves in_flight rows whose lease expired before now to retrying,
// claimable at once, with ErrorClass store.ErrorClassLeaseExpired; see
// store.Store.
func (s *Store) Rescue(ctx context.Context, now time.Time) (int, error) {
	nowN := column.ToNanos(now)
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The rescued rows' histories get the attempt first; they are
		// pruned at their next outcome.
		if _, err := tx.StmtContext(ctx, s.st.rescueAttempts).ExecContext(ctx, nowN, store.ErrorClassLeaseExpired); err != nil {
			return err
		}
		res, err := tx.StmtContext(ctx, s.st.rescue).ExecContext(ctx, nowN, store.ErrorClassLeaseExpired)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: rescue: %w", err)
	}
	return int(n), nil
}

// History returns the newest store.HistoryLimit attempts of row id, oldest
// first; see store.Store.
func (s *Store) History(ctx context.Context, id int64) ([]store.Attempt, error) {
	if _, err := s.GetByID(ctx, id); err != nil {
		return nil, fmt.Errorf("sqlite: history %d: %w", id, errors.Unwrap(err))
	}
	rows, err := s.st.history.QueryContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: history %d: %w", id, err)
	}
	defer rows.Close()
	out := []store.Attempt{}
	for rows.Next() {
		var a store.Attempt
		var at int64
		var state string
		if err := rows.Scan(&at, &a.Attempt, &state, &a.ErrorClass, &a.ErrorDetail, &a.WaitKind, &a.WaitID,
			&a.EHRID, &a.EHRVersion, &a.RequestID); err != nil {
			return nil, fmt.Errorf("sqlite: history %d: %w", id, err)
		}
		a.At, a.State = column.FromNanos(at), store.State(state)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: history %d: %w", id, err)
	}
	return out, nil
}

// Get returns the row of kind and local id, or an error wrapping
// store.ErrNotFound. The error does not name the local id (it may be an MRN).
func (s *Store) Get(ctx context.Context, kind, localID string) (store.Record, error) {
	r, err := scanRecord(s.st.get.QueryRowContext(ctx, kind, localID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("sqlite: get %s: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("sqlite: get %s: %w", kind, err)
	}
	return r, nil
}

// GetMany returns the rows of the keys that exist; see store.Store. It
// reads up to 200 keys per query (repeated keys once) and, when it needs
// more than one query, runs them in one read transaction, so the rows are
// one snapshot of the outbox. No keys give an empty map.
func (s *Store) GetMany(ctx context.Context, keys []store.Key) (map[store.Key]store.Record, error) {
	seen := make(map[store.Key]bool, len(keys))
	uniq := make([]store.Key, 0, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	out := make(map[store.Key]store.Record, len(uniq))
	if len(uniq) == 0 {
		return out, nil
	}
	read := func(q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}) error {
		for chunk := range slices.Chunk(uniq, chunkSize) {
			args := make([]any, 0, 2*len(chunk))
			for _, k := range chunk {
				args = append(args, k.Kind, k.LocalID)
			}
			rows, err := q.QueryContext(ctx, fmt.Sprintf(getManySQL, inList("(?, ?)", len(chunk))), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				r, err := scanRecord(rows)
				if err != nil {
					rows.Close()
					return err
				}
				out[store.Key{Kind: r.Kind, LocalID: r.LocalID}] = r
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if len(uniq) <= chunkSize {
		err = read(s.read)
	} else {
		var tx *sql.Tx
		if tx, err = s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}); err == nil {
			err = read(tx)
			tx.Rollback() //nolint:errcheck // read only: nothing to commit
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get many (%d keys): %w", len(uniq), err)
	}
	return out, nil
}

// GetByID returns the row with id, or an error wrapping store.ErrNotFound.
func (s *Store) GetByID(ctx context.Context, id int64) (store.Record, error) {
	r, err := scanRecord(s.st.getByID.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("sqlite: get id %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("sqlite: get id %d: %w", id, err)
	}
	return r, nil
}

// List returns up to limit rows in state with id > afterID, by id. A limit
// <= 0 returns no rows.
func (s *Store) List(ctx context.Context, state store.State, afterID int64, limit int) ([]store.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.st.list.QueryContext(ctx, string(state), afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list %s: %w", state, err)
	}
	defer rows.Close()
	var recs []store.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list %s: %w", state, err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list %s: %w", state, err)
	}
	return recs, nil
}

// Requeue moves a dead or waiting row to pending with attempts reset and its
// wait and errors cleared; see store.Store.
func (s *Store) Requeue(ctx context.Context, id int64, now time.Time) error {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.st.requeue).ExecContext(ctx, column.ToNanos(now), id)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: requeue %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: requeue %d: no dead or waiting row: %w", id, store.ErrNotFound)
	}
	return nil
}

// RequeueAll moves every dead row to pending, as Requeue does, and reports
// how many it moved.
func (s *Store) RequeueAll(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.st.requeueAll).ExecContext(ctx, column.ToNanos(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: requeue all: %w", err)
	}
	return int(n), nil
}

// Resync moves synced rows of kind ("" for every kind) whose SyncedAt is at
// or after since (zero for any time) to pending with attempts reset, in one
// transaction, and reports how many it moved; see store.Store. It keeps
// the content (Hash, Payload) and what the EHR holds (EHRID, EHRVersion,
// SyncedHash, SyncedAt, SentHash, Derived).
func (s *Store) Resync(ctx context.Context, kind string, since time.Time, now time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.st.resync).ExecContext(ctx, column.ToNanos(now), kind, column.ToNanos(since))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: resync: %w", err)
	}
	return int(n), nil
}

// Counts returns the number of rows per kind and state. Kinds and states
// without rows are absent; an empty outbox gives an empty, non-nil map.
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	rows, err := s.st.counts.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: counts: %w", err)
	}
	defer rows.Close()
	c := store.Counts{}
	for rows.Next() {
		var (
			kind, state string
			n           int
		)
		if err := rows.Scan(&kind, &state, &n); err != nil {
			return nil, fmt.Errorf("sqlite: counts: %w", err)
		}
		if c[kind] == nil {
			c[kind] = map[store.State]int{}
		}
		c[kind][store.State(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: counts: %w", err)
	}
	return c, nil
}

// OldestPending returns the creation time of the oldest row that is pending,
// retrying or waiting; see store.Store. It takes the first such row by id,
// which is the oldest unless the wall clock was stepped back between two
// inserts (then it is off by at most the step).
func (s *Store) OldestPending(ctx context.Context) (time.Time, bool, error) {
	var oldest sql.NullInt64
	err := s.st.oldest.QueryRowContext(ctx).Scan(&oldest)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: oldest pending: %w", err)
	}
	if !oldest.Valid {
		return time.Time{}, false, nil
	}
	return column.FromNanos(oldest.Int64), true, nil
}

// Meta returns the value stored under key, or an error wrapping
// store.ErrNotFound. Errors do not name the key.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.st.meta.QueryRowContext(ctx, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: meta: %w", store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: meta: %w", err)
	}
	return v, nil
}

// SetMeta stores value under key, replacing any value there, in its own
// transaction. Any string is a key, "" included; errors do not name it.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.st.setMeta).ExecContext(ctx, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: set meta: %w", err)
	}
	return nil
}
