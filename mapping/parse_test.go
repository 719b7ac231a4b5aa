package mapping

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parseNow is the clock of the parse tests: every fixture time is before it.
var parseNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// newRecParser returns a Parser with the default config and parseNow.
func newRecParser() *Parser {
	return NewParser(DefaultConfig(), func() time.Time { return parseNow })
}

// fixtureLines returns the non-blank lines of a file in testdata/records.
func fixtureLines(t testing.TB, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile("testdata/records/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	return lines
}

// baseRecord returns the valid.ndjson line whose id field equals id.
func baseRecord(t *testing.T, id string) []byte {
	t.Helper()
	for _, l := range fixtureLines(t, "valid.ndjson") {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"mrn", "order_id", "admin_id", "score_id"} {
			if m[f] == id && (f != "mrn" || m["kind"] == "patient") {
				return l
			}
		}
	}
	t.Fatalf("no fixture record %s", id)
	return nil
}

// deleted marks a member to remove in mutate.
type deletedValue struct{}

var deleted = deletedValue{}

// mutate returns the JSON object base with each path ("dose.value",
// "vitals.0.systolic", "given.1") set to its value, or removed when the
// value is deleted. A value of type json.RawMessage is used as is.
func mutate(t *testing.T, base []byte, changes map[string]any) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(base))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		t.Fatal(err)
	}
	for path, val := range changes {
		parts := strings.Split(path, ".")
		cur := root
		for i, p := range parts {
			last := i == len(parts)-1
			switch c := cur.(type) {
			case map[string]any:
				if last {
					if val == deleted {
						delete(c, p)
					} else {
						c[p] = val
					}
				} else {
					cur = c[p]
				}
			case []any:
				n, err := strconv.Atoi(p)
				if err != nil || n >= len(c) {
					t.Fatalf("bad path %s", path)
				}
				if last {
					c[n] = val
				} else {
					cur = c[n]
				}
			default:
				t.Fatalf("bad path %s", path)
			}
		}
	}
	out, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recordErrorOf asserts that err is a *RecordError and returns it.
func recordErrorOf(t *testing.T, err error) *RecordError {
	t.Helper()
	var re *RecordError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *RecordError", err, err)
	}
	return re
}

// problemFields returns the fields of the problems of re.
func problemFields(re *RecordError) []string {
	var fs []string
	for _, p := range re.Problems {
		fs = append(fs, p.Field)
	}
	return fs
}

func TestParseValidFixtures(t *testing.T) {
	p := newRecParser()
	kinds := map[Kind]int{}
	for i, l := range fixtureLines(t, "valid.ndjson") {
		rec, err := p.Parse(l, i+1)
		if err != nil {
			t.Errorf("line %d: %v", i+1, err)
			continue
		}
		if rec.Line != i+1 {
			t.Errorf("line %d: Record.Line = %d", i+1, rec.Line)
		}
		kinds[rec.Kind]++
	}
	want := map[Kind]int{KindPatient: 2, KindOrder: 2, KindAdministration: 3, KindScore: 6}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds = %v, want %v", kinds, want)
	}
}

func TestParseFields(t *testing.T) {
	p := newRecParser()
	rec, err := p.Parse(baseRecord(t, "adm-17-1"), 5)
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Administration
	if rec.Kind != KindAdministration || a == nil || rec.ID() != "adm-17-1" {
		t.Fatalf("got %+v", rec)
	}
	_, off := a.StartedAt.Zone()
	if off != -4*3600 || !a.StartedAt.Equal(time.Date(2025, 5, 5, 14, 0, 0, 0, time.UTC)) {
		t.Errorf("started_at = %v", a.StartedAt)
	}
	if a.Dose != (Dose{Value: 0.5, Unit: "mg/kg"}) || a.WeightKg == nil || *a.WeightKg != 72.5 {
		t.Errorf("dose %+v weight %v", a.Dose, a.WeightKg)
	}
	if len(a.Vitals) != 2 || a.Vitals[1].SpO2 != nil || a.Vitals[1].Systolic == nil || *a.Vitals[1].Systolic != 142 {
		t.Errorf("vitals = %+v", a.Vitals)
	}
	if !reflect.DeepEqual(a.AdverseEvents, []string{"dissociation", "nausea"}) || a.Session != 1 || a.Site != "left-deltoid" {
		t.Errorf("got %+v", a)
	}
	if got := rec.Dependencies(); !reflect.DeepEqual(got, []Dependency{{KindPatient, "MRN-100234"}, {KindOrder, "ord-17"}}) {
		t.Errorf("dependencies = %v", got)
	}
}

// fieldCase is one variant of a valid record and the one field it makes
// bad ("" for a variant that stays valid).
type fieldCase struct {
	name    string
	base    string // id of a record in valid.ndjson
	changes map[string]any
	field   string
}

