package mapping

import (
	"reflect"
	"testing"
)

func TestAdministeredMg(t *testing.T) {
	tests := []struct {
		dose   Dose
		weight *float64
		want   float64
		ok     bool
	}{
		{Dose{35, "mg"}, nil, 35, true},
		{Dose{35, "mg"}, num(80), 35, true}, // weight does not change a dose in mg
		{Dose{0.5, "mg/kg"}, num(70), 35, true},
		{Dose{0.5, "mg/kg"}, num(70.4), 35.2, true},
		{Dose{0.35, "mg/kg"}, num(70), 24.5, true},     // 24.499999999999996 in float64
		{Dose{0.333, "mg/kg"}, num(72.5), 24.14, true}, // 24.1425 rounds down
		{Dose{0.75, "mg/kg"}, num(66.67), 50, true},    // 50.0025
		{Dose{0.5, "mg/kg"}, num(81.25), 40.63, true},  // 40.625 rounds half away from zero
		{Dose{1, "mg/kg"}, num(0.004), 0, true},        // rounds to 0: rejected by the caller
		{Dose{0.5, "mg/kg"}, nil, 0, false},            // needs a weight
		{Dose{5, "mL"}, nil, 0, false},
	}
	for _, tc := range tests {
		got, ok := administeredMg(tc.dose, tc.weight)
		if got != tc.want || ok != tc.ok {
			w := "nil"
			if tc.weight != nil {
				w = decimalText(*tc.weight)
			}
			t.Errorf("administeredMg(%v, %s) = %v, %v; want %v, %v", tc.dose, w, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAdministrationDoseInMg(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		dose     Dose
		weight   *float64
		wantDose float64
		wantText string
	}{
		{Dose{0.5, "mg/kg"}, num(70.4), 35.2, "0.5 mg/kg x 70.4 kg = 35.2 mg IM, left deltoid"},
		{Dose{0.333, "mg/kg"}, num(72.5), 24.14, "0.333 mg/kg x 72.5 kg = 24.14 mg IM, left deltoid"},
		{Dose{40, "mg"}, num(70), 40, "40 mg IM, left deltoid"},
	}
	for _, tc := range tests {
		a := fixtureAdminIM()
		a.Dose, a.WeightKg = tc.dose, tc.weight
		obj := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, literalLookup())[0])
		dose := jget(obj, "dosage.dose")
		if got := jget(dose, "value"); got != tc.wantDose {
			t.Errorf("%v: dose value = %v, want %v", tc.dose, got, tc.wantDose)
		}
		if jstr(dose, "code") != "mg" || jstr(dose, "unit") != "mg" || jstr(dose, "system") != systemUCUM {
			t.Errorf("%v: dose = %v, want UCUM mg", tc.dose, dose)
		}
		if got := jstr(obj, "dosage.text"); got != tc.wantText {
			t.Errorf("%v: dosage text = %q, want %q", tc.dose, got, tc.wantText)
		}
	}
}

func TestAdministrationNotDoneNeedsNoWeight(t *testing.T) {
	m := newTestMapper(t)
	a := fixtureAdminNotDone()
	a.WeightKg = nil
	res := mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, literalLookup())
	if len(res) != 1 {
		t.Fatalf("%d resources, want the administration only", len(res))
	}
	if obj := decode(t, res[0]); jstr(obj, "status") != "not-done" || jget(obj, "dosage") != nil {
		t.Errorf("not-done administration = %s", res[0].JSON)
	}
}

// TestAdministrationNotDoneWithoutReason checks that a dose not given
// without a coded reason passes the checks and maps without statusReason
// (0..* in FHIR R4), the note carrying the reason in words (DESIGN.md
// section 2).
func TestAdministrationNotDoneWithoutReason(t *testing.T) {
	m := newTestMapper(t)
	a := fixtureAdminNotDone()
	a.NotDoneReason = ""
	a.Note = "Deferred: patient arrived late."
	a.Performer.NPI = "1456789019" // the fixture's NPI has no valid check digit
	rec := &Record{Kind: KindAdministration, Administration: a}
	if err := newRecParser().Check(rec); err != nil {
		t.Fatalf("Check: %v", err)
	}
	res := mapOK(t, m, rec, literalLookup())
	obj := decode(t, res[0])
	if jstr(obj, "status") != "not-done" {
		t.Errorf("status = %q", jstr(obj, "status"))
	}
	if jget(obj, "statusReason") != nil {
		t.Errorf("statusReason = %v, want none", jget(obj, "statusReason"))
	}
	if got := jstr(obj, "note.0.text"); got != a.Note {
		t.Errorf("note = %q, want %q", got, a.Note)
	}
}

