package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// recordCols are the columns of a store.Record, in the order scanRecord
// reads them.
const recordCols = `id, kind, local_id, hash, state, attempts, next_attempt_at,
	lease_owner, lease_expires, wait_kind, wait_id, error_class, error_detail,
	ehr_id, ehr_version, synced_hash, sent_hash, derived, created_at, updated_at, synced_at, payload`

// The SQL of every operation. TestQueryPlans checks that the ones whose plan
// matters at a million rows use their index. Claim and Rescue name their
// index: without table statistics SQLite may prefer a state index and sort.
const (
	// upsertReadSQL: kind, local id.
	upsertReadSQL = `SELECT id, hash, state FROM outbox WHERE kind = ? AND local_id = ?`
	// upsertInsertSQL: kind, local id, kind rank, hash, now, payload.
	upsertInsertSQL = `INSERT INTO outbox (kind, local_id, kind_rank, hash, state, created_at, updated_at, payload)
		VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?6)`
	// upsertInFlightSQL: hash, payload, now, id. A row in flight keeps its
	// state and lease; Finish compares hashes.
	upsertInFlightSQL = `UPDATE outbox SET hash = ?, payload = ?, updated_at = ? WHERE id = ?`
	// upsertResetSQL: hash, payload, now, id.
	upsertResetSQL = `UPDATE outbox SET hash = ?, payload = ?, updated_at = ?,
			state = 'pending', attempts = 0, next_attempt_at = 0, lease_owner = '', lease_expires = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = ''
		WHERE id = ?`

	// claimSQL: ?1 owner, ?2 lease expiry, ?3 now, ?4 limit. The limit is
	// written ?4 + 0, an expression, not the bare parameter: SQLite plans
	// a bare LIMIT parameter with its bound value and so prepares the
	// statement again every time the value is bound (a third of the CPU of
	// a Claim); the index is named anyway.
	claimSQL = `UPDATE outbox
		SET state = 'in_flight', lease_owner = ?1, lease_expires = ?2,
			attempts = attempts + 1, updated_at = ?3
		WHERE id IN (
			SELECT id FROM outbox INDEXED BY outbox_claim
			WHERE state IN ('pending', 'retrying')
				AND (state = 'pending' OR next_attempt_at <= ?3)
			ORDER BY kind_rank, id
			LIMIT ?4 + 0)
		RETURNING ` + recordCols

	// finishReadSQL: id.
	finishReadSQL = `SELECT kind, local_id, hash, state, lease_owner, attempts FROM outbox WHERE id = ?`
	// attemptSQL: record id, at, attempt, state, error class, error
	// detail, wait kind, wait id, EHR id, EHR version, request id.
	attemptSQL = `INSERT INTO attempts (record_id, at, attempt, state, error_class, error_detail,
			wait_kind, wait_id, ehr_id, ehr_version, request_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// rescueAttemptsSQL: ?1 now, ?2 error class. Runs before rescueSQL, on
	// the rows it will move.
	rescueAttemptsSQL = `INSERT INTO attempts (record_id, at, attempt, state, error_class)
		SELECT id, ?1, attempts, 'retrying', ?2 FROM outbox INDEXED BY outbox_leases
		WHERE state = 'in_flight' AND lease_expires < ?1`
	// finishSyncedSQL: ?1 state (synced, or pending for a stale outcome),
	// ?2 synced hash, ?3 reset attempts (bool), ?4 EHR id, ?5 EHR version,
	// ?6 sent hash, ?7 replace derived (bool), ?8 derived (JSON), ?9 now,
	// ?10 id. Empty EHR id, version and sent hash keep the stored values.
	finishSyncedSQL = `UPDATE outbox SET state = ?1, synced_hash = ?2,
			attempts = CASE WHEN ?3 THEN 0 ELSE attempts END,
			ehr_id = COALESCE(NULLIF(?4, ''), ehr_id), ehr_version = COALESCE(NULLIF(?5, ''), ehr_version),
			sent_hash = COALESCE(NULLIF(?6, ''), sent_hash),
			derived = CASE WHEN ?7 THEN ?8 ELSE derived END,
			synced_at = ?9, updated_at = ?9, next_attempt_at = 0, lease_owner = '', lease_expires = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = ''
		WHERE id = ?10`
	// wakeSQL: ?1 now, ?2 kind, ?3 local id of the synced dependency.
	wakeSQL = `UPDATE outbox SET state = 'pending', wait_kind = '', wait_id = '',
			error_class = '', error_detail = '', next_attempt_at = 0, updated_at = ?1
		WHERE state = 'waiting' AND wait_kind = ?2 AND wait_id = ?3`
	// The outcomes other than synced record a non-empty EHR id and version
	// too (see store.Outcome.EHRID), with the same COALESCE as synced.
	//
	// finishRetryingSQL: ?1 next attempt, ?2 error class, ?3 error detail,
	// ?4 EHR id, ?5 EHR version, ?6 now, ?7 id.
	finishRetryingSQL = `UPDATE outbox SET state = 'retrying', next_attempt_at = ?1,
			error_class = ?2, error_detail = ?3,
			ehr_id = COALESCE(NULLIF(?4, ''), ehr_id), ehr_version = COALESCE(NULLIF(?5, ''), ehr_version),
			updated_at = ?6, lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = ''
		WHERE id = ?7`
	// finishDeadSQL: ?1 error class, ?2 error detail, ?3 EHR id,
	// ?4 EHR version, ?5 now, ?6 id.
	finishDeadSQL = `UPDATE outbox SET state = 'dead', next_attempt_at = 0,
			error_class = ?1, error_detail = ?2,
			ehr_id = COALESCE(NULLIF(?3, ''), ehr_id), ehr_version = COALESCE(NULLIF(?4, ''), ehr_version),
			updated_at = ?5, lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = ''
		WHERE id = ?6`
	// depStateSQL: kind, local id.
	depStateSQL = `SELECT state FROM outbox WHERE kind = ? AND local_id = ?`
	// finishWaitingSQL: ?1 wait kind, ?2 wait id, ?3 error class,
	// ?4 error detail, ?5 EHR id, ?6 EHR version, ?7 now, ?8 id.
	finishWaitingSQL = `UPDATE outbox SET state = 'waiting', next_attempt_at = 0,
			wait_kind = ?1, wait_id = ?2, error_class = ?3, error_detail = ?4,
			ehr_id = COALESCE(NULLIF(?5, ''), ehr_id), ehr_version = COALESCE(NULLIF(?6, ''), ehr_version),
			updated_at = ?7, lease_owner = '', lease_expires = 0
		WHERE id = ?8`
	// toPendingSQL: ?1 EHR id, ?2 EHR version, ?3 now, ?4 id. Pending with
	// attempts reset, lease, wait and errors cleared.
	toPendingSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = '',
			error_class = '', error_detail = '',
			ehr_id = COALESCE(NULLIF(?1, ''), ehr_id), ehr_version = COALESCE(NULLIF(?2, ''), ehr_version),
			updated_at = ?3
		WHERE id = ?4`

	// renewSQL: lease expiry, owner, then up to chunkSize ids; %s is
	// inList("?", number of ids).
	renewSQL = `UPDATE outbox SET lease_expires = ?
		WHERE state = 'in_flight' AND lease_owner = ? AND id IN (%s)`

	// rescueSQL: ?1 now, ?2 error class.
	rescueSQL = `UPDATE outbox INDEXED BY outbox_leases
		SET state = 'retrying', next_attempt_at = ?1, lease_owner = '', lease_expires = 0,
			error_class = ?2, error_detail = '', updated_at = ?1
		WHERE state = 'in_flight' AND lease_expires < ?1`

	// requeueSQL: now, id.
	requeueSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = '', updated_at = ?
		WHERE id = ? AND state IN ('dead', 'waiting')`
	// requeueAllSQL: now.
	requeueAllSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			wait_kind = '', wait_id = '', error_class = '', error_detail = '', updated_at = ?
		WHERE state = 'dead'`

	// resyncSQL: ?1 now, ?2 kind ('' for every kind), ?3 since (0 for any
	// time). The EHR id and version, synced, sent hash, derived and payload
	// columns are kept.
	resyncSQL = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = 0,
			lease_owner = '', lease_expires = 0, wait_kind = '', wait_id = '',
			error_class = '', error_detail = '', updated_at = ?1
		WHERE state = 'synced' AND (?2 = '' OR kind = ?2) AND (?3 = 0 OR synced_at >= ?3)`

	// metaSQL: key.
	metaSQL = `SELECT value FROM meta WHERE key = ?`
	// setMetaSQL: key, value.
	setMetaSQL = `INSERT INTO meta (key, value) VALUES (?1, ?2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`

	// getSQL: kind, local id.
	getSQL = `SELECT ` + recordCols + ` FROM outbox WHERE kind = ? AND local_id = ?`
	// getManySQL: up to chunkSize (kind, local id) pairs; %s is
	// inList("(?, ?)", number of keys).
	getManySQL = `SELECT ` + recordCols + ` FROM outbox WHERE (kind, local_id) IN (VALUES %s)`
	// getByIDSQL: id.
	getByIDSQL = `SELECT ` + recordCols + ` FROM outbox WHERE id = ?`
	// listSQL: state, after id, limit.
	listSQL = `SELECT ` + recordCols + ` FROM outbox WHERE state = ? AND id > ? ORDER BY id LIMIT ?`
	// countsSQL reads only the outbox_kind_state index.
	countsSQL = `SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state`
	// oldestSQL: the creation time of the first row by id of each state,
	// one probe of outbox_state_id each. Ids grow with creation time.
	oldestSQL = `SELECT MIN(created_at) FROM (
			SELECT * FROM (SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY id LIMIT 1)
			UNION ALL SELECT * FROM (SELECT created_at FROM outbox WHERE state = 'retrying' ORDER BY id LIMIT 1)
			UNION ALL SELECT * FROM (SELECT created_at FROM outbox WHERE state = 'waiting' ORDER BY id LIMIT 1))`
)

// historyLimit is store.HistoryLimit as SQL text.
var historyLimit = strconv.Itoa(store.HistoryLimit)

// The statements that keep or read a row's newest store.HistoryLimit
// attempts.
var (
	// pruneSQL: ?1 record id. Keeps the newest store.HistoryLimit attempts
	// of the row: one probe of attempts_record finds the first id to drop
	// (none, and so NULL, while the row has no more than the limit).
	pruneSQL = `DELETE FROM attempts WHERE record_id = ?1 AND id <= (
			SELECT id FROM attempts WHERE record_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ` +
		historyLimit + `)`
	// historySQL: record id. The newest store.HistoryLimit, oldest first.
	historySQL = `SELECT at, attempt, state, error_class, error_detail, wait_kind, wait_id,
			ehr_id, ehr_version, request_id
		FROM (SELECT * FROM attempts WHERE record_id = ? ORDER BY id DESC LIMIT ` + historyLimit + `)
		ORDER BY id`
)

// chunkSize is the most ids or keys one statement of Renew or GetMany
// binds. SQLite refuses a statement with more host parameters than its
// limit (32766 in the builds of modernc.org/sqlite, 999 in SQLite before
// 3.32); 200 keys of two parameters stay far below either, and a statement
// of that size still amortizes the round trip.
const chunkSize = 200

// inList returns n comma-separated copies of group ("?" or "(?, ?)"), for
// an IN list of n items.
func inList(group string, n int) string {
	return strings.Repeat(group+", ", n-1) + group
}

// statements are the prepared statements of a Store. Write statements are
// prepared on the one write connection and used in transactions through
// Tx.StmtContext, which reuses them; read statements on the read pool.
// Preparing once saves SQLite's parse on every call (a third of the CPU of
// a Finish).
type statements struct {
	upsertRead, upsertInsert, upsertInFlight, upsertReset *sql.Stmt

	claim                                               *sql.Stmt
	finishRead, finishSynced, wake                      *sql.Stmt
	finishRetrying, finishDead, depState, finishWaiting *sql.Stmt
	toPending, rescue, requeue, requeueAll, resync      *sql.Stmt
	attempt, prune, rescueAttempts                      *sql.Stmt

	setMeta *sql.Stmt

	get, getByID, list, counts, oldest, meta, history *sql.Stmt

	all []*sql.Stmt
}

func prepareStatements(ctx context.Context, write, read *sql.DB) (*statements, error) {
	st := &statements{}
	for _, p := range []struct {
		db   *sql.DB
		dst  **sql.Stmt
		name string
		sql  string
	}{
		{write, &st.upsertRead, "upsert read", upsertReadSQL},
		{write, &st.upsertInsert, "upsert insert", upsertInsertSQL},
		{write, &st.upsertInFlight, "upsert in flight", upsertInFlightSQL},
		{write, &st.upsertReset, "upsert reset", upsertResetSQL},
		{write, &st.claim, "claim", claimSQL},
		{write, &st.finishRead, "finish read", finishReadSQL},
		{write, &st.finishSynced, "finish synced", finishSyncedSQL},
		{write, &st.wake, "wake", wakeSQL},
		{write, &st.finishRetrying, "finish retrying", finishRetryingSQL},
		{write, &st.finishDead, "finish dead", finishDeadSQL},
		{write, &st.depState, "dependency state", depStateSQL},
		{write, &st.finishWaiting, "finish waiting", finishWaitingSQL},
		{write, &st.toPending, "to pending", toPendingSQL},
		{write, &st.rescue, "rescue", rescueSQL},
		{write, &st.attempt, "attempt", attemptSQL},
		{write, &st.prune, "prune attempts", pruneSQL},
		{write, &st.rescueAttempts, "rescue attempts", rescueAttemptsSQL},
		{write, &st.requeue, "requeue", requeueSQL},
		{write, &st.requeueAll, "requeue all", requeueAllSQL},
		{write, &st.resync, "resync", resyncSQL},
		{write, &st.setMeta, "set meta", setMetaSQL},
		{read, &st.get, "get", getSQL},
		{read, &st.getByID, "get by id", getByIDSQL},
		{read, &st.list, "list", listSQL},
		{read, &st.counts, "counts", countsSQL},
		{read, &st.oldest, "oldest pending", oldestSQL},
		{read, &st.meta, "meta", metaSQL},
		{read, &st.history, "history", historySQL},
	} {
		s, err := p.db.PrepareContext(ctx, p.sql)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("prepare %s: %w", p.name, err)
		}
		*p.dst = s
		st.all = append(st.all, s)
	}
	return st, nil
}

func (st *statements) close() error {
	var first error
	for _, s := range st.all {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
