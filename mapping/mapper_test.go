package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// testLookup is a hand-written Lookup: literal references by record and the
// orders it knows.
type testLookup struct {
	refs   map[Dependency]string
	orders map[string]*Order
}

func (l *testLookup) Reference(kind Kind, id string) string {
	return l.refs[Dependency{Kind: kind, ID: id}]
}

func (l *testLookup) Order(id string) *Order { return l.orders[id] }

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func timePtr(s string) *time.Time { t := mustTime(s); return &t }

func num(v float64) *float64 { return &v }

// Fixture records. The names, MRNs and NPIs are invented.

func fixturePatient() *Patient {
	return &Patient{
		MRN: "MRN-0001", Family: "Okafor", Given: []string{"Adaeze", "Grace"},
		BirthDate: "1984-07-19", Sex: "female", Phone: "+1 555 0100", Email: "adaeze@example.org",
	}
}

func fixtureOrderMgKg() *Order {
	return &Order{
		OrderID: "ORD-100", MRN: "MRN-0001", Status: "active",
		AuthoredAt: mustTime("2025-03-03T14:05:00-05:00"),
		Prescriber: Practitioner{NPI: "1234567893", Name: "Dr. Lena Park"},
		Medication: "ketamine-100mg-ml", Route: "IM", Dose: Dose{Value: 0.5, Unit: "mg/kg"},
		Sessions: 6, Frequency: "2/week", Diagnoses: []string{"F33.2", "F41.1"},
		Note: "Titrate per protocol.",
	}
}

func fixtureOrderMg() *Order {
	return &Order{
		OrderID: "ORD-200", MRN: "MRN-0002", Status: "completed",
		AuthoredAt: mustTime("2025-01-10T09:00:00Z"),
		Prescriber: Practitioner{NPI: "1234567893", Name: "Dr. Lena Park"},
		Medication: "esketamine-28mg-nasal", Route: "IN", Dose: Dose{Value: 56, Unit: "mg"},
		Sessions: 8, Frequency: "2/week", Diagnoses: []string{"F32.2"},
	}
}

func fixtureOrderUnverified() *Order {
	return &Order{
		OrderID: "ORD-300", MRN: "MRN-0003", Status: "on-hold",
		AuthoredAt: mustTime("2025-02-01T10:00:00+01:00"),
		Prescriber: Practitioner{NPI: "1234567893"},
		Medication: "ketamine-50mg-ml", Route: "IV", Dose: Dose{Value: 35, Unit: "mg"},
		Frequency: "1/week",
	}
}

func fixtureAdminIM() *Administration {
	return &Administration{
		AdminID: "ADM-1", OrderID: "ORD-100", MRN: "MRN-0001", Status: "completed",
		StartedAt: mustTime("2025-03-04T09:30:00-05:00"),
		Dose:      Dose{Value: 0.5, Unit: "mg/kg"}, Route: "IM",
		Performer: Practitioner{NPI: "1987654321", Name: "Sam Rivera, RN"},
		Site:      "left-deltoid", Lot: "KX2291", LotExpires: "2026-01-31", Session: 1,
		WeightKg: num(70.4),
		Vitals: []Vital{
			{At: mustTime("2025-03-04T09:25:00-05:00"), Systolic: num(128), Diastolic: num(82), HeartRate: num(74), SpO2: num(98)},
			{At: mustTime("2025-03-04T10:10:00-05:00"), Systolic: num(141), HeartRate: num(80), SpO2: num(97.5)},
		},
		AdverseEvents: []string{"nausea", "dissociation", "nausea"},
		Note:          "Tolerated well.",
	}
}

func fixtureAdminIV() *Administration {
	return &Administration{
		AdminID: "ADM-2", OrderID: "ORD-400", MRN: "MRN-0004", Status: "completed",
		StartedAt: mustTime("2025-03-05T13:00:00Z"), EndedAt: timePtr("2025-03-05T13:40:00Z"),
		Dose: Dose{Value: 35, Unit: "mg"}, Route: "IV",
		Performer: Practitioner{NPI: "1987654321", Name: "Sam Rivera, RN"},
		Session:   3,
	}
}

