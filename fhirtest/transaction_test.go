package fhirtest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// bundle builds a Bundle of the given type from entries.
func bundle(typ string, entries ...string) string {
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

// entry builds a Bundle entry; fullURL and resource may be empty.
func entry(fullURL, resource, method, url string, extra ...string) string {
	var parts []string
	if fullURL != "" {
		parts = append(parts, `"fullUrl":"`+fullURL+`"`)
	}
	if resource != "" {
		parts = append(parts, `"resource":`+resource)
	}
	req := `"method":"` + method + `","url":` + jsonString(url)
	for i := 0; i+1 < len(extra); i += 2 {
		req += `,"` + extra[i] + `":` + jsonString(extra[i+1])
	}
	parts = append(parts, `"request":{`+req+`}`)
	return "{" + strings.Join(parts, ",") + "}"
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

const (
	urnPatient = "urn:uuid:6f1c1c8e-52a1-4d2b-9d7c-0a1b2c3d4e01"
	urnOrder   = "urn:uuid:6f1c1c8e-52a1-4d2b-9d7c-0a1b2c3d4e02"
	urnAdmin   = "urn:uuid:6f1c1c8e-52a1-4d2b-9d7c-0a1b2c3d4e03"
)

func TestTransactionResolvesURNs(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	mustAdd(t, s, `{"resourceType":"Practitioner","id":"d1"}`)
	order := `{"resourceType":"MedicationRequest","identifier":[{"system":"urn:order","value":"R1"}],"status":"active","intent":"order",` + product + `,"subject":{"reference":"` + urnPatient + `"},"requester":{"reference":"Practitioner/d1"}}`
	admin := `{"resourceType":"MedicationAdministration","identifier":[{"system":"urn:admin","value":"A1"}],"status":"completed",` + product + `,"subject":{"reference":"` + urnPatient + `"},"request":{"reference":"` + urnOrder + `"},"performer":[{"actor":{"reference":"Practitioner/d1"}}],"effectiveDateTime":"2024-01-02T09:00:00Z"}`
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"nausea"},"subject":{"reference":"` + urnPatient + `"},"partOf":[{"reference":"` + urnAdmin + `"}],` +
		`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"` + urnPatient + `\">patient</a></div>"}}`
	// Entries are listed children first: the server must not care.
	b := bundle("transaction",
		entry("", obs, "POST", "Observation"),
		entry(urnAdmin, admin, "PUT", "MedicationAdministration?identifier=urn:admin|A1"),
		entry(urnOrder, order, "POST", "MedicationRequest", "ifNoneExist", "identifier=urn:order|R1"),
		entry(urnPatient, patientJSON("", "M1"), "POST", "Patient", "ifNoneExist", "identifier=urn:mrn|M1"),
	)
	r := c.do("POST", "", b)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if r.get("type") != "transaction-response" {
		t.Fatalf("type = %v", r.get("type"))
	}
	for i, typ := range []string{"Observation", "MedicationAdministration", "MedicationRequest", "Patient"} {
		e := r.get("entry." + str(float64(i)))
		if get(e, "response.status") != "201 Created" {
			t.Errorf("entry %d status = %v", i, get(e, "response.status"))
		}
		loc := str(get(e, "response.location"))
		if !strings.HasPrefix(loc, typ+"/") || !strings.HasSuffix(loc, "/_history/1") || get(e, "response.etag") != `W/"1"` {
			t.Errorf("entry %d location %q etag %v", i, loc, get(e, "response.etag"))
		}
	}
	id := func(i int) string {
		return str(r.get("entry." + str(float64(i)) + ".resource.id"))
	}
	obsID, adminID, orderID, patientID := id(0), id(1), id(2), id(3)
	stored := func(typ, id string) map[string]any {
		body, ok := s.Get(typ, id)
		if !ok {
			t.Fatalf("%s/%s not stored", typ, id)
		}
		if strings.Contains(string(body), "urn:uuid") {
			t.Errorf("%s/%s still holds a urn:uuid: %s", typ, id, body)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	checks := []struct {
		typ, id, path, want string
	}{
		{"Observation", obsID, "subject.reference", "Patient/" + patientID},
		{"Observation", obsID, "partOf.0.reference", "MedicationAdministration/" + adminID},
		{"MedicationAdministration", adminID, "request.reference", "MedicationRequest/" + orderID},
		{"MedicationAdministration", adminID, "subject.reference", "Patient/" + patientID},
		{"MedicationRequest", orderID, "subject.reference", "Patient/" + patientID},
	}
	for _, ck := range checks {
		if got := str(get(stored(ck.typ, ck.id), ck.path)); got != ck.want {
			t.Errorf("%s/%s %s = %s, want %s", ck.typ, ck.id, ck.path, got, ck.want)
		}
	}
	div := str(get(stored("Observation", obsID), "text.div"))
	if !strings.Contains(div, `href="`+s.URL+"/Patient/"+patientID+`"`) {
		t.Errorf("narrative link not rewritten: %s", div)
	}

	// The same transaction again changes nothing but versions: the
	// conditional entries find what the first one made.
	r2 := c.do("POST", "", b)
	if r2.status != 200 {
		t.Fatalf("second run: %d %s", r2.status, r2.body)
	}
	if got := r2.get("entry.3.response.status"); got != "200 OK" {
		t.Errorf("conditional create of an existing Patient: %v", got)
	}
	if got := r2.get("entry.1.response.status"); got != "200 OK" {
		t.Errorf("conditional update of an existing administration: %v", got)
	}
	for typ, want := range map[string]int{"Patient": 1, "MedicationRequest": 1, "MedicationAdministration": 1, "Observation": 2} {
		if n := s.Count(typ); n != want {
			t.Errorf("Count(%s) = %d, want %d", typ, n, want)
		}
	}
	if d := s.DuplicateIdentifiers(); len(d) != 0 {
		t.Errorf("duplicates: %v", d)
	}
	// The second Observation points at the same, existing resources.
	var obs2 map[string]any
	body, _ := s.Get("Observation", str(r2.get("entry.0.resource.id")))
	_ = json.Unmarshal(body, &obs2)
	if got := str(get(obs2, "partOf.0.reference")); got != "MedicationAdministration/"+adminID {
		t.Errorf("second Observation partOf = %s", got)
	}
}

func TestTransactionProcessingOrder(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	mustAdd(t, s, patientJSON("old", "M1"))
	mustAdd(t, s, patientJSON("p2", "M2"))
	b := bundle("transaction",
		// GET is processed last: it sees the create.
		entry("", "", "GET", "Patient?identifier=urn:mrn|M1"),
		// POST after DELETE: the conditional create does not see "old".
		entry("", patientJSON("", "M1"), "POST", "Patient", "ifNoneExist", "identifier=urn:mrn|M1"),
		entry("", strings.Replace(patientJSON("p2", "M2"), "female", "male", 1), "PUT", "Patient/p2"),
		entry("", "", "DELETE", "Patient/old"),
		entry("", "", "GET", "Patient/p2"),
	)
	r := c.do("POST", "", b)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	want := []string{"200 OK", "201 Created", "200 OK", "204 No Content", "200 OK"}
	for i, w := range want {
		if got := r.get("entry." + str(float64(i)) + ".response.status"); got != w {
			t.Errorf("entry %d status = %v, want %s", i, got, w)
		}
	}
	if got := str(r.get("entry.0.resource.total")); got != "1" {
		t.Errorf("GET saw %s patients with M1, want 1 (the new one)", got)
	}
	if got := r.get("entry.0.resource.entry.0.resource.id"); got != r.get("entry.1.resource.id") {
		t.Errorf("GET found %v, want the created %v", got, r.get("entry.1.resource.id"))
	}
	if got := r.get("entry.4.resource.gender"); got != "male" {
		t.Errorf("GET Patient/p2 saw gender %v, want the update", got)
	}
}

func TestTransactionRollsBack(t *testing.T) {
	t.Parallel()
	p1 := patientJSON("p1", "M1")
	cases := []struct {
		name   string
		bundle string
		status int
		expr   string // prefix of the first issue's expression
	}{
		{
			name: "invalid resource",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", strings.Replace(p1, "female", "male", 1), "PUT", "Patient/p1"),
				entry("", "", "DELETE", "Patient/p2"),
				entry("", `{"resourceType":"Observation","status":"final"}`, "POST", "Observation"),
			),
			status: 422, expr: "Bundle.entry[3].resource",
		},
		{
			name: "dangling reference",
			bundle: bundle("transaction",
				entry(urnPatient, patientJSON("", "NEW"), "POST", "Patient"),
				entry("", observationJSON("", "O1", "Patient/nope", "final", ""), "POST", "Observation"),
			),
			status: 422, expr: "Bundle.entry[1].resource.subject",
		},
		{
			name: "stale If-Match after other writes",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", "", "DELETE", "Patient/p2"),
				entry("", strings.Replace(p1, "female", "male", 1), "PUT", "Patient/p1", "ifMatch", `W/"7"`),
			),
			status: 412, expr: "Bundle.entry[2]",
		},
		{
			name: "non-numeric If-Match ETag",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", strings.Replace(p1, "female", "male", 1), "PUT", "Patient/p1", "ifMatch", `W/"abc"`),
			),
			status: 412, expr: "Bundle.entry[1]",
		},
		{
			name: "If-Match that is not an ETag",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", strings.Replace(p1, "female", "male", 1), "PUT", "Patient/p1", "ifMatch", `abc`),
			),
			status: 400, expr: "Bundle.entry[1]",
		},
		{
			name: "conditional create with several matches",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", patientJSON("", "DUP"), "POST", "Patient", "ifNoneExist", "identifier=DUP"),
			),
			status: 412, expr: "Bundle.entry[1]",
		},
		{
			name: "conditional reference without a match",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", observationJSON("", "O1", "Patient?identifier=urn:mrn|NONE", "final", ""), "POST", "Observation"),
			),
			status: 412, expr: "Bundle.entry[1].resource.subject",
		},
		{
			name: "two entries change one resource",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", p1, "PUT", "Patient/p1"),
				entry("", p1, "PUT", "Patient?identifier=urn:mrn|M1"),
			),
			status: 400, expr: "Bundle.entry[2]",
		},
		{
			name: "deleting a resource that stays referenced",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", "", "DELETE", "Patient/p1"),
			),
			status: 409, expr: "Bundle.entry[1]",
		},
		{
			name: "PATCH",
			bundle: bundle("transaction",
				entry("", patientJSON("", "NEW"), "POST", "Patient"),
				entry("", "", "PATCH", "Patient/p1"),
			),
			status: 405, expr: "Bundle.entry[1]",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := setup(t)
			mustAdd(t, s, p1)
			mustAdd(t, s, patientJSON("p2", "M2"))
			mustAdd(t, s, patientJSON("d1", "DUP"))
			mustAdd(t, s, patientJSON("d2", "DUP"))
			mustAdd(t, s, observationJSON("o1", "O1", "Patient/p1", "final", ""))
			before := snapshot(s)

			r := c.do("POST", "", tc.bundle)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.get("resourceType") != "OperationOutcome" {
				t.Fatalf("body is not an OperationOutcome: %s", r.body)
			}
			if expr := str(r.get("issue.0.expression.0")); !strings.HasPrefix(expr, tc.expr) {
				t.Errorf("expression = %s, want prefix %s", expr, tc.expr)
			}
			if after := snapshot(s); !reflect.DeepEqual(after, before) {
				t.Errorf("store changed:\nbefore %v\nafter  %v", before, after)
			}
			// The indexes were rolled back too.
			if ids := c.do("GET", "/Patient?identifier=NEW", "").entryIDs(); ids != nil {
				t.Errorf("rolled-back Patient still found: %v", ids)
			}
			if ids := c.do("GET", "/Patient?identifier=urn:mrn|M1&gender=female", "").entryIDs(); !reflect.DeepEqual(ids, []string{"p1"}) {
				t.Errorf("p1 as before: %v", ids)
			}
			if ids := c.do("GET", "/Patient?identifier=M2", "").entryIDs(); !reflect.DeepEqual(ids, []string{"p2"}) {
				t.Errorf("p2 as before: %v", ids)
			}
		})
	}
}

func TestBatchIfMatch(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	mustAdd(t, s, patientJSON("p1", "M1"))
	male := strings.Replace(patientJSON("p1", "M1"), "female", "male", 1)
	r := c.do("POST", "", bundle("batch",
		entry("", male, "PUT", "Patient/p1", "ifMatch", `W/"abc"`),
		entry("", male, "PUT", "Patient/p1", "ifMatch", `W/1`),
		entry("", male, "PUT", "Patient/p1", "ifMatch", `"1"`),
		entry("", male, "PUT", "Patient/p1", "ifMatch", `W/"1"`),
	))
	if r.status != 200 || r.get("type") != "batch-response" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := []string{"412 Precondition Failed", "400 Bad Request", "200 OK", "412 Precondition Failed"}
	for i, w := range want {
		if got := r.get("entry." + str(float64(i)) + ".response.status"); got != w {
			t.Errorf("entry %d status = %v, want %s", i, got, w)
		}
	}
}

// snapshot returns the current JSON of every resource of the store.
func snapshot(s *Server) map[string]string {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	out := map[string]string{}
	for name, ts := range s.store.types {
		for id, r := range ts.byID {
			out[name+"/"+id] = string(r.current().body) + "|v" + str(float64(r.vid()))
		}
	}
	return out
}

func TestTransactionConditionalReference(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	mustAdd(t, s, patientJSON("p1", "M1"))
	r := c.do("POST", "", bundle("transaction",
		entry("", observationJSON("", "O1", "Patient?identifier=urn:mrn|M1", "final", ""), "POST", "Observation"),
	))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := r.get("entry.0.resource.subject.reference"); got != "Patient/p1" {
		t.Errorf("subject = %v, want Patient/p1", got)
	}
}

func TestTransactionPreferMinimal(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	r := c.do("POST", "", bundle("transaction", entry("", patientJSON("", "M1"), "POST", "Patient")), "Prefer", "return=minimal")
	if r.status != 200 || r.get("entry.0.resource") != nil || r.get("entry.0.response.location") != "Patient/1/_history/1" {
		t.Errorf("%d %s", r.status, r.body)
	}
}

func TestEmptyBundles(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	for _, typ := range []string{"transaction", "batch"} {
		r := c.do("POST", "", `{"resourceType":"Bundle","type":"`+typ+`"}`)
		if r.status != 200 || r.get("type") != typ+"-response" || r.get("entry") != nil {
			t.Errorf("%s: %d %s", typ, r.status, r.body)
		}
	}
}

func TestBundleErrors(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	cases := []struct {
		name, body string
		status     int
	}{
		{"not JSON", `{`, 400},
		{"not a Bundle", patientJSON("", "M1"), 400},
		{"a collection", bundle("collection"), 400},
		{"an entry without request", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + patientJSON("", "M1") + `}]}`, 400},
		{"a POST without resource", bundle("transaction", entry("", "", "POST", "Patient")), 400},
		{"a URL of an unknown type", bundle("transaction", entry("", "", "GET", "Foo/1")), 404},
		{"a URL of another server", bundle("transaction", entry("", "", "GET", "http://elsewhere.example/fhir/Patient/1")), 400},
		{"a duplicate fullUrl", bundle("transaction",
			entry(urnPatient, patientJSON("", "A"), "POST", "Patient"),
			entry(urnPatient, patientJSON("", "B"), "POST", "Patient")), 400},
		{"a resource of another type than the URL", bundle("transaction", entry("", patientJSON("", "A"), "POST", "Observation")), 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do("POST", "", tc.body)
			if r.status != tc.status || r.get("resourceType") != "OperationOutcome" {
				t.Errorf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
		})
	}
	if n := c.s.Count("Patient"); n != 0 {
		t.Errorf("Count = %d after failed bundles", n)
	}
}

func TestBatchEntriesAreIndependent(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	mustAdd(t, s, patientJSON("p1", "M1"))
	r := c.do("POST", "", bundle("batch",
		entry("", patientJSON("", "M2"), "POST", "Patient"),
		entry("", `{"resourceType":"Observation","status":"final"}`, "POST", "Observation"),
		entry("", "", "GET", "Patient/nope"),
		entry("", strings.Replace(patientJSON("p1", "M1"), "female", "male", 1), "PUT", "Patient/p1"),
		entry("", observationJSON("", "O1", urnPatient, "final", ""), "POST", "Observation"),
		entry("", "", "GET", "Patient?identifier=M2"),
		entry("", patientJSON("", "M3"), "PUT", "Patient?identifier=urn:mrn|M3"),
	))
	if r.status != 200 || r.get("type") != "batch-response" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := []string{"201 Created", "422 Unprocessable Entity", "404 Not Found", "200 OK", "422 Unprocessable Entity", "200 OK", "201 Created"}
	for i, w := range want {
		e := r.get("entry." + str(float64(i)))
		if got := get(e, "response.status"); got != w {
			t.Errorf("entry %d status = %v, want %s", i, got, w)
		}
		failed := !strings.HasPrefix(w, "2")
		if hasOutcome := get(e, "response.outcome.resourceType") == "OperationOutcome"; hasOutcome != failed {
			t.Errorf("entry %d outcome = %v", i, get(e, "response.outcome"))
		}
	}
	if got := str(r.get("entry.1.response.outcome.issue.0.expression.0")); got != "Bundle.entry[1].resource" {
		t.Errorf("entry 1 expression = %s", got)
	}
	if got := str(r.get("entry.5.resource.total")); got != "1" {
		t.Errorf("search in batch saw %s patients", got)
	}
	if n := s.Count("Patient"); n != 3 {
		t.Errorf("Count(Patient) = %d, want 3", n)
	}
	if n := s.Count("Observation"); n != 0 {
		t.Errorf("Count(Observation) = %d, want 0", n)
	}
}
