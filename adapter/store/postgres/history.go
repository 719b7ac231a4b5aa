package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/column"
)

// historyLimit is store.HistoryLimit as SQL text.
var historyLimit = strconv.Itoa(store.HistoryLimit)

var (
	// attemptSQL: record id, at, attempt, state, error class, error
	// detail, wait kind, wait id, EHR id, EHR version, request id.
	attemptSQL = `INSERT INTO attempts (record_id, at, attempt, state, error_class, error_detail,
			wait_kind, wait_id, ehr_id, ehr_version, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	// pruneSQL: record id. Keeps the newest store.HistoryLimit attempts.
	pruneSQL = `DELETE FROM attempts WHERE record_id = $1 AND id <= (
			SELECT id FROM attempts WHERE record_id = $1 ORDER BY id DESC LIMIT 1 OFFSET ` + historyLimit + `)`
	// historySQL: record id. The newest store.HistoryLimit, oldest first.
	historySQL = `SELECT at, attempt, state, error_class, error_detail, wait_kind, wait_id,
			ehr_id, ehr_version, request_id
		FROM (SELECT * FROM attempts WHERE record_id = $1 ORDER BY id DESC LIMIT ` + historyLimit + `) t
		ORDER BY id`
	// rescueSQL: $1 now, $2 error class. Moves the expired rows and
	// records their attempts in one statement, so the two sets are the
	// same rows even while other instances change the outbox.
	rescueSQL = `WITH r AS (
			UPDATE outbox
			SET state = 'retrying', next_attempt_at = $1, lease_owner = '', lease_expires = 0,
				error_class = $2, error_detail = '', updated_at = $1
			WHERE state = 'in_flight' AND lease_expires < $1
			RETURNING id, attempts)
		INSERT INTO attempts (record_id, at, attempt, state, error_class)
		SELECT id, $1, attempts, 'retrying', $2 FROM r`
)

// recordAttempt adds out to row id's history and drops what is beyond
// store.HistoryLimit.
func recordAttempt(ctx context.Context, tx pgx.Tx, id int64, attempts int, out store.Outcome, nowN int64) error {
	if _, err := tx.Exec(ctx, attemptSQL, id, nowN, attempts, string(out.State),
		out.ErrorClass, out.ErrorDetail, out.WaitKind, out.WaitID, out.EHRID, out.EHRVersion, out.RequestID); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, pruneSQL, id)
	return err
}

// History returns the newest store.HistoryLimit attempts of row id, oldest
// first; see store.Store.
func (s *Store) History(ctx context.Context, id int64) ([]store.Attempt, error) {
	if _, err := s.GetByID(ctx, id); err != nil {
		return nil, fmt.Errorf("postgres: history %d: %w", id, errors.Unwrap(err))
	}
	rows, err := s.pool.Query(ctx, historySQL, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: history %d: %w", id, redact(err))
	}
	defer rows.Close()
	out := []store.Attempt{}
	for rows.Next() {
		var (
			a     store.Attempt
			at    int64
			state string
		)
		if err := rows.Scan(&at, &a.Attempt, &state, &a.ErrorClass, &a.ErrorDetail, &a.WaitKind, &a.WaitID,
			&a.EHRID, &a.EHRVersion, &a.RequestID); err != nil {
			return nil, fmt.Errorf("postgres: history %d: %w", id, err)
		}
		a.At, a.State = column.FromNanos(at), store.State(state)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: history %d: %w", id, redact(err))
	}
	return out, nil
}
