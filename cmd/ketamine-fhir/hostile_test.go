package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
)

// badRecord is what the error line of one bad record must say.
type badRecord struct {
	line int
	// subject follows "line N: ": "record" when the kind cannot be told,
	// "patient record" (never the MRN), or "order ord-1".
	subject string
	// fields must each be named ("field F:"); reason, when no field can be
	// named, must appear instead.
	fields []string
	reason string
}

// hostileNDJSON describes testdata/hostile.ndjson: a good record on every
// odd line and a bad one on every even line (37 lines, 19 good, 18 bad).
// Line 10 holds a 2 MiB note (more than the 1 MiB record limit, so the
// line is skipped unread and its kind cannot be named); line 8 has
// invalid UTF-8 bytes in a patient's name (the whole record is refused
// before its kind is read).
var hostileNDJSON = struct {
	bad  []badRecord
	good map[string][]string // resource type -> identifier values
	// secret are values of the bad records that must never be printed.
	secret []string
}{
	bad: []badRecord{
		{line: 2, subject: "record", reason: "malformed JSON"},
		{line: 4, subject: "order ord-hx-types", fields: []string{"dose.value", "sessions"}},
		{line: 6, subject: "administration adm-hx-range", fields: []string{"dose.value", "vitals[0].systolic"}},
		{line: 8, subject: "record", reason: "invalid UTF-8"},
		{line: 10, subject: "record", reason: "line longer than 1048576 bytes"},
		{line: 12, subject: "score scr-hx-unknown", fields: []string{"colour"}},
		{line: 14, subject: "record", reason: "not a JSON object"},
		{line: 16, subject: "record", fields: []string{"kind"}},
		{line: 18, subject: "score scr-hx-range", fields: []string{"total"}},
		{line: 20, subject: "record", reason: "not a JSON object"},
		{line: 22, subject: "order record", fields: []string{"order_id"}},
		{line: 24, subject: "patient record", fields: []string{"birth_date", "sex", "phone"}},
		{line: 26, subject: "record", fields: []string{"kind"}},
		{line: 28, subject: "administration record", fields: []string{"admin_id", "note"}},
		{line: 30, subject: "record", reason: "JSON nested too deeply"},
		{line: 32, subject: "record", fields: []string{"kind"}},
		{line: 34, subject: "score scr-hx-items", fields: []string{"items[0]", "items"}},
		{line: 36, subject: "administration adm-hx-neg", fields: []string{"route", "performer.npi", "dose.value"}},
	},
	good: map[string][]string{
		"Patient":                  {"HXMRN0001", "HXMRN0002", "HXMRN0003", "HXMRN0010"},
		"MedicationRequest":        {"ord-hx-1", "ord-hx-2", "ord-hx-3"},
		"MedicationAdministration": {"adm-hx-1", "adm-hx-2", "adm-hx-3", "adm-hx-4"},
		"Observation":              {"scr-hx-1", "scr-hx-2", "scr-hx-3", "scr-hx-4", "scr-hx-5", "scr-hx-6", "scr-hx-7", "scr-hx-8"},
	},
	secret: []string{"HXMRN0099", "Broken", "HXMRN0004", "Utf", "HXMRN0005", "HXMRN0006", "Nokind",
		"HXMRN0007", "Future-Hostile", "2999-01-01", "call me", "HXMRN0008", "blue", "ord-hx-dup2", "AAAAAAAA", "nnnnnnnn",
		// the good patients
		"HXMRN0001", "Quintero-Hostile", "Ximena", "1981-02-03", "617-555-0142", "HXMRN0002", "Okonkwo-Hostile", "Tobenna",
		"1968-11-30", "508-555-0177", "HXMRN0003", "Lindqvist-Hostile", "Astrid", "1990-07-14", "HXMRN0010", "Ng-Hostile",
		"1955-05-05", "wing.ng@example.com"},
}

