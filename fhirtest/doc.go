// Package fhirtest is an in-memory FHIR R4 server for tests, shaped like
// net/http/httptest, that behaves like a real EHR, including in the ways
// real EHRs fail.
//
// Start one per test, point the client under test at its URL, and inspect
// what arrived:
//
//	srv := fhirtest.NewServer()
//	defer srv.Close()
//	client := mypkg.NewClient(srv.URL) // srv.URL ends in /fhir/R4
//	...
//	if n := srv.Count("Patient"); n != 1 { ... }
//	if dups := srv.DuplicateIdentifiers(); len(dups) > 0 { ... }
//
// NewUnstartedServer returns a server that is not listening, for setting up
// data (Add) and faults first; Start or StartTLS starts it, or Handler
// serves it on a listener of your own (the `ketamine-fhir ehr` command does
// that).
//
// # The FHIR API
//
// The server speaks FHIR R4 JSON over HTTP under a base path (DefaultBasePath,
// /fhir/R4), so a client that drops the base path when joining URLs fails
// here as it would against a real EHR. It accepts every R4 resource type
// and supports:
//
//   - read, vread, create, update, delete and instance _history, with
//     increasing version ids, ETag W/"n", Location with _history and
//     Last-Modified; If-Match on update, in the header and in Bundle
//     entry.request.ifMatch (W/"n", "n", a list of them, "*", or a bare
//     version id n: 412 when none is the current version, 400 only for a
//     value that is not an ETag); If-None-Match on read (304); update as
//     create (switchable off with WithUpdateCreate, then 405);
//   - conditional create (If-None-Exist: 201, 200 when one resource
//     matches, 412 when several do), conditional update (PUT
//     Type?criteria) and conditional delete (one match);
//   - Prefer: return=minimal, representation (the default) or
//     OperationOutcome;
//   - search (GET Type?..., POST Type/_search) with a searchset Bundle,
//     total, _count and first/previous/next/last links, _summary=count;
//     _id, _lastUpdated and identifier on every type, plus
//     type-specific parameters (patient, subject, code, status, date,
//     authoredon, effective-time, ...; the CapabilityStatement lists them);
//     tokens as system|code, |code, system| or code with FHIR escaping
//     (\| \, \$ \\, see EscapeSearchValue); references as id, Type/id or
//     absolute URL; dates with the eq, ne, gt, lt, ge, le, sa, eb and ap
//     prefixes; the :missing, :not (tokens) and :Type (references)
//     modifiers. Unknown parameters are a 400 under Prefer: handling=strict
//     and otherwise ignored: left out of the self link and reported in an
//     OperationOutcome entry;
//   - transaction Bundles, all or nothing: DELETE, then POST, then PUT, then
//     GET entries, as R4 prescribes; fullUrls (urn:uuid:...) resolved in
//     references, uri elements and narrative links; conditional entries
//     and conditional references (Type?criteria, evaluated against the
//     data before the transaction's creates and updates: refer to resources
//     of the same Bundle by fullUrl); a transaction-response with a status
//     per entry; on failure nothing is kept and the answer is the failing
//     entry's status with an OperationOutcome naming it;
//   - batch Bundles: every entry on its own, with its own status or
//     OperationOutcome;
//   - Bulk Data export (below);
//   - GET metadata: a CapabilityStatement of exactly the above, which
//     instantiates the Bulk Data IG's CapabilityStatement and declares
//     the export operations (system, Patient and Group) by their
//     OperationDefinitions' canonical URLs.
//
// Every written resource is validated with google/fhir/go: 400 when the body
// is not JSON or its resourceType is missing or wrong, 422 when the resource
// is not valid R4, each with an OperationOutcome whose issues carry FHIR
// paths (Observation.subject, Bundle.entry[2].resource.status), in a stable
// order: by path (indexes as numbers), then code and diagnostics. With
// referential integrity on (the default, WithReferentialIntegrity) a write
// whose reference to this server does not resolve is a 422 and deleting a
// referenced resource is a 409. The server stores the resource's JSON as
// sent (members sorted) with id and meta.versionId and meta.lastUpdated
// set. Server-assigned ids count up from "1".
//
// # Bulk Data export
//
// The server implements FHIR Bulk Data Access IG v2
// (https://hl7.org/fhir/uv/bulkdata/) $export:
//
//   - kick-off: GET [base]/$export (every resource), [base]/Patient/$export
//     (the Patient compartments of all patients) and
//     [base]/Group/[id]/$export (those of the Group's active Patient
//     members; Add a Group to set one up). Prefer: respond-async is
//     required (else 400); Accept may be absent or JSON (else 406). The
//     answer is 202 with Content-Location, the status URL
//     ([base]/_export/[job]), and an informational OperationOutcome.
//     Parameters: _outputFormat (application/fhir+ndjson,
//     application/ndjson or ndjson), _type (comma-separated and
//     repeatable), _since (an instant: resources whose lastUpdated is
//     after it) and _typeFilter (Type?search queries, ORed per type,
//     matched with the server's own search parameters). A Patient or
//     Group export holds Patients and the resources of Patient-compartment
//     types that reference one of them at any element. Other parameters
//     (_elements, patient, includeAssociatedData, ...), unknown types,
//     types outside the compartment and unsupported _typeFilter queries
//     are a 400 with an OperationOutcome, or, under Prefer:
//     handling=lenient, ignored with a warning OperationOutcome in the
//     manifest's error file. The data is a snapshot taken at kick-off,
//     whose instant is the manifest's transactionTime; later writes get a
//     later lastUpdated, so an export _since that instant finds them;
//   - status: 202 with X-Progress and Retry-After while the job is in
//     progress (SetExportDelay: a number of polls and a duration), then
//     200 with the manifest (transactionTime, request,
//     requiresAccessToken (SetExportRequiresAccessToken), output and
//     error, and with _since deleted: transaction Bundles with one DELETE
//     entry per resource deleted since, which then is not in output).
//     DELETE cancels a job (202); its status URL and files then answer
//     404;
//   - files: application/fhir+ndjson, one type per file, in creation order,
//     split at SetExportFileLines lines; gzip when the client accepts it
//     (net/http's transport asks and decompresses by itself); single byte
//     ranges (206) for resuming.
//
// Export faults: SetExportPollInterval answers polls that come too soon
// 429 with Retry-After; SetExportLinkExpiry makes file links expire (410
// Gone) until the status URL is polled again for fresh ones;
// FailNextExport makes jobs fail (polls answer 500 with an
// OperationOutcome); TruncateExportFiles cuts each file's first download
// in the middle of a line. ExportJobs shows the jobs, their state, polls
// and files.
//
// # Faults
//
// Faults are methods, safe to call while requests are in flight, and
// flags of `ketamine-fhir ehr`:
//
//   - FailNext and SetFailureRate answer an error status (429 and 503 with
//     Retry-After, 500, 502, 504, ...) without processing the request;
//   - SetLatency delays requests (fixed or a uniform range);
//   - DropNext and SetDropRate close the connection before processing;
//   - LoseNext and SetLoseRate process and commit a write, then lose its
//     response (LoseDrop closes the connection, Lose503 answers 503,
//     LoseHang never answers until the client gives up): the case that
//     turns naive retries into duplicates;
//   - SetRateLimit answers 429 with Retry-After beyond a rate;
//   - RejectWrites refuses the creates and updates a rule picks with 422
//     and an OperationOutcome, as an EHR's business rules do;
//     RejectIdentifiers is a rule by identifier value (the flag
//     --reject-identifier);
//   - SetSeed (or WithSeed) makes the sequence of random faults repeatable
//     for a given sequence of requests.
//
// # Inspection
//
// Count and Counts give live resources per type, Get the stored JSON,
// Requests the requests received with the status the client saw, the fault
// injected and the protocol (HTTP/1.1 or HTTP/2.0), Connections the TCP
// connections accepted (a client that reuses its connections opens none
// at steady state), IdentifierHolders and DuplicateIdentifiers who holds
// an identifier, ExportJobs the Bulk Data export jobs, and Reset empties
// the server (export jobs included).
//
// # TLS and HTTP/2
//
// StartTLS serves HTTPS with a test certificate and offers HTTP/2 as well
// as HTTP/1.1 (ALPN), as most EHRs do; Client trusts the certificate and
// speaks HTTP/2. Over HTTP/2 a dropped request (DropNext, SetDropRate,
// LoseDrop) resets its stream rather than the whole connection.
// WithTLSCertificate serves a certificate of your own (from a test CA) and
// WithClientCAs requires a client certificate from those CAs (mutual TLS).
//
// # SMART Backend Services
//
// WithSMART makes the server an authorization server as EHRs run them:
// BASE/.well-known/smart-configuration, a client_credentials token
// endpoint that authenticates clients by a JWT assertion (RS384 or ES384,
// verified against the client's JWKS, inline or by URL, with the iss,
// sub, aud, exp and jti checks of the SMART spec) or by a client secret,
// and expiring tokens whose system/ scopes (v1 read/write, v2 cruds) are
// enforced on the FHIR API: 401 without a valid token, 403 with an
// OperationOutcome naming the missing scope. Server.SMART returns the
// AuthServer for registering and revoking clients and for faults
// (ExpireTokens, FailTokenEndpoint, SetClockSkew).
//
// # Concurrency and scale
//
// All methods and the handler are safe for concurrent use. Writes are
// validated in parallel and committed under one lock, so conditional
// create and update are atomic: two concurrent conditional writes of one
// identifier never make two resources. Resources are kept as compact JSON
// with small index entries; the package's tests measure bytes per resource
// and writes per second.
package fhirtest