func runFieldCases(t *testing.T, cases []fieldCase) {
	t.Helper()
	p := newRecParser()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := mutate(t, baseRecord(t, tc.base), tc.changes)
			rec, err := p.Parse(data, 3)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Parse(%s): %v", data, err)
				}
				if rec == nil {
					t.Fatal("nil record")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%s) accepted the record, want a problem with %s", data, tc.field)
			}
			re := recordErrorOf(t, err)
			if fs := problemFields(re); len(fs) != 1 || fs[0] != tc.field {
				t.Fatalf("problems %v, want exactly one with field %q", re.Problems, tc.field)
			}
			if re.Line != 3 || re.Problems[0].Reason == "" {
				t.Errorf("line %d, problem %+v", re.Line, re.Problems[0])
			}
		})
	}
}

// raw is a JSON value written out, for mutate.
func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestParsePatientChecks(t *testing.T) {
	const b = "MRN-100234"
	runFieldCases(t, []fieldCase{
		{"valid", b, nil, ""},
		{"optional fields absent", b, map[string]any{"phone": deleted, "email": deleted, "updated_at": deleted}, ""},
		{"null and empty optional fields", b, map[string]any{"phone": nil, "email": "", "updated_at": nil}, ""},
		{"birth date today in UTC+14", b, map[string]any{"birth_date": "2025-06-02"}, ""},
		{"updated_at within the clock skew", b, map[string]any{"updated_at": "2025-06-01T12:04:59Z"}, ""},
		{"phone with extension", b, map[string]any{"phone": "555-010-2233 x12"}, ""},
		{"kind missing", b, map[string]any{"kind": deleted}, "kind"},
		{"kind unknown", b, map[string]any{"kind": "Patient"}, "kind"},
		{"kind empty", b, map[string]any{"kind": ""}, "kind"},
		{"kind not a string", b, map[string]any{"kind": 1}, "kind"},
		{"mrn missing", b, map[string]any{"mrn": deleted}, "mrn"},
		{"mrn empty", b, map[string]any{"mrn": ""}, "mrn"},
		{"mrn number", b, map[string]any{"mrn": 100234}, "mrn"},
		{"mrn control character", b, map[string]any{"mrn": "MRN\u0000100234"}, "mrn"},
		{"mrn leading space", b, map[string]any{"mrn": " MRN-100234"}, "mrn"},
		{"mrn too long", b, map[string]any{"mrn": strings.Repeat("9", 257)}, "mrn"},
		{"family missing", b, map[string]any{"family": deleted}, "family"},
		{"family blank", b, map[string]any{"family": "   "}, "family"},
		{"family object", b, map[string]any{"family": map[string]any{"x": 1}}, "family"},
		{"family with line break", b, map[string]any{"family": "Oka\nfor"}, "family"},
		{"given missing", b, map[string]any{"given": deleted}, "given"},
		{"given empty list", b, map[string]any{"given": []any{}}, "given"},
		{"given a string", b, map[string]any{"given": "Adaeze"}, "given"},
		{"given empty name", b, map[string]any{"given": []any{"Adaeze", ""}}, "given[1]"},
		{"given number", b, map[string]any{"given": []any{"Adaeze", 7}}, "given[1]"},
		{"given too many", b, map[string]any{"given": make([]any, 257)}, "given"},
		{"birth_date missing", b, map[string]any{"birth_date": deleted}, "birth_date"},
		{"birth_date not a calendar date", b, map[string]any{"birth_date": "1984-02-30"}, "birth_date"},
		{"birth_date US format", b, map[string]any{"birth_date": "03/09/1984"}, "birth_date"},
		{"birth_date with time", b, map[string]any{"birth_date": "1984-03-09T00:00:00Z"}, "birth_date"},
		{"birth_date number", b, map[string]any{"birth_date": 19840309}, "birth_date"},
		{"birth_date in the future", b, map[string]any{"birth_date": "2025-06-03"}, "birth_date"},
		{"sex missing", b, map[string]any{"sex": deleted}, "sex"},
		{"sex unknown code", b, map[string]any{"sex": "F"}, "sex"},
		{"phone letters", b, map[string]any{"phone": "555-CALL-NOW"}, "phone"},
		{"phone too short", b, map[string]any{"phone": "12345"}, "phone"},
		{"email without at", b, map[string]any{"email": "adaeze.example.org"}, "email"},
		{"email without domain dot", b, map[string]any{"email": "a@example"}, "email"},
		{"email with space", b, map[string]any{"email": "a b@example.org"}, "email"},
		{"updated_at without offset", b, map[string]any{"updated_at": "2025-05-30T09:15:00"}, "updated_at"},
		{"updated_at date only", b, map[string]any{"updated_at": "2025-05-30"}, "updated_at"},
		{"updated_at in the future", b, map[string]any{"updated_at": "2025-06-01T12:05:01Z"}, "updated_at"},
		{"updated_at hour 24", b, map[string]any{"updated_at": "2025-05-30T24:00:00Z"}, "updated_at"},
		{"unknown field", b, map[string]any{"middle": "Ngozi"}, "middle"},
		{"unknown field with odd name", b, map[string]any{"bad\nname": 1}, `"bad\nname"`},
	})
}

