package mapping

import (
	"reflect"
	"testing"
)

func TestPatient(t *testing.T) {
	m := newTestMapper(t)
	res := mapOK(t, m, &Record{Kind: KindPatient, Patient: fixturePatient()}, nil)
	if len(res) != 1 || res[0].Type != "Patient" {
		t.Fatalf("resources = %v", res)
	}
	if want := (Identifier{"https://clinic.example.org/fhir/sid/patient", "MRN-0001"}); res[0].Identifier != want {
		t.Errorf("identifier = %+v, want %+v", res[0].Identifier, want)
	}
	obj := decode(t, res[0])
	if got := codingsOf(jget(obj, "identifier.0.type")); !reflect.DeepEqual(got, [][3]string{{systemV20203, "MR", "Medical Record Number"}}) {
		t.Errorf("identifier type = %v", got)
	}
	checks := map[string]any{
		"identifier.0.system": "https://clinic.example.org/fhir/sid/patient",
		"identifier.0.value":  "MRN-0001",
		"name.0.use":          "official",
		"name.0.family":       "Okafor",
		"name.0.given.1":      "Grace",
		"birthDate":           "1984-07-19",
		"gender":              "female",
		"telecom.0.system":    "phone",
		"telecom.0.value":     "+1 555 0100",
		"telecom.1.system":    "email",
		"telecom.1.value":     "adaeze@example.org",
	}
	for path, want := range checks {
		if got := jget(obj, path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	for _, absent := range []string{"id", "meta"} {
		if jget(obj, absent) != nil {
			t.Errorf("%s present", absent)
		}
	}
}

func TestPatientGenderAndOptionalFields(t *testing.T) {
	m := newTestMapper(t)
	for _, sex := range []string{"female", "male", "other", "unknown"} {
		p := &Patient{MRN: "M-" + sex, Family: "Doe", BirthDate: "2000-02-29", Sex: sex}
		obj := decode(t, mapOK(t, m, &Record{Kind: KindPatient, Patient: p}, nil)[0])
		if got := jstr(obj, "gender"); got != sex {
			t.Errorf("gender %s mapped to %q", sex, got)
		}
		if jget(obj, "telecom") != nil || jget(obj, "name.0.given") != nil {
			t.Errorf("absent fields present: %v", obj)
		}
		if got := jstr(obj, "birthDate"); got != "2000-02-29" {
			t.Errorf("birthDate = %q", got)
		}
	}
}

// TestPatientBirthDateInClinicZone checks that the birth date is the same
// calendar day whatever the configured time zone.
func TestPatientBirthDateInClinicZone(t *testing.T) {
	for _, tz := range []string{"UTC", "America/New_York", "Pacific/Kiritimati"} {
		cfg := DefaultConfig()
		cfg.TimeZone = tz
		m, err := NewMapper(cfg)
		if err != nil {
			t.Fatal(err)
		}
		obj := decode(t, mapOK(t, m, &Record{Kind: KindPatient, Patient: fixturePatient()}, nil)[0])
		if got := jstr(obj, "birthDate"); got != "1984-07-19" {
			t.Errorf("%s: birthDate = %q", tz, got)
		}
	}
}
