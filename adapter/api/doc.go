// Package api is the HTTP API of `ketamine-fhir serve`: a clinic app POSTs
// local records to it, and operators and monitoring read the outbox, the
// dead letters, the metrics and the health of the adapter through it.
//
// NewRouter builds the whole API on gorilla/mux over a Backend, the small
// part of the sync engine the API needs (*adapter.Engine satisfies it; tests
// use a fake). The routes:
//
//	POST /v1/records                   local records (NDJSON or a JSON array) into the outbox
//	GET  /v1/status                    outbox depth, oldest pending age, last sync, EHR reachability
//	GET  /v1/deadletters?after=&limit= dead letters, paged by outbox id
//	POST /v1/deadletters/{id}/retry    re-queue one dead letter
//	GET  /metrics                      Prometheus metrics of the registry in Options
//	GET  /healthz                      the process is up
//	GET  /readyz                       the store answers: records can be accepted
//	     /ui, /ui/...                  the operator console (Options.Console, package ui),
//	                                   with its own sign-in and sessions
//
// /readyz does not look at the EHR: the adapter accepts and stores records
// while the EHR is down. An EHRProber, started and stopped by its owner
// (serve), checks the EHR in the background; /v1/status reports its last
// result (reachable, when, error class) and it sets the
// ketamine_fhir_ehr_up gauge.
//
// Every /v1 route requires "Authorization: Bearer TOKEN" (compared in
// constant time): no or a malformed header is 401 with WWW-Authenticate, a
// wrong token 403. /metrics, /healthz and /readyz are open, so probes and
// scrapers need no secret; they reveal no patient data.
//
// POST /v1/records is acknowledged only once its good records are committed
// to the outbox (one transaction), so a 202 means durable. Each record is
// parsed and checked with the engine's mapping.Parser; the answer lists
// every record of the request by index and line with its status
// ("accepted", "unchanged" or "rejected") and, for rejected ones, each
// field problem. A request whose records are all rejected is a 400 with the
// same list. The local id of a patient record is its MRN: it is never
// echoed back; such records are identified by index and line only.
//
// Errors are JSON {"error": "...", "request_id": "..."} with fixed texts
// that never echo request content. Every call gets a request id (the
// caller's X-Request-Id when it is a short token, else a new random one),
// echoed in the X-Request-Id response header, and one access-log line with
// method, route template, status, duration and request id: never a body, a
// path with values or a query string. Dead-letter diagnostics (the EHR's
// OperationOutcome, which may echo submitted values) are returned to
// authenticated callers but never logged. A panicking handler is answered
// 500 and logged without its value unless it is a runtime error.
package api
