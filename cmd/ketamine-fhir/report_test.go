package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
)

// TestReportOutcomes runs generate, map and report outcomes end to end,
// as a user would: HTML and JSON from the same input agree, and the
// --min-cell flag is applied.
func TestReportOutcomes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := runCLI(t, "", "generate", "--patients", "40")
	g.want(t, exitOK, "generate")
	records := writeFile(t, dir, "clinic.ndjson", []byte(g.stdout))
	m := runCLI(t, "", "map", records)
	m.want(t, exitOK, "map")
	// Two inputs (split mid-way) and a type the report does not use.
	lines := strings.SplitAfter(m.stdout, "\n")
	a := writeFile(t, dir, "a.ndjson", []byte(strings.Join(lines[:len(lines)/2], "")))
	b := writeFile(t, dir, "b.ndjson", []byte(strings.Join(lines[len(lines)/2:], "")+`{"resourceType":"Encounter","id":"e1"}`+"\n"))

	html := filepath.Join(dir, "report.html")
	r := runCLI(t, "", "report", "outcomes", "--in", a, "--in", b, "--out", html)
	r.want(t, exitOK, "report outcomes")
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!DOCTYPE html>", "<svg", "CMS159", "Encounter"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report.html has no %q", want)
		}
	}

	j := runCLI(t, "", "report", "outcomes", "--in", a, "--in", b, "--out", "-", "--format", "json", "--min-cell", "15")
	j.want(t, exitOK, "report outcomes --format json")
	var rep outcomes.Report
	if err := json.Unmarshal([]byte(j.stdout), &rep); err != nil {
		t.Fatalf("--format json: %v", err)
	}
	if rep.Schema != outcomes.Schema || rep.MinCell != 15 || rep.Patients == nil || *rep.Patients != 40 {
		t.Errorf("JSON: schema %q, min cell %d, patients %v; want %q, 15, 40", rep.Schema, rep.MinCell, rep.Patients, outcomes.Schema)
	}
	if rep.Input.Skipped["Encounter"] != 1 || rep.Input.Resources != len(lines)-1+1 {
		t.Errorf("JSON input: %d resources, skipped %v; want %d and one Encounter", rep.Input.Resources, rep.Input.Skipped, len(lines))
	}
	if tp := rep.Instruments[0].TimePoints[0]; tp.Assessed == nil || *tp.Assessed < 15 {
		t.Errorf("PHQ-9 end of induction: assessed %v, want 15 or more of 40 patients", tp.Assessed)
	}
}

// TestReportOutcomesErrors: a malformed line is reported by file and line,
// without its content, and no report is written; bad flags are usage
// errors.
func TestReportOutcomesErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/1"},"effectiveDateTime":"2025-03-04T10:00:00Z","valueInteger":14}`
	in := writeFile(t, dir, "in.ndjson", []byte(good+"\n\n"+`{"resourceType":"Patient","name":[{"family":"MRN0000042 Smith"`+"\n"))
	out := filepath.Join(dir, "report.html")
	r := runCLI(t, "", "report", "outcomes", "--in", in, "--out", out)
	r.want(t, exitFailed, "report outcomes with a bad line")
	if !strings.Contains(r.stderr, in+":3: not valid JSON") || strings.Contains(r.stderr, "Smith") || strings.Contains(r.stderr, "MRN") {
		t.Errorf("stderr should name %s:3 and not its content:\n%s", in, r.stderr)
	}
	bad := writeFile(t, dir, "bad.ndjson", []byte(strings.Replace(good, `"valueInteger":14`, `"valueInteger":"14"`, 1)+"\n"))
	r = runCLI(t, "", "report", "outcomes", "--in", bad, "--out", out)
	r.want(t, exitFailed, "report outcomes with a wrong type")
	if !strings.Contains(r.stderr, bad+":1: Observation: valueInteger: wrong JSON type") {
		t.Errorf("stderr should name the file, line and field:\n%s", r.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("a failed report left files behind: %v", entries)
	}
	badConfig := writeFile(t, dir, "bad.yaml", []byte("report:\n  min_cell: 0\n"))
	for _, args := range [][]string{
		{"report"},
		{"report", "nope"},
		{"report", "outcomes", "--out", out}, // no --in
		{"report", "outcomes", "--in", in},   // no --out
		{"report", "outcomes", "--in", in, "--out", out, "extra"}, // a stray argument
		{"report", "outcomes", "--in", in, "--out", out, "--format", "pdf"},
		{"report", "outcomes", "--in", in, "--out", out, "--min-cell", "-1"},
		{"report", "outcomes", "--in", in, "--out", out, "--madrs-remission", "61"},
		{"report", "outcomes", "--in", in, "--out", out, "--config", badConfig},
	} {
		runCLI(t, "", args...).want(t, exitUsage, strings.Join(args, " "))
	}
	if h := runCLI(t, "", "report", "outcomes", "-h"); h.code != exitOK || !strings.Contains(h.stderr+h.stdout, "--min-cell") {
		t.Errorf("report outcomes -h: exit %d, no flag list", h.code)
	}
}
