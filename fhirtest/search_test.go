package fhirtest

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

const product = `"medicationCodeableConcept":{"coding":[{"system":"https://clinic.example.org/fhir/sid/product","code":"ketamine-50mg-ml"}]}`

// searchSetup stores a small data set: patients at 2024-03-01, everything
// else at 2024-03-02.
func searchSetup(t *testing.T) (*Server, *tclient) {
	t.Helper()
	clock := testutil.NewClock(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC))
	s, c := setup(t, WithClock(clock.Now))
	for _, r := range []string{
		patientJSON("p1", "M1"),
		patientJSON("p2", "M2"),
		`{"resourceType":"Patient","id":"p3","identifier":[{"value":"M3"}]}`,
		patientJSON("p4", `x|y,z$\`),
		`{"resourceType":"Patient","id":"p5","identifier":[{"system":"urn:other","value":"M1"}],"birthDate":"1990"}`,
		`{"resourceType":"Practitioner","id":"d1","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}]}`,
	} {
		mustAdd(t, s, r)
	}
	clock.Set(time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC))
	for _, r := range []string{
		`{"resourceType":"MedicationRequest","id":"mr1","identifier":[{"system":"urn:order","value":"R1"}],"status":"active","intent":"order",` + product + `,"subject":{"reference":"Patient/p1"},"authoredOn":"2024-01-01T09:00:00-05:00","requester":{"reference":"Practitioner/d1"}}`,
		`{"resourceType":"MedicationAdministration","id":"ma1","identifier":[{"system":"urn:admin","value":"A1"}],"status":"completed",` + product + `,"subject":{"reference":"Patient/p1"},"request":{"reference":"MedicationRequest/mr1"},"performer":[{"actor":{"reference":"Practitioner/d1"}}],"effectivePeriod":{"start":"2024-01-02T09:00:00Z","end":"2024-01-02T09:40:00Z"}}`,
		observationJSON("o1", "O1", "Patient/p1", "final", "2024-01-02T10:00:00Z"),
		`{"resourceType":"Observation","id":"o2","status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"2024-01-03T10:00:00Z","end":"2024-01-03T11:00:00Z"}}`,
		observationJSON("o3", "O3", "Patient/p2", "final", "2024-02-01"),
		`{"resourceType":"Observation","id":"o4","status":"preliminary","code":{"coding":[{"code":"local-1"}]},"subject":{"reference":"Patient/p2"}}`,
		`{"resourceType":"Observation","id":"o5","status":"final","code":{"text":"nausea"},"subject":{"reference":"Patient/p1"},"partOf":[{"reference":"MedicationAdministration/ma1"}],"effectiveDateTime":"2024-01-02T09:30:00Z"}`,
	} {
		mustAdd(t, s, r)
	}
	return s, c
}

