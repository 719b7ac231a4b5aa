package views

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

var reportPath = flag.String("report", "", "write the SQL on FHIR test_report.json of TestOfficialSuite to this file (also $SOF_TEST_REPORT); default: a file under the test's temp dir")

const suiteDir = "testdata/sql-on-fhir-v2"

// knownFailures lists official cases this runner does not pass yet, keyed
// "file/title", with the reason. The suite test fails if a listed case
// passes, so the list cannot go stale. Keep it empty if at all possible.
var knownFailures = map[string]string{}

type suiteFile struct {
	Title     string            `json:"title"`
	Resources []json.RawMessage `json:"resources"`
	Tests     []suiteCase       `json:"tests"`
}

type suiteCase struct {
	Title         string            `json:"title"`
	Tags          []string          `json:"tags"`
	View          json.RawMessage   `json:"view"`
	Expect        []json.RawMessage `json:"expect"`
	ExpectCount   *int              `json:"expectCount"`
	ExpectError   bool              `json:"expectError"`
	ExpectColumns []string          `json:"expectColumns"`
}

// reportEntry is one test in the official report format
// (test_report/test-report.schema.json).
type reportEntry struct {
	Name   string       `json:"name"`
	Result reportResult `json:"result"`
}

type reportResult struct {
	Passed bool   `json:"passed"`
	Error  string `json:"error,omitempty"`
}

type reportFile struct {
	Tests []reportEntry `json:"tests"`
}

func suiteFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(suiteDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	paths = slices.DeleteFunc(paths, func(p string) bool { return strings.HasSuffix(p, ".schema.json") })
	if len(paths) < 20 {
		t.Fatalf("found only %d suite files in %s", len(paths), suiteDir)
	}
	return paths
}

func loadSuite(t *testing.T, path string) suiteFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f suiteFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// TestOfficialSuite runs every case of the official SQL on FHIR v2 test
// suite and writes the official test report.
func TestOfficialSuite(t *testing.T) {
	report := map[string]*reportFile{}
	type tally struct{ passed, total int }
	byTag := map[string]*tally{}
	for _, path := range suiteFiles(t) {
		file := filepath.Base(path)
		suite := loadSuite(t, path)
		report[file] = &reportFile{}
		for _, tc := range suite.Tests {
			key := file + "/" + tc.Title
			err := runCase(suite, tc)
			passed := err == nil
			entry := reportEntry{Name: tc.Title, Result: reportResult{Passed: passed}}
			if err != nil {
				entry.Result.Error = err.Error()
			}
			report[file].Tests = append(report[file].Tests, entry)
			for _, tag := range tc.Tags {
				if byTag[tag] == nil {
					byTag[tag] = &tally{}
				}
				byTag[tag].total++
				if passed {
					byTag[tag].passed++
				}
			}
			experimental := slices.Contains(tc.Tags, "experimental")
			t.Run(strings.TrimSuffix(file, ".json")+"/"+tc.Title, func(t *testing.T) {
				reason, known := knownFailures[key]
				switch {
				case passed && known:
					t.Errorf("passes but is listed in knownFailures (%s): remove it from the list", reason)
				case !passed && known:
					t.Logf("known failure (%s): %v", reason, err)
				case !passed && experimental:
					// Experimental cases are reported, not required.
					t.Logf("experimental case fails: %v", err)
				case !passed:
					t.Error(err)
				}
			})
		}
	}
	tags := make([]string, 0, len(byTag))
	for tag := range byTag {
		tags = append(tags, tag)
	}
	sort.Strings(tags)
	for _, tag := range tags {
		t.Logf("%s: %d/%d pass", tag, byTag[tag].passed, byTag[tag].total)
	}
	writeReport(t, report)
}

func writeReport(t *testing.T, report map[string]*reportFile) {
	t.Helper()
	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out := *reportPath
	if out == "" {
		out = os.Getenv("SOF_TEST_REPORT")
	}
	if out == "" {
		out = filepath.Join(t.TempDir(), "test_report.json")
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	checkReport(t, data)
	t.Logf("test report: %s", out)
}

// checkReport holds the written report to the shape of
// test-report.schema.json: an object of suite files, each {"tests": [...]}
// with nothing else, at least one test, each with a name and a boolean
// result.passed.
func checkReport(t *testing.T, data []byte) {
	t.Helper()
	var doc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("report is not an object of objects: %v", err)
	}
	total := 0
	for file, body := range doc {
		if len(body) != 1 || body["tests"] == nil {
			t.Errorf("report[%q] must hold exactly \"tests\"", file)
			continue
		}
		var tests []map[string]json.RawMessage
		if err := json.Unmarshal(body["tests"], &tests); err != nil || len(tests) == 0 {
			t.Errorf("report[%q].tests must be a non-empty array: %v", file, err)
			continue
		}
		for i, tc := range tests {
			var name string
			if err := json.Unmarshal(tc["name"], &name); err != nil || name == "" {
				t.Errorf("report[%q].tests[%d].name must be a string", file, i)
			}
			var result struct {
				Passed *bool   `json:"passed"`
				Error  *string `json:"error"`
			}
			if err := json.Unmarshal(tc["result"], &result); err != nil || result.Passed == nil {
				t.Errorf("report[%q].tests[%d].result.passed must be a boolean", file, i)
			}
			total++
		}
	}
	if total != 134 {
		t.Errorf("report holds %d tests; the suite has 134", total)
	}
}

// runCase runs one case; nil means it passed.
func runCase(suite suiteFile, tc suiteCase) error {
	view, err := Parse(tc.View)
	if err == nil {
		var rows []map[string]any
		rows, err = runAll(view, suite.Resources)
		if err == nil {
			return compareRows(tc, view, rows)
		}
	}
	if tc.ExpectError {
		return nil
	}
	return fmt.Errorf("unexpected error: %w", err)
}

func runAll(view *View, resources []json.RawMessage) ([]map[string]any, error) {
	cols := view.Columns()
	var rows []map[string]any
	for _, res := range resources {
		err := view.Run(res, func(r Row) error {
			if len(r) != len(cols) {
				return fmt.Errorf("row has %d values for %d columns", len(r), len(cols))
			}
			m := make(map[string]any, len(cols))
			for i, c := range cols {
				m[c.Name] = r[i]
			}
			rows = append(rows, m)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

func compareRows(tc suiteCase, view *View, rows []map[string]any) error {
	if tc.ExpectError {
		return errors.New("expected an error, got none")
	}
	if tc.ExpectColumns != nil {
		var got []string
		for _, c := range view.Columns() {
			got = append(got, c.Name)
		}
		if !slices.Equal(got, tc.ExpectColumns) {
			return fmt.Errorf("columns %v, want %v", got, tc.ExpectColumns)
		}
	}
	if tc.ExpectCount != nil {
		if len(rows) != *tc.ExpectCount {
			return fmt.Errorf("%d rows, want %d", len(rows), *tc.ExpectCount)
		}
		return nil
	}
	got := make([]string, len(rows))
	for i, r := range rows {
		got[i] = canonical(r)
	}
	want := make([]string, len(tc.Expect))
	for i, raw := range tc.Expect {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("suite: expect[%d]: %v", i, err)
		}
		want[i] = canonical(m)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("rows (in any order) differ:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	return nil
}

// canonical is a row's JSON with sorted keys and numbers as float64, so
// that 5, 5.0 and json.Number("5") compare equal.
func canonical(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return "!" + err.Error()
	}
	var generic any
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&generic); err != nil {
		return "!" + err.Error()
	}
	out, _ := json.Marshal(generic)
	return string(out)
}