func TestAdministrationLot(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		name     string
		a        *Administration
		wantForm bool
	}{
		{"injection solution", fixtureAdminIM(), true},
		{"nasal spray", fixtureAdminIN(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: tc.a}, urnLookup())[0])
			if got := jstr(obj, "medicationReference.reference"); got != "#med" {
				t.Errorf("medicationReference = %q, want #med", got)
			}
			if jget(obj, "medicationCodeableConcept") != nil {
				t.Error("both medicationReference and medicationCodeableConcept are set")
			}
			med := jget(obj, "contained.0")
			if jstr(med, "resourceType") != "Medication" || jstr(med, "id") != "med" {
				t.Fatalf("contained = %v, want Medication med", med)
			}
			if got := jstr(med, "batch.lotNumber"); got != tc.a.Lot {
				t.Errorf("lotNumber = %q, want %q", got, tc.a.Lot)
			}
			if got := jstr(med, "batch.expirationDate"); got != tc.a.LotExpires {
				t.Errorf("expirationDate = %q, want %q", got, tc.a.LotExpires)
			}
			form := codingsOf(jget(med, "form"))
			if tc.wantForm != (form != nil) {
				t.Errorf("form = %v, want one: %v", form, tc.wantForm)
			}
			if tc.wantForm && !reflect.DeepEqual(form, [][3]string{{systemSNOMED, "385219001", "Injection solution (qualifier value)"}}) {
				t.Errorf("form = %v", form)
			}
			if jstr(med, "code.text") == "" || len(codingsOf(jget(med, "code"))) == 0 {
				t.Errorf("contained Medication has no code: %v", med)
			}
		})
	}
}

func TestAdministrationEffectiveAndReferences(t *testing.T) {
	m := newTestMapper(t)

	iv := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: fixtureAdminIV()}, logicalLookup())[0])
	if jstr(iv, "effectivePeriod.start") != "2025-03-05T13:00:00Z" || jstr(iv, "effectivePeriod.end") != "2025-03-05T13:40:00Z" {
		t.Errorf("effectivePeriod = %v", jget(iv, "effectivePeriod"))
	}
	if jget(iv, "effectiveDateTime") != nil {
		t.Error("effectiveDateTime set together with effectivePeriod")
	}
	if jstr(iv, "request.type") != "MedicationRequest" || jstr(iv, "request.identifier.value") != "ORD-400" ||
		jstr(iv, "request.identifier.system") != "https://clinic.example.org/fhir/sid/order" {
		t.Errorf("logical request = %v", jget(iv, "request"))
	}

	im := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: fixtureAdminIM()}, literalLookup())[0])
	if got := jstr(im, "effectiveDateTime"); got != "2025-03-04T14:30:00Z" {
		t.Errorf("effectiveDateTime = %q", got)
	}
	if jstr(im, "request.reference") != "MedicationRequest/456" || jstr(im, "subject.reference") != "Patient/123" {
		t.Errorf("literal references: request %v subject %v", jget(im, "request"), jget(im, "subject"))
	}
	actor := jget(im, "performer.0.actor")
	if jstr(actor, "type") != "Practitioner" || jstr(actor, "identifier.system") != systemNPI ||
		jstr(actor, "identifier.value") != "1987654321" || jstr(actor, "display") != "Sam Rivera, RN" {
		t.Errorf("performer = %v", actor)
	}
}

func TestAdministrationStatuses(t *testing.T) {
	m := newTestMapper(t)
	for _, status := range []string{"completed", "not-done", "stopped", "in-progress", "entered-in-error"} {
		a := fixtureAdminIV()
		a.Status = status
		obj := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, logicalLookup())[0])
		if got := jstr(obj, "status"); got != status {
			t.Errorf("status %s mapped to %q", status, got)
		}
		// A reason is sent only with not-done.
		a.NotDoneReason = "clinical-decision"
		obj = decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, logicalLookup())[0])
		if hasReason := jget(obj, "statusReason") != nil; hasReason != (status == "not-done") {
			t.Errorf("status %s: statusReason present = %v", status, hasReason)
		}
	}
}