func TestParseOrderChecks(t *testing.T) {
	const b = "ord-17"
	runFieldCases(t, []fieldCase{
		{"valid", b, nil, ""},
		{"minimal", b, map[string]any{"sessions": deleted, "frequency": deleted, "diagnoses": deleted, "note": deleted, "updated_at": deleted}, ""},
		{"mg dose at the ceiling", b, map[string]any{"dose": map[string]any{"value": 500, "unit": "mg"}}, ""},
		{"mg/kg dose at the ceiling", b, map[string]any{"dose.value": 5}, ""},
		{"integer written 6.0", b, map[string]any{"sessions": raw("6.0")}, ""},
		{"three-character diagnosis", b, map[string]any{"diagnoses": []any{"F32"}}, ""},
		{"diagnosis with letter third", b, map[string]any{"diagnoses": []any{"M1A.071"}}, ""},
		{"order_id missing", b, map[string]any{"order_id": deleted}, "order_id"},
		{"mrn missing", b, map[string]any{"mrn": deleted}, "mrn"},
		{"status unknown", b, map[string]any{"status": "draft"}, "status"},
		{"status missing", b, map[string]any{"status": deleted}, "status"},
		{"authored_at date only", b, map[string]any{"authored_at": "2025-05-01"}, "authored_at"},
		{"authored_at no offset", b, map[string]any{"authored_at": "2025-05-01T14:30:00"}, "authored_at"},
		{"authored_at in the future", b, map[string]any{"authored_at": "2025-07-01T00:00:00Z"}, "authored_at"},
		{"authored_at missing", b, map[string]any{"authored_at": deleted}, "authored_at"},
		{"prescriber missing", b, map[string]any{"prescriber": deleted}, "prescriber"},
		{"prescriber a string", b, map[string]any{"prescriber": "Dr. Rivera"}, "prescriber"},
		{"prescriber npi bad check digit", b, map[string]any{"prescriber.npi": "1234567890"}, "prescriber.npi"},
		{"prescriber npi short", b, map[string]any{"prescriber.npi": "123456789"}, "prescriber.npi"},
		{"prescriber npi number", b, map[string]any{"prescriber.npi": 1234567893}, "prescriber.npi"},
		{"prescriber npi missing", b, map[string]any{"prescriber.npi": deleted}, "prescriber.npi"},
		{"prescriber name missing", b, map[string]any{"prescriber.name": deleted}, "prescriber.name"},
		{"prescriber unknown member", b, map[string]any{"prescriber.dea": "AB1234563"}, "prescriber.dea"},
		{"medication not in formulary", b, map[string]any{"medication": "ketamine-20mg-ml"}, "medication"},
		{"medication missing", b, map[string]any{"medication": deleted}, "medication"},
		{"route unknown", b, map[string]any{"route": "XX"}, "route"},
		{"route not allowed for product", b, map[string]any{"route": "IN"}, "route"},
		{"dose missing", b, map[string]any{"dose": deleted}, "dose"},
		{"dose a number", b, map[string]any{"dose": 0.5}, "dose"},
		{"dose value zero", b, map[string]any{"dose.value": 0}, "dose.value"},
		{"dose value negative", b, map[string]any{"dose.value": -1}, "dose.value"},
		{"dose value string", b, map[string]any{"dose.value": "0.5"}, "dose.value"},
		{"dose value overflow", b, map[string]any{"dose.value": raw("1e999")}, "dose.value"},
		{"dose value missing", b, map[string]any{"dose.value": deleted}, "dose.value"},
		{"dose unit unknown", b, map[string]any{"dose.unit": "mL"}, "dose.unit"},
		{"dose unit missing", b, map[string]any{"dose.unit": deleted}, "dose.unit"},
		{"mg/kg above ceiling", b, map[string]any{"dose.value": 5.5}, "dose.value"},
		{"mg above ceiling", b, map[string]any{"dose": map[string]any{"value": 500.5, "unit": "mg"}}, "dose.value"},
		{"sessions zero", b, map[string]any{"sessions": 0}, "sessions"},
		{"sessions fraction", b, map[string]any{"sessions": 2.5}, "sessions"},
		{"sessions string", b, map[string]any{"sessions": "6"}, "sessions"},
		{"sessions huge", b, map[string]any{"sessions": raw("1e20")}, "sessions"},
		{"frequency words", b, map[string]any{"frequency": "twice weekly"}, "frequency"},
		{"frequency zero", b, map[string]any{"frequency": "0/week"}, "frequency"},
		{"frequency unit", b, map[string]any{"frequency": "2/fortnight"}, "frequency"},
		{"diagnosis lower case", b, map[string]any{"diagnoses": []any{"f33.2"}}, "diagnoses[0]"},
		{"diagnosis ICD-9", b, map[string]any{"diagnoses": []any{"F33.2", "296.32"}}, "diagnoses[1]"},
		{"diagnosis without dot", b, map[string]any{"diagnoses": []any{"F332"}}, "diagnoses[0]"},
		{"diagnosis repeated", b, map[string]any{"diagnoses": []any{"F33.2", "F33.2"}}, "diagnoses[1]"},
		{"diagnoses a string", b, map[string]any{"diagnoses": "F33.2"}, "diagnoses"},
		{"note too long", b, map[string]any{"note": strings.Repeat("x", 4097)}, "note"},
		{"note with bell", b, map[string]any{"note": "ding\u0007"}, "note"},
		{"note not a string", b, map[string]any{"note": []any{"a"}}, "note"},
		{"updated_at in the future", b, map[string]any{"updated_at": "2026-01-01T00:00:00+09:00"}, "updated_at"},
	})
}

