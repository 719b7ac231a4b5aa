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
// Within one claimed batch the engine delivers kind by kind in dependency
// order (patients, orders, administrations, scores), each kind
// concurrently under an adaptive limit that halves when the EHR answers 429
// and grows back one by one.
//
// Logs carry outbox ids, kinds and non-patient local ids; never a patient's
// MRN (a patient record's local id), names, birth dates or phones.
package adapter
