package mapping

import (
	"reflect"
	"testing"
)

func TestMedicationRequest(t *testing.T) {
	m := newTestMapper(t)
	res := mapOK(t, m, &Record{Kind: KindOrder, Order: fixtureOrderMgKg()}, literalLookup())
	if len(res) != 1 || res[0].Type != "MedicationRequest" {
		t.Fatalf("resources = %v", res)
	}
	obj := decode(t, res[0])
	if got := codingsOf(jget(obj, "identifier.0.type")); !reflect.DeepEqual(got, [][3]string{{systemV20203, "PLAC", "Placer Identifier"}}) {
		t.Errorf("identifier type = %v", got)
	}
	if got := codingsOf(jget(obj, "category.0")); !reflect.DeepEqual(got, [][3]string{{systemMRCategory, "outpatient", "Outpatient"}}) {
		t.Errorf("category = %v", got)
	}
	if got := codingsOf(jget(obj, "medicationCodeableConcept")); !reflect.DeepEqual(got, [][3]string{{systemRxNorm, "238083", ""}}) {
		t.Errorf("medication = %v", got)
	}
	checks := map[string]any{
		"identifier.0.system":                                   "https://clinic.example.org/fhir/sid/order",
		"identifier.0.value":                                    "ORD-100",
		"status":                                                "active",
		"intent":                                                "order",
		"medicationCodeableConcept.text":                        "ketamine 100 MG/ML Injectable Solution",
		"subject.reference":                                     "Patient/123",
		"authoredOn":                                            "2025-03-03T19:05:00Z",
		"requester.type":                                        "Practitioner",
		"requester.identifier.system":                           systemNPI,
		"requester.identifier.value":                            "1234567893",
		"requester.display":                                     "Dr. Lena Park",
		"reasonCode.0.coding.0.code":                            "F33.2",
		"reasonCode.1.coding.0.code":                            "F41.1",
		"note.0.text":                                           "Titrate per protocol.",
		"dosageInstruction.0.text":                              "0.5 mg/kg IM, 2 times per week, 6 sessions",
		"dosageInstruction.0.timing.repeat.frequency":           float64(2),
		"dosageInstruction.0.timing.repeat.period":              float64(1),
		"dosageInstruction.0.timing.repeat.periodUnit":          "wk",
		"dosageInstruction.0.timing.repeat.count":               float64(6),
		"dosageInstruction.0.doseAndRate.0.doseQuantity.value":  0.5,
		"dosageInstruction.0.doseAndRate.0.doseQuantity.unit":   "mg/kg",
		"dosageInstruction.0.doseAndRate.0.doseQuantity.code":   "mg/kg",
		"dosageInstruction.0.doseAndRate.0.doseQuantity.system": systemUCUM,
	}
	for path, want := range checks {
		if got := jget(obj, path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
}

func TestMedicationRequestStatusesAndDosageText(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		status, frequency string
		sessions          int
		wantText          string
		wantTiming        bool
	}{
		{"active", "2/week", 6, "0.5 mg/kg IM, 2 times per week, 6 sessions", true},
		{"on-hold", "1/day", 1, "0.5 mg/kg IM, once per day, 1 session", true},
		{"completed", "", 4, "0.5 mg/kg IM, 4 sessions", true},
		{"cancelled", "3/month", 0, "0.5 mg/kg IM, 3 times per month", true},
		{"entered-in-error", "", 0, "0.5 mg/kg IM", false},
	}
	for _, tc := range tests {
		o := fixtureOrderMgKg()
		o.Status, o.Frequency, o.Sessions = tc.status, tc.frequency, tc.sessions
		obj := decode(t, mapOK(t, m, &Record{Kind: KindOrder, Order: o}, nil)[0])
		if got := jstr(obj, "status"); got != tc.status {
			t.Errorf("status %s mapped to %q", tc.status, got)
		}
		if got := jstr(obj, "dosageInstruction.0.text"); got != tc.wantText {
			t.Errorf("%s: dosage text = %q, want %q", tc.status, got, tc.wantText)
		}
		if has := jget(obj, "dosageInstruction.0.timing") != nil; has != tc.wantTiming {
			t.Errorf("%s: timing present = %v, want %v", tc.status, has, tc.wantTiming)
		}
		if tc.sessions == 0 && jget(obj, "dosageInstruction.0.timing.repeat.count") != nil {
			t.Errorf("%s: count without sessions", tc.status)
		}
	}
}
