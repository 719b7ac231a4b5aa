package mapping

import (
	"reflect"
	"strings"
	"testing"
)

func TestValidateJSONResource(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []Issue // nil: valid; Diagnostics compared only when set here
	}{
		{"valid", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}`, nil},
		{"missing status", `{"resourceType":"Observation","code":{"text":"x"}}`,
			[]Issue{{Path: "Observation.status", Message: "missing required element"}}},
		{"missing status and code", `{"resourceType":"Observation"}`,
			[]Issue{{Path: "Observation.status", Message: "missing required element"}, {Path: "Observation.code", Message: "missing required element"}}},
		{"bad decimal", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"a"}},{"code":{"text":"b"},"valueQuantity":{"value":"abc"}}]}`,
			[]Issue{{Path: "Observation.component[1].valueQuantity.value", Message: "expected decimal", Diagnostics: `found "abc"`}}},
		{"bad status code", `{"resourceType":"Observation","status":"bogus","code":{"text":"x"}}`,
			[]Issue{{Path: "Observation.status", Message: "code type mismatch"}}},
		{"unknown element", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1,"colour":"red"}}`,
			[]Issue{{Path: "Observation.valueQuantity.colour", Message: "unknown field", Diagnostics: `"colour"`}}},
		{"bad date", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2025-13-01"}`,
			[]Issue{{Path: "Observation.effectiveDateTime", Message: "expected datetime"}}},
		{"bad code format", `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":" 1"}]}}`,
			[]Issue{{Path: "Observation.code.coding[0].code", Message: "invalid Code format"}}},
		{"wrong reference type", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Practitioner/1"}}`,
			[]Issue{{Path: "MedicationRequest.subject", Message: "invalid reference to a Practitioner resource, want Patient, Group"}}},
		{"unknown type", `{"resourceType":"Nope"}`, []Issue{{Path: "Nope", Message: "unknown resource type"}}},
		{"no type", `{"status":"final"}`, []Issue{{Path: "resourceType", Message: "missing or not a string"}}},
		{"array", `[1,2]`, []Issue{{Message: "not a JSON object"}}},
		{"truncated", `{"resourceType":`, []Issue{{Message: "invalid JSON"}}},
		{"empty", ``, []Issue{{Message: "invalid JSON"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			results := ValidateJSON([]byte(tc.doc))
			if len(results) != 1 {
				t.Fatalf("%d results, want 1: %+v", len(results), results)
			}
			r := results[0]
			if r.Index != 0 {
				t.Errorf("Index = %d, want 0", r.Index)
			}
			if r.Valid() != (tc.want == nil) {
				t.Errorf("Valid() = %v, issues %+v", r.Valid(), r.Issues)
			}
			got := make([]Issue, len(r.Issues))
			for i, is := range r.Issues {
				got[i] = Issue{Path: is.Path, Message: is.Message}
				if i < len(tc.want) && tc.want[i].Diagnostics != "" {
					got[i].Diagnostics = is.Diagnostics
				}
			}
			if len(tc.want) > 0 && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("issues = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValidateJSONReadsTypeAndID(t *testing.T) {
	r := ValidateJSON([]byte(`{"resourceType":"Patient","id":"p-1","gender":"female"}`))
	if len(r) != 1 || r[0].ResourceType != "Patient" || r[0].ID != "p-1" || !r[0].Valid() {
		t.Errorf("results = %+v", r)
	}
}

func TestValidateJSONBundle(t *testing.T) {
	doc := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"PUT","url":"Observation"}},
	 {"fullUrl":"urn:uuid:2","resource":{"resourceType":"Observation","id":"o2","code":{"text":"x"}},"request":{"method":"PUT","url":"Observation"}},
	 {"request":{"method":"DELETE","url":"Observation/9"}},
	 {"fullUrl":"urn:uuid:4","resource":{"resourceType":"Patient","gender":"female"},"request":{"method":"POST","url":"Patient"}}]}`
	results := ValidateJSON([]byte(doc))
	type summary struct {
		Index         int
		Type, ID, URL string
		Valid         bool
	}
	var got []summary
	for _, r := range results {
		got = append(got, summary{r.Index, r.ResourceType, r.ID, r.FullURL, r.Valid()})
	}
	want := []summary{
		{-1, "Bundle", "", "", true},
		{0, "Observation", "", "urn:uuid:1", true},
		{1, "Observation", "o2", "urn:uuid:2", false},
		{3, "Patient", "", "urn:uuid:4", true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results = %+v, want %+v", got, want)
	}
	if is := results[2].Issues; len(is) != 1 || is[0].Path != "Observation.status" {
		t.Errorf("entry 1 issues = %+v, want one at Observation.status", is)
	}
}

func TestValidateJSONBundleItself(t *testing.T) {
	results := ValidateJSON([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"FOO","url":"x"}}]}`))
	if len(results) != 1 || results[0].Index != -1 || results[0].Valid() {
		t.Fatalf("results = %+v, want the Bundle invalid", results)
	}
	if is := results[0].Issues; is[0].Path != "Bundle.entry[0].request.method" {
		t.Errorf("issues = %+v", is)
	}
	results = ValidateJSON([]byte(`{"resourceType":"Bundle","type":"transaction","entry":{"a":1}}`))
	if len(results) != 1 || results[0].Valid() || results[0].Issues[0].Path != "Bundle.entry" {
		t.Errorf("results = %+v, want Bundle.entry invalid", results)
	}
}

// TestValidateJSONMappedOutput checks that everything the Mapper produces,
// and a Bundle of it, validates.
func TestValidateJSONMappedOutput(t *testing.T) {
	m := newTestMapper(t)
	var entries []BundleEntry
	for _, tc := range goldenCases() {
		for _, r := range mapOK(t, m, tc.rec, tc.lk) {
			for _, res := range ValidateJSON(r.JSON) {
				if !res.Valid() {
					t.Errorf("%s %s: %+v", tc.name, r.Type, res.Issues)
				}
			}
			entries = append(entries, EntryFor(r))
		}
	}
	bundle, err := TransactionBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	results := ValidateJSON(bundle)
	if len(results) != len(entries)+1 {
		t.Errorf("%d results for a bundle of %d entries", len(results), len(entries))
	}
	for _, res := range results {
		if !res.Valid() {
			t.Errorf("bundle entry %d: %+v", res.Index, res.Issues)
		}
	}
}

func TestValidateJSONMessagesHaveNoValues(t *testing.T) {
	results := ValidateJSON([]byte(`{"resourceType":"Patient","birthDate":"MRN-SECRET-1984","gender":"SECRET-G"}`))
	if len(results) != 1 || results[0].Valid() {
		t.Fatalf("results = %+v", results)
	}
	for _, is := range results[0].Issues {
		if strings.Contains(is.Message, "SECRET") || strings.Contains(is.Path, "SECRET") {
			t.Errorf("issue %+v quotes a value outside Diagnostics", is)
		}
	}
}
