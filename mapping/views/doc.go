// Package views runs SQL on FHIR v2 ViewDefinitions over FHIR R4 JSON
// resources: it turns each resource into zero or more flat rows, the
// tables analysts query (https://sql-on-fhir.org/).
//
// # How the parts fit
//
//	ViewDefinition JSON
//	  -> Parse (view.go: validate, compile every FHIRPath once)
//	  -> *View: Columns() names and types the row values
//	resource JSON, one at a time
//	  -> View.Run (run.go: where, then select / forEach / forEachOrNull /
//	     repeat / unionAll, cross products, %rowIndex)
//	  -> emit(Row) per row
//
// Run evaluates one resource per call and keeps nothing between calls, so
// a caller streaming NDJSON runs in the memory of its largest resource.
// Writers (package sink: CSV, NDJSON, Parquet, SQLite), the built-in
// views (package builtin) and the command line (ketamine-fhir views) live
// elsewhere and only see Columns and Rows.
//
// # FHIRPath
//
// Expressions are evaluated by github.com/gofhir/fhirpath, directly on the
// JSON. fhirpath.go adds what that library lacks for views, each with the
// reason in its doc comment: getResourceKey(), a getReferenceKey([type])
// that matches it, %rowIndex and the view's constants as %name variables,
// and the compile step that lets those functions be found first.
//
// # Known limits (of the FHIRPath library, without a FHIR model)
//
// The library types JSON strings by their look: a string of 4 to 10
// characters that parses as a date ("1999", "2024-01", "2024-01-31") or one
// that parses as a dateTime becomes a Date or DateTime. So
// identifier.value = '1999' is false when the value is the string "1999",
// and such values come out in FHIRPath form (a dateTime with fractional
// seconds gets three digits). getResourceKey and getReferenceKey read ids
// as text and are not affected. TestLibraryLimits pins this so that the
// note goes when the library changes.
//
// # Conformance
//
// The official SQL on FHIR v2 test suite is in
// testdata/sql-on-fhir-v2 (with its licence and source commit);
// TestOfficialSuite runs every case and writes the official
// test_report.json (go test -run TestOfficialSuite -report FILE).
//
// This package imports only the standard library and
// github.com/gofhir/fhirpath (with its parser runtime); it knows nothing
// of the adapter, the store or the network.
package views