func fixtureAdminIN() *Administration {
	return &Administration{
		AdminID: "ADM-3", OrderID: "ORD-200", MRN: "MRN-0002", Status: "completed",
		StartedAt: mustTime("2025-01-14T11:00:00.250+00:00"),
		Dose:      Dose{Value: 56, Unit: "mg"}, Route: "IN",
		Performer: Practitioner{NPI: "1987654321", Name: "Sam Rivera, RN"},
		Lot:       "SPR-7731",
		Vitals:    []Vital{{At: mustTime("2025-01-14T12:00:00Z"), Systolic: num(150), Diastolic: num(95)}},
	}
}

func fixtureAdminNotDone() *Administration {
	return &Administration{
		AdminID: "ADM-4", OrderID: "ORD-100", MRN: "MRN-0001", Status: "not-done",
		StartedAt: mustTime("2025-03-07T09:30:00-05:00"),
		Dose:      Dose{Value: 0.5, Unit: "mg/kg"}, Route: "IM", WeightKg: num(70),
		Performer:     Practitioner{NPI: "1987654321", Name: "Sam Rivera, RN"},
		NotDoneReason: "patient-declined",
	}
}

func fixtureAdminEnteredInError() *Administration {
	return &Administration{
		AdminID: "ADM-5", OrderID: "ORD-100", MRN: "MRN-0001", Status: "entered-in-error",
		StartedAt: mustTime("2025-03-06T09:30:00-05:00"),
		Dose:      Dose{Value: 40, Unit: "mg"}, Route: "IM", Site: "right-thigh",
		Performer:     Practitioner{NPI: "1987654321", Name: "Sam Rivera, RN"},
		WeightKg:      num(71),
		Vitals:        []Vital{{At: mustTime("2025-03-06T09:35:00-05:00"), HeartRate: num(90)}},
		AdverseEvents: []string{"headache"},
	}
}

func fixtureScore(instrument string, total int, items []int) *Score {
	return &Score{
		ScoreID: "SC-" + instrument, MRN: "MRN-0001", Instrument: instrument,
		TakenAt: mustTime("2025-03-04T09:00:00-05:00"), Total: total, Items: items,
	}
}

// testOrders are the orders the test lookups know.
func testOrders() map[string]*Order {
	iv := fixtureOrderUnverified()
	iv.OrderID, iv.MRN, iv.Medication = "ORD-400", "MRN-0004", "ketamine-10mg-ml"
	return map[string]*Order{"ORD-100": fixtureOrderMgKg(), "ORD-200": fixtureOrderMg(), "ORD-400": iv}
}

// literalLookup refers to the patient and order of MRN-0001 by EHR id,
// nothing else.
func literalLookup() *testLookup {
	return &testLookup{
		refs: map[Dependency]string{
			{KindPatient, "MRN-0001"}: "Patient/123",
			{KindOrder, "ORD-100"}:    "MedicationRequest/456",
		},
		orders: testOrders(),
	}
}

// logicalLookup knows orders but no EHR ids: every reference is logical.
func logicalLookup() *testLookup { return &testLookup{orders: testOrders()} }

// urnLookup refers to everything by urn:uuid, as inside one Bundle.
func urnLookup() *testLookup {
	return &testLookup{
		refs: map[Dependency]string{
			{KindPatient, "MRN-0002"}:     "urn:uuid:5f2b9a52-8a0e-5d43-9c43-2f3f6b3e2a11",
			{KindOrder, "ORD-200"}:        "urn:uuid:0b8d7c0e-3c59-5d7a-a0c6-0b6f2f8a9b01",
			{KindAdministration, "ADM-3"}: "urn:uuid:7d1c1d8e-6f4a-5b8e-9a3e-2f1e0c9b8a77",
		},
		orders: testOrders(),
	}
}

type mapCase struct {
	name string
	rec  *Record
	lk   Lookup
}