func TestSearch(t *testing.T) {
	t.Parallel()
	s, c := searchSetup(t)
	q := url.QueryEscape
	cases := []struct {
		query string
		want  []string
	}{
		{"Patient?identifier=urn:mrn|M1", []string{"p1"}},
		{"Patient?identifier=M1", []string{"p1", "p5"}},
		{"Patient?identifier=|M3", []string{"p3"}},
		{"Patient?identifier=|M1", nil},
		{"Patient?identifier=urn:other|", []string{"p5"}},
		{"Patient?identifier=" + q(`urn:mrn|x\|y\,z\$\\`), []string{"p4"}},
		{"Patient?identifier=" + q("urn:mrn|"+EscapeSearchValue(`x|y,z$\`)), []string{"p4"}},
		{"Patient?identifier=urn:mrn|M1,urn:mrn|M2", []string{"p1", "p2"}},
		{"Patient?identifier=urn:mrn|M1&identifier=urn:mrn|M2", nil},
		{"Patient?identifier:missing=true", nil},
		{"Patient?_id=p2,p3", []string{"p2", "p3"}},
		{"Patient?_id=p2&identifier=M1", nil},
		{"Patient?gender=female", []string{"p1", "p2", "p4"}},
		{"Patient?birthdate=1980-02-03", []string{"p1", "p2", "p4"}},
		{"Patient?birthdate=1980", []string{"p1", "p2", "p4"}},
		{"Patient?birthdate=gt1985", []string{"p5"}},
		{"Patient?birthdate=1990-06", nil}, // 1990 is wider than June: not contained
		{"Patient?birthdate=ap1990-06", []string{"p5"}},
		{"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1234567893", []string{"d1"}},
		{"Observation?patient=p1", []string{"o1", "o2", "o5"}},
		{"Observation?patient=Patient/p1", []string{"o1", "o2", "o5"}},
		{"Observation?patient=" + q(s.URL+"/Patient/p1"), []string{"o1", "o2", "o5"}},
		{"Observation?subject=Patient/p2", []string{"o3", "o4"}},
		{"Observation?subject=p2", []string{"o3", "o4"}},
		{"Observation?subject:Patient=p2", []string{"o3", "o4"}},
		{"Observation?patient=p1&status=amended", []string{"o2"}},
		{"Observation?code=http://loinc.org|8867-4", []string{"o1", "o3"}},
		{"Observation?code=8867-4", []string{"o1", "o3"}},
		{"Observation?code=|local-1", []string{"o4"}},
		{"Observation?code=http://loinc.org|", []string{"o1", "o2", "o3"}},
		{"Observation?code:not=http://loinc.org|8867-4", []string{"o2", "o4", "o5"}},
		{"Observation?category=vital-signs", []string{"o1", "o3"}},
		{"Observation?status=final", []string{"o1", "o3", "o5"}},
		{"Observation?status=final,amended", []string{"o1", "o2", "o3", "o5"}},
		{"Observation?date=2024-01-02", []string{"o1", "o5"}},
		{"Observation?date=eq2024-01", []string{"o1", "o2", "o5"}},
		{"Observation?date=ge2024-01-03", []string{"o2", "o3"}},
		{"Observation?date=gt2024-01-03", []string{"o3"}},
		{"Observation?date=lt2024-01-03", []string{"o1", "o5"}},
		{"Observation?date=le2024-01-03", []string{"o1", "o2", "o5"}},
		{"Observation?date=ge2024-01-02T10:00:00Z&date=lt2024-02", []string{"o1", "o2"}},
		{"Observation?date=" + q("ge2024-01-02T11:00:00+01:00"), []string{"o1", "o2", "o3"}},
		{"Observation?date=sa2024-01-02", []string{"o2", "o3"}},
		{"Observation?date=eb2024-01-03", []string{"o1", "o5"}},
		{"Observation?date=ne2024-01-02", []string{"o2", "o3"}},
		{"Observation?date=ap2024-01-03T10:30:00Z", []string{"o2"}},
		{"Observation?date:missing=true", []string{"o4"}},
		{"Observation?part-of=MedicationAdministration/ma1", []string{"o5"}},
		{"Observation?_lastUpdated=2024-03-02", []string{"o1", "o2", "o3", "o4", "o5"}},
		{"Observation?_lastUpdated=lt2024-03-02", nil},
		{"Patient?_lastUpdated=lt2024-03-02", []string{"p1", "p2", "p3", "p4", "p5"}},
		{"MedicationRequest?authoredon=2024-01-01", []string{"mr1"}},
		{"MedicationRequest?requester=Practitioner/d1&intent=order&status=active", []string{"mr1"}},
		{"MedicationRequest?code=https://clinic.example.org/fhir/sid/product|ketamine-50mg-ml", []string{"mr1"}},
		{"MedicationAdministration?request=mr1", []string{"ma1"}},
		{"MedicationAdministration?performer=Practitioner/d1", []string{"ma1"}},
		{"MedicationAdministration?effective-time=2024-01-02", []string{"ma1"}},
		{"MedicationAdministration?effective-time=2024-01-02T09:00:00Z", nil}, // the period is wider than the second
		{"MedicationAdministration?patient=p1&status=completed&identifier=urn:admin|A1", []string{"ma1"}},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := c.do("GET", "/"+tc.query, "")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if r.get("type") != "searchset" {
				t.Fatalf("type = %v", r.get("type"))
			}
			if got := r.entryIDs(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ids = %v, want %v", got, tc.want)
			}
			if str(r.get("total")) != str(float64(len(tc.want))) {
				t.Errorf("total = %v, want %d", r.get("total"), len(tc.want))
			}
			for i := range tc.want {
				e := r.get("entry." + str(float64(i)))
				if get(e, "search.mode") != "match" || !strings.HasPrefix(str(get(e, "fullUrl")), s.URL+"/") {
					t.Errorf("entry %d: %v", i, e)
				}
			}
		})
	}
}

func TestSearchErrors(t *testing.T) {
	t.Parallel()
	_, c := searchSetup(t)
	cases := []struct {
		query  string
		header []string
		status int
	}{
		{"Observation?date=2024-13", nil, 400},
		{"Observation?date=xx2024", nil, 400},
		{"Observation?code:text=heart", nil, 400},
		{"Observation?patient:Practitioner=d1", nil, 400},
		{"Observation?patient=Practitioner/d1", nil, 400},
		{"Observation?code=a|b|c", nil, 400},
		{"Observation?_count=abc", nil, 400},
		{"Observation?_total=maybe", nil, 400},
		{"Observation?foo=bar", []string{"Prefer", "handling=strict"}, 400},
		{"Observation?_summary=true", []string{"Prefer", "handling=strict"}, 400},
		{"Observation?foo=bar", []string{"Prefer", "handling=lenient"}, 200},
		{"Observation?status=final;x", nil, 400},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := c.do("GET", "/"+tc.query, "", tc.header...)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 400 && r.get("resourceType") != "OperationOutcome" {
				t.Errorf("body: %s", r.body)
			}
		})
	}
}

func TestSearchUnknownParameterIsReported(t *testing.T) {
	t.Parallel()
	_, c := searchSetup(t)
	r := c.do("GET", "/Observation?status=final&foo=bar", "")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	self := str(r.get("link.0.url"))
	if r.get("link.0.relation") != "self" || !strings.Contains(self, "status=final") || strings.Contains(self, "foo") {
		t.Errorf("self link = %s, want status but not foo", self)
	}
	if got := r.entryIDs(); !reflect.DeepEqual(got, []string{"o1", "o3", "o5"}) {
		t.Errorf("ids = %v", got)
	}
	if r.get("entry.0.search.mode") != "outcome" || !strings.Contains(str(r.get("entry.0.resource.issue.0.diagnostics")), "foo") {
		t.Errorf("no outcome entry naming foo: %s", r.body)
	}
}

func TestSearchPaging(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	for i := 0; i < 7; i++ {
		mustAdd(t, s, observationJSON("", "", "", "final", ""))
	}
	var ids []string
	next := "/Observation?status=final&_count=3"
	for page := 0; next != ""; page++ {
		if page > 3 {
			t.Fatal("too many pages")
		}
		r := c.do("GET", next, "")
		if r.status != 200 || str(r.get("total")) != "7" {
			t.Fatalf("page %d: %d total=%v", page, r.status, r.get("total"))
		}
		ids = append(ids, r.entryIDs()...)
		links := map[string]string{}
		for _, l := range r.get("link").([]any) {
			links[str(get(l, "relation"))] = str(get(l, "url"))
		}
		if links["first"] == "" || links["last"] == "" {
			t.Errorf("page %d: links %v", page, links)
		}
		if (page > 0) != (links["previous"] != "") {
			t.Errorf("page %d: previous link %q", page, links["previous"])
		}
		next = links["next"]
		if next != "" && !strings.HasPrefix(next, s.URL+"/Observation?") {
			t.Fatalf("next link %q is not under the base", next)
		}
	}
	if want := []string{"1", "2", "3", "4", "5", "6", "7"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("paged ids = %v, want %v", ids, want)
	}
}

func TestSearchSummaryCount(t *testing.T) {
	t.Parallel()
	_, c := searchSetup(t)
	for _, query := range []string{"/Observation?status=final&_summary=count", "/Observation?status=final&_count=0"} {
		r := c.do("GET", query, "")
		if r.status != 200 || str(r.get("total")) != "3" || r.get("entry") != nil {
			t.Errorf("%s: %d %s", query, r.status, r.body)
		}
	}
}

func TestSearchByPost(t *testing.T) {
	t.Parallel()
	_, c := searchSetup(t)
	r := c.do("POST", "/Observation/_search", "patient=p1&status=final", "Content-Type", "application/x-www-form-urlencoded")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := r.entryIDs(); !reflect.DeepEqual(got, []string{"o1", "o5"}) {
		t.Errorf("ids = %v", got)
	}
}

func TestSearchFollowsUpdatesAndDeletes(t *testing.T) {
	t.Parallel()
	_, c := searchSetup(t)
	if r := c.do("PUT", "/Patient/p1", patientJSON("p1", "M1-new")); r.status != 200 {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if ids := c.do("GET", "/Patient?identifier=urn:mrn|M1", "").entryIDs(); ids != nil {
		t.Errorf("old identifier still found: %v", ids)
	}
	if ids := c.do("GET", "/Patient?identifier=urn:mrn|M1-new", "").entryIDs(); !reflect.DeepEqual(ids, []string{"p1"}) {
		t.Errorf("new identifier: %v", ids)
	}
	if r := c.do("DELETE", "/Observation/o3", ""); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	if ids := c.do("GET", "/Observation?subject=Patient/p2", "").entryIDs(); !reflect.DeepEqual(ids, []string{"o4"}) {
		t.Errorf("deleted resource found: %v", ids)
	}
}

func TestParseDateRange(t *testing.T) {
	t.Parallel()
	utc := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMicro()
	}
	cases := []struct {
		in     string
		lo, hi string
	}{
		{"2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"2024-02", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"2024-02-29T10:30Z", "2024-02-29T10:30:00Z", "2024-02-29T10:31:00Z"},
		{"2024-02-29T10:30:05Z", "2024-02-29T10:30:05Z", "2024-02-29T10:30:06Z"},
		{"2024-02-29T10:30:05.12Z", "2024-02-29T10:30:05.12Z", "2024-02-29T10:30:05.13Z"},
		{"2024-02-29T10:30:05-05:00", "2024-02-29T15:30:05Z", "2024-02-29T15:30:06Z"},
		{"2024-02-29T10:30:05", "2024-02-29T10:30:05Z", "2024-02-29T10:30:06Z"},
	}
	for _, tc := range cases {
		r, ok := parseDateRange(tc.in)
		if !ok || r.lo != utc(tc.lo) || r.hi != utc(tc.hi) {
			t.Errorf("parseDateRange(%q) = %v %v, want [%s, %s)", tc.in, r, ok, tc.lo, tc.hi)
		}
	}
	for _, bad := range []string{"", "24", "2023-02-29", "2024-00", "2024-1-01", "2024-01-01T25:00Z", "2024-01-01T10:00:00+5", "2024-01-01T10:00:00.Z", "2024-01-01X", "abcd"} {
		if _, ok := parseDateRange(bad); ok {
			t.Errorf("parseDateRange(%q) accepted", bad)
		}
	}
}

func TestEscapeSearchValue(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"plain", `a|b`, `a,b`, `a$b`, `a\b`, `\|,$`, ""} {
		esc := EscapeSearchValue(v)
		parts := splitEscaped(esc, ',')
		if len(parts) != 1 || len(splitEscaped(esc, '|')) != 1 {
			t.Errorf("%q escaped as %q still splits", v, esc)
		}
		if got := unescape(esc); got != v {
			t.Errorf("unescape(EscapeSearchValue(%q)) = %q", v, got)
		}
	}
}