func TestParseAdministrationChecks(t *testing.T) {
	const b = "adm-17-1"
	runFieldCases(t, []fieldCase{
		{"valid", b, nil, ""},
		{"mg dose without weight", b, map[string]any{"dose": map[string]any{"value": 36, "unit": "mg"}, "weight_kg": deleted}, ""},
		{"route other than the order's", b, map[string]any{"route": "IM"}, ""},
		{"lot expiry in the future", b, map[string]any{"lot_expires": "2030-12-31"}, ""},
		{"vital with one measure", b, map[string]any{"vitals.0": map[string]any{"at": "2025-05-05T09:55:00-04:00", "spo2": 97}}, ""},
		{"vitals at range ends", b, map[string]any{"vitals.0": map[string]any{"at": "2025-05-05T09:55:00-04:00", "systolic": 300, "diastolic": 20, "heart_rate": 300, "spo2": 50}}, ""},
		{"status in-progress without end", b, map[string]any{"status": "in-progress", "ended_at": deleted}, ""},
		{"admin_id missing", b, map[string]any{"admin_id": deleted}, "admin_id"},
		{"order_id with tab", b, map[string]any{"order_id": "ord\t17"}, "order_id"},
		{"mrn trailing space", b, map[string]any{"mrn": "MRN-100234 "}, "mrn"},
		{"status unknown", b, map[string]any{"status": "given"}, "status"},
		{"started_at missing", b, map[string]any{"started_at": deleted}, "started_at"},
		{"started_at garbage", b, map[string]any{"started_at": "yesterday"}, "started_at"},
		{"ended_at before started_at", b, map[string]any{"ended_at": "2025-05-05T09:59:59-04:00"}, "ended_at"},
		{"ended_at before started_at across offsets", b, map[string]any{"ended_at": "2025-05-05T13:30:00Z"}, "ended_at"},
		{"ended_at in the future", b, map[string]any{"ended_at": "2025-06-02T00:00:00Z"}, "ended_at"},
		{"dose unit mL", b, map[string]any{"dose.unit": "mL"}, "dose.unit"},
		{"mg/kg without weight", b, map[string]any{"weight_kg": deleted}, "dose.unit"},
		{"mg/kg without weight, not done", b, map[string]any{"weight_kg": deleted, "status": "not-done"}, ""},
		{"mg/kg without weight, not done, above per-kg ceiling", b, map[string]any{"weight_kg": deleted, "status": "not-done", "dose.value": 5.01}, "dose.value"},
		{"mg/kg above per-kg ceiling", b, map[string]any{"dose.value": 5.01}, "dose.value"},
		{"mg/kg gives mg above ceiling", b, map[string]any{"dose.value": 4, "weight_kg": 130}, "dose.value"},
		{"mg above ceiling", b, map[string]any{"dose": map[string]any{"value": 501, "unit": "mg"}}, "dose.value"},
		{"weight too low", b, map[string]any{"weight_kg": 1.9}, "weight_kg"},
		{"weight too high", b, map[string]any{"weight_kg": 401}, "weight_kg"},
		{"weight string", b, map[string]any{"weight_kg": "72.5"}, "weight_kg"},
		{"route unknown", b, map[string]any{"route": "IO"}, "route"},
		{"performer missing", b, map[string]any{"performer": deleted}, "performer"},
		{"performer npi letters", b, map[string]any{"performer.npi": "14567890AB"}, "performer.npi"},
		{"performer name blank", b, map[string]any{"performer.name": " "}, "performer.name"},
		{"site unknown", b, map[string]any{"site": "left-arm"}, "site"},
		{"lot with control character", b, map[string]any{"lot": "KX\u001b2291"}, "lot"},
		{"lot too long", b, map[string]any{"lot": strings.Repeat("L", 257)}, "lot"},
		{"lot_expires not a date", b, map[string]any{"lot_expires": "2026-02-30"}, "lot_expires"},
		{"session zero", b, map[string]any{"session": 0}, "session"},
		{"session negative", b, map[string]any{"session": -2}, "session"},
		{"vitals a string", b, map[string]any{"vitals": "128/82"}, "vitals"},
		{"vital not an object", b, map[string]any{"vitals.1": 5}, "vitals[1]"},
		{"vital without measure", b, map[string]any{"vitals.1": map[string]any{"at": "2025-05-05T10:40:00-04:00"}}, "vitals[1]"},
		{"vital without at", b, map[string]any{"vitals.1.at": deleted}, "vitals[1].at"},
		{"vital at in the future", b, map[string]any{"vitals.1.at": "2025-06-02T10:40:00-04:00"}, "vitals[1].at"},
		{"vital unknown member", b, map[string]any{"vitals.0.rr": 16}, "vitals[0].rr"},
		{"systolic too high", b, map[string]any{"vitals.0.systolic": 301}, "vitals[0].systolic"},
		{"systolic too low", b, map[string]any{"vitals.0.systolic": 39}, "vitals[0].systolic"},
		{"diastolic too low", b, map[string]any{"vitals.0.diastolic": 19}, "vitals[0].diastolic"},
		{"diastolic above systolic", b, map[string]any{"vitals.0.systolic": 90, "vitals.0.diastolic": 95}, "vitals[0].diastolic"},
		{"diastolic equal to systolic", b, map[string]any{"vitals.0.systolic": 90, "vitals.0.diastolic": 90}, "vitals[0].diastolic"},
		{"heart rate too low", b, map[string]any{"vitals.1.heart_rate": 19}, "vitals[1].heart_rate"},
		{"spo2 above 100", b, map[string]any{"vitals.0.spo2": 101}, "vitals[0].spo2"},
		{"spo2 string", b, map[string]any{"vitals.0.spo2": "98"}, "vitals[0].spo2"},
		{"adverse event unknown", b, map[string]any{"adverse_events": []any{"itching"}}, "adverse_events[0]"},
		{"adverse event repeated", b, map[string]any{"adverse_events": []any{"nausea", "nausea"}}, "adverse_events[1]"},
		{"adverse event empty", b, map[string]any{"adverse_events": []any{"nausea", ""}}, "adverse_events[1]"},
		{"adverse event number", b, map[string]any{"adverse_events": []any{1}}, "adverse_events[0]"},
		{"not_done_reason without not-done", b, map[string]any{"not_done_reason": "patient-declined"}, "not_done_reason"},
		{"not-done without reason", b, map[string]any{"status": "not-done", "note": "Patient felt unwell; dose deferred."}, ""},
		{"not-done without reason or note", b, map[string]any{"status": "not-done"}, ""},
		{"not-done with unknown reason", b, map[string]any{"status": "not-done", "not_done_reason": "snow"}, "not_done_reason"},
		{"note too long", b, map[string]any{"note": strings.Repeat("é", 2049)}, "note"},
		{"updated_at number", b, map[string]any{"updated_at": 1746457200}, "updated_at"},
	})
}

