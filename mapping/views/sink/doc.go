// Package sink writes the rows of SQL on FHIR views (package views) to
// files analysts open: CSV, NDJSON, Parquet and SQLite.
//
// # How the parts fit
//
//	views.View.Columns() -> NewCSV / NewNDJSON / NewParquet / DB.Table
//	views.View.Run(resource, w.Write) for each resource, as it comes
//	w.Close() when the input ends
//
// Every writer streams: a row is encoded when Write is called and nothing
// is kept but a bounded buffer (Parquet: the current row group, flushed
// every ParquetRowGroup rows; SQLite: the current transaction, committed
// every SQLiteBatch rows). Memory does not grow with the input.
//
// # Values
//
// A views.Row value (nil, bool, int64, string, json.Number,
// json.RawMessage, or []any for a collection column) is written as
// follows:
//
//	           CSV            NDJSON         Parquet (optional)   SQLite
//	missing    empty field    null           null                 NULL
//	boolean    true/false     true/false     BOOLEAN              INTEGER 0/1
//	integer    digits         number         INT64                INTEGER
//	decimal    digits         number         DOUBLE               REAL
//	string     text           string         BYTE_ARRAY (UTF8)    TEXT
//	complex    JSON text      JSON object    JSON text            TEXT (JSON)
//	collection JSON array     JSON array     JSON text            TEXT (JSON)
//
// The physical type comes from the column's declared FHIR type (Type):
// boolean; integer, positiveInt, unsignedInt and integer64 as INT64;
// decimal as DOUBLE (a float: analysts' tools expect one, at the cost of
// digits beyond 15 or so); everything else, dates and dateTimes included,
// as text in FHIR form (the FHIRPath engine does not always keep a date's
// original text, see package views, so a logical DATE type would need a
// second parser). A value of another type than its column declares (a
// string in an integer column) is converted when that is lossless and
// otherwise an error naming the column, never the value.
//
// Parquet columns come out in name order: parquet-go builds a group's
// fields from a map. CSV, NDJSON and SQLite keep the view's order.
//
// This package is pure: no network, nothing of the adapter. It imports the
// standard library, package views, github.com/parquet-go/parquet-go and
// modernc.org/sqlite.
package sink
