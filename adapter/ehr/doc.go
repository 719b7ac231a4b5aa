// Package ehr is the FHIR R4 REST client the sync engine uses to talk to
// the EHR. It sends requests the engine has built (path and FHIR JSON
// body), retries short transient failures, authenticates, and classifies
// every outcome. It knows HTTP, the FHIR JSON envelopes it must read
// (OperationOutcome, Bundle, the id and meta of a resource) and OAuth2; it
// does not build or validate clinical resources (that is package mapping,
// which this package never imports).
//
// # Parts
//
//   - client.go: Client, Config, Request, Response and Do, on top of
//     hashicorp/go-retryablehttp with our own CheckRetry, Backoff and
//     ErrorHandler (see "Retries" below).
//   - fhir.go: Search (follows Bundle "next" links), Transaction (per-entry
//     results of a transaction-response Bundle) and Ping.
//   - bulk.go: DoURL (Do for an absolute URL on the EHR's host, such as a
//     Bulk Data status URL) and Open (one streamed GET of a file, the
//     token only to the EHR's host, an idle timeout instead of a whole
//     request one), for adapter/export.
//   - auth.go: the token sources for AuthConfig.Mode "none", "bearer",
//     "client-secret" (OAuth2 client_credentials with HTTP Basic client
//     authentication) and "smart-backend" (SMART Backend Services: a JWT
//     client assertion signed RS384 or ES384, fresh for every token
//     request), the token endpoint discovered from
//     .well-known/smart-configuration when not configured. Token requests
//     are golang.org/x/oauth2's (clientcredentials), sent through the
//     client's retrying, paced transport; concurrent refreshes share one
//     request (golang.org/x/sync/singleflight).
//   - keys.go: the signing keys (go-jose: JWS, JWK, JWK Set, RFC 7638
//     thumbprints), key rotation (several keys, the first signs),
//     PublicJWKS and GenerateKey.
//   - tls.go: mutual TLS and a CA bundle, reloaded when the files change.
//   - errors.go: the typed errors (RejectedError, TransientError,
//     AuthError), Classify and Reason.
//   - envelope.go: the encoding/json readers of FHIR envelopes. EHR
//     answers are read with encoding/json, never with the validating
//     jsonformat unmarshaller, which fails a whole resource on one unknown
//     field.
//
// # Outcomes
//
// Do returns a *Response for every 2xx answer and a typed error otherwise:
//
//   - *RejectedError: a permanent answer for this content, every 4xx but
//     401, 408 and 429, plus 501 and 505 (and unexpected 1xx and 3xx
//     statuses: redirects are not followed for writes). Its Issues come
//     from the OperationOutcome body. Classify gives ClassConflict for a
//     412 to a request that carried If-Match (the engine re-reads the
//     version and tries again), ClassPermanent otherwise.
//   - *TransientError: 408, 429, 500, 502, 503, 504 (and any other 5xx),
//     timeouts and connection errors, once the short retries are spent.
//     500 is treated as transient: DESIGN.md lists it as neither, and an
//     EHR answers 500 to overload as often as to a bad resource; a 500
//     that persists is retried on the outbox schedule, not dead-lettered.
//   - *AuthError: 401 after one token refresh, or a token endpoint that
//     rejects our credentials.
//   - a wrapped context error when the caller's context ends.
//
// # Retries
//
// Inside one Do, retryablehttp retries 408, 429, 5xx but 501 and 505, and
// connection errors and timeouts, up to Config.RetryMax times, never after
// the caller's context is done. The wait is exponential with jitter
// (RetryWaitMin·2^n, drawn between half and all of it), capped at
// RetryWaitMax; a Retry-After header on a retried answer (429 and 503
// send it; seconds or an HTTP date) replaces it, also capped at
// RetryWaitMax. The uncapped Retry-After (at most 24h) is reported in
// TransientError.RetryAfter for the outbox schedule. Failures a short
// retry cannot fix (TLS certificate errors, redirect loops) are not
// retried. Each attempt is bounded by Config.Timeout, reading the body
// included, so a connection lost mid-body is retried too.
//
// A 401 gets one token refresh and one more try (concurrent requests
// share the refresh); a second 401 is an *AuthError.
//
// Retrying a POST is not idempotent in HTTP terms. It is acceptable here
// only because the engine's writes are conditional: a POST carries
// If-None-Exist on the business identifier, a PUT is a conditional update
// or carries If-Match, and transaction entries have the same semantics, so
// a retry after a lost response finds the resource instead of duplicating
// it. Callers that send an unconditional POST must not rely on retries.
//
// # PHI
//
// Conditional URLs carry MRNs and other identifiers in their query
// strings. No error string and no log line of this package contains a
// query string: paths are reported as "Patient?…". Error strings carry
// the method, resource type, status and the OperationOutcome's severity,
// code and expression; the issues' diagnostics and details text (which can
// echo submitted values) are only in RejectedError.Issues and
// RejectedError.Diagnostics, for the dead-letter store. Request and
// response bodies, tokens and secrets are never logged.
package ehr