func TestParseScoreChecks(t *testing.T) {
	const b = "sc-1"
	runFieldCases(t, []fieldCase{
		{"valid", b, nil, ""},
		{"without items", b, map[string]any{"items": deleted}, ""},
		{"total written 19.0", b, map[string]any{"total": raw("19.0")}, ""},
		{"total at the top of the range", b, map[string]any{"total": 27, "items": []any{3, 3, 3, 3, 3, 3, 3, 3, 3}}, ""},
		{"total zero", b, map[string]any{"total": 0, "items": []any{0, 0, 0, 0, 0, 0, 0, 0, 0}}, ""},
		{"QIDS-SR16 scored by domains", b, map[string]any{"instrument": "QIDS-SR16", "total": 9, "items": []any{3, 3, 3, 3, 0, 3, 3, 3, 3, 0, 0, 0, 0, 0, 3, 3}}, ""},
		{"GAD-7", b, map[string]any{"instrument": "GAD-7", "total": 21, "items": []any{3, 3, 3, 3, 3, 3, 3}}, ""},
		{"MADRS item 6", b, map[string]any{"instrument": "MADRS", "total": 6, "items": []any{6, 0, 0, 0, 0, 0, 0, 0, 0, 0}}, ""},
		{"score_id missing", b, map[string]any{"score_id": deleted}, "score_id"},
		{"mrn number", b, map[string]any{"mrn": 5}, "mrn"},
		{"instrument unknown", b, map[string]any{"instrument": "BDI-II"}, "instrument"},
		{"instrument lower case", b, map[string]any{"instrument": "phq-9"}, "instrument"},
		{"taken_at no offset", b, map[string]any{"taken_at": "2025-05-05T09:45:00"}, "taken_at"},
		{"taken_at in the future", b, map[string]any{"taken_at": "2025-06-01T13:00:00Z"}, "taken_at"},
		{"total missing", b, map[string]any{"total": deleted}, "total"},
		{"total above PHQ-9 range", b, map[string]any{"total": 28, "items": deleted}, "total"},
		{"total negative", b, map[string]any{"total": -1, "items": deleted}, "total"},
		{"total fraction", b, map[string]any{"total": 19.5}, "total"},
		{"total string", b, map[string]any{"total": "19"}, "total"},
		{"total above GAD-7 range", b, map[string]any{"instrument": "GAD-7", "total": 22, "items": deleted}, "total"},
		{"total above PHQ-2 range", b, map[string]any{"instrument": "PHQ-2", "total": 7, "items": deleted}, "total"},
		{"total above MADRS range", b, map[string]any{"instrument": "MADRS", "total": 61, "items": deleted}, "total"},
		{"total above QIDS range", b, map[string]any{"instrument": "QIDS-SR16", "total": 28, "items": deleted}, "total"},
		{"items do not sum to total", b, map[string]any{"total": 18}, "total"},
		{"QIDS-SR16 total is not the sum", b, map[string]any{"instrument": "QIDS-SR16", "total": 12, "items": []any{1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0}}, "total"},
		{"QIDS-SR16 total by domains", b, map[string]any{"instrument": "QIDS-SR16", "total": 9, "items": []any{1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0}}, ""},
		{"too few items", b, map[string]any{"items": []any{3, 2, 2, 3, 2, 2, 2, 1}}, "items"},
		{"too many items for PHQ-2", b, map[string]any{"instrument": "PHQ-2", "total": 4}, "items"},
		{"item above range", b, map[string]any{"items.0": 4, "total": 20}, "items[0]"},
		{"MADRS item above range", b, map[string]any{"instrument": "MADRS", "total": 7, "items": []any{7, 0, 0, 0, 0, 0, 0, 0, 0, 0}}, "items[0]"},
		{"item negative", b, map[string]any{"items.3": -1}, "items[3]"},
		{"item string", b, map[string]any{"items.2": "2"}, "items[2]"},
		{"item fraction", b, map[string]any{"items.2": 1.5}, "items[2]"},
		{"items an object", b, map[string]any{"items": map[string]any{}}, "items"},
		{"admin_id leading space", b, map[string]any{"admin_id": " adm-17-1"}, "admin_id"},
		{"performer npi bad", b, map[string]any{"performer.npi": "1456789018"}, "performer.npi"},
		{"performer without name", b, map[string]any{"performer.name": deleted}, "performer.name"},
	})
}

