package mapping

import (
	"reflect"
	"testing"
)

func TestScoreObservation(t *testing.T) {
	m := newTestMapper(t)
	s := fixtureScore("PHQ-9", 21, []int{3, 3, 3, 2, 2, 2, 2, 2, 2})
	s.AdminID = "ADM-1"
	s.Performer = &Practitioner{NPI: "1234567893", Name: "Dr. Lena Park"}
	res := mapOK(t, m, &Record{Kind: KindScore, Score: s}, literalLookup())
	if len(res) != 1 {
		t.Fatalf("%d resources, want 1", len(res))
	}
	r := res[0]
	if r.Type != "Observation" || r.Identifier != (Identifier{"https://clinic.example.org/fhir/sid/score", "SC-PHQ-9"}) {
		t.Errorf("resource %s %+v", r.Type, r.Identifier)
	}
	obj := decode(t, r)
	if got := codingsOf(jget(obj, "category.0")); !reflect.DeepEqual(got, [][3]string{{systemObsCategory, "survey", "Survey"}}) {
		t.Errorf("category = %v", got)
	}
	checks := map[string]any{
		"status":                         "final",
		"valueInteger":                   float64(21),
		"effectiveDateTime":              "2025-03-04T14:00:00Z",
		"subject.reference":              "Patient/123",
		"performer.0.type":               "Practitioner",
		"performer.0.identifier.value":   "1234567893",
		"performer.0.display":            "Dr. Lena Park",
		"partOf.0.type":                  "MedicationAdministration",
		"partOf.0.identifier.value":      "ADM-1",
		"interpretation.0.coding.0.code": "severe",
		"component.0.valueInteger":       float64(3),
		"component.8.valueInteger":       float64(2),
		"component.8.code.text":          "PHQ-9 item 9",
	}
	for path, want := range checks {
		if got := jget(obj, path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
}

func TestScoreWithoutItemsOrSession(t *testing.T) {
	m := newTestMapper(t)
	obj := decode(t, mapOK(t, m, &Record{Kind: KindScore, Score: fixtureScore("GAD-7", 0, nil)}, nil)[0])
	for _, absent := range []string{"component", "partOf", "performer", "interpretation"} {
		if jget(obj, absent) != nil {
			t.Errorf("%s present: %v", absent, jget(obj, absent))
		}
	}
	if jget(obj, "valueInteger") != float64(0) {
		t.Errorf("valueInteger = %v, want 0", jget(obj, "valueInteger"))
	}
}
