// Package adapter is the sync engine: it owns the configuration, ingests
// checked local records into the durable outbox (adapter/store) and
// delivers them to the EHR (adapter/ehr) as FHIR R4 built by mapping.
//
// Delivery guarantees (DESIGN.md section 4): a record is acknowledged only
// once committed to the outbox; its state changes are committed after the
// EHR answers; writes are conditional on the record's business identifier
// (or by id with If-Match once the EHR id is known), so a retry after a lost
// response or a crash never duplicates; a record waits (state waiting) for
// the records it refers to, and is woken when they are synced; transient
// failures go back to the outbox on the RetryPolicy schedule, never to the
// dead letters; permanent rejections go to the dead letters with the EHR's
// OperationOutcome. Delivery is at least once, made exactly once in effect
// by idempotent writes.
//
// Delivery is one continuous pipeline (pipeline.go) shared by Drain, Sync
// and Start: a claimer keeps a bounded claim-ahead queue filled in
// dependency order; sync.concurrency workers deliver from it; a row whose
// dependency is still in delivery parks in memory until that completes; a
// request answered 429/503 or lost waits out its Retry-After or backoff
// in a delayed set, holding no worker; a completer (completer.go) commits
// outcomes in groups; leases of held rows are renewed; transaction Bundles
// are filled per patient across claims (transaction.go). One Pacer
// (pacer.go) sets the request rate of every request to the EHR from its
// answers. An authorization failure (401 after a fresh token, 403,
// invalid_client) pauses delivery instead of dead-lettering records.
//
// Change detection compares the hash of the mapped FHIR with what was last
// sent (Record.SentHash), so an unchanged resync sends nothing, and a
// change of the mapping configuration (Mapper.Fingerprint) re-compares
// every synced record. Derived Observations that a record's new version no
// longer produces are retired (entered-in-error, or deleted).
//
// Logs carry outbox ids, kinds and non-patient local ids; never a patient's
// MRN (a patient record's local id), names, birth dates or phones.
package adapter
