package sink_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views/sink"
)

// setup returns a view with one column of each kind and its rows over
// two resources (the second one's values all missing).
func setup(t *testing.T) (*views.View, []views.Row) {
	t.Helper()
	v, err := views.Parse([]byte(`{
	  "resourceType": "ViewDefinition", "name": "t", "resource": "Observation",
	  "select": [{"column": [
	    {"name": "id", "path": "getResourceKey()", "type": "string"},
	    {"name": "n", "path": "value.ofType(integer)", "type": "integer"},
	    {"name": "d", "path": "value.ofType(Quantity).value", "type": "decimal"},
	    {"name": "b", "path": "status = 'final'", "type": "boolean"},
	    {"name": "when", "path": "effective.ofType(dateTime)", "type": "dateTime"},
	    {"name": "codes", "path": "code.coding.code", "collection": true},
	    {"name": "note", "path": "note.text.first()", "type": "string"}
	  ]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var rows []views.Row
	for _, res := range []string{
		`{"resourceType":"Observation","id":"o1","status":"final","valueInteger":7,"effectiveDateTime":"2025-01-02T03:04:05Z","code":{"coding":[{"code":"a"},{"code":"b,\"c\""}]},"note":[{"text":"x, y\nz"}]}`,
		`{"resourceType":"Observation","id":"o2","valueQuantity":{"value":1.25}}`,
	} {
		rs, err := v.Rows([]byte(res))
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, rs...)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	return v, rows
}

func writeAll(t *testing.T, w sink.Writer, rows []views.Row) {
	t.Helper()
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	v, rows := setup(t)
	var buf bytes.Buffer
	w, err := sink.NewCSV(&buf, v.Columns())
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, rows)
	got, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"id", "n", "d", "b", "when", "codes", "note"},
		{"o1", "7", "", "true", "2025-01-02T03:04:05Z", `["a","b,\"c\""]`, "x, y\nz"},
		{"o2", "", "1.25", "", "", "[]", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CSV =\n%q\nwant\n%q", got, want)
	}
}

func TestNDJSON(t *testing.T) {
	t.Parallel()
	v, rows := setup(t)
	var buf bytes.Buffer
	w, err := sink.NewNDJSON(&buf, v.Columns())
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, rows)
	want := `{"id":"o1","n":7,"d":null,"b":true,"when":"2025-01-02T03:04:05Z","codes":["a","b,\"c\""],"note":"x, y\nz"}` + "\n" +
		`{"id":"o2","n":null,"d":1.25,"b":null,"when":null,"codes":[],"note":null}` + "\n"
	if buf.String() != want {
		t.Errorf("NDJSON =\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestParquet(t *testing.T) {
	t.Parallel()
	v, rows := setup(t)
	var buf bytes.Buffer
	w, err := sink.NewParquet(&buf, "t", v.Columns())
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, rows)
	type rec struct {
		ID    *string  `parquet:"id"`
		N     *int64   `parquet:"n"`
		D     *float64 `parquet:"d"`
		B     *bool    `parquet:"b"`
		When  *string  `parquet:"when"`
		Codes *string  `parquet:"codes"`
		Note  *string  `parquet:"note"`
	}
	got, err := parquet.Read[rec](bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	s := func(x string) *string { return &x }
	i := func(x int64) *int64 { return &x }
	f := func(x float64) *float64 { return &x }
	b := func(x bool) *bool { return &x }
	want := []rec{
		{ID: s("o1"), N: i(7), B: b(true), When: s("2025-01-02T03:04:05Z"), Codes: s(`["a","b,\"c\""]`), Note: s("x, y\nz")},
		{ID: s("o2"), D: f(1.25), Codes: s("[]")},
	}
	if !reflect.DeepEqual(got, want) {
		a, _ := json.Marshal(got)
		e, _ := json.Marshal(want)
		t.Errorf("Parquet rows =\n%s\nwant\n%s", a, e)
	}
}

// TestParquetRowGroups checks that the writer flushes row groups as it
// goes, so memory holds one row group, not the file.
func TestParquetRowGroups(t *testing.T) {
	t.Parallel()
	v, rows := setup(t)
	var buf bytes.Buffer
	w, err := sink.NewParquet(&buf, "t", v.Columns())
	if err != nil {
		t.Fatal(err)
	}
	n := 3*sink.ParquetRowGroup + 7
	for i := range n {
		if err := w.Write(rows[i%2]); err != nil {
			t.Fatal(err)
		}
		if i == 2*sink.ParquetRowGroup && buf.Len() == 0 {
			t.Fatal("nothing written after two row groups: the writer keeps the file in memory")
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if f.NumRows() != int64(n) || len(f.RowGroups()) < 3 {
		t.Errorf("%d rows in %d row groups, want %d rows in at least 3", f.NumRows(), len(f.RowGroups()), n)
	}
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	v, rows := setup(t)
	path := filepath.Join(t.TempDir(), "views.sqlite")
	for range 2 { // a second run replaces the table
		db, err := sink.OpenSQLite(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := db.Table("t", v.Columns())
		if err != nil {
			t.Fatal(err)
		}
		other, err := db.Table("u", v.Columns())
		if err != nil {
			t.Fatal(err)
		}
		for i := range sink.SQLiteBatch + 10 { // two transactions, tables interleaved
			if err := w.Write(rows[i%2]); err != nil {
				t.Fatal(err)
			}
			if err := other.Write(rows[0]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, ints int
	if err := db.QueryRow(`SELECT count(*), sum(n) FROM t`).Scan(&n, &ints); err != nil {
		t.Fatal(err)
	}
	if want := sink.SQLiteBatch + 10; n != want || ints != 7*want/2 {
		t.Errorf("t has %d rows summing n to %d, want %d and %d", n, ints, want, 7*want/2)
	}
	var types string
	if err := db.QueryRow(`SELECT group_concat(type, ',') FROM pragma_table_info('t')`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	if types != "TEXT,INTEGER,REAL,INTEGER,TEXT,TEXT,TEXT" {
		t.Errorf("column types %s", types)
	}
	var d float64
	var codes string
	var note sql.NullString
	if err := db.QueryRow(`SELECT d, codes, note FROM t WHERE id = 'o2' LIMIT 1`).Scan(&d, &codes, &note); err != nil {
		t.Fatal(err)
	}
	if d != 1.25 || codes != "[]" || note.Valid {
		t.Errorf("o2 row: d=%v codes=%q note=%v", d, codes, note)
	}
}

func TestValueErrorHidesValue(t *testing.T) {
	t.Parallel()
	cols := []views.Column{{Name: "n", Type: "integer"}}
	w, err := sink.NewParquet(&bytes.Buffer{}, "t", cols)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Write(views.Row{"MRN0000001"})
	var ve *sink.ValueError
	if !errors.As(err, &ve) || ve.Column != "n" || strings.Contains(err.Error(), "MRN") {
		t.Errorf("Write of a string into an integer column: %v", err)
	}
	if err := w.Write(views.Row{"12"}); err != nil {
		t.Errorf("a string of digits in an integer column: %v", err)
	}
	_ = w.Close()
	if err := (&sink.ValueError{}).Error(); err == "" {
		t.Error("empty message")
	}
}
