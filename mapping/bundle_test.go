package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

func TestConditionalEntries(t *testing.T) {
	r := Resource{Type: "Observation", Identifier: Identifier{"urn:sys", "A|1"}, JSON: []byte(`{"resourceType":"Observation"}`)}
	up := ConditionalUpdate(r)
	want := BundleEntry{FullURL: URNFor(r.Identifier), Resource: r, Method: "PUT", URL: "Observation?identifier=urn%3Asys%7CA%5C%7C1"}
	if up.FullURL != want.FullURL || up.Method != want.Method || up.URL != want.URL || up.IfNoneExist != "" || up.IfMatch != "" {
		t.Errorf("ConditionalUpdate = %+v, want %+v", up, want)
	}
	cr := ConditionalCreate(r)
	if cr.FullURL != want.FullURL || cr.Method != "POST" || cr.URL != "Observation" || cr.IfNoneExist != "identifier=urn%3Asys%7CA%5C%7C1" {
		t.Errorf("ConditionalCreate = %+v", cr)
	}
	if got := EntryFor(Resource{Type: "Patient"}); got.Method != "POST" || got.URL != "Patient" {
		t.Errorf("EntryFor(Patient) = %+v, want a conditional create", got)
	}
	for _, typ := range []string{"MedicationRequest", "MedicationAdministration", "Observation"} {
		if got := EntryFor(Resource{Type: typ}); got.Method != "PUT" {
			t.Errorf("EntryFor(%s) = %+v, want a conditional update", typ, got)
		}
	}
}

