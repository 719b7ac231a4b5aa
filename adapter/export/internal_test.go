package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckLineKeepsContentOut: a wrong line is named by its number and
// type, never by what it holds.
func TestCheckLineKeepsContentOut(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		`{"resourceType":"Patient","name":[{"family":"SECRETNAME"}]}`,
		`{"resourceType":"SECRETNAME"}`,
		`SECRETNAME`,
		`{"resourceType":"Observation"`,
	} {
		err := checkLine([]byte(line), "Observation", 7)
		if err == nil {
			t.Errorf("%s: accepted", line)
			continue
		}
		if strings.Contains(err.Error(), "SECRETNAME") || !strings.Contains(err.Error(), "line 7") {
			t.Errorf("error text: %v", err)
		}
	}
	if err := checkLine([]byte(`{"resourceType":"Observation","id":"1"}`+"\n"), "Observation", 1); err != nil {
		t.Error(err)
	}
}

// TestScanPartDropsPartialLine: a part file cut in a line resumes after
// the last complete one.
func TestScanPartDropsPartialLine(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), "p.ndjson")
	full := `{"resourceType":"Patient","id":"a"}` + "\n" + `{"resourceType":"Patient","id":"b"}` + "\n"
	if err := os.WriteFile(name, []byte(full+`{"resourceType":"Pat`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, lines, err := scanPart(f, "Patient")
	if err != nil || off != int64(len(full)) || lines != 2 {
		t.Errorf("scanPart = %d, %d, %v; want %d, 2", off, lines, err, len(full))
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format("Mon, 02 Jan 2006 15:04:05 GMT"), 90 * time.Second},
		{now.Add(-time.Hour).Format("Mon, 02 Jan 2006 15:04:05 GMT"), 0},
		{"999999999", 24 * time.Hour},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func FuzzCheckLine(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Observation"}`), "Observation")
	f.Add([]byte(`{"resourceType":1}`), "Patient")
	f.Fuzz(func(t *testing.T, line []byte, typ string) {
		err := checkLine(line, typ, 1)
		if err != nil && len(line) > 12 && strings.Contains(err.Error(), string(line)) {
			t.Errorf("error holds the line: %v", err)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, time.Now()); d < 0 || d > 24*time.Hour {
			t.Errorf("parseRetryAfter(%q) = %s", v, d)
		}
	})
}

func TestJobID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://ehr.example/fhir/_export/42":                               "42",
		"https://ehr.example/fhir/$export-poll-status?_jobId=a5a6-0ba8":     "a5a6-0ba8",
		"https://ehr.example/fhir/$export-poll-status?_jobId=x&sig=SECRET1": "x",
		"https://ehr.example/fhir/status?sig=SECRET1":                       "status",
	} {
		if got := jobID(in); got != want {
			t.Errorf("jobID(%q) = %q, want %q", in, got, want)
		}
	}
}
