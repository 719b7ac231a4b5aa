package mapping

import (
	"net/url"
	"testing"
)

func TestIdentifierToken(t *testing.T) {
	tests := []struct {
		id        Identifier
		wantToken string
		wantQuery string
	}{
		{Identifier{"https://clinic.example.org/fhir/sid/patient", "MRN-0001"},
			"https://clinic.example.org/fhir/sid/patient|MRN-0001",
			"identifier=https%3A%2F%2Fclinic.example.org%2Ffhir%2Fsid%2Fpatient%7CMRN-0001"},
		{Identifier{"urn:sys", `a|b,c$d\e`},
			`urn:sys|a\|b\,c\$d\\e`,
			"identifier=urn%3Asys%7Ca%5C%7Cb%5C%2Cc%5C%24d%5C%5Ce"},
		{Identifier{`http://x/a,b`, `\`}, `http://x/a\,b|\\`, "identifier=http%3A%2F%2Fx%2Fa%5C%2Cb%7C%5C%5C"},
		{Identifier{"", "v"}, "|v", "identifier=%7Cv"},
		{Identifier{"urn:sys", "two words & more"}, "urn:sys|two words & more", "identifier=urn%3Asys%7Ctwo+words+%26+more"},
		{Identifier{"urn:sys", "ADM-1/vitals/2/bp"}, "urn:sys|ADM-1/vitals/2/bp", "identifier=urn%3Asys%7CADM-1%2Fvitals%2F2%2Fbp"},
	}
	for _, tc := range tests {
		if got := tc.id.Token(); got != tc.wantToken {
			t.Errorf("%+v.Token() = %q, want %q", tc.id, got, tc.wantToken)
		}
		got := tc.id.Query()
		if got != tc.wantQuery {
			t.Errorf("%+v.Query() = %q, want %q", tc.id, got, tc.wantQuery)
		}
		// The query decodes back to the escaped token.
		v, err := url.ParseQuery(got)
		if err != nil || v.Get("identifier") != tc.wantToken {
			t.Errorf("ParseQuery(%q) = %v, %v; want identifier=%q", got, v, err, tc.wantToken)
		}
	}
}

func TestMapperIdentifier(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Identifiers.Base = "https://ehr.example.net/ids/" // trailing slash dropped
	m, err := NewMapper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind Kind
		want string
	}{
		{KindPatient, "https://ehr.example.net/ids/patient"},
		{KindOrder, "https://ehr.example.net/ids/order"},
		{KindAdministration, "https://ehr.example.net/ids/administration"},
		{KindScore, "https://ehr.example.net/ids/score"},
	}
	for _, tc := range tests {
		if got := m.Identifier(tc.kind, "id-1"); got != (Identifier{tc.want, "id-1"}) {
			t.Errorf("Identifier(%s) = %+v, want system %q", tc.kind, got, tc.want)
		}
	}
	const obs = "https://ehr.example.net/ids/administration-observation"
	derived := map[Identifier]Identifier{
		m.vitalIdentifier("A-1", 0, "bp"):                 {obs, "A-1/vitals/1/bp"},
		m.vitalIdentifier("A-1", 2, "spo2"):               {obs, "A-1/vitals/3/spo2"},
		m.weightIdentifier("A-1"):                         {obs, "A-1/weight"},
		m.adverseEventIdentifier("A-1", "nausea"):         {obs, "A-1/adverse-event/nausea"},
		m.adverseEventIdentifier("A|1", "elevated-blood"): {obs, "A|1/adverse-event/elevated-blood"},
	}
	for got, want := range derived {
		if got != want {
			t.Errorf("derived identifier = %+v, want %+v", got, want)
		}
	}
}

// TestUUIDv5 checks the name-based UUIDs against Python's uuid.uuid5.
func TestUUIDv5(t *testing.T) {
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	tests := []struct {
		ns   [16]byte
		name string
		want string
	}{
		{dns, "python.org", "886313e1-3b8a-5372-9b90-0c9aee199e5d"},
		{urlNamespace, "https://clinic.example.org/fhir/sid/patient|MRN-0001", "d5223940-ed3b-57b3-bb55-effe617edf57"},
		{urlNamespace, "https://clinic.example.org/fhir/sid/order|ORD-100", "3ec3870b-5096-50c6-801f-4bfc332bc96c"},
		{urlNamespace, "", "1b4db7eb-4057-5ddf-91e0-36dec72071f5"},
	}
	for _, tc := range tests {
		if got := uuidV5(tc.ns, tc.name); got != tc.want {
			t.Errorf("uuidV5(%q) = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestURNFor(t *testing.T) {
	id := Identifier{"https://clinic.example.org/fhir/sid/patient", "MRN-0001"}
	if got, want := URNFor(id), "urn:uuid:d5223940-ed3b-57b3-bb55-effe617edf57"; got != want {
		t.Errorf("URNFor = %s, want %s", got, want)
	}
	// The escaped token is the name, so identifiers whose raw
	// concatenation is the same still get different URNs.
	a := URNFor(Identifier{"urn:a|b", "c"})
	b := URNFor(Identifier{"urn:a", "b|c"})
	if a == b {
		t.Errorf("URNFor gives %s for two different identifiers", a)
	}
}
