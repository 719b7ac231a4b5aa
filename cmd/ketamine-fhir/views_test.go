package main

import (
	"bytes"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/parquet-go/parquet-go"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

func TestViewsListShowUsage(t *testing.T) {
	t.Parallel()
	l := runCLI(t, "", "views", "list")
	l.want(t, exitOK, "views list")
	for _, name := range []string{"patients", "ketamine_orders", "ketamine_administrations", "depression_scores", "vital_signs"} {
		if !strings.Contains(l.stdout, name+" ") {
			t.Errorf("views list does not list %s:\n%s", name, l.stdout)
		}
		s := runCLI(t, "", "views", "show", name)
		s.want(t, exitOK, "views show "+name)
		var doc map[string]any
		if err := json.Unmarshal([]byte(s.stdout), &doc); err != nil || doc["name"] != name || doc["resourceType"] != "ViewDefinition" {
			t.Errorf("views show %s: not its ViewDefinition (%v)", name, err)
		}
	}
	dir := t.TempDir()
	in := writeFile(t, dir, "in.ndjson", []byte(`{"resourceType":"Patient","id":"p1"}`+"\n"))
	for _, args := range [][]string{
		{"views"},
		{"views", "nope"},
		{"views", "list", "extra"},
		{"views", "show"},
		{"views", "show", "nope"},
		{"views", "run", "--builtin", "--in", in},   // no --out
		{"views", "run", "--builtin", "--out", dir}, // no --in
		{"views", "run", "--in", in, "--out", dir},  // no view
		{"views", "run", "--builtin", "--in", in, "--out", dir, "--format", "xlsx"}, // bad format
		{"views", "run", filepath.Join(dir, "missing.json"), "--in", in, "--out", dir},
		{"views", "run", in, "--in", in, "--out", dir}, // not a ViewDefinition
	} {
		runCLI(t, "", args...).want(t, exitUsage, strings.Join(args, " "))
	}
}

// TestViewsRunOwnView runs a ViewDefinition from a file, with flags after
// it, over two inputs, and checks a bad line is reported by file and line
// without its content.
func TestViewsRunOwnView(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	view := writeFile(t, dir, "genders.json", []byte(`{"resourceType":"ViewDefinition","resource":"Patient",
	  "select":[{"column":[{"name":"id","path":"getResourceKey()"},{"name":"gender","path":"gender"}]}]}`))
	a := writeFile(t, dir, "a.ndjson", []byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`+"\n\n"+
		`{"resourceType":"Observation","id":"o1","status":"final"}`+"\n"))
	b := writeFile(t, dir, "b.ndjson", []byte(`{"resourceType":"Patient","id":"p2"}`+"\n"+
		`{"resourceType":"Patient","name":[{"family":"MRN0000042 Smith"` /* cut off */ +"\n"+
		`{"resourceType":"Patient","id":"p3","gender":"male"}`+"\n"))
	out := filepath.Join(dir, "out")
	r := runCLI(t, "", "views", "run", view, "--in", a, "--in", b, "--format", "ndjson", "--out", out)
	r.want(t, exitFailed, "views run with a bad line")
	if !strings.Contains(r.stderr, b+":2:") || strings.Contains(r.stderr, "Smith") || strings.Contains(r.stderr, "MRN") {
		t.Errorf("stderr should name %s:2 and not its content:\n%s", b, r.stderr)
	}
	data, err := os.ReadFile(filepath.Join(out, "genders.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"p1","gender":"female"}` + "\n" + `{"id":"p2","gender":null}` + "\n" + `{"id":"p3","gender":"male"}` + "\n"
	if string(data) != want {
		t.Errorf("genders.ndjson =\n%s\nwant\n%s", data, want)
	}
	if !strings.Contains(r.stdout, "genders\t3 rows") {
		t.Errorf("summary: %q", r.stdout)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 {
		t.Errorf("output directory holds %d files, want 1", len(entries))
	}

	// SQLite: one database, the view's table replaced on each run.
	for range 2 {
		runCLI(t, "", "views", "run", view, "--in", a, "--format", "sqlite", "--out", out).want(t, exitOK, "views run sqlite")
	}
	db, err := sql.Open("sqlite", filepath.Join(out, "views.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	var gender string
	if err := db.QueryRow(`SELECT count(*), max(gender) FROM genders`).Scan(&n, &gender); err != nil {
		t.Fatal(err)
	}
	if n != 1 || gender != "female" {
		t.Errorf("genders table: %d rows, gender %q; want 1 row, female", n, gender)
	}
}

// TestViewsBuiltinParquetCSV is issue #10's check: a generated clinic,
// mapped, through the built-in views to Parquet and to CSV gives the same
// row counts per view, and no output holds a patient's name, MRN or birth
// date.
func TestViewsBuiltinParquetCSV(t *testing.T) {
	t.Parallel()
	patients := 200
	if raceEnabled {
		patients = 20
	}
	dir := t.TempDir()
	c := newClinic(t, dir, patients, 1)
	m := runCLI(t, "", "map", c.path)
	m.want(t, exitOK, "map")
	in := writeFile(t, dir, "fhir.ndjson", []byte(m.stdout))

	pq := filepath.Join(dir, "parquet")
	runCLI(t, "", "views", "run", "--builtin", "--in", in, "--format", "parquet", "--out", pq).want(t, exitOK, "views run parquet")
	cv := filepath.Join(dir, "csv")
	r := runCLI(t, "", "views", "run", "--builtin", "--in", in, "--format", "csv", "--out", cv)
	r.want(t, exitOK, "views run csv")

	names := []string{"patients", "ketamine_orders", "ketamine_administrations", "depression_scores", "vital_signs"}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(cv, name+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		checkNoPatientData(t, c.recs, name+".csv", string(data))
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			t.Fatalf("%s.csv: %v", name, err)
		}
		csvRows := len(recs) - 1
		pqRows, pqText := readParquet(t, filepath.Join(pq, name+".parquet"))
		checkNoPatientData(t, c.recs, name+".parquet", pqText)
		if csvRows <= 0 || pqRows != csvRows {
			t.Errorf("view %s: %d Parquet rows, %d CSV rows", name, pqRows, csvRows)
		}
		if !strings.Contains(r.stdout, name+"\t"+strconv.Itoa(csvRows)+" rows") {
			t.Errorf("summary does not give %s %d rows:\n%s", name, csvRows, r.stdout)
		}
		t.Logf("%s: %d rows", name, csvRows)
	}
	if got := strings.Count(r.stdout, "\n"); got != len(names) {
		t.Errorf("summary has %d lines for %d views", got, len(names))
	}
	kinds := c.kinds()
	if !strings.Contains(r.stdout, "patients\t"+strconv.Itoa(kinds["patient"])+" rows") {
		t.Errorf("patients view does not have one row per patient record (%d):\n%s", kinds["patient"], r.stdout)
	}
}

// checkNoPatientData fails t if text holds an MRN, birth date, phone or
// email of the patient records, or a name as whole words. It does what
// testutil.PHI does, in one pass over the text: the views' outputs of a
// 200-patient clinic are megabytes, too long for a regexp per name.
func checkNoPatientData(t *testing.T, recs []*mapping.Record, what, text string) {
	t.Helper()
	lower := strings.ToLower(text)
	words := map[string]bool{}
	for _, w := range strings.FieldsFunc(lower, func(r rune) bool { return !unicode.IsLetter(r) }) {
		words[w] = true
	}
	n := 0
	for i, r := range recs {
		p := r.Patient
		if p == nil {
			continue
		}
		n++
		for _, v := range []string{p.MRN, p.BirthDate, p.Phone, p.Email} {
			if v != "" && strings.Contains(lower, strings.ToLower(v)) {
				t.Errorf("%s holds a value of the patient of record %d (%d bytes)", what, i, len(v))
			}
		}
		for _, name := range append([]string{p.Family}, p.Given...) {
			name = strings.ToLower(name)
			tokens := strings.FieldsFunc(name, func(r rune) bool { return !unicode.IsLetter(r) })
			all := len(tokens) > 0
			for _, tok := range tokens {
				all = all && words[tok]
			}
			if all && strings.Contains(lower, name) {
				t.Errorf("%s holds a name of the patient of record %d (%d bytes)", what, i, len(name))
			}
		}
	}
	if n == 0 {
		t.Fatal("no patient records to look for")
	}
}

// readParquet reads a Parquet file back, row by row, and returns the
// number of rows and their values as text, one row a line.
func readParquet(t *testing.T, path string) (int, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var sb strings.Builder
	n := 0
	buf := make([]parquet.Row, 256)
	for _, rg := range pf.RowGroups() {
		rows := rg.Rows()
		for {
			k, err := rows.ReadRows(buf)
			for _, row := range buf[:k] {
				n++
				for _, v := range row {
					if v.Kind() == parquet.ByteArray {
						sb.Write(v.ByteArray())
					} else {
						sb.WriteString(v.String())
					}
					sb.WriteByte('\t')
				}
				sb.WriteByte('\n')
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		rows.Close()
	}
	if int64(n) != pf.NumRows() {
		t.Errorf("%s: read %d rows, the footer says %d", path, n, pf.NumRows())
	}
	return n, sb.String()
}