// hostileCSV describes testdata/hostile.csv: a file with a kind column,
// patients and scores; a good row between bad ones (11 good, 11 bad).
// Line 18 holds a 1.2 MB items cell; the row starting on line 15 has a
// quoted line break in a name; line 24 opens a quote that is never
// closed.
var hostileCSV = struct {
	bad    []badRecord
	good   map[string][]string
	secret []string
}{
	bad: []badRecord{
		{line: 3, subject: "record", reason: "text after the closing quote of a cell"},
		{line: 5, subject: "record", reason: "cell count differs from the header"},
		{line: 7, subject: "score scr-csv-2", fields: []string{"total"}},
		{line: 9, subject: "patient record", fields: []string{"family"}},
		{line: 11, subject: "record", fields: []string{"kind"}},
		{line: 13, subject: "score scr-csv-4", fields: []string{"family"}},
		{line: 15, subject: "patient record", fields: []string{"family"}},
		{line: 18, subject: "record", reason: "row longer than 1048576 bytes"},
		{line: 20, subject: "record", fields: []string{"kind"}},
		{line: 22, subject: "record", reason: "quote in an unquoted cell"},
		{line: 24, subject: "record", reason: "quoted cell not closed before the end of the file"},
	},
	good: map[string][]string{
		"Patient":     {"HXCMRN01", "HXCMRN05", "HXCMRN07", "HXCMRN10"},
		"Observation": {"scr-csv-1", "scr-csv-3", "scr-csv-5", "scr-csv-6", "scr-csv-7", "scr-csv-8", "scr-csv-9"},
	},
	secret: []string{"HXCMRN02", "Bro", "HXCMRN03", "Short", "HXCMRN06", "Inv", "Family-In-Score",
		"HXCMRN08", "Multi", "HXCMRN09", "Nokind", "HXCMRN04", "HYPERLINK", "HXCMRN11", "Unterminated",
		// the good patients
		"HXCMRN01", "Csv-Hostile", "Maria", "1979-03-04", "617-555-0101", "HXCMRN05", "SUM(A1", "HXCMRN07", "Good-Csv",
		"HXCMRN10", "Last-Good", "1991-02-02"},
}

var errorLine = regexp.MustCompile(`^(.*): line (\d+): (.*)$`)

// checkBadRecords checks stderr: exactly one error line per bad record,
// in order, each naming the line, the record (kind and id, never a
// patient's MRN) and its fields or reason; and no value of a bad record.
// Other stderr lines must not look like record errors.
func checkBadRecords(t *testing.T, file, stderr string, bad []badRecord, secret []string) {
	t.Helper()
	var got []string
	for _, l := range nonEmptyLines(stderr) {
		if m := errorLine.FindStringSubmatch(l); m != nil && m[1] == file {
			got = append(got, l)
		}
	}
	if len(got) != len(bad) {
		t.Fatalf("stderr has %d record errors, want %d (one per bad record):\n%s", len(got), len(bad), clip(stderr))
	}
	for i, want := range bad {
		m := errorLine.FindStringSubmatch(got[i])
		if n, _ := strconv.Atoi(m[2]); n != want.line {
			t.Errorf("error %d is for line %d, want line %d: %s", i+1, n, want.line, got[i])
			continue
		}
		msg := m[3]
		if !strings.HasPrefix(msg, want.subject+": ") {
			t.Errorf("line %d: error %q does not start with %q", want.line, msg, want.subject+": ")
		}
		for _, f := range want.fields {
			if !strings.Contains(msg, "field "+f+": ") {
				t.Errorf("line %d: error %q does not name field %s", want.line, msg, f)
			}
		}
		if want.reason != "" && !strings.Contains(msg, want.reason) {
			t.Errorf("line %d: error %q does not say %q", want.line, msg, want.reason)
		}
		if len(msg) > 1000 {
			t.Errorf("line %d: error is %d bytes long", want.line, len(msg))
		}
	}
	for _, s := range secret {
		if strings.Contains(stderr, s) {
			t.Errorf("stderr contains %q, a value of a bad record", s)
		}
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Errorf("stderr shows a panic:\n%s", clip(stderr))
	}
}