// goldenCases lists one record per kind and variant; each has a golden file
// testdata/golden/<name>.json.
func goldenCases() []mapCase {
	score := func(s *Score) *Record { return &Record{Kind: KindScore, Score: s} }
	phq9 := fixtureScore("PHQ-9", 14, []int{2, 2, 1, 2, 1, 2, 2, 1, 1})
	phq9.AdminID = "ADM-1"
	phq9.Performer = &Practitioner{NPI: "1234567893", Name: "Dr. Lena Park"}
	madrs := fixtureScore("MADRS", 34, []int{4, 4, 3, 4, 3, 3, 4, 3, 3, 3})
	madrs.AdminID = "ADM-1"
	return []mapCase{
		{"patient", &Record{Kind: KindPatient, Patient: fixturePatient()}, nil},
		{"order-mgkg", &Record{Kind: KindOrder, Order: fixtureOrderMgKg()}, literalLookup()},
		{"order-mg", &Record{Kind: KindOrder, Order: fixtureOrderMg()}, urnLookup()},
		{"order-unverified-product", &Record{Kind: KindOrder, Order: fixtureOrderUnverified()}, logicalLookup()},
		{"administration-im-lot", &Record{Kind: KindAdministration, Administration: fixtureAdminIM()}, literalLookup()},
		{"administration-iv-ended", &Record{Kind: KindAdministration, Administration: fixtureAdminIV()}, logicalLookup()},
		{"administration-esketamine-in", &Record{Kind: KindAdministration, Administration: fixtureAdminIN()}, urnLookup()},
		{"administration-not-done", &Record{Kind: KindAdministration, Administration: fixtureAdminNotDone()}, literalLookup()},
		{"administration-entered-in-error", &Record{Kind: KindAdministration, Administration: fixtureAdminEnteredInError()}, literalLookup()},
		{"score-phq9", score(phq9), literalLookup()},
		{"score-phq2", score(fixtureScore("PHQ-2", 3, []int{1, 2})), literalLookup()},
		{"score-gad7", score(fixtureScore("GAD-7", 9, []int{1, 2, 1, 2, 1, 1, 1})), literalLookup()},
		{"score-madrs", score(madrs), literalLookup()},
		{"score-qids-sr16", score(fixtureScore("QIDS-SR16", 12, []int{1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1})), logicalLookup()},
	}
}

// Test helpers.

// newTestMapper returns a Mapper with the default config.
func newTestMapper(t testing.TB) *Mapper {
	t.Helper()
	m, err := NewMapper(DefaultConfig())
	if err != nil {
		t.Fatalf("NewMapper: %v", err)
	}
	return m
}

// mapOK maps rec and fails the test on error.
func mapOK(t testing.TB, m *Mapper, rec *Record, lk Lookup) []Resource {
	t.Helper()
	res, err := m.Map(rec, lk)
	if err != nil {
		t.Fatalf("Map(%s %s): %v", rec.Kind, rec.ID(), err)
	}
	return res
}

// decode decodes a resource's JSON.
func decode(t testing.TB, r Resource) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(r.JSON, &obj); err != nil {
		t.Fatalf("resource %s is not JSON: %v", r.Type, err)
	}
	return obj
}

// jget returns the value at a dotted path of decoded JSON; numeric parts
// index arrays. It returns nil when the path does not exist.
func jget(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// jstr is jget for a string; "" if absent or not a string.
func jstr(v any, path string) string {
	s, _ := jget(v, path).(string)
	return s
}

// Golden files.

func init() {
	// Another test file of the package may define the -update flag too.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata/golden")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// goldenJSON renders the resources of one record as the golden file holds
// them: pretty JSON, with type and identifier next to each resource.
func goldenJSON(t *testing.T, res []Resource) []byte {
	t.Helper()
	type ident struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	type entry struct {
		Type       string          `json:"type"`
		Identifier ident           `json:"identifier"`
		Resource   json.RawMessage `json:"resource"`
	}
	entries := make([]entry, len(res))
	for i, r := range res {
		entries[i] = entry{r.Type, ident{r.Identifier.System, r.Identifier.Value}, r.JSON}
	}
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

func TestGolden(t *testing.T) {
	m := newTestMapper(t)
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got := goldenJSON(t, mapOK(t, m, tc.rec, tc.lk))
			path := filepath.Join("testdata", "golden", tc.name+".json")
			if updateGolden() {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./mapping -run Golden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file; got:\n%s", path, got)
			}
		})
	}
}

