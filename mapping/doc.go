// Package mapping turns a ketamine-therapy clinic's local records into
// FHIR R4 resources. It is pure: no network, storage or context; the clock
// is a parameter. It imports only the standard library and google/fhir/go.
//
// # How the parts fit
//
//	NDJSON line / CSV row
//	  -> Parser.Parse (parse.go: one JSON object -> shape and types)
//	  -> checks (check.go: every check of DESIGN.md section 2)
//	  -> *Record (record.go), or a *RecordError listing every problem
//	  -> Record.CanonicalJSON / Record.Hash (canonical.go: what the outbox stores)
//	  -> Mapper.Map (FHIR R4 resources, validated)
//
// A Parser is built from a Config (config.go; Config.Validate reports every
// problem of a clinic's configuration) and a clock. NDJSONReader and
// CSVReader stream records from a file of any size: both implement
// Reader, whose Next returns a good record, a *RecordError for a bad one
// (reading goes on), io.EOF, or a fatal I/O error. A CSV row is turned into
// the object the same record would be in NDJSON and goes through the same
// code path, so both formats accept and reject the same records.
//
// # The record format, v1
//
// DESIGN.md section 2 defines the four kinds (patient, order,
// administration, score), their fields and their checks. Parse also
// enforces:
//
//   - The input is valid UTF-8, one JSON object, at most
//     Parser.MaxRecordBytes (1 MiB), without duplicate keys, nested at
//     most a few levels. "kind" may come anywhere in the object (NDJSON
//     writers put it first).
//   - Unknown fields are errors, named. A member that is null, "" or []
//     counts as absent: an error if the field is required.
//   - Strings: ids and codes at most Parser.MaxFieldBytes (256 bytes),
//     without control characters or leading/trailing spaces; names
//     likewise and not blank; note at most Parser.MaxNoteBytes (4 KiB),
//     where tab and line breaks are the only control characters allowed.
//     Lists hold at most Parser.MaxListItems (256) items.
//   - Numbers: integers (total, items, session, sessions) may be written
//     3 or 3.0 but not 3.5. Times are RFC 3339 with an offset ("Z" or
//     ±hh:mm); dates YYYY-MM-DD and real calendar dates. A time may not be
//     later than now plus Limits.ClockSkewSeconds; a date (birth_date) may
//     not have begun nowhere on Earth yet; lot_expires may be in the
//     future.
//
// The content checks (check.go): enumerations (sex, statuses, routes,
// sites, instruments, dose units), the formulary and the route allowed for
// the product, adverse_events and not_done_reason from the Config
// (not_done_reason allowed only with status not-done, and optional then),
// positive doses at most Limits.MaxDoseMg or Limits.MaxDoseMgPerKg (an
// administration in mg/kg needs weight_kg, and the mg it gives is held to
// MaxDoseMg too, unless its status is not-done: no dose was given, so no
// mg is computed), NPIs (10 digits, Luhn check digit over "80840" + the
// first nine), plausible vitals (systolic 40-300, diastolic 20-200 and
// below systolic, heart_rate 20-300, spo2 50-100, at least one measure),
// weight_kg 2-400, session and sessions at least 1, frequency N/day,
// N/week or N/month, ICD-10-CM shaped diagnoses (F33.1, M1A.0), ended_at
// not before started_at, phone and email shapes, and score totals within
// the instrument's range with items of the right count and range whose
// score equals the total: the sum for PHQ-9, GAD-7, PHQ-2 and MADRS; for
// QIDS-SR16 the sum of nine domains (see qidsTotal). References (mrn,
// order_id, admin_id) are checked for shape only: the adapter resolves
// them.
//
// # Errors and patient data
//
// A RecordError names the line, the kind, the record id and each problem
// as a FieldError (a field path such as "vitals[2].systolic" and a fixed
// reason). It never prints a value. A patient record's id is its MRN, so a
// patient record is named by its kind only. Raw values are kept in
// RecordError.Diagnostics, which Error never prints.
//
// # CSV
//
// One file per kind (or a "kind" column naming each row's kind). The first
// row names the columns: the field names of the kind, nested fields
// flattened with "." (dose.value, dose.unit, prescriber.npi,
// prescriber.name, performer.npi, performer.name). Columns may come in
// any order; unknown and duplicate columns, and (for a single-kind file)
// missing required columns, are errors at the header (a *CSVHeaderError,
// which names columns by position). The file follows RFC 4180: cells
// holding ",", quotes or line breaks are quoted, a quote inside a quoted
// cell is doubled; a UTF-8 byte order mark and "\r\n" line ends are
// accepted.
//
// Cells: surrounding spaces are trimmed and an empty cell is an absent
// field. Numeric fields (dose.value, sessions, session, weight_kg, total)
// are read as numbers. List fields (given, diagnoses, adverse_events,
// items) hold their elements separated by ";", each trimmed; a list
// element cannot itself contain ";" (use NDJSON for such data). The
// vitals column holds one group per set of vital signs, separated by ";",
// each group five parts separated by "|":
//
//	at|systolic|diastolic|heart_rate|spo2
//
// with an empty part for an absent measure, for example
//
//	2025-05-01T10:00:00-04:00|142|88|76|98;2025-05-01T10:40:00-04:00|128|80||97
//
// Values that look like spreadsheet formulas (=, +, -, @) are plain data.
// Rows whose cells are all empty are skipped. Line numbers are those of
// the file, the header being line 1; a row with a quoted line break
// reports the line it starts on.
//
// # Mapping to FHIR R4
//
// A Mapper (NewMapper) turns a Record into its resources with the R4 protos
// of google/fhir/go: the primary resource first (Patient,
// MedicationRequest, MedicationAdministration or a survey Observation),
// then the resources derived from it (the vital-sign, body-weight and
// adverse-event Observations of an administration). Each is validated
// with fhirvalidate.Validate before it is marshalled, and carries a
// business identifier (Identifier: {Base/kind, local id}, derived ones
// Base/administration-observation with a stable suffix) that makes writes
// idempotent. Times (authoredOn, effective[x]) are the record's instants
// written in UTC, such as 2025-03-04T14:30:00Z for 09:30:00-05:00: the
// offsets are not kept, because UTC is the only zone google/fhir/go
// marshals without loading a time zone (see protoUTC in mapper.go).
// Calendar dates (birthDate, a lot's expirationDate) are written as given.
// Codes come only from shared/reference/clinical-codes.md;
// concepts without a verified code (MADRS and QIDS-SR16, products with no
// verified RxNorm) get a coding in the clinic's own code system plus text.
// A Lookup tells the mapper how to refer to other records (literal EHR
// references, urn:uuid inside a Bundle, or logical references by
// identifier) and gives an administration its order. Map is safe for
// concurrent use.
//
// TransactionBundle, ConditionalUpdate, ConditionalCreate, EntryFor and
// BundleLookup build transaction Bundles with conditional entries and
// urn:uuid references (`ketamine-fhir map --bundle`, the transaction write
// strategy). ValidateJSON validates any FHIR JSON resource or Bundle, entry
// by entry, with FHIR paths (`ketamine-fhir validate`).
package mapping
