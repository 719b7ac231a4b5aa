package builtin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views/builtin"
)

// clinic is a mapped synthetic clinic: the FHIR resources as JSON, and
// the patient records they came from.
type clinic struct {
	resources [][]byte
	patients  []*mapping.Patient
}

// key is the id the test gives the resource with a business identifier
// value, as an EHR would: opaque, not the MRN.
func key(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "k" + hex.EncodeToString(sum[:8])
}

var fhirType = map[mapping.Kind]string{
	mapping.KindPatient:        "Patient",
	mapping.KindOrder:          "MedicationRequest",
	mapping.KindAdministration: "MedicationAdministration",
}

// lookup maps as `ketamine-fhir map` does (logical references) or, with
// literal set, as the EHR's export would have it (ids and literal
// references).
type lookup struct {
	literal bool
	orders  map[string]*mapping.Order
}

func (l *lookup) Reference(kind mapping.Kind, id string) string {
	if !l.literal {
		return ""
	}
	return fhirType[kind] + "/" + key(id)
}

func (l *lookup) Order(id string) *mapping.Order { return l.orders[id] }

// setup generates and maps a clinic of n patients (seed 1).
func setup(t *testing.T, n int, literal bool) *clinic {
	t.Helper()
	m, err := mapping.NewMapper(mapping.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	lk := &lookup{literal: literal, orders: map[string]*mapping.Order{}}
	c := &clinic{}
	err = synth.Generate(synth.Options{Patients: n, Seed: 1}, func(rec *mapping.Record) error {
		if rec.Order != nil {
			lk.orders[rec.Order.OrderID] = rec.Order
		}
		if rec.Patient != nil {
			c.patients = append(c.patients, rec.Patient)
		}
		res, err := m.Map(rec, lk)
		if err != nil {
			return err
		}
		for _, r := range res {
			data := r.JSON
			if literal {
				var obj map[string]any
				if err := json.Unmarshal(data, &obj); err != nil {
					return err
				}
				obj["id"] = key(r.Identifier.Value)
				if data, err = json.Marshal(obj); err != nil {
					return err
				}
			}
			c.resources = append(c.resources, data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rows runs every built-in view over the clinic.
func (c *clinic) rows(t *testing.T) map[string][]views.Row {
	t.Helper()
	out := map[string][]views.Row{}
	for _, res := range c.resources {
		for _, v := range builtin.All() {
			err := v.View.Run(res, func(r views.Row) error {
				out[v.Name] = append(out[v.Name], r)
				return nil
			})
			if err != nil {
				t.Fatalf("view %s: %v", v.Name, err)
			}
		}
	}
	return out
}

// column returns the index of the named column of view.
func column(t *testing.T, view, name string) int {
	t.Helper()
	v, _ := builtin.Get(view)
	for i, c := range v.View.Columns() {
		if c.Name == name {
			return i
		}
	}
	t.Fatalf("view %s has no column %s", view, name)
	return -1
}

var ketamineRxNorm = []string{"238082", "238083", "238084", "206967", "206970", "206972", "2201623", "2201625"}

// isKetamine says, walking the decoded JSON, whether a medication
// resource is about ketamine or esketamine.
func isKetamine(res map[string]any) bool {
	var concepts []any
	if cc, ok := res["medicationCodeableConcept"]; ok {
		concepts = append(concepts, cc)
	}
	contained, _ := res["contained"].([]any)
	for _, c := range contained {
		if m, _ := c.(map[string]any); m["resourceType"] == "Medication" {
			concepts = append(concepts, m["code"])
		}
	}
	for _, c := range concepts {
		cc, _ := c.(map[string]any)
		if s, _ := cc["text"].(string); strings.Contains(strings.ToLower(s), "ketamine") {
			return true
		}
		codings, _ := cc["coding"].([]any)
		for _, x := range codings {
			coding, _ := x.(map[string]any)
			if s, _ := coding["display"].(string); strings.Contains(strings.ToLower(s), "ketamine") {
				return true
			}
			if coding["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm" && slices.Contains(ketamineRxNorm, coding["code"].(string)) {
				return true
			}
		}
	}
	return false
}

// hasCode says whether a resource's code has a coding with one of codes
// (in system, if system is not "").
func hasCode(res map[string]any, system string, codes ...string) bool {
	code, _ := res["code"].(map[string]any)
	codings, _ := code["coding"].([]any)
	for _, x := range codings {
		c, _ := x.(map[string]any)
		if (system == "" || c["system"] == system) && slices.Contains(codes, fmt.Sprint(c["code"])) {
			return true
		}
	}
	return false
}

// expectedCounts computes each view's row count by walking the JSON,
// without FHIRPath.
func expectedCounts(t *testing.T, c *clinic) map[string]int {
	t.Helper()
	want := map[string]int{}
	for _, data := range c.resources {
		var res map[string]any
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatal(err)
		}
		live := res["status"] != "entered-in-error"
		switch res["resourceType"] {
		case "Patient":
			want["patients"]++
		case "MedicationRequest":
			if live && isKetamine(res) {
				want["ketamine_orders"]++
			}
		case "MedicationAdministration":
			if live && isKetamine(res) {
				want["ketamine_administrations"]++
			}
		case "Observation":
			if !live {
				continue
			}
			if hasCode(res, "http://loinc.org", "44261-6", "55758-7") || hasCode(res, "", "MADRS", "QIDS-SR16") {
				want["depression_scores"]++
			}
			if hasCode(res, "http://loinc.org", "85354-9", "8867-4", "2708-6", "59408-5", "29463-7") {
				want["vital_signs"]++
			}
		}
	}
	return want
}

func TestAllParse(t *testing.T) {
	t.Parallel()
	names := []string{}
	for _, v := range builtin.All() {
		names = append(names, v.Name)
		if v.Description == "" || strings.Contains(v.Description, "\n") {
			t.Errorf("view %s: description %q, want one line", v.Name, v.Description)
		}
		if v.View.Name() != v.Name {
			t.Errorf("view %s parses with name %q", v.Name, v.View.Name())
		}
	}
	want := []string{"depression_scores", "ketamine_administrations", "ketamine_orders", "patients", "vital_signs"}
	if !slices.Equal(names, want) {
		t.Errorf("built-in views %v, want %v", names, want)
	}
	if _, ok := builtin.Get("nope"); ok {
		t.Error("Get found a view that does not exist")
	}
}

func TestRowCounts(t *testing.T) {
	t.Parallel()
	c := setup(t, 5, false)
	got := c.rows(t)
	want := expectedCounts(t, c)
	for _, v := range builtin.All() {
		if want[v.Name] == 0 {
			t.Errorf("view %s: no rows expected; the test data does not exercise it", v.Name)
		}
		if len(got[v.Name]) != want[v.Name] {
			t.Errorf("view %s: %d rows, want %d", v.Name, len(got[v.Name]), want[v.Name])
		}
	}
}

// TestValues checks the columns analysts rely on are filled on the
// clinic's data.
func TestValues(t *testing.T) {
	t.Parallel()
	got := setup(t, 5, false).rows(t)
	nonNull := map[string][]string{
		"patients":                 {"gender", "birth_year"},
		"ketamine_orders":          {"authored_on", "status", "product", "dose_value", "dose_unit", "route_code"},
		"ketamine_administrations": {"administered_at", "status", "product", "route_code"},
		"depression_scores":        {"instrument_code", "instrument", "effective", "total"},
		"vital_signs":              {"measured_at", "loinc"},
	}
	for view, cols := range nonNull {
		for _, col := range cols {
			i := column(t, view, col)
			for _, r := range got[view] {
				if r[i] == nil {
					t.Errorf("view %s: column %s is null in %v", view, col, r)
					break
				}
			}
		}
	}
	// Some columns are filled only on some rows; each must be filled
	// somewhere.
	some := map[string][]string{
		"ketamine_administrations": {"dose_mg", "lot", "rxnorm"},
		"depression_scores":        {"severity", "phq9_item9"},
		"vital_signs":              {"systolic", "diastolic", "heart_rate", "spo2", "weight_kg"},
	}
	for view, cols := range some {
		for _, col := range cols {
			i := column(t, view, col)
			if !slices.ContainsFunc(got[view], func(r views.Row) bool { return r[i] != nil }) {
				t.Errorf("view %s: column %s is null on every row", view, col)
			}
		}
	}
	// Birth years are years.
	i := column(t, "patients", "birth_year")
	for _, r := range got["patients"] {
		if y, ok := r[i].(int64); !ok || y < 1900 || y > 2030 {
			t.Errorf("birth_year %v (%T)", r[i], r[i])
		}
	}
	// PHQ-9 item 9 only on PHQ-9 rows (which may have no items).
	code, item9 := column(t, "depression_scores", "instrument_code"), column(t, "depression_scores", "phq9_item9")
	for _, r := range got["depression_scores"] {
		if r[item9] != nil && r[code] != "44261-6" {
			t.Errorf("depression_scores: instrument %v with item 9 %v", r[code], r[item9])
		}
	}
}

// TestKeysJoin runs the views on resources as an EHR export has them (ids,
// literal references): every key is filled and every reference key finds
// its row.
func TestKeysJoin(t *testing.T) {
	t.Parallel()
	got := setup(t, 5, true).rows(t)
	keys := func(view, col string) map[any]bool {
		i := column(t, view, col)
		m := map[any]bool{}
		for _, r := range got[view] {
			if r[i] == nil {
				t.Errorf("view %s: %s is null", view, col)
			}
			m[r[i]] = true
		}
		return m
	}
	patients := keys("patients", "patient_key")
	admins := keys("ketamine_administrations", "administration_key")
	orders := keys("ketamine_orders", "order_key")
	for _, view := range []string{"ketamine_orders", "ketamine_administrations", "depression_scores", "vital_signs"} {
		for k := range keys(view, "patient_key") {
			if !patients[k] {
				t.Errorf("view %s: patient_key %v is not in patients", view, k)
			}
		}
	}
	for k := range keys("ketamine_administrations", "order_key") {
		if !orders[k] {
			t.Errorf("administration's order_key %v is not in ketamine_orders", k)
		}
	}
	i := column(t, "vital_signs", "administration_key")
	for _, r := range got["vital_signs"] {
		if !admins[r[i]] {
			t.Errorf("vital_signs: administration_key %v is not in ketamine_administrations", r[i])
		}
	}
}

// TestNoPHI checks that no view outputs a patient's name, MRN, birth
// date, phone or email, whether the resources have ids or not.
func TestNoPHI(t *testing.T) {
	t.Parallel()
	for _, literal := range []bool{false, true} {
		c := setup(t, 5, literal)
		phi := &testutil.PHI{}
		for _, p := range c.patients {
			phi.Values(p.MRN, p.BirthDate, p.Phone, p.Email)
			phi.Words(p.Family)
			phi.Words(p.Given...)
		}
		if phi.Len() == 0 {
			t.Fatal("no patient data to look for")
		}
		var sb strings.Builder
		for view, rows := range c.rows(t) {
			for _, r := range rows {
				b, err := json.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&sb, "%s %s\n", view, b)
			}
		}
		// The input itself must trip the checker, or the test proves
		// nothing.
		if len(phi.Find(string(c.resources[0]))) == 0 {
			t.Fatal("the PHI checker finds nothing in a Patient resource")
		}
		phi.Check(t, "built-in view rows", sb.String())
	}
}
