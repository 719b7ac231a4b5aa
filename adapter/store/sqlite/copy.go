package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/column"
)

var _ store.Copier = (*Store)(nil)

// MetaAll returns every Meta key and value; see store.Copier.
func (s *Store) MetaAll(ctx context.Context) (map[string]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT key, value FROM meta`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: meta all: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("sqlite: meta all: %w", err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: meta all: %w", err)
	}
	return out, nil
}

// loadSQL inserts a row as it is, keeping its id.
const loadSQL = `INSERT INTO outbox (id, kind, local_id, kind_rank, hash, state, attempts, next_attempt_at,
		lease_owner, lease_expires, wait_kind, wait_id, error_class, error_detail,
		ehr_id, ehr_version, synced_hash, sent_hash, derived, created_at, updated_at, synced_at, payload)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (kind, local_id) DO NOTHING`

// Load inserts rows as they are; see store.Copier.
func (s *Store) Load(ctx context.Context, recs []store.Record, history map[int64][]store.Attempt, meta map[string]string) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, loadSQL)
		if err != nil {
			return err
		}
		defer ins.Close()
		for _, r := range recs {
			payload := r.Payload
			if payload == nil {
				payload = []byte{}
			}
			res, err := ins.ExecContext(ctx, r.ID, r.Kind, r.LocalID, store.KindRank(r.Kind), r.Hash, string(r.State), r.Attempts,
				column.ToNanos(r.NextAttemptAt), r.LeaseOwner, column.ToNanos(r.LeaseExpires), r.WaitKind, r.WaitID,
				r.ErrorClass, r.ErrorDetail, r.EHRID, r.EHRVersion, r.SyncedHash, r.SentHash, column.EncodeDerived(r.Derived),
				column.ToNanos(r.CreatedAt), column.ToNanos(r.UpdatedAt), column.ToNanos(r.SyncedAt), payload)
			if err != nil {
				return fmt.Errorf("row %d (%s): %w", r.ID, r.Kind, err)
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if k == 0 {
				continue // already there, with its history
			}
			n += k
			for _, a := range history[r.ID] {
				if _, err := tx.StmtContext(ctx, s.st.attempt).ExecContext(ctx, r.ID, column.ToNanos(a.At), a.Attempt, string(a.State),
					a.ErrorClass, a.ErrorDetail, a.WaitKind, a.WaitID, a.EHRID, a.EHRVersion, a.RequestID); err != nil {
					return fmt.Errorf("row %d (%s): history: %w", r.ID, r.Kind, err)
				}
			}
		}
		for k, v := range meta {
			if _, err := tx.StmtContext(ctx, s.st.setMeta).ExecContext(ctx, k, v); err != nil {
				return fmt.Errorf("meta: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: load: %w", err)
	}
	return int(n), nil
}
