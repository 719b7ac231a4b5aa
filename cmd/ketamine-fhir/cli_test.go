package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// cliResult is what one run of the command printed and returned.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs the program with args and stdin, in this process, and
// returns its exit code and output.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr testutil.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// want fails the test when the exit code is not code, showing the output.
func (r cliResult) want(t *testing.T, code int, what string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", what, r.code, code, clip(r.stdout), clip(r.stderr))
	}
}

// clip shortens long output for failure messages.
func clip(s string) string {
	const max = 4000
	if len(s) <= max {
		return s
	}
	return s[:max] + fmt.Sprintf("\n... (%d more bytes)", len(s)-max)
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// nonEmptyLines splits s into its non-empty lines.
func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// newPHIChecker returns a scanner for the patient data of the patient
// records in recs: MRNs, birth dates, phones and emails as values, names
// as whole words (so "Mai" does not match "Main").
func newPHIChecker(t *testing.T, recs []*mapping.Record) *testutil.PHI {
	t.Helper()
	c := &testutil.PHI{}
	n := 0
	for _, r := range recs {
		p := r.Patient
		if p == nil {
			continue
		}
		n++
		c.Values(p.MRN, p.BirthDate, p.Phone, p.Email)
		c.Words(p.Family)
		c.Words(p.Given...)
	}
	if n == 0 || c.Len() == 0 {
		t.Fatalf("no patient data to look for in %d records", len(recs))
	}
	return c
}

// readRecords parses NDJSON local records with the default config.
func readRecords(t *testing.T, data []byte) []*mapping.Record {
	t.Helper()
	r := mapping.NewParser(mapping.DefaultConfig(), nil).NewNDJSONReader(bytes.NewReader(data))
	var recs []*mapping.Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading records: %v", err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// Code systems of clinical-codes.md section 0.
const (
	sysLOINC  = "http://loinc.org"
	sysRxNorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysSCT    = "http://snomed.info/sct"
	sysUCUM   = "http://unitsofmeasure.org"
	sysICD10  = "http://hl7.org/fhir/sid/icd-10-cm"
	sysNDC    = "http://hl7.org/fhir/sid/ndc"
)

// referenceCodes are the codes of shared/reference/clinical-codes.md in
// the standard code systems (UNVERIFIED entries left out): the adapter
// may send these and no others.
var referenceCodes = map[string][]string{
	sysRxNorm: {"238082", "238083", "206967", "206970", "206972", "2201623", "2201625"},
	sysNDC:    {"50458-028", "50458-028-00", "50458-028-02", "50458-028-03"},
	sysSCT: {
		// routes, sites, methods, forms
		"78421000", "47625008", "46713006", "37839007", "26643006",
		"35259002", "16217701000119102", "16217661000119109", "1217007000", "1217006009",
		"206007", "368208006", "368209003", "61396006", "11207009", "422145002", "129326001", "385219001",
		// diagnoses
		"1153570009", "370143000", "36474008", "76441001", "36923009", "18818009", "66344007", "35489007",
		// medication not given
		"406149000", "371900001", "242990004",
	},
	sysLOINC: {
		"44249-1", "44261-6", "44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2",
		"44252-5", "44253-3", "44260-8", "69722-7",
		"LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9", "LA6572-7", "LA6573-5", "LA6575-0", "LA6574-3",
		"55757-9", "55758-7", "69737-5", "70274-6", "93373-9",
		"85354-9", "8480-6", "8462-4", "8867-4", "9279-1", "59408-5", "2708-6", "3151-8", "3150-0", "29463-7",
	},
	sysUCUM:  {"mg", "mg/kg", "mL", "mm[Hg]", "/min", "kg", "[lb_av]", "g", "%", "{score}", "h", "L/min"},
	sysICD10: {"F32.2", "F32.9", "F32.A", "F33.1", "F33.2", "F33.9"},
}

// codings collects every {system, code} pair (codings and coded
// quantities) of a decoded JSON value, by system.
func codings(v any, out map[string]map[string]int) {
	switch n := v.(type) {
	case map[string]any:
		sys, ok1 := n["system"].(string)
		code, ok2 := n["code"].(string)
		if ok1 && ok2 {
			if out[sys] == nil {
				out[sys] = map[string]int{}
			}
			out[sys][code]++
		}
		for _, c := range n {
			codings(c, out)
		}
	case []any:
		for _, c := range n {
			codings(c, out)
		}
	}
}

func TestUsageAndBadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badConfig := writeFile(t, dir, "bad.yaml", []byte("sync:\n  concurrency: 0\n"))
	records := writeFile(t, dir, "r.ndjson", []byte(`{"kind":"score","score_id":"s1","mrn":"M1","instrument":"PHQ-9","taken_at":"2025-01-01T10:00:00Z","total":3}`+"\n"))
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // a part of stderr, "" for any
		stdout string // a part of stdout, "" for any
	}{
		{"no args", nil, exitUsage, "", "Usage: ketamine-fhir COMMAND"},
		{"help", []string{"help"}, exitOK, "", "Exit codes: 0 success"},
		{"--help", []string{"--help"}, exitOK, "", "deadletters"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`, ""},
		{"map bad flag", []string{"map", "--bogus"}, exitUsage, "flag provided but not defined: -bogus", ""},
		{"map help", []string{"map", "-h"}, exitOK, "Usage: ketamine-fhir map", ""},
		{"map missing file", []string{"map", filepath.Join(dir, "nope.ndjson")}, exitFailed, "opening", ""},
		{"map bad config", []string{"map", "--config", badConfig, records}, exitUsage, "sync.concurrency", ""},
		{"validate no files", []string{"validate"}, exitUsage, "Usage: ketamine-fhir validate", ""},
		{"generate negative", []string{"generate", "--patients", "-1"}, exitUsage, "Usage: ketamine-fhir generate", ""},
		{"generate extra arg", []string{"generate", "x"}, exitUsage, "Usage: ketamine-fhir generate", ""},
		{"generate bad start", []string{"generate", "--start", "March"}, exitUsage, "is not a date", ""},
		{"generate bad number", []string{"generate", "--patients", "ten"}, exitUsage, "invalid value", ""},
		{"import no files", []string{"import", "--config", badConfig}, exitUsage, "Usage: ketamine-fhir import", ""},
		{"import bad config", []string{"import", "--config", badConfig, records}, exitUsage, "config: sync.concurrency", ""},
		{"import missing config", []string{"import", "--config", filepath.Join(dir, "none.yaml"), records}, exitUsage, "config: reading", ""},
		{"sync bad flag", []string{"sync", "--nope"}, exitUsage, "flag provided but not defined", ""},
		{"sync extra arg", []string{"sync", "now"}, exitUsage, "Usage: ketamine-fhir sync", ""},
		{"sync bad deadline", []string{"sync", "--deadline", "soon"}, exitUsage, "invalid value", ""},
		{"sync bad config", []string{"sync", "--config", badConfig}, exitUsage, "config: sync.concurrency", ""},
		{"sync help", []string{"sync", "-h"}, exitOK, "Usage: ketamine-fhir sync", ""},
		{"deadletters no sub", []string{"deadletters"}, exitUsage, "Usage: ketamine-fhir deadletters", ""},
		{"deadletters unknown sub", []string{"deadletters", "purge"}, exitUsage, "Usage: ketamine-fhir deadletters", ""},
		{"deadletters bad flag", []string{"deadletters", "list", "--nope"}, exitUsage, "flag provided but not defined", ""},
		{"deadletters bad config", []string{"deadletters", "list", "--config", badConfig}, exitUsage, "config: sync.concurrency", ""},
		{"config no sub", []string{"config"}, exitUsage, "Usage: ketamine-fhir config check", ""},
		{"config unknown sub", []string{"config", "print"}, exitUsage, "Usage: ketamine-fhir config check", ""},
		{"config check no file", []string{"config", "check"}, exitUsage, "Usage: ketamine-fhir config check", ""},
		{"demo bad fault rate", []string{"demo", "--fault-rate", "2"}, exitUsage, "Usage: ketamine-fhir demo", ""},
		{"demo no patients", []string{"demo", "--patients", "0"}, exitUsage, "Usage: ketamine-fhir demo", ""},
		{"serve bad flag", []string{"serve", "--nope"}, exitUsage, "flag provided but not defined", ""},
		{"ehr bad flag", []string{"ehr", "--nope"}, exitUsage, "flag provided but not defined", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, "", tt.args...)
			r.want(t, tt.code, strings.Join(tt.args, " "))
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.stderr, clip(r.stderr))
			}
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", tt.stdout, clip(r.stdout))
			}
		})
	}
}

// TestGenerateMapValidate is `generate | map | validate`: deterministic
// records, valid FHIR R4, and the codes of the reference and no others.
// Under the race detector it maps 12 patients instead of 50 (mapping and
// validation are sequential; the race detector slows them twentyfold).
func TestGenerateMapValidate(t *testing.T) {
	t.Parallel()
	patients := 50
	if raceEnabled {
		patients = 12
	}
	n := strconv.Itoa(patients)
	gen := runCLI(t, "", "generate", "--patients", n, "--seed", "1")
	gen.want(t, exitOK, "generate")
	if again := runCLI(t, "", "generate", "--patients", n, "--seed", "1"); again.stdout != gen.stdout {
		t.Fatal("generate --seed 1 gave different bytes on a second run")
	}
	if other := runCLI(t, "", "generate", "--patients", n, "--seed", "2"); other.stdout == gen.stdout {
		t.Fatal("generate --seed 2 gave the same bytes as --seed 1")
	}
	recs := readRecords(t, []byte(gen.stdout))
	if want := fmt.Sprintf("generated %d records for %d patients (seed 1)", len(recs), patients); !strings.Contains(gen.stderr, want) {
		t.Errorf("generate stderr = %q, want it to say %q", gen.stderr, want)
	}
	kinds := map[mapping.Kind]int{}
	for _, r := range recs {
		kinds[r.Kind]++
	}
	if kinds[mapping.KindPatient] != patients || kinds[mapping.KindOrder] < patients || kinds[mapping.KindAdministration] < patients*6 || kinds[mapping.KindScore] < patients*3 {
		t.Fatalf("generated records per kind = %v, want 50 patients and their orders, sessions and scores", kinds)
	}

	m := runCLI(t, gen.stdout, "map")
	m.want(t, exitOK, "map")
	if m.stderr != "" {
		t.Errorf("map of good records wrote to stderr:\n%s", clip(m.stderr))
	}
	// Mapping is deterministic and streams record by record: the first
	// records map to the first bytes (mapped again on a prefix only, to
	// keep the test fast under -race).
	prefix := strings.Join(strings.SplitAfter(gen.stdout, "\n")[:150], "")
	if again := runCLI(t, prefix, "map"); again.code != exitOK || again.stdout == "" || !strings.HasPrefix(m.stdout, again.stdout) {
		t.Fatal("map gave different bytes for the same records")
	}
	lines := nonEmptyLines(m.stdout)
	types := map[string]int{}
	found := map[string]map[string]int{}
	for i, l := range lines {
		var res map[string]any
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatalf("map output line %d is not a JSON object: %v", i+1, err)
		}
		rt, _ := res["resourceType"].(string)
		types[rt]++
		codings(res, found)
		if rt == "Observation" {
			checkNoLOINCForUnverified(t, i+1, res)
		}
	}
	if types["Patient"] != kinds[mapping.KindPatient] || types["MedicationRequest"] != kinds[mapping.KindOrder] ||
		types["MedicationAdministration"] != kinds[mapping.KindAdministration] || types["Observation"] < kinds[mapping.KindScore] {
		t.Errorf("resources per type = %v for records %v", types, kinds)
	}
	if len(types) != 4 {
		t.Errorf("unexpected resource types in map output: %v", types)
	}

	v := runCLI(t, m.stdout, "validate", "-")
	v.want(t, exitOK, "validate")
	if want := fmt.Sprintf("%d resources, 0 invalid", len(lines)); strings.TrimSpace(v.stderr) != want {
		t.Errorf("validate stderr = %q, want %q", v.stderr, want)
	}
	if v.stdout != "" {
		t.Errorf("validate printed invalid resources:\n%s", clip(v.stdout))
	}

	// The codes the generated clinic needs (clinical-codes.md).
	for _, c := range []struct{ sys, code string }{
		{sysSCT, "78421000"},   // IM
		{sysSCT, "47625008"},   // IV
		{sysSCT, "46713006"},   // nasal
		{sysRxNorm, "2201623"}, // esketamine nasal spray
		{sysLOINC, "44261-6"},  // PHQ-9 total
		{sysLOINC, "70274-6"},  // GAD-7 total
		{sysLOINC, "85354-9"},  // BP panel
		{sysLOINC, "8480-6"},   // systolic
		{sysLOINC, "8462-4"},   // diastolic
		{sysLOINC, "8867-4"},   // heart rate
		{sysLOINC, "59408-5"},  // SpO2 by pulse oximetry
		{sysLOINC, "2708-6"},   // SpO2
		{sysLOINC, "29463-7"},  // body weight
		{sysUCUM, "mm[Hg]"},
		{sysUCUM, "/min"},
		{sysUCUM, "%"},
		{sysUCUM, "kg"},
		{sysUCUM, "mg"},
	} {
		if found[c.sys][c.code] == 0 {
			t.Errorf("map output has no %s code %s", c.sys, c.code)
		}
	}
	if found[sysRxNorm]["238083"]+found[sysRxNorm]["238082"] == 0 {
		t.Error("map output has no RxNorm ketamine injectable (238082 or 238083)")
	}
	// Every code in a standard system comes from the reference.
	for sys, allowed := range referenceCodes {
		ok := map[string]bool{}
		for _, c := range allowed {
			ok[c] = true
		}
		var unknown []string
		for code := range found[sys] {
			if !ok[code] {
				unknown = append(unknown, code)
			}
		}
		sort.Strings(unknown)
		if len(unknown) > 0 {
			t.Errorf("map output has %s codes that are not in clinical-codes.md: %v", sys, unknown)
		}
	}
	// 238084 (50 mg/mL) is UNVERIFIED in the reference.
	if found[sysRxNorm]["238084"] > 0 {
		t.Error("map output uses the unverified RxNorm 238084")
	}
}

// checkNoLOINCForUnverified fails if an Observation about MADRS or
// QIDS-SR16 (which have no verified LOINC), total or item, carries a LOINC
// coding.
func checkNoLOINCForUnverified(t *testing.T, line int, obs map[string]any) {
	t.Helper()
	code, _ := obs["code"].(map[string]any)
	text, _ := code["text"].(string)
	cs, _ := code["coding"].([]any)
	unverified := strings.Contains(text, "MADRS") || strings.Contains(text, "QIDS")
	hasLOINC := false
	for _, c := range cs {
		m, _ := c.(map[string]any)
		s, _ := m["code"].(string)
		sys, _ := m["system"].(string)
		if strings.HasPrefix(s, "MADRS") || strings.HasPrefix(s, "QIDS") {
			unverified = true
		}
		if sys == sysLOINC {
			hasLOINC = true
		}
	}
	if unverified && hasLOINC {
		t.Errorf("line %d: a MADRS or QIDS-SR16 Observation has a LOINC coding (none is verified)", line)
	}
}

// TestMapBundle checks `map --bundle`: one transaction Bundle that validate
// accepts, conditional entries, and every urn:uuid reference resolving to
// an entry's fullUrl.
func TestMapBundle(t *testing.T) {
	t.Parallel()
	gen := runCLI(t, "", "generate", "--patients", "4", "--seed", "3")
	gen.want(t, exitOK, "generate")
	recs := readRecords(t, []byte(gen.stdout))
	b := runCLI(t, gen.stdout, "map", "--bundle", "-")
	b.want(t, exitOK, "map --bundle")
	if n := len(nonEmptyLines(b.stdout)); n != 1 {
		t.Fatalf("map --bundle wrote %d lines, want one Bundle", n)
	}
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  struct {
				Method      string `json:"method"`
				URL         string `json:"url"`
				IfNoneExist string `json:"ifNoneExist"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal([]byte(b.stdout), &bundle); err != nil {
		t.Fatalf("map --bundle output is not JSON: %v", err)
	}
	if bundle.ResourceType != "Bundle" || bundle.Type != "transaction" {
		t.Fatalf("got a %s of type %q, want a transaction Bundle", bundle.ResourceType, bundle.Type)
	}
	if len(bundle.Entry) < len(recs) {
		t.Fatalf("Bundle has %d entries for %d records", len(bundle.Entry), len(recs))
	}
	fullURLs := map[string]bool{}
	for i, e := range bundle.Entry {
		if !strings.HasPrefix(e.FullURL, "urn:uuid:") {
			t.Errorf("entry %d fullUrl %q is not a urn:uuid", i, e.FullURL)
		}
		if fullURLs[e.FullURL] {
			t.Errorf("entry %d repeats fullUrl %s", i, e.FullURL)
		}
		fullURLs[e.FullURL] = true
		conditional := e.Request.Method == "PUT" && strings.Contains(e.Request.URL, "?identifier=") ||
			e.Request.Method == "POST" && strings.Contains(e.Request.IfNoneExist, "identifier=")
		if !conditional {
			t.Errorf("entry %d request %s %s is not conditional on the identifier", i, e.Request.Method, e.Request.URL)
		}
	}
	refs := regexp.MustCompile(`"reference":"(urn:uuid:[^"]+)"`).FindAllStringSubmatch(b.stdout, -1)
	if len(refs) < len(recs)-4 { // every record but the patients refers to one
		t.Fatalf("Bundle has only %d urn:uuid references for %d records", len(refs), len(recs))
	}
	for _, m := range refs {
		if !fullURLs[m[1]] {
			t.Errorf("reference %s is no entry's fullUrl", m[1])
		}
	}

	v := runCLI(t, b.stdout, "validate", "-")
	v.want(t, exitOK, "validate of the Bundle")
	if want := fmt.Sprintf("%d resources, 0 invalid", len(bundle.Entry)+1); strings.TrimSpace(v.stderr) != want {
		t.Errorf("validate stderr = %q, want %q", v.stderr, want)
	}
	if again := runCLI(t, gen.stdout, "map", "--bundle", "-"); again.stdout != b.stdout {
		t.Error("map --bundle gave different bytes for the same records")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gen := runCLI(t, "", "generate", "--patients", "2", "--seed", "5")
	gen.want(t, exitOK, "generate")
	m := runCLI(t, gen.stdout, "map")
	m.want(t, exitOK, "map")
	b := runCLI(t, gen.stdout, "map", "--bundle")
	b.want(t, exitOK, "map --bundle")
	lines := nonEmptyLines(m.stdout)
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(lines[0]), "", "  "); err != nil {
		t.Fatal(err)
	}
	badObs := `{"resourceType":"Observation","id":"bad-1","status":"final","subject":{"reference":"Patient/1"}}`
	badStatus := `{"resourceType":"Observation","id":"bad-2","status":"bogus","code":{"text":"x"}}`
	files := map[string]string{
		"resource.json":   pretty.String(),
		"all.ndjson":      m.stdout,
		"bundle.json":     b.stdout,
		"bad-obs.json":    badObs,
		"mixed.ndjson":    lines[0] + "\n" + badObs + "\n" + lines[1] + "\n" + badStatus + "\n",
		"garbage.json":    "{this is not json",
		"array.json":      "[1, 2, 3]",
		"bad-line.ndjson": lines[0] + "\n" + "not json at all\n" + lines[1] + "\n",
		"empty.json":      "",
	}
	paths := map[string]string{}
	for name, data := range files {
		paths[name] = writeFile(t, dir, name, []byte(data))
	}
	tests := []struct {
		file    string
		code    int
		summary string   // stderr
		stdout  []string // each must appear; nil means stdout is empty
	}{
		{"resource.json", exitOK, "1 resources, 0 invalid", nil},
		{"all.ndjson", exitOK, fmt.Sprintf("%d resources, 0 invalid", len(lines)), nil},
		{"bundle.json", exitOK, fmt.Sprintf("%d resources, 0 invalid", strings.Count(b.stdout, `"fullUrl"`)+1), nil},
		{"bad-obs.json", exitFailed, "1 resources, 1 invalid", []string{"bad-obs.json:1 Observation/bad-1: Observation.code: missing required element"}},
		{"mixed.ndjson", exitFailed, "4 resources, 2 invalid", []string{
			"mixed.ndjson:2 Observation/bad-1: Observation.code: missing required element",
			"mixed.ndjson:4 Observation/bad-2: Observation.status:",
		}},
		{"garbage.json", exitFailed, "1 resources, 1 invalid", []string{"garbage.json:1 document: invalid JSON"}},
		{"array.json", exitFailed, "1 resources, 1 invalid", []string{"array.json:1 document: not a JSON object"}},
		{"bad-line.ndjson", exitFailed, "3 resources, 1 invalid", []string{"bad-line.ndjson:2 document: invalid JSON"}},
		{"empty.json", exitOK, "0 resources, 0 invalid", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, "", "validate", paths[tt.file])
			r.want(t, tt.code, "validate "+tt.file)
			if strings.TrimSpace(r.stderr) != tt.summary {
				t.Errorf("stderr = %q, want %q", r.stderr, tt.summary)
			}
			got := nonEmptyLines(r.stdout)
			if len(got) != len(tt.stdout) {
				t.Fatalf("stdout has %d lines, want %d:\n%s", len(got), len(tt.stdout), r.stdout)
			}
			for i, want := range tt.stdout {
				if !strings.HasPrefix(got[i], filepath.Join(dir, want)) {
					t.Errorf("stdout line %d = %q, want it to start with %q", i+1, got[i], filepath.Join(dir, want))
				}
			}
		})
	}

	t.Run("several files and quiet", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, "", "validate", "--quiet", paths["resource.json"], paths["bad-obs.json"])
		r.want(t, exitFailed, "validate --quiet")
		if r.stderr != "" {
			t.Errorf("--quiet printed a summary: %q", r.stderr)
		}
		if n := len(nonEmptyLines(r.stdout)); n != 1 {
			t.Errorf("stdout has %d lines, want 1:\n%s", n, r.stdout)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, "", "validate", filepath.Join(dir, "none.json"))
		r.want(t, exitFailed, "validate of a missing file")
		if !strings.Contains(r.stderr, "opening") || !strings.Contains(r.stderr, "no such file") {
			t.Errorf("stderr = %q", r.stderr)
		}
	})
}

// TestPHIChecker checks the checker the other tests rely on.
func TestPHIChecker(t *testing.T) {
	t.Parallel()
	recs := readRecords(t, []byte(`{"kind":"patient","mrn":"MRN-77","family":"Ng","given":["Mai","Zoë"],"birth_date":"1980-02-03","sex":"female","phone":"+1-508-555-0100"}`+"\n"))
	c := newPHIChecker(t, recs)
	for _, tt := range []struct {
		text string
		hits int
	}{
		{`{"level":"INFO","msg":"synced","kind":"patient","id":"(patient)"}`, 0},
		{"Main Street, Ngong, Maison, 1980-02-04", 0},
		{"record MRN-77 failed", 1},
		{`"family":"Ng"`, 1},
		{"Zoë called from +1-508-555-0100 (born 1980-02-03)", 3},
		{"given=Mai", 1},
	} {
		if got := c.Find(tt.text); len(got) != tt.hits {
			t.Errorf("find(%q) = %v, want %d hits", tt.text, got, tt.hits)
		}
	}
}
