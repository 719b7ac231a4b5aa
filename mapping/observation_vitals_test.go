package mapping

import (
	"reflect"
	"testing"
)

func TestVitalSignObservations(t *testing.T) {
	m := newTestMapper(t)
	res := mapOK(t, m, &Record{Kind: KindAdministration, Administration: fixtureAdminIM()}, literalLookup())
	// Entry 1 has bp, hr and spo2; entry 2 only a systolic pressure (no
	// panel), hr and spo2; then the weight; the duplicate "nausea" once.
	wantIDs := []string{
		"ADM-1",
		"ADM-1/vitals/1/bp", "ADM-1/vitals/1/hr", "ADM-1/vitals/1/spo2",
		"ADM-1/vitals/2/hr", "ADM-1/vitals/2/spo2",
		"ADM-1/weight",
		"ADM-1/adverse-event/nausea", "ADM-1/adverse-event/dissociation",
	}
	var gotIDs []string
	for i, r := range res {
		gotIDs = append(gotIDs, r.Identifier.Value)
		wantType, wantSys := "Observation", "https://clinic.example.org/fhir/sid/administration-observation"
		if i == 0 {
			wantType, wantSys = "MedicationAdministration", "https://clinic.example.org/fhir/sid/administration"
		}
		if r.Type != wantType || r.Identifier.System != wantSys {
			t.Errorf("resource %d: %s %s, want %s %s", i, r.Type, r.Identifier.System, wantType, wantSys)
		}
		obj := decode(t, r)
		if got := jstr(obj, "identifier.0.value"); got != r.Identifier.Value {
			t.Errorf("resource %d: JSON identifier %q, Resource.Identifier %q", i, got, r.Identifier.Value)
		}
		if i > 0 {
			if jstr(obj, "status") != "final" || jstr(obj, "subject.reference") != "Patient/123" {
				t.Errorf("%s: status %q subject %v", r.Identifier.Value, jstr(obj, "status"), jget(obj, "subject"))
			}
			if jstr(obj, "partOf.0.type") != "MedicationAdministration" || jstr(obj, "partOf.0.identifier.value") != "ADM-1" {
				t.Errorf("%s: partOf = %v", r.Identifier.Value, jget(obj, "partOf"))
			}
		}
	}
	if !reflect.DeepEqual(gotIDs, wantIDs) {
		t.Fatalf("identifiers = %q, want %q", gotIDs, wantIDs)
	}

	type quantity struct {
		value            float64
		unit, code, path string
	}
	tests := []struct {
		index   int
		profile string
		codes   [][3]string
		at      string
		q       []quantity
	}{
		{1, profileBP, [][3]string{{systemLOINC, "85354-9", "Blood pressure panel with all children optional"}}, "2025-03-04T14:25:00Z",
			[]quantity{{128, "mmHg", "mm[Hg]", "component.0.valueQuantity"}, {82, "mmHg", "mm[Hg]", "component.1.valueQuantity"}}},
		{2, profileHeartRate, [][3]string{{systemLOINC, "8867-4", "Heart Rate"}}, "2025-03-04T14:25:00Z",
			[]quantity{{74, "beats/minute", "/min", "valueQuantity"}}},
		{3, profileOxygenSat, [][3]string{{systemLOINC, "2708-6", "Oxygen saturation in Arterial blood"},
			{systemLOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"}}, "2025-03-04T14:25:00Z",
			[]quantity{{98, "%", "%", "valueQuantity"}}},
		{5, profileOxygenSat, nil, "2025-03-04T15:10:00Z", []quantity{{97.5, "%", "%", "valueQuantity"}}},
		{6, profileBodyWeight, [][3]string{{systemLOINC, "29463-7", "Body Weight"}}, "2025-03-04T14:30:00Z",
			[]quantity{{70.4, "kg", "kg", "valueQuantity"}}},
	}
	for _, tc := range tests {
		obj := decode(t, res[tc.index])
		name := res[tc.index].Identifier.Value
		if got := jget(obj, "meta.profile"); !reflect.DeepEqual(got, []any{tc.profile}) {
			t.Errorf("%s: profile = %v, want %s", name, got, tc.profile)
		}
		if got := codingsOf(jget(obj, "category.0")); !reflect.DeepEqual(got, [][3]string{{systemObsCategory, "vital-signs", "Vital Signs"}}) {
			t.Errorf("%s: category = %v", name, got)
		}
		if tc.codes != nil {
			if got := codingsOf(jget(obj, "code")); !reflect.DeepEqual(got, tc.codes) {
				t.Errorf("%s: code = %v, want %v", name, got, tc.codes)
			}
		}
		if got := jstr(obj, "effectiveDateTime"); got != tc.at {
			t.Errorf("%s: effectiveDateTime = %q, want %q", name, got, tc.at)
		}
		for _, q := range tc.q {
			v := jget(obj, q.path)
			if jget(v, "value") != q.value || jstr(v, "unit") != q.unit || jstr(v, "code") != q.code || jstr(v, "system") != systemUCUM {
				t.Errorf("%s: %s = %v, want %v %s (%s)", name, q.path, v, q.value, q.code, q.unit)
			}
		}
	}
	bp := decode(t, res[1])
	if got := codingsOf(jget(bp, "component.0.code")); !reflect.DeepEqual(got, [][3]string{{systemLOINC, "8480-6", "Systolic blood pressure"}}) {
		t.Errorf("systolic code = %v", got)
	}
	if got := codingsOf(jget(bp, "component.1.code")); !reflect.DeepEqual(got, [][3]string{{systemLOINC, "8462-4", "Diastolic blood pressure"}}) {
		t.Errorf("diastolic code = %v", got)
	}
	if jget(bp, "valueQuantity") != nil {
		t.Error("the blood pressure panel has a value")
	}
}

func TestAdverseEventObservation(t *testing.T) {
	m := newTestMapper(t)
	res := mapOK(t, m, &Record{Kind: KindAdministration, Administration: fixtureAdminIM()}, literalLookup())
	obj := decode(t, res[len(res)-1])
	want := [][3]string{{"https://clinic.example.org/fhir/sid/adverse-event", "dissociation", "Dissociation"}}
	if got := codingsOf(jget(obj, "code")); !reflect.DeepEqual(got, want) {
		t.Errorf("code = %v, want %v", got, want)
	}
	if jstr(obj, "code.text") != "Dissociation" || jget(obj, "valueBoolean") != true {
		t.Errorf("adverse event = %s", res[len(res)-1].JSON)
	}
	if jstr(obj, "effectiveDateTime") != "2025-03-04T14:30:00Z" || jget(obj, "meta") != nil {
		t.Errorf("adverse event = %s", res[len(res)-1].JSON)
	}
}

func TestDerivedObservationsFollowAdministrationStatus(t *testing.T) {
	m := newTestMapper(t)
	res := mapOK(t, m, &Record{Kind: KindAdministration, Administration: fixtureAdminEnteredInError()}, literalLookup())
	if len(res) != 4 {
		t.Fatalf("%d resources, want administration, hr, weight, adverse event", len(res))
	}
	for _, r := range res {
		if got := jstr(decode(t, r), "status"); got != "entered-in-error" {
			t.Errorf("%s %s: status %q, want entered-in-error", r.Type, r.Identifier.Value, got)
		}
	}
}

func TestDerivedObservationsPointToKnownAdministration(t *testing.T) {
	m := newTestMapper(t)
	lk := literalLookup()
	lk.refs[Dependency{KindAdministration, "ADM-1"}] = "MedicationAdministration/789"
	res := mapOK(t, m, &Record{Kind: KindAdministration, Administration: fixtureAdminIM()}, lk)
	for _, r := range res[1:] {
		obj := decode(t, r)
		if got := jstr(obj, "partOf.0.reference"); got != "MedicationAdministration/789" {
			t.Errorf("%s: partOf = %v", r.Identifier.Value, jget(obj, "partOf"))
		}
	}
}
