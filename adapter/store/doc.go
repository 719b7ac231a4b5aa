// Package store defines the durable outbox: the Store interface every driver
// implements, the documented row states and the sentinel errors.
//
// A record's life: ingest offers it with Upsert (pending); the engine leases
// it with Claim (in_flight) and reports the EHR's answer with Finish (synced,
// retrying, waiting or dead). Rescue returns rows whose lease expired after a
// crash. Requeue moves dead or held rows back to pending once the cause is
// fixed. Drivers live in subpackages (sqlite) and each passes the shared
// conformance suite in storetest.
package store
