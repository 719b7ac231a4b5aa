// Package store defines the durable outbox: the Store interface every driver
// implements, the documented row states and the sentinel errors.
//
// A record's life: ingest offers it with Upsert (pending); the engine leases
// it with Claim (in_flight), renews the lease with Renew while a delivery
// takes long, and reports the EHR's answer with Finish, or with FinishMany
// for a batch of rows in one transaction (synced, retrying, waiting or
// dead). Rescue returns rows whose lease expired after a crash. Requeue
// moves dead or held rows back to pending once the cause is fixed; Resync
// moves synced rows back to pending to map them again after a mapping
// change.
//
// Beyond the primary resource (EHRID, EHRVersion), a row remembers what was
// last delivered for it: SentHash, the hash of the FHIR sent, lets the
// engine skip output that did not change, and Derived lists the derived
// resources the EHR holds as current data, so that the ones a newer version
// no longer produces can be retired. Moves that do not deliver (Upsert,
// Rescue, Requeue, Resync) keep them.
//
// Get, GetMany and GetByID read rows; Meta and SetMeta keep a few engine
// settings beside the outbox. Drivers live in subpackages (sqlite,
// postgres) and each passes the shared conformance suite in storetest.
// Stores that several processes share also implement Notifier and
// Instances; Copier moves an outbox between drivers.
package store