func TestParseRecordLevel(t *testing.T) {
	p := newRecParser()
	order := string(baseRecord(t, "ord-17"))
	cases := []struct {
		name   string
		data   string
		reason string // of the single record-level problem, or "" for a field problem
		field  string
	}{
		{"empty", "", "empty record", ""},
		{"spaces", "   ", "empty record", ""},
		{"invalid UTF-8", `{"kind":"patient","family":"M` + "\xfc" + `ller"}`, "invalid UTF-8", ""},
		{"array", `[1,2]`, "not a JSON object", ""},
		{"string", `"patient"`, "not a JSON object", ""},
		{"null", `null`, "not a JSON object", ""},
		{"truncated", `{"kind":"order",`, "malformed JSON", ""},
		{"bad token", `{"kind":patient}`, "malformed JSON", ""},
		{"trailing comma", `{"kind":"patient",}`, "malformed JSON", ""},
		{"two objects", order + order, "data after the JSON object", ""},
		{"trailing garbage", order + ` x`, "data after the JSON object", ""},
		{"deep nesting", `{"kind":"order","note":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}`, "JSON nested too deeply", ""},
		{"too large", `{"kind":"order","note":"` + strings.Repeat("x", DefaultMaxRecordBytes) + `"}`, "record larger than 1048576 bytes", ""},
		{"duplicate top-level key", strings.Replace(order, `"mrn":"MRN-100234"`, `"mrn":"MRN-100234","mrn":"MRN-9"`, 1), "", "mrn"},
		{"duplicate nested key", strings.Replace(order, `"unit":"mg/kg"`, `"unit":"mg/kg","unit":"mg"`, 1), "", "dose.unit"},
		{"duplicate kind", strings.Replace(order, `"kind":"order"`, `"kind":"order","kind":"patient"`, 1), "", "kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Parse([]byte(tc.data), 9)
			re := recordErrorOf(t, err)
			if len(re.Problems) != 1 {
				t.Fatalf("problems %v, want one", re.Problems)
			}
			got := re.Problems[0]
			if got.Field != tc.field || (tc.reason != "" && got.Reason != tc.reason) {
				t.Errorf("problem %+v, want field %q reason %q", got, tc.field, tc.reason)
			}
			if re.Line != 9 {
				t.Errorf("line %d", re.Line)
			}
			if tc.reason != "" && (re.Kind != "" || re.RecordID != "") {
				t.Errorf("kind %q id %q for an unreadable record", re.Kind, re.RecordID)
			}
		})
	}
}

