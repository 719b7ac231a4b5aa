// Package postgres is the PostgreSQL outbox: a store.Store on
// github.com/jackc/pgx/v5 (pgxpool) that several adapter instances share.
//
// Claim takes deliverable rows with SELECT ... FOR UPDATE SKIP LOCKED and
// leases them (owner, expiry) in the same statement, so two instances never
// hold the same row; a lease lasts until Finish or until it expires, when
// any instance's Rescue returns the row to the queue. Every other move locks
// the rows it changes, and a waiting outcome and the synced outcome of its
// dependency serialize on a transaction-scoped advisory lock of the
// dependency's key, so the "no lost wake-up" rule of store.Store holds
// across instances, not only within one process. Transactions that lose a
// deadlock or serialization race are retried.
//
// The schema lives in the schema the connection's search_path names first
// (the DSN may set search_path), so tests and deployments can keep several
// outboxes in one database. Open applies the embedded migrations under an
// advisory lock, so instances starting together migrate once.
//
// Times are stored as bigint Unix nanoseconds, as in the SQLite driver
// (see migrations/0001_outbox.sql for why).
//
// Beyond store.Store the driver implements store.Notifier (instances wake
// each other with LISTEN/NOTIFY when records arrive or a dependency is
// synced) and store.Instances (live instances, for sharing the EHR's rate).
package postgres
