package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
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
		c.phi.Check(t, name+".csv", string(data))
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			t.Fatalf("%s.csv: %v", name, err)
		}
		csvRows := len(recs) - 1
		f, err := os.Open(filepath.Join(pq, name+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		pf, err := parquet.OpenFile(f, st.Size())
		if err != nil {
			f.Close()
			t.Fatalf("%s.parquet: %v", name, err)
		}
		pqRows := int(pf.NumRows())
		f.Close()
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
