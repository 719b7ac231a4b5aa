// Package export is the client side of FHIR Bulk Data Access IG v2
// $export: it copies the EHR's data to a directory of NDJSON files for
// analysts.
//
// An Exporter kicks off a job (system, Patient or Group level, with
// _type, _since and _typeFilter), polls its status URL honouring
// Retry-After (capped by Options.MaxPollWait) and reporting X-Progress to
// Options.Progress, then downloads the manifest's output, deleted and
// error files with a small pool of workers. Each manifest file goes to a
// part file under DIR/.export-parts; a download cut short is resumed with
// a Range request from the last complete line (or restarted when the
// server ignores Range), so no line is written twice. Expired links (410,
// 404) make it poll the status URL again for a fresh manifest. Every
// line's resourceType is checked against its file's type and every
// file's line count against the manifest's count. When every part is
// complete they are joined into DIR/<Type>.ndjson (deleted entries in
// DIR/deleted.ndjson, OperationOutcomes in DIR/errors.ndjson) and
// DIR/manifest.json describes them with relative URLs.
//
// The status URL and the parts already complete are kept in the store's
// meta table (keys starting "export:"), so a killed export resumes the
// same job. A canceled context DELETEs the job on the server unless
// Options.KeepJobOnCancel is set. A completed export records its
// transactionTime, which Options.Incremental uses as _since next time.
//
// When the EHR's CapabilityStatement declares no export operation, the
// Exporter falls back to paged searches by type with _lastUpdated=gt
// since (system level only).
//
// Errors name the job, the part and the resource type, never resource
// content or URLs with their queries.
package export
