package mapping

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

func TestRecordErrorMessage(t *testing.T) {
	cases := []struct {
		err  *RecordError
		want string
	}{
		{&RecordError{Line: 7, Kind: KindPatient, RecordID: "MRN-1", Problems: []FieldError{{"birth_date", "not a date (YYYY-MM-DD)"}}},
			"line 7: patient record: field birth_date: not a date (YYYY-MM-DD)"},
		{&RecordError{Line: 9, Kind: KindOrder, RecordID: "ord-17", Problems: []FieldError{{"dose.value", "not positive"}, {"route", "unknown route"}}},
			"line 9: order ord-17: field dose.value: not positive; field route: unknown route"},
		{&RecordError{Kind: KindScore, RecordID: "sc 1", Problems: []FieldError{{"total", "required"}}},
			`score "sc 1": field total: required`},
		{&RecordError{Line: 3, Kind: KindAdministration, Problems: []FieldError{{"admin_id", "required"}}},
			"line 3: administration record: field admin_id: required"},
		{&RecordError{Line: 4, Problems: []FieldError{{"", "malformed JSON"}}, Diagnostics: []string{"secret"}},
			"line 4: record: malformed JSON"},
		{&RecordError{Line: 5}, "line 5: record: invalid"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestRecordErrorMessageIsBounded(t *testing.T) {
	re := &RecordError{Line: 1, Kind: KindOrder, RecordID: "ord-1"}
	for i := 0; i < 40; i++ {
		re.Problems = append(re.Problems, FieldError{fmt.Sprintf("diagnoses[%d]", i), "not an ICD-10-CM code"})
	}
	msg := re.Error()
	if !strings.HasSuffix(msg, "; and 30 more") || strings.Contains(msg, "diagnoses[10]") {
		t.Errorf("Error() = %q", msg)
	}
}

func TestCSVHeaderErrorMessage(t *testing.T) {
	e := &CSVHeaderError{Problems: []FieldError{{"column 3", "unknown column"}, {"mrn", "missing required column"}}, Diagnostics: []string{`column 3: "Smith"`}}
	if got, want := e.Error(), "CSV header: column 3: unknown column; mrn: missing required column"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// phiValues returns every value of the patient-data fields of a patient
// fixture line, as the text that could leak into a message.
func phiValues(t *testing.T, line []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	var add func(v any)
	add = func(v any) {
		switch v := v.(type) {
		case string:
			if len(v) >= 3 {
				out = append(out, v)
			}
		case float64:
			out = append(out, fmt.Sprint(int64(v)))
		case []any:
			for _, e := range v {
				add(e)
			}
		}
	}
	for _, k := range []string{"mrn", "family", "given", "birth_date", "phone", "email", "ssn"} {
		add(m[k])
	}
	return out
}

func TestPatientRecordErrorsHoldNoPatientData(t *testing.T) {
	p := newRecParser()
	lines := fixtureLines(t, "patients_bad.ndjson")
	// The duplicate-key line holds an MRN that json.Unmarshal hides.
	extra := []string{"MRN-300010", "MRN-300011", "MRN-300005"}
	for i, line := range lines {
		_, err := p.Parse(line, i+1)
		re := recordErrorOf(t, err)
		if re.Kind != KindPatient {
			t.Errorf("line %d: kind %q", i+1, re.Kind)
		}
		msg := re.Error()
		var phi testutil.PHI
		phi.Values(phiValues(t, line)...)
		phi.Values(extra...)
		phi.Values("Hornblower", "Gwendolyn", "1984", "7788")
		phi.Check(t, fmt.Sprintf("line %d: the message", i+1), msg)
		if !strings.HasPrefix(msg, fmt.Sprintf("line %d: patient record: field ", i+1)) {
			t.Errorf("line %d: message %q", i+1, msg)
		}
	}
}

func TestPatientRecordErrorsNameTheField(t *testing.T) {
	p := newRecParser()
	want := [][]string{
		{"birth_date"},
		{"phone"},
		{"email"},
		{"family", "given[0]", "sex"},
		{"mrn"},
		{"ssn"},
		{"birth_date"},
		{"given[1]", "birth_date"},
		{"family"},
		{"mrn"},
		{"updated_at"},
	}
	lines := fixtureLines(t, "patients_bad.ndjson")
	if len(lines) != len(want) {
		t.Fatalf("%d fixture lines, want %d", len(lines), len(want))
	}
	for i, line := range lines {
		_, err := p.Parse(line, i+1)
		re := recordErrorOf(t, err)
		got := problemFields(re)
		if strings.Join(got, ",") != strings.Join(want[i], ",") {
			t.Errorf("line %d: fields %v, want %v", i+1, got, want[i])
		}
	}
	// The raw value is kept for the operator, outside the message.
	_, err := p.Parse(lines[0], 1)
	re := recordErrorOf(t, err)
	if len(re.Diagnostics) != 1 || !strings.Contains(re.Diagnostics[0], "1984-02-30") {
		t.Errorf("diagnostics %q", re.Diagnostics)
	}
	if re.RecordID != "MRN-300001" {
		t.Errorf("RecordID %q: the caller still needs the MRN", re.RecordID)
	}
}