// checkMappedGood checks that map's NDJSON output holds exactly the
// primary resources of the good records (and resources derived from
// them).
func checkMappedGood(t *testing.T, stdout string, good map[string][]string) {
	t.Helper()
	primary := map[string][]string{}
	for i, l := range nonEmptyLines(stdout) {
		var res struct {
			ResourceType string `json:"resourceType"`
			Identifier   []struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		}
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatalf("stdout line %d is not JSON: %v", i+1, err)
		}
		if len(res.Identifier) == 0 {
			t.Fatalf("stdout line %d: %s without identifier", i+1, res.ResourceType)
		}
		for _, id := range res.Identifier {
			if strings.HasSuffix(id.System, "-observation") {
				continue // derived from an administration or score
			}
			primary[res.ResourceType] = append(primary[res.ResourceType], id.Value)
		}
	}
	for typ, want := range good {
		got := primary[typ]
		sort.Strings(got)
		w := append([]string(nil), want...)
		sort.Strings(w)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("mapped %s identifiers = %v, want %v", typ, got, w)
		}
	}
	for typ := range primary {
		if _, ok := good[typ]; !ok {
			t.Errorf("unexpected %s resources: %v", typ, primary[typ])
		}
	}
}

func TestMapHostileInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		file   string
		bad    []badRecord
		good   map[string][]string
		secret []string
	}{
		{"hostile.ndjson", hostileNDJSON.bad, hostileNDJSON.good, hostileNDJSON.secret},
		{"hostile.csv", hostileCSV.bad, hostileCSV.good, hostileCSV.secret},
	} {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join("testdata", tt.file)
			r := runCLI(t, "", "map", file)
			r.want(t, exitFailed, "map "+tt.file)
			checkBadRecords(t, file, r.stderr, tt.bad, tt.secret)
			if want := fmt.Sprintf("ketamine-fhir map: %d records failed", len(tt.bad)); !strings.Contains(r.stderr, want) {
				t.Errorf("stderr does not end with %q:\n%s", want, clip(r.stderr))
			}
			if n := len(nonEmptyLines(r.stderr)); n != len(tt.bad)+1 {
				t.Errorf("stderr has %d lines, want one per bad record and a summary", n)
			}
			checkMappedGood(t, r.stdout, tt.good)
			v := runCLI(t, r.stdout, "validate", "-")
			v.want(t, exitOK, "validate of what map made of "+tt.file)

			// In a Bundle the good records are there too, and the bad ones
			// are reported the same way.
			b := runCLI(t, "", "map", "--bundle", file)
			b.want(t, exitFailed, "map --bundle "+tt.file)
			checkBadRecords(t, file, b.stderr, tt.bad, tt.secret)
			for _, ids := range tt.good {
				for _, id := range ids {
					if !strings.Contains(b.stdout, `"value":"`+id+`"`) {
						t.Errorf("Bundle lacks the good record %s", id)
					}
				}
			}
		})
	}
}

func TestImportHostileInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		file         string
		bad          []badRecord
		good         map[string][]string
		secret       []string
		read, rowsIn int
	}{
		{"hostile.ndjson", hostileNDJSON.bad, hostileNDJSON.good, hostileNDJSON.secret, 37, 19},
		{"hostile.csv", hostileCSV.bad, hostileCSV.good, hostileCSV.secret, 22, 11},
	} {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := writeConfig(t, dir, "http://127.0.0.1:1/fhir/R4", "")
			file := filepath.Join("testdata", tt.file)
			r := runCLI(t, "", "import", "--quiet", "--config", cfg, file)
			r.want(t, exitFailed, "import "+tt.file)
			checkBadRecords(t, file, r.stderr, tt.bad, tt.secret)
			want := fmt.Sprintf("imported: %d read, %d inserted, 0 updated, 0 unchanged, %d rejected\n", tt.read, tt.rowsIn, len(tt.bad))
			if r.stdout != want {
				t.Errorf("stdout = %q, want %q", r.stdout, want)
			}
			// The good records are in the outbox.
			st, err := sqlite.Open(t.Context(), filepath.Join(dir, "o.db"))
			if err != nil {
				t.Fatal(err)
			}
			counts, err := st.Counts(t.Context())
			st.Close()
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, states := range counts {
				for _, n := range states {
					total += n
				}
			}
			if total != tt.rowsIn {
				t.Errorf("outbox holds %d rows (%v), want %d", total, counts, tt.rowsIn)
			}

			again := runCLI(t, "", "import", "--quiet", "--config", cfg, file)
			again.want(t, exitFailed, "second import "+tt.file)
			want = fmt.Sprintf("imported: %d read, 0 inserted, 0 updated, %d unchanged, %d rejected\n", tt.read, tt.rowsIn, len(tt.bad))
			if again.stdout != want {
				t.Errorf("second import: stdout = %q, want %q", again.stdout, want)
			}
		})
	}
}
