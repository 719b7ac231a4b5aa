package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/column"
)

var _ store.Copier = (*Store)(nil)

// MetaAll returns every Meta key and value; see store.Copier.
func (s *Store) MetaAll(ctx context.Context) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, value FROM meta`)
	if err != nil {
		return nil, fmt.Errorf("postgres: meta all: %w", redact(err))
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("postgres: meta all: %w", err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: meta all: %w", redact(err))
	}
	return out, nil
}

// Load inserts rows as they are; see store.Copier. The id sequence is
// moved past the largest id, so rows inserted later get new ids.
func (s *Store) Load(ctx context.Context, recs []store.Record, history map[int64][]store.Attempt, meta map[string]string) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		n = 0
		b := &pgx.Batch{}
		for _, r := range recs {
			payload := r.Payload
			if payload == nil {
				payload = []byte{}
			}
			b.Queue(`INSERT INTO outbox (id, kind, local_id, kind_rank, hash, state, attempts, next_attempt_at,
					lease_owner, lease_expires, wait_kind, wait_id, error_class, error_detail,
					ehr_id, ehr_version, synced_hash, sent_hash, derived, created_at, updated_at, synced_at, payload)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
				ON CONFLICT (kind, local_id) DO NOTHING`,
				r.ID, r.Kind, r.LocalID, store.KindRank(r.Kind), r.Hash, string(r.State), r.Attempts, column.ToNanos(r.NextAttemptAt),
				r.LeaseOwner, column.ToNanos(r.LeaseExpires), r.WaitKind, r.WaitID, r.ErrorClass, r.ErrorDetail,
				r.EHRID, r.EHRVersion, r.SyncedHash, r.SentHash, column.EncodeDerived(r.Derived),
				column.ToNanos(r.CreatedAt), column.ToNanos(r.UpdatedAt), column.ToNanos(r.SyncedAt), payload)
		}
		for k, v := range meta {
			b.Queue(setMetaSQL, k, v)
		}
		res := tx.SendBatch(ctx, b)
		hb := &pgx.Batch{}
		for i, r := range recs {
			tag, err := res.Exec()
			if err != nil {
				res.Close()
				return fmt.Errorf("row %d (%s): %w", recs[i].ID, recs[i].Kind, err)
			}
			if tag.RowsAffected() == 0 {
				continue // already there, with its history
			}
			n++
			for _, a := range history[r.ID] {
				hb.Queue(attemptSQL, r.ID, column.ToNanos(a.At), a.Attempt, string(a.State), a.ErrorClass, a.ErrorDetail,
					a.WaitKind, a.WaitID, a.EHRID, a.EHRVersion, a.RequestID)
			}
		}
		for range meta {
			if _, err := res.Exec(); err != nil {
				res.Close()
				return fmt.Errorf("meta: %w", err)
			}
		}
		if err := res.Close(); err != nil {
			return err
		}
		if hb.Len() > 0 {
			if err := tx.SendBatch(ctx, hb).Close(); err != nil {
				return fmt.Errorf("history: %w", err)
			}
		}
		_, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('outbox', 'id'),
			GREATEST((SELECT MAX(id) FROM outbox), 1))`)
		if err == nil && n > 0 {
			err = s.notifyTx(ctx, tx)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: load: %w", err)
	}
	return int(n), nil
}