func TestParseCollectsEveryProblem(t *testing.T) {
	p := newRecParser()
	data := mutate(t, baseRecord(t, "adm-17-1"), map[string]any{
		"route":             "XX",
		"dose.value":        -3,
		"vitals.0.spo2":     120,
		"vitals.1.at":       "soon",
		"adverse_events":    []any{"hiccups"},
		"unexpected":        true,
		"performer.npi":     "12345",
		"weight_kg":         "heavy",
		"session":           "first",
		"not_done_reason":   "snow",
		"lot_expires":       "never",
		"ended_at":          "2025-05-05T09:00:00-04:00",
		"performer.name":    "",
		"vitals.0.systolic": 50,
	})
	_, err := p.Parse(data, 1)
	re := recordErrorOf(t, err)
	got := map[string]bool{}
	for _, f := range problemFields(re) {
		if got[f] {
			t.Errorf("field %s reported twice", f)
		}
		got[f] = true
	}
	want := []string{"route", "dose.value", "vitals[0].spo2", "vitals[1].at", "adverse_events[0]", "unexpected",
		"performer.npi", "weight_kg", "session", "not_done_reason", "lot_expires", "ended_at", "performer.name", "vitals[0].diastolic"}
	for _, f := range want {
		if !got[f] {
			t.Errorf("no problem with %s; got %v", f, problemFields(re))
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems %v, want %d", len(got), problemFields(re), len(want))
	}
	if re.Kind != KindAdministration || re.RecordID != "adm-17-1" {
		t.Errorf("kind %q id %q", re.Kind, re.RecordID)
	}
}

func TestParseRecordID(t *testing.T) {
	p := newRecParser()
	cases := []struct {
		base    string
		changes map[string]any
		kind    Kind
		id      string
	}{
		{"ord-17", map[string]any{"route": "XX"}, KindOrder, "ord-17"},
		{"ord-17", map[string]any{"route": "XX", "order_id": "ord\u000017"}, KindOrder, ""},
		{"MRN-100234", map[string]any{"sex": "X"}, KindPatient, "MRN-100234"},
		{"sc-1", map[string]any{"total": 99, "score_id": 7}, KindScore, ""},
	}
	for _, tc := range cases {
		_, err := p.Parse(mutate(t, baseRecord(t, tc.base), tc.changes), 2)
		re := recordErrorOf(t, err)
		if re.Kind != tc.kind || re.RecordID != tc.id {
			t.Errorf("%s %v: kind %q id %q, want %q %q", tc.base, tc.changes, re.Kind, re.RecordID, tc.kind, tc.id)
		}
	}
}

func TestParseLimitsAreConfigurable(t *testing.T) {
	p := newRecParser()
	p.MaxNoteBytes = 10
	p.MaxFieldBytes = 12
	p.MaxListItems = 1
	data := mutate(t, baseRecord(t, "ord-17"), map[string]any{"note": "eleven char", "prescriber.name": "Dr. Riverasss"})
	_, err := p.Parse(data, 1)
	re := recordErrorOf(t, err)
	want := []string{"diagnoses", "prescriber.name", "note"} // decoding problems first
	if got := problemFields(re); !reflect.DeepEqual(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	p.MaxRecordBytes = 100
	_, err = p.Parse(baseRecord(t, "ord-17"), 1)
	if re := recordErrorOf(t, err); re.Problems[0].Reason != "record larger than 100 bytes" {
		t.Errorf("problems %v", re.Problems)
	}
}

func TestParseConfigDrivesChecks(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxDoseMg = 50
	cfg.AdverseEvents = map[string]string{"nausea": "Nausea"}
	cfg.Formulary["ketamine-10mg-ml"] = Product{Display: "k", Ingredient: "ketamine", StrengthMg: 10, StrengthPerML: 1, Form: "injection-solution", Routes: []string{"IM"}}
	p := NewParser(cfg, func() time.Time { return parseNow })
	cases := []struct {
		base    string
		changes map[string]any
		field   string
	}{
		{"ord-17", nil, "route"},
		{"ord-18", map[string]any{"dose.value": 56}, "dose.value"},
		{"adm-17-1", map[string]any{"adverse_events": []any{"nausea", "dissociation"}}, "adverse_events[1]"},
	}
	for _, tc := range cases {
		_, err := p.Parse(mutate(t, baseRecord(t, tc.base), tc.changes), 1)
		re := recordErrorOf(t, err)
		if fs := problemFields(re); len(fs) != 1 || fs[0] != tc.field {
			t.Errorf("%s: fields %v, want %s", tc.base, fs, tc.field)
		}
	}
}

func TestParseTimesKeepOffsetAndIgnoreLocalZone(t *testing.T) {
	p := newRecParser()
	data := mutate(t, baseRecord(t, "sc-1"), map[string]any{"taken_at": "2025-05-05T09:45:00.250+05:30", "updated_at": "2025-05-05T10:00:00+00:00"})
	rec, err := p.Parse(data, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Score.TakenAt.Format(time.RFC3339Nano); got != "2025-05-05T09:45:00.25+05:30" {
		t.Errorf("taken_at = %s", got)
	}
	if rec.Score.UpdatedAt.Location() != time.UTC {
		t.Errorf("a zero offset gives location %v, want UTC", rec.Score.UpdatedAt.Location())
	}
}

func TestCheckRecordsBuiltInCode(t *testing.T) {
	p := newRecParser()
	good, err := p.Parse(baseRecord(t, "ord-18"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(good); err != nil {
		t.Errorf("Check(valid) = %v", err)
	}
	cases := []struct {
		name  string
		rec   *Record
		field string
	}{
		{"nil", nil, ""},
		{"no content", &Record{Kind: KindOrder}, ""},
		{"content of another kind", &Record{Kind: KindPatient, Order: good.Order}, ""},
		{"two contents", &Record{Kind: KindOrder, Order: good.Order, Patient: &Patient{}}, ""},
		{"unknown kind", &Record{Kind: "vital", Order: good.Order}, "kind"},
		{"negative sessions", &Record{Kind: KindOrder, Order: func() *Order { o := *good.Order; o.Sessions = -1; return &o }()}, "sessions"},
		{"zero authored_at", &Record{Kind: KindOrder, Order: func() *Order { o := *good.Order; o.AuthoredAt = time.Time{}; return &o }()}, "authored_at"},
		{"invalid UTF-8 name", &Record{Kind: KindOrder, Order: func() *Order { o := *good.Order; o.Prescriber.Name = "Dr. \xff"; return &o }()}, "prescriber.name"},
		{"NaN dose", &Record{Kind: KindOrder, Order: func() *Order { o := *good.Order; o.Dose.Value = nan(); return &o }()}, "dose.value"},
		{"empty patient", &Record{Kind: KindPatient, Patient: &Patient{}}, "mrn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			re := recordErrorOf(t, p.Check(tc.rec))
			if re.Problems[0].Field != tc.field {
				t.Errorf("problems %v, want first field %q", re.Problems, tc.field)
			}
		})
	}
}

func nan() float64 { var z float64; return z / z }

func BenchmarkParse(b *testing.B) {
	p := newRecParser()
	lines := fixtureLines(b, "valid.ndjson")
	for _, id := range []string{"MRN-100234", "ord-17", "adm-17-1", "sc-5"} {
		var line []byte
		for _, l := range lines {
			if bytes.Contains(l, []byte(`"`+id+`"`)) {
				line = l
				break
			}
		}
		rec, err := p.Parse(line, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(rec.Kind), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, err := p.Parse(line, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"valid.ndjson", "mixed.ndjson", "patients_bad.ndjson"} {
		for _, l := range fixtureLines(f, name) {
			f.Add(l)
		}
	}
	for _, s := range []string{`{}`, `[]`, `{"kind":"order","dose":{"value":1e400}}`, `{"kind":"score","total":-0.0}`, "{\"kind\":\"patient\",\"mrn\":\"\\ud800\"}"} {
		f.Add([]byte(s))
	}
	p := newRecParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := p.Parse(data, 1)
		if err != nil {
			re := recordErrorOf(t, err)
			if len(re.Problems) == 0 || re.Error() == "" {
				t.Fatalf("empty RecordError %+v", re)
			}
			if rec != nil {
				t.Fatal("record and error")
			}
			return
		}
		if p.Check(rec) != nil {
			t.Fatalf("Check rejects a parsed record: %v", p.Check(rec))
		}
		checkRoundTrip(t, p, rec)
	})
}