// TestRoundTrip checks that every produced resource, and a transaction
// Bundle of all of them, is read back by the validating jsonformat
// Unmarshaller without error or issue.
func TestRoundTrip(t *testing.T) {
	m := newTestMapper(t)
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, what string, data []byte) {
		t.Helper()
		_, outcome, err := u.UnmarshalWithOutcome(data)
		if err != nil {
			t.Fatalf("%s: unmarshal: %v", what, err)
		}
		if n := len(outcome.R4Outcome.GetIssue()); n > 0 {
			t.Fatalf("%s: %d validation issues: %v", what, n, outcome.R4Outcome.GetIssue())
		}
	}
	var entries []BundleEntry
	for _, tc := range goldenCases() {
		for i, r := range mapOK(t, m, tc.rec, tc.lk) {
			check(t, fmt.Sprintf("%s resource %d", tc.name, i), r.JSON)
			entries = append(entries, EntryFor(r))
		}
	}
	bundle, err := TransactionBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "bundle", bundle)
}

// TestMapConcurrent maps the golden cases from several goroutines at once
// with one Mapper (run with -race) and expects the sequential results.
func TestMapConcurrent(t *testing.T) {
	m := newTestMapper(t)
	cases := goldenCases()
	want := make([][]Resource, len(cases))
	for i, tc := range cases {
		want[i] = mapOK(t, m, tc.rec, tc.lk)
	}
	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 3; round++ {
				for i, tc := range cases {
					got, err := m.Map(tc.rec, tc.lk)
					if err != nil {
						errs <- err
						return
					}
					if !reflect.DeepEqual(got, want[i]) {
						errs <- fmt.Errorf("%s: concurrent result differs", tc.name)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// fieldsOf returns the fields named by the *MappingErrors in err.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var fields []string
	for _, e := range errs {
		var me *MappingError
		if !errors.As(e, &me) {
			t.Fatalf("error %v is not a *MappingError", e)
		}
		fields = append(fields, me.Field)
	}
	return fields
}

func TestMapErrors(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		name   string
		rec    *Record
		fields []string
	}{
		{"patient without sex or date", &Record{Kind: KindPatient, Line: 7, Patient: func() *Patient {
			p := fixturePatient()
			p.Sex, p.BirthDate = "f", "19/07/1984"
			return p
		}()}, []string{"sex", "birth_date"}},
		{"order with unknown product and route", &Record{Kind: KindOrder, Order: func() *Order {
			o := fixtureOrderMgKg()
			o.Medication, o.Route, o.Frequency = "ketamine-lozenge", "IO", "twice weekly"
			return o
		}()}, []string{"medication", "route", "frequency"}},
		{"order with bad dose", &Record{Kind: KindOrder, Order: func() *Order {
			o := fixtureOrderMgKg()
			o.Dose = Dose{Value: math.NaN(), Unit: "mL"}
			o.Prescriber.NPI = ""
			return o
		}()}, []string{"prescriber.npi", "dose.unit", "dose.value"}},
		{"administration in mg/kg without weight", &Record{Kind: KindAdministration, Administration: func() *Administration {
			a := fixtureAdminIM()
			a.WeightKg = nil
			return a
		}()}, []string{"weight_kg"}},
		{"administration with unknown codes", &Record{Kind: KindAdministration, Administration: func() *Administration {
			a := fixtureAdminIM()
			a.Site, a.NotDoneReason, a.LotExpires = "left-ear", "bored", "2026-13-01"
			a.AdverseEvents = []string{"nausea", "hiccups"}
			a.Vitals[0].SpO2 = num(math.Inf(1))
			return a
		}()}, []string{"site", "lot_expires", "not_done_reason", "vitals[0].spo2", "adverse_events[1]"}},
		{"administration ending before it starts", &Record{Kind: KindAdministration, Administration: func() *Administration {
			a := fixtureAdminIV()
			a.EndedAt = timePtr("2025-03-05T12:00:00Z")
			return a
		}()}, []string{"ended_at"}},
		{"score with unknown instrument", &Record{Kind: KindScore, Score: fixtureScore("BDI-II", 20, nil)}, []string{"instrument"}},
		{"PHQ-9 out of range", &Record{Kind: KindScore, Score: fixtureScore("PHQ-9", 28, nil)}, []string{"total"}},
		{"PHQ-2 with too many items", &Record{Kind: KindScore, Score: fixtureScore("PHQ-2", 3, []int{1, 1, 1})}, []string{"items"}},
		{"kind without content", &Record{Kind: KindOrder, Patient: fixturePatient()}, []string{"kind"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := m.Map(tc.rec, logicalLookup())
			if err == nil {
				t.Fatalf("Map succeeded with %d resources, want an error", len(res))
			}
			if got := fieldsOf(t, err); !reflect.DeepEqual(got, tc.fields) {
				t.Errorf("fields = %q, want %q (error: %v)", got, tc.fields, err)
			}
		})
	}
}

func TestMappingErrorHasNoPHI(t *testing.T) {
	m := newTestMapper(t)
	p := fixturePatient()
	p.Sex = "zzq-sex"
	_, err := m.Map(&Record{Kind: KindPatient, Line: 12, Patient: p}, nil)
	if err == nil {
		t.Fatal("Map succeeded, want an error")
	}
	msg := err.Error()
	for _, phi := range []string{p.MRN, p.Family, p.Given[0], p.BirthDate, p.Phone, p.Email, p.Sex} {
		if strings.Contains(msg, phi) {
			t.Errorf("error %q contains patient data %q", msg, phi)
		}
	}
	if want := `mapping patient record (line 12): field "sex": not one of female, male, other, unknown`; msg != want {
		t.Errorf("error = %q, want %q", msg, want)
	}
	var me *MappingError
	if !errors.As(err, &me) || me.RecordID != p.MRN {
		t.Errorf("MappingError.RecordID = %v, want the MRN kept for the caller", me)
	}
}

func TestMapUnknownOrder(t *testing.T) {
	m := newTestMapper(t)
	for name, lk := range map[string]Lookup{"nil lookup": nil, "lookup without the order": &testLookup{}} {
		t.Run(name, func(t *testing.T) {
			_, err := m.Map(&Record{Kind: KindAdministration, Administration: fixtureAdminIV()}, lk)
			if !errors.Is(err, ErrOrderUnknown) {
				t.Fatalf("err = %v, want ErrOrderUnknown", err)
			}
			if got := err.Error(); got != `mapping administration "ADM-2": field "order_id": order unknown (its product gives the medication)` {
				t.Errorf("error = %q", got)
			}
		})
	}
}

func TestMapNilLookupGivesLogicalReferences(t *testing.T) {
	m := newTestMapper(t)
	res := mapOK(t, m, &Record{Kind: KindOrder, Order: fixtureOrderMgKg()}, nil)
	obj := decode(t, res[0])
	if got := jstr(obj, "subject.type"); got != "Patient" {
		t.Errorf("subject.type = %q, want Patient", got)
	}
	if got := jstr(obj, "subject.identifier.system"); got != "https://clinic.example.org/fhir/sid/patient" {
		t.Errorf("subject.identifier.system = %q", got)
	}
	if got := jstr(obj, "subject.identifier.value"); got != "MRN-0001" {
		t.Errorf("subject.identifier.value = %q", got)
	}
	if jget(obj, "subject.reference") != nil {
		t.Error("subject has a literal reference")
	}
}

// TestMapValidatesReferenceTypes checks that resources are validated before
// marshalling: a Lookup answering with a reference to the wrong resource
// type makes Map fail instead of sending an invalid resource.
func TestMapValidatesReferenceTypes(t *testing.T) {
	m := newTestMapper(t)
	lk := &testLookup{refs: map[Dependency]string{{KindPatient, "MRN-0001"}: "Practitioner/9"}, orders: testOrders()}
	_, err := m.Map(&Record{Kind: KindOrder, Order: fixtureOrderMgKg()}, lk)
	var me *MappingError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want a *MappingError", err)
	}
	if me.Err == nil || !strings.Contains(me.Err.Error(), "MedicationRequest.subject") {
		t.Errorf("validation error = %v, want it to name MedicationRequest.subject", me.Err)
	}
	if want := `mapping order "ORD-100": produced MedicationRequest fails FHIR validation: error at "MedicationRequest.subject": invalid reference to a Practitioner resource, want Patient, Group`; me.Error() != want {
		t.Errorf("error = %q, want %q", me.Error(), want)
	}
}

func TestNewMapper(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; nil for success
	}{
		{"defaults", func(*Config) {}, nil},
		{"base with trailing slash", func(c *Config) { c.Identifiers.Base = "https://clinic.example.org/sid/" }, nil},
		{"relative base", func(c *Config) { c.Identifiers.Base = "clinic/sid" }, []string{"identifiers.base"}},
		{"empty base", func(c *Config) { c.Identifiers.Base = "" }, []string{"identifiers.base"}},
		{"bad clinic code system", func(c *Config) { c.Identifiers.ClinicCodeSystem = "not a uri" }, []string{"clinic_code_system"}},
		{"several problems", func(c *Config) {
			c.Formulary["x"] = Product{RxNorm: "12a"}
			c.AdverseEvents["itch"] = ""
			c.NotDoneReasons["late"] = " "
			c.TimeZone = "Mars/Olympus"
		}, []string{`formulary "x": display`, `formulary "x": rxnorm`, `adverse_events "itch"`, `not_done_reasons "late"`, "time_zone"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(cfg)
			m, err := NewMapper(cfg)
			if tc.want == nil {
				if err != nil || m == nil {
					t.Fatalf("NewMapper: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("NewMapper succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := NewMapper(nil); err == nil {
		t.Error("NewMapper(nil) succeeded")
	}
}

func TestMapperKeepsItsOwnConfig(t *testing.T) {
	cfg := DefaultConfig()
	m, err := NewMapper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Formulary["ketamine-100mg-ml"] = Product{Display: "changed", RxNorm: "1"}
	cfg.Identifiers.Base = "https://other.example.org"
	obj := decode(t, mapOK(t, m, &Record{Kind: KindOrder, Order: fixtureOrderMgKg()}, nil)[0])
	if got := jstr(obj, "medicationCodeableConcept.coding.0.code"); got != "238083" {
		t.Errorf("product code = %q after the caller changed its config, want 238083", got)
	}
	if got := jstr(obj, "identifier.0.system"); got != "https://clinic.example.org/fhir/sid/order" {
		t.Errorf("identifier system = %q", got)
	}
}

// TestMapTimesInUTC checks that times are written in UTC ("Z", which
// google/fhir/go marshals without loading a time zone), as the same
// instants, with the precision of their fraction.
func TestMapTimesInUTC(t *testing.T) {
	m := newTestMapper(t)
	a := fixtureAdminIV()
	a.StartedAt = mustTime("2025-03-05T13:00:00.123456+05:30")
	a.EndedAt = timePtr("2025-03-05T13:40:00.5-08:00")
	obj := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, logicalLookup())[0])
	for _, tc := range []struct {
		path string
		in   time.Time
		want string
	}{
		{"effectivePeriod.start", a.StartedAt, "2025-03-05T07:30:00.123456Z"},
		{"effectivePeriod.end", *a.EndedAt, "2025-03-05T21:40:00.500Z"},
	} {
		got := jstr(obj, tc.path)
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.path, got, tc.want)
		}
		if at, err := time.Parse(time.RFC3339Nano, got); err != nil || !at.Equal(tc.in) {
			t.Errorf("%s = %q is not the instant %v", tc.path, got, tc.in)
		}
	}
}

// TestDatesInAnyZone checks that calendar dates come out as given whatever
// the configured time zone, including zones east of UTC where local
// midnight is the previous day in UTC.
func TestDatesInAnyZone(t *testing.T) {
	for _, tz := range []string{"UTC", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago"} {
		cfg := DefaultConfig()
		cfg.TimeZone = tz
		m, err := NewMapper(cfg)
		if err != nil {
			t.Fatal(err)
		}
		a := fixtureAdminIM()
		a.LotExpires = "2026-01-31"
		res := mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, literalLookup())
		if got := string(res[0].JSON); !strings.Contains(got, `"expirationDate":"2026-01-31"`) {
			t.Errorf("%s: lot expiry not 2026-01-31 in %s", tz, got)
		}
	}
}

func TestFingerprintFollowsTheConfig(t *testing.T) {
	a, err := NewMapper(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMapper(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("two mappers of the same config have different fingerprints")
	}
	cfg := DefaultConfig()
	p := cfg.Formulary["ketamine-10mg-ml"]
	p.Display += " (corrected)"
	cfg.Formulary["ketamine-10mg-ml"] = p
	c, err := NewMapper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() == c.Fingerprint() {
		t.Error("a changed formulary display keeps the fingerprint")
	}
}