func TestTransactionBundle(t *testing.T) {
	p := Resource{Type: "Patient", Identifier: Identifier{"urn:p", "1"}, JSON: []byte(`{"resourceType":"Patient"}`)}
	o := Resource{Type: "Observation", Identifier: Identifier{"urn:o", "2"}, JSON: []byte(` {"resourceType": "Observation", "status": "final"}`)}
	upd := ConditionalUpdate(o)
	upd.IfMatch = `W/"3"`
	data, err := TransactionBundle([]BundleEntry{ConditionalCreate(p), upd})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"fullUrl":"` + URNFor(p.Identifier) + `","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn%3Ap%7C1"}},` +
		`{"fullUrl":"` + URNFor(o.Identifier) + `","resource":{"resourceType":"Observation","status":"final"},"request":{"method":"PUT","url":"Observation?identifier=urn%3Ao%7C2","ifMatch":"W/\"3\""}}]}`
	if string(data) != want {
		t.Errorf("bundle =\n%s\nwant\n%s", data, want)
	}

	empty, err := TransactionBundle(nil)
	if err != nil || string(empty) != `{"resourceType":"Bundle","type":"transaction"}` {
		t.Errorf("empty bundle = %s, %v", empty, err)
	}
}

func TestTransactionBundleErrors(t *testing.T) {
	ok := ConditionalUpdate(Resource{Type: "Observation", Identifier: Identifier{"urn:o", "MRN-SECRET"}, JSON: []byte(`{"resourceType":"Observation"}`)})
	tests := []struct {
		name   string
		mutate func(*BundleEntry)
		want   string
	}{
		{"bad method", func(e *BundleEntry) { e.Method = "PATCH" }, "entry 1: method must be PUT or POST"},
		{"no URL", func(e *BundleEntry) { e.URL = "" }, "entry 1: no request URL"},
		{"no resource", func(e *BundleEntry) { e.Resource.JSON = nil }, "entry 1: resource is not a JSON object"},
		{"bad JSON", func(e *BundleEntry) { e.Resource.JSON = []byte(`{"a":`) }, "entry 1: resource is not a JSON object"},
		{"not an object", func(e *BundleEntry) { e.Resource.JSON = []byte(`[1]`) }, "entry 1: resource is not a JSON object"},
		{"duplicate fullUrl", func(*BundleEntry) {}, "entries 0 and 1 have the same fullUrl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			second := ok
			tc.mutate(&second)
			if tc.name != "duplicate fullUrl" {
				second.FullURL = "urn:uuid:other"
			}
			_, err := TransactionBundle([]BundleEntry{ok, second})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "MRN-SECRET") {
				t.Errorf("error %q contains an identifier value", err)
			}
		})
	}
}

func TestBundleLookup(t *testing.T) {
	m := newTestMapper(t)
	order := fixtureOrderMgKg()
	recs := []*Record{
		{Kind: KindPatient, Patient: fixturePatient()},
		{Kind: KindOrder, Order: order},
		nil,
	}
	lk := NewBundleLookup(m, recs)
	if got, want := lk.Reference(KindPatient, "MRN-0001"), URNFor(m.Identifier(KindPatient, "MRN-0001")); got != want {
		t.Errorf("patient reference = %q, want %q", got, want)
	}
	if got := lk.Reference(KindOrder, "ORD-100"); got != URNFor(m.Identifier(KindOrder, "ORD-100")) {
		t.Errorf("order reference = %q", got)
	}
	if got := lk.Reference(KindPatient, "MRN-0002"); got != "" {
		t.Errorf("reference to a record outside the bundle = %q, want \"\"", got)
	}
	if got := lk.Reference(KindOrder, "MRN-0001"); got != "" {
		t.Errorf("reference by the wrong kind = %q, want \"\"", got)
	}
	if lk.Order("ORD-100") != order || lk.Order("ORD-999") != nil {
		t.Error("Order does not answer with the bundle's orders")
	}
}

// TestBundleEndToEnd maps records into one transaction Bundle: every
// urn:uuid reference inside must be the fullUrl of an entry, records outside
// the Bundle are referred to logically, and the Bundle is valid FHIR.
// TestTransactionBundleMapOutput: a resource as Map wrote it goes into the
// Bundle byte for byte, unscanned; once its JSON is replaced it is checked
// again, so a bad replacement is an error, not a broken Bundle.
func TestTransactionBundleMapOutput(t *testing.T) {
	m := newTestMapper(t)
	res := mapOK(t, m, &Record{Kind: KindPatient, Patient: fixturePatient()}, nil)[0]
	if !res.jsonByMap() {
		t.Fatal("a resource from Map is not known as Map's output")
	}
	data, err := TransactionBundle([]BundleEntry{EntryFor(res)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, append(append([]byte(`"resource":`), res.JSON...), ',')) {
		t.Errorf("the resource is not in the Bundle as Map wrote it:\n%s", data)
	}
	for name, js := range map[string][]byte{
		"replaced":            []byte(`{"resourceType":`),
		"same length, broken": append([]byte(`[`), res.JSON[1:]...),
	} {
		r := res
		r.JSON = js
		if r.jsonByMap() {
			t.Errorf("%s: still known as Map's output", name)
		}
		if _, err := TransactionBundle([]BundleEntry{EntryFor(r)}); err == nil {
			t.Errorf("%s: no error for a resource that is not a JSON object", name)
		}
	}
}

func TestBundleEndToEnd(t *testing.T) {
	m := newTestMapper(t)
	phq9 := fixtureScore("PHQ-9", 14, []int{2, 2, 1, 2, 1, 2, 2, 1, 1})
	phq9.AdminID = "ADM-1"
	outside := fixtureOrderMg() // its patient MRN-0002 is not in the bundle
	recs := []*Record{
		{Kind: KindPatient, Patient: fixturePatient()},
		{Kind: KindOrder, Order: fixtureOrderMgKg()},
		{Kind: KindOrder, Order: outside},
		{Kind: KindAdministration, Administration: fixtureAdminIM()},
		{Kind: KindScore, Score: phq9},
	}
	lk := NewBundleLookup(m, recs)
	var entries []BundleEntry
	for _, rec := range recs {
		for _, r := range mapOK(t, m, rec, lk) {
			entries = append(entries, EntryFor(r))
		}
	}
	data, err := TransactionBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Unmarshal(data); err != nil {
		t.Fatalf("bundle is not valid FHIR: %v", err)
	}

	var b struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  struct{ Method, URL string }
		}
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	fullURLs := map[string]bool{}
	for _, e := range b.Entry {
		fullURLs[e.FullURL] = true
	}
	urn := regexp.MustCompile(`"reference":"(urn:uuid:[0-9a-f-]+)"`)
	refs := 0
	for _, e := range b.Entry {
		for _, match := range urn.FindAllStringSubmatch(string(e.Resource), -1) {
			refs++
			if !fullURLs[match[1]] {
				t.Errorf("reference %s is not the fullUrl of an entry", match[1])
			}
		}
	}
	// order 100 -> patient; administration -> patient, order; 8 derived
	// observations -> patient, administration; score -> patient, administration.
	if want := 1 + 2 + 8*2 + 2; refs != want {
		t.Errorf("%d urn:uuid references, want %d", refs, want)
	}
	if b.Entry[0].Request.Method != "POST" || b.Entry[0].Request.URL != "Patient" {
		t.Errorf("patient entry request = %+v, want a conditional create", b.Entry[0].Request)
	}
	var outsideOrder map[string]any
	if err := json.Unmarshal(b.Entry[2].Resource, &outsideOrder); err != nil {
		t.Fatal(err)
	}
	if jget(outsideOrder, "subject.reference") != nil || jstr(outsideOrder, "subject.identifier.value") != "MRN-0002" {
		t.Errorf("reference to a patient outside the bundle = %v, want a logical reference", jget(outsideOrder, "subject"))
	}
}

// bundleJSON is the shape TransactionBundle writes, for decoding it back.
type bundleJSON struct {
	ResourceType string      `json:"resourceType"`
	Type         string      `json:"type"`
	Entry        []entryJSON `json:"entry,omitempty"`
}

type entryJSON struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource"`
	Request  requestJSON     `json:"request"`
}

type requestJSON struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	IfMatch     string `json:"ifMatch,omitempty"`
	IfNoneExist string `json:"ifNoneExist,omitempty"`
}

// TestTransactionBundleRoundTrip decodes the hand-written Bundle with
// encoding/json: every field comes back as given, strings with quotes,
// backslashes, control characters, HTML characters and non-ASCII
// included, and the resource compacted.
func TestTransactionBundleRoundTrip(t *testing.T) {
	odd := "a\"b\\c<d>&e\u00e9\u2028\x01|f g"
	entries := []BundleEntry{
		{FullURL: "urn:uuid:" + odd, Resource: Resource{JSON: []byte("{\n  \"resourceType\": \"Observation\",\n  \"note\": [{\"text\": \"" + `x\"y` + "\"}]\n}")},
			Method: "PUT", URL: "Observation?identifier=" + odd, IfMatch: `W/"7"`},
		{Resource: Resource{JSON: []byte(`{"resourceType":"Patient"}`)}, Method: "POST", URL: "Patient", IfNoneExist: "identifier=" + odd},
	}
	data, err := TransactionBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("not valid JSON: %s", data)
	}
	var got bundleJSON
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceType != "Bundle" || got.Type != "transaction" || len(got.Entry) != len(entries) {
		t.Fatalf("bundle = %+v", got)
	}
	for i, e := range entries {
		g := got.Entry[i]
		want := requestJSON{Method: e.Method, URL: e.URL, IfMatch: e.IfMatch, IfNoneExist: e.IfNoneExist}
		if g.FullURL != e.FullURL || g.Request != want {
			t.Errorf("entry %d = %q %+v, want %q %+v", i, g.FullURL, g.Request, e.FullURL, want)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, e.Resource.JSON); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g.Resource, compact.Bytes()) {
			t.Errorf("entry %d resource = %s, want %s", i, g.Resource, compact.Bytes())
		}
	}
}

// BenchmarkTransactionBundle writes a Bundle of ten score Observations
// (BENCHMARKS.md section 5.2).
func BenchmarkTransactionBundle(b *testing.B) {
	body := []byte(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey","display":"Survey"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"44261-6","display":"Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"}]},"subject":{"reference":"Patient/123"},"effectiveDateTime":"2024-01-02T10:00:00-05:00","valueQuantity":{"value":14,"unit":"{score}","system":"http://unitsofmeasure.org","code":"{score}"},"identifier":[{"system":"https://clinic.example.org/score","value":"sc-0000001-01"}]}`)
	for _, byMap := range []bool{false, true} {
		// checked: resources built by hand, scanned and compacted; by-map:
		// as Map writes them, copied as they are.
		name := "checked"
		if byMap {
			name = "by-map"
		}
		b.Run(name, func(b *testing.B) {
			entries := make([]BundleEntry, 10)
			for i := range entries {
				r := Resource{Type: "Observation", Identifier: Identifier{"urn:o", fmt.Sprint(i)}, JSON: body}
				if byMap {
					r.byMap = mapJSON{first: &body[0], n: len(body)}
				}
				entries[i] = ConditionalUpdate(r)
			}
			for b.Loop() {
				if _, err := TransactionBundle(entries); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
