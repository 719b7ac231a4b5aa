// Package sqlite is the SQLite driver of the outbox: a store.Store in one
// database file, for a single adapter instance. It uses modernc.org/sqlite
// (pure Go, no cgo).
//
// # Connections
//
// Open keeps two connection pools on the file. Writes go through a pool of
// exactly one connection whose transactions begin IMMEDIATE, so the writes of
// concurrent workers queue in Go instead of failing with SQLITE_BUSY, and a
// transaction never has to upgrade a read lock to a write lock (the upgrade
// is what fails without waiting in WAL mode). Reads (Get, List, Counts, ...)
// use a separate read-only pool and, thanks to WAL, never wait for a writer.
// Another process on the same file (a second `ketamine-fhir` command) waits
// up to the busy timeout for the write lock.
//
// The path ":memory:" gives a private in-memory database for tests and the
// demo: one connection serves reads and writes, and the data is gone on
// Close.
//
// # Durability
//
// The database runs in WAL mode. A transaction is committed when its frames
// are written to the write-ahead log. With synchronous=NORMAL (the default)
// the log is written to the operating system at each commit but synced to
// disk only at checkpoints: a committed transaction survives the death of
// the process, kill -9 included, because the operating system still holds
// and later writes the log; only an operating system crash or power loss can
// lose the last transactions (the database stays consistent, it goes back to
// an earlier commit). That meets DESIGN.md's "a crash at any point, kill -9
// included, loses nothing". WithSynchronousFull syncs the log at every
// commit, so that a commit survives power loss too, at the cost of one fsync
// per transaction (an import commits once per batch; the engine once per
// Claim and once per Finish, or once per FinishMany batch). Choose it when
// ingest acknowledges records that no source can send again.
//
// # Schema
//
// The schema is a list of numbered SQL files embedded from migrations/
// (0001_outbox.sql, ...). Open applies the ones a database lacks in one
// transaction and records each in schema_migrations; a database already
// migrated by a newer binary is refused with ErrSchemaTooNew rather than
// used with a schema this code does not know. Times are stored as integer
// Unix nanoseconds (UTC), 0 meaning "not set". The Claim order is a column,
// kind_rank, set at insert (patient 0, order 1, administration 2, score 3,
// unknown kinds 9), so that one partial, covering index serves Claim.
// Record.Derived is a JSON array of strings in a text column, the empty
// string for an empty list. Meta and SetMeta use a separate table, meta.
//
// # Batches
//
// FinishMany applies its items in order in one write transaction, through
// the same per-row code as Finish. Renew and GetMany bind at most 200 ids or
// keys per statement, well below SQLite's limit on host parameters, running
// the statements of one call in one transaction.
//
// # Outcomes of changed content
//
// Upsert compares the offered hash with the row's. A changed row that is
// in_flight keeps its state and lease and takes the new hash and payload;
// its worker's Finish carries the old hash, so Finish sees the mismatch and
// leaves the row pending (recording the EHR id if the old content was
// synced), and the new content goes out on a later Claim. A changed row is
// never moved straight to synced even when its hash equals SyncedHash (the
// content changed back): an earlier attempt with the other content may have
// reached the EHR without an answer, so only a delivery can tell.
package sqlite
