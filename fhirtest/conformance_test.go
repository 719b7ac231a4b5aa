package fhirtest

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// request is one HTTP request of a conformance case.
type request struct {
	method, path, body string
	header             []string // name, value, name, value...
}

// expect is what the spec requires of the answer. Header values are exact
// ("{base}" stands for the server URL); "*" means present with any value;
// "-" means absent. Body values are compared as strings at dotted paths;
// "-" means absent.
type expect struct {
	status int
	header map[string]string
	body   map[string]string
	empty  bool // no body at all
}

type conformanceCase struct {
	name  string
	opts  []Option
	seed  []string  // resources stored with Add before the requests
	prep  []request // requests made first; each must answer 2xx
	req   request
	want  expect
	check func(t *testing.T, s *Server, r *resp)
}

const fhirJSONType = "application/fhir+json; charset=utf-8"

func TestConformance(t *testing.T) {
	p1 := patientJSON("p1", "M1")
	p2 := patientJSON("p2", "M1") // same identifier as p1
	obsOnP1 := observationJSON("o1", "O1", "Patient/p1", "final", "2024-01-02T10:00:00Z")
	badObs := `{"resourceType":"Observation","status":"final"}`
	escaped := `a|b,c$d\e`

	cases := []conformanceCase{
		// create
		{
			name: "create",
			req:  request{"POST", "/Patient", patientJSON("", "M1"), nil},
			want: expect{status: 201,
				header: map[string]string{"ETag": `W/"1"`, "Location": "{base}/Patient/1/_history/1", "Last-Modified": t0LastModified, "Content-Type": fhirJSONType},
				body:   map[string]string{"resourceType": "Patient", "id": "1", "meta.versionId": "1", "meta.lastUpdated": t0Instant, "identifier.0.value": "M1"}},
		},
		{
			name: "create ignores the client id",
			req:  request{"POST", "/Patient", patientJSON("mine", "M1"), nil},
			want: expect{status: 201, body: map[string]string{"id": "1"}, header: map[string]string{"Location": "{base}/Patient/1/_history/1"}},
		},
		{
			name: "create keeps decimal precision",
			req:  request{"POST", "/Observation", observationJSON("", "O1", "", "final", ""), nil},
			want: expect{status: 201},
			check: func(t *testing.T, s *Server, r *resp) {
				if !strings.Contains(string(r.body), `"value":72.50`) {
					t.Errorf("decimal 72.50 not kept: %s", r.body)
				}
			},
		},
		{
			name: "create Prefer return=minimal",
			req:  request{"POST", "/Patient", patientJSON("", "M1"), []string{"Prefer", "return=minimal"}},
			want: expect{status: 201, empty: true, header: map[string]string{"ETag": `W/"1"`, "Location": "{base}/Patient/1/_history/1"}},
		},
		{
			name: "create Prefer return=OperationOutcome",
			req:  request{"POST", "/Patient", patientJSON("", "M1"), []string{"Prefer", "return=OperationOutcome"}},
			want: expect{status: 201, body: map[string]string{"resourceType": "OperationOutcome", "issue.0.severity": "information"}},
		},
		{
			name: "conditional create without a match creates",
			req:  request{"POST", "/Patient", patientJSON("", "M1"), []string{"If-None-Exist", "identifier=urn:mrn|M1"}},
			want: expect{status: 201, body: map[string]string{"id": "1"}},
		},
		{
			name: "conditional create with one match returns it",
			seed: []string{p1},
			req:  request{"POST", "/Patient", patientJSON("", "M1"), []string{"If-None-Exist", "identifier=urn:mrn|M1"}},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"1"`}, body: map[string]string{"id": "p1", "meta.versionId": "1"}},
			check: func(t *testing.T, s *Server, r *resp) {
				if n := s.Count("Patient"); n != 1 {
					t.Errorf("Count = %d, want 1", n)
				}
			},
		},
		{
			name: "conditional create with the Type? form",
			seed: []string{p1},
			req:  request{"POST", "/Patient", patientJSON("", "M1"), []string{"If-None-Exist", "Patient?identifier=urn:mrn|M1"}},
			want: expect{status: 200, body: map[string]string{"id": "p1"}},
		},
		{
			name: "conditional create with several matches is 412",
			seed: []string{p1, p2},
			req:  request{"POST", "/Patient", patientJSON("", "M1"), []string{"If-None-Exist", "identifier=urn:mrn|M1"}},
			want: expect{status: 412, body: map[string]string{"resourceType": "OperationOutcome", "issue.0.code": "multiple-matches"}},
		},
		{
			name: "conditional create matches FHIR-escaped values",
			seed: []string{patientJSON("p9", escaped)},
			req: request{"POST", "/Patient", patientJSON("", escaped),
				[]string{"If-None-Exist", "identifier=" + url.QueryEscape("urn:mrn|"+EscapeSearchValue(escaped))}},
			want: expect{status: 200, body: map[string]string{"id": "p9"}},
		},
		{
			name: "conditional create rejects unknown criteria",
			req:  request{"POST", "/Patient", patientJSON("", "M1"), []string{"If-None-Exist", "identifer=urn:mrn|M1"}},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "not-supported"}},
		},

		// read and vread
		{
			name: "read",
			seed: []string{p1},
			req:  request{"GET", "/Patient/p1", "", nil},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"1"`, "Last-Modified": t0LastModified, "Content-Type": fhirJSONType, "Location": "-"},
				body: map[string]string{"id": "p1", "meta.versionId": "1", "meta.lastUpdated": t0Instant, "gender": "female"}},
		},
		{
			name: "read unknown is 404",
			req:  request{"GET", "/Patient/nope", "", nil},
			want: expect{status: 404, body: map[string]string{"resourceType": "OperationOutcome", "issue.0.code": "not-found"}},
		},
		{
			name: "read deleted is 410",
			seed: []string{p1},
			prep: []request{{"DELETE", "/Patient/p1", "", nil}},
			req:  request{"GET", "/Patient/p1", "", nil},
			want: expect{status: 410, body: map[string]string{"issue.0.code": "deleted"}},
		},
		{
			name: "read with matching If-None-Match is 304",
			seed: []string{p1},
			req:  request{"GET", "/Patient/p1", "", []string{"If-None-Match", `W/"1"`}},
			want: expect{status: 304, empty: true, header: map[string]string{"ETag": `W/"1"`}},
		},
		{
			name: "read with an invalid id is 400",
			req:  request{"GET", "/Patient/a_b", "", nil},
			want: expect{status: 400},
		},
		{
			name: "vread an old version",
			seed: []string{p1},
			prep: []request{{"PUT", "/Patient/p1", strings.Replace(p1, "female", "male", 1), nil}},
			req:  request{"GET", "/Patient/p1/_history/1", "", nil},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"1"`}, body: map[string]string{"meta.versionId": "1", "gender": "female"}},
		},
		{
			name: "vread an unknown version is 404",
			seed: []string{p1},
			req:  request{"GET", "/Patient/p1/_history/7", "", nil},
			want: expect{status: 404, body: map[string]string{"issue.0.code": "not-found"}},
		},
		{
			name: "vread a delete version is 410",
			seed: []string{p1},
			prep: []request{{"DELETE", "/Patient/p1", "", nil}},
			req:  request{"GET", "/Patient/p1/_history/2", "", nil},
			want: expect{status: 410},
		},

		// update
		{
			name: "update",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", strings.Replace(p1, "female", "male", 1), nil},
			want: expect{status: 200,
				header: map[string]string{"ETag": `W/"2"`, "Location": "{base}/Patient/p1/_history/2", "Last-Modified": t0LastModified},
				body:   map[string]string{"id": "p1", "meta.versionId": "2", "gender": "male"}},
		},
		{
			name: "update keeps meta.profile and replaces versionId",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", `{"resourceType":"Patient","id":"p1","meta":{"versionId":"99","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},"gender":"male"}`, nil},
			want: expect{status: 200, body: map[string]string{"meta.versionId": "2", "meta.profile.0": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"}},
		},
		{
			name: "update as create",
			req:  request{"PUT", "/Patient/new-1", patientJSON("new-1", "M1"), nil},
			want: expect{status: 201, header: map[string]string{"ETag": `W/"1"`, "Location": "{base}/Patient/new-1/_history/1"}, body: map[string]string{"id": "new-1"}},
		},
		{
			name: "update as create refused is 405",
			opts: []Option{WithUpdateCreate(false)},
			req:  request{"PUT", "/Patient/new-1", patientJSON("new-1", "M1"), nil},
			want: expect{status: 405, body: map[string]string{"issue.0.code": "not-supported"}},
			check: func(t *testing.T, s *Server, r *resp) {
				if n := s.Count("Patient"); n != 0 {
					t.Errorf("Count = %d, want 0", n)
				}
			},
		},
		{
			name: "update of a deleted resource recreates it",
			seed: []string{p1},
			prep: []request{{"DELETE", "/Patient/p1", "", nil}},
			req:  request{"PUT", "/Patient/p1", p1, nil},
			want: expect{status: 201, header: map[string]string{"ETag": `W/"3"`}, body: map[string]string{"meta.versionId": "3"}},
		},
		{
			name: "update with another id is 400",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", patientJSON("p2", "M1"), nil},
			want: expect{status: 400, body: map[string]string{"issue.0.expression.0": "Patient.id"}},
		},
		{
			name: "update without an id is 400",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", patientJSON("", "M1"), nil},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "required"}},
		},
		{
			name: "update with the current If-Match",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `W/"1"`}},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"2"`}},
		},
		{
			name: "update with a stale If-Match is 412",
			seed: []string{p1},
			prep: []request{{"PUT", "/Patient/p1", p1, nil}},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `W/"1"`}},
			want: expect{status: 412, body: map[string]string{"issue.0.code": "conflict"}},
			check: func(t *testing.T, s *Server, r *resp) {
				body, _ := s.Get("Patient", "p1")
				if !strings.Contains(string(body), `"versionId":"2"`) {
					t.Errorf("stored version changed: %s", body)
				}
			},
		},
		{
			name: "update with a strong current If-Match",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `"1"`}},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"2"`}},
		},
		{
			name: "update with an If-Match list holding the current version",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `W/"7", W/"1"`}},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"2"`}},
		},
		{
			name: "update with If-Match * on an existing resource",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `*`}},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"2"`}},
		},
		{
			name: "update with If-Match * on a missing resource is 412",
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `*`}},
			want: expect{status: 412, body: map[string]string{"issue.0.code": "not-found"}},
		},
		{
			name: "update with a bare version id as If-Match",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `1`}},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"2"`}},
		},
		{
			name: "update with a non-numeric If-Match ETag is 412",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `W/"abc"`}},
			want: expect{status: 412, body: map[string]string{"issue.0.code": "conflict"}},
		},
		{
			name: "update with an empty If-Match ETag is 412",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `""`}},
			want: expect{status: 412, body: map[string]string{"issue.0.code": "conflict"}},
		},
		{
			name: "update with a strong stale If-Match is 412",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `"01"`}},
			want: expect{status: 412, body: map[string]string{"issue.0.code": "conflict"}},
		},
		{
			name: "update with an If-Match that is not an ETag is 400",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `abc`}},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "invalid"}},
		},
		{
			name: "update with an unquoted weak If-Match is 400",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `W/1`}},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "invalid"}},
		},
		{
			name: "update with an unclosed If-Match ETag is 400",
			seed: []string{p1},
			req:  request{"PUT", "/Patient/p1", p1, []string{"If-Match", `W/"1`}},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "invalid"}},
		},
		{
			name: "conditional update without a match creates",
			req:  request{"PUT", "/Patient?identifier=urn:mrn|M9", patientJSON("", "M9"), nil},
			want: expect{status: 201, header: map[string]string{"Location": "{base}/Patient/1/_history/1"}, body: map[string]string{"id": "1"}},
		},
		{
			name: "conditional update without a match, with a client id and no update as create, is 405",
			opts: []Option{WithUpdateCreate(false)},
			req:  request{"PUT", "/Patient?identifier=urn:mrn|M9", patientJSON("x9", "M9"), nil},
			want: expect{status: 405},
		},
		{
			name: "conditional update with one match updates it",
			seed: []string{p1},
			req:  request{"PUT", "/Patient?identifier=urn:mrn|M1", strings.Replace(patientJSON("", "M1"), "female", "other", 1), nil},
			want: expect{status: 200, header: map[string]string{"ETag": `W/"2"`}, body: map[string]string{"id": "p1", "gender": "other"}},
		},
		{
			name: "conditional update with several matches is 412",
			seed: []string{p1, p2},
			req:  request{"PUT", "/Patient?identifier=urn:mrn|M1", patientJSON("", "M1"), nil},
			want: expect{status: 412, body: map[string]string{"issue.0.code": "multiple-matches"}},
		},
		{
			name: "conditional update whose id is not the match is 400",
			seed: []string{p1},
			req:  request{"PUT", "/Patient?identifier=urn:mrn|M1", patientJSON("p7", "M1"), nil},
			want: expect{status: 400},
		},
		{
			name: "conditional update with an unknown parameter is 400 even when lenient",
			req:  request{"PUT", "/Patient?identifer=urn:mrn|M1", patientJSON("", "M1"), nil},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "not-supported"}},
		},

		// delete
		{
			name: "delete",
			seed: []string{p1},
			req:  request{"DELETE", "/Patient/p1", "", nil},
			want: expect{status: 204, empty: true, header: map[string]string{"ETag": `W/"2"`}},
			check: func(t *testing.T, s *Server, r *resp) {
				if n := s.Count("Patient"); n != 0 {
					t.Errorf("Count = %d, want 0", n)
				}
				if _, ok := s.Get("Patient", "p1"); ok {
					t.Error("Get found a deleted resource")
				}
			},
		},
		{
			name: "delete of nothing is 204",
			req:  request{"DELETE", "/Patient/nope", "", nil},
			want: expect{status: 204, empty: true},
		},
		{
			name: "delete Prefer return=OperationOutcome",
			seed: []string{p1},
			req:  request{"DELETE", "/Patient/p1", "", []string{"Prefer", "return=OperationOutcome"}},
			want: expect{status: 200, body: map[string]string{"resourceType": "OperationOutcome"}},
		},
		{
			name: "delete of a referenced resource is 409",
			seed: []string{p1, obsOnP1},
			req:  request{"DELETE", "/Patient/p1", "", nil},
			want: expect{status: 409, body: map[string]string{"issue.0.code": "conflict"}},
			check: func(t *testing.T, s *Server, r *resp) {
				if !strings.Contains(str(r.get("issue.0.diagnostics")), "Observation/o1") {
					t.Errorf("diagnostics do not name the referrer: %s", r.body)
				}
			},
		},
		{
			name: "conditional delete of one match",
			seed: []string{p1},
			req:  request{"DELETE", "/Patient?identifier=urn:mrn|M1", "", nil},
			want: expect{status: 204},
			check: func(t *testing.T, s *Server, r *resp) {
				if n := s.Count("Patient"); n != 0 {
					t.Errorf("Count = %d, want 0", n)
				}
			},
		},
		{
			name: "conditional delete of several matches is 412",
			seed: []string{p1, p2},
			req:  request{"DELETE", "/Patient?identifier=urn:mrn|M1", "", nil},
			want: expect{status: 412},
		},

		// history
		{
			name: "instance history, newest first",
			prep: []request{
				{"POST", "/Patient", patientJSON("", "M1"), nil},
				{"PUT", "/Patient/1", patientJSON("1", "M1"), nil},
				{"DELETE", "/Patient/1", "", nil},
			},
			req: request{"GET", "/Patient/1/_history", "", nil},
			want: expect{status: 200, body: map[string]string{
				"resourceType": "Bundle", "type": "history", "total": "3",
				"entry.0.request.method": "DELETE", "entry.0.response.status": "204 No Content", "entry.0.resource": "-", "entry.0.response.etag": `W/"3"`,
				"entry.1.request.method": "PUT", "entry.1.request.url": "Patient/1", "entry.1.response.status": "200 OK", "entry.1.resource.meta.versionId": "2",
				"entry.2.request.method": "POST", "entry.2.request.url": "Patient", "entry.2.response.status": "201 Created", "entry.2.response.lastModified": t0Instant,
			}},
		},
		{
			name: "history of an unknown resource is 404",
			req:  request{"GET", "/Patient/nope/_history", "", nil},
			want: expect{status: 404},
		},

		// metadata
		{
			name: "metadata",
			req:  request{"GET", "/metadata", "", nil},
			want: expect{status: 200, header: map[string]string{"Content-Type": fhirJSONType}, body: map[string]string{
				"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "kind": "instance", "status": "active",
				"rest.0.mode": "server", "rest.0.interaction.0.code": "transaction", "rest.0.interaction.1.code": "batch",
			}},
			check: func(t *testing.T, s *Server, r *resp) {
				res := capResourceOf(t, r, "Patient")
				if get(res, "updateCreate") != true || get(res, "conditionalCreate") != true || get(res, "conditionalUpdate") != true {
					t.Errorf("Patient capabilities wrong: %v", res)
				}
				if !hasSearchParam(res, "identifier", "token") || !hasSearchParam(res, "birthdate", "date") {
					t.Errorf("Patient search params missing: %v", get(res, "searchParam"))
				}
				obs := capResourceOf(t, r, "Observation")
				for _, p := range []string{"patient", "subject", "code", "date", "status", "_lastUpdated", "_id"} {
					if !hasSearchParam(obs, p, "") {
						t.Errorf("Observation lacks search param %s", p)
					}
				}
				if n := len(r.get("rest.0.resource").([]any)); n != len(resourceTypes) || n < 140 {
					t.Errorf("%d resource types listed, want all %d", n, len(resourceTypes))
				}
			},
		},
		{
			name: "metadata tells update as create is off",
			opts: []Option{WithUpdateCreate(false), WithReferentialIntegrity(false)},
			req:  request{"GET", "/metadata", "", nil},
			want: expect{status: 200},
			check: func(t *testing.T, s *Server, r *resp) {
				res := capResourceOf(t, r, "Patient")
				if get(res, "updateCreate") != false {
					t.Errorf("updateCreate = %v, want false", get(res, "updateCreate"))
				}
				for _, p := range get(res, "referencePolicy").([]any) {
					if p == "enforced" {
						t.Error("referencePolicy says enforced with integrity off")
					}
				}
			},
		},

		// validation
		{
			name: "unparsable JSON is 400",
			req:  request{"POST", "/Patient", `{"resourceType":"Patient",`, nil},
			want: expect{status: 400, body: map[string]string{"resourceType": "OperationOutcome", "issue.0.severity": "error", "issue.0.code": "structure"}},
		},
		{
			name: "a JSON array is 400",
			req:  request{"POST", "/Patient", `[1,2]`, nil},
			want: expect{status: 400},
		},
		{
			name: "an empty body is 400",
			req:  request{"POST", "/Patient", ``, []string{"Content-Type", "application/fhir+json"}},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "required"}},
		},
		{
			name: "a resourceType other than the URL's is 400",
			req:  request{"POST", "/Patient", observationJSON("", "O1", "", "final", ""), nil},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "invalid"}},
		},
		{
			name: "an unknown resource type is 404",
			req:  request{"POST", "/Foo", `{"resourceType":"Foo"}`, nil},
			want: expect{status: 404},
		},
		{
			name: "a missing required element is 422 with its path",
			req:  request{"POST", "/Observation", badObs, nil},
			want: expect{status: 422, body: map[string]string{"issue.0.severity": "error", "issue.0.expression.0": "Observation"}},
			check: func(t *testing.T, s *Server, r *resp) {
				if !strings.Contains(str(r.get("issue.0.diagnostics")), "code") {
					t.Errorf("diagnostics do not name the element: %s", r.body)
				}
			},
		},
		{
			name: "an invalid value is 422 with its path",
			req:  request{"POST", "/Patient", `{"resourceType":"Patient","birthDate":"1980-13-01"}`, nil},
			want: expect{status: 422, body: map[string]string{"issue.0.expression.0": "Patient.birthDate"}},
			check: func(t *testing.T, s *Server, r *resp) {
				if strings.Contains(string(r.body), "1980-13-01") {
					t.Errorf("the outcome echoes the value: %s", r.body)
				}
			},
		},
		{
			name: "an unknown element is 422 with its path",
			req:  request{"POST", "/Patient", `{"resourceType":"Patient","nickname":"x"}`, nil},
			want: expect{status: 422, body: map[string]string{"issue.0.expression.0": "Patient.nickname", "issue.0.code": "structure"}},
		},
		{
			name: "every problem is reported",
			req:  request{"POST", "/Patient", `{"resourceType":"Patient","a":1,"b":2}`, nil},
			want: expect{status: 422, body: map[string]string{"issue.0.expression.0": "Patient.a", "issue.1.expression.0": "Patient.b"}},
		},
		{
			name: "a reference of the wrong type is 422",
			seed: []string{`{"resourceType":"Practitioner","id":"d1"}`},
			req:  request{"POST", "/Observation", observationJSON("", "O1", "Practitioner/d1", "final", ""), nil},
			want: expect{status: 422, body: map[string]string{"issue.0.expression.0": "Observation.subject"}},
		},
		{
			name: "a dangling reference is 422",
			req:  request{"POST", "/Observation", observationJSON("", "O1", "Patient/nope", "final", ""), nil},
			want: expect{status: 422, body: map[string]string{"issue.0.code": "not-found", "issue.0.expression.0": "Observation.subject"}},
			check: func(t *testing.T, s *Server, r *resp) {
				if n := s.Count("Observation"); n != 0 {
					t.Errorf("Count = %d, want 0", n)
				}
			},
		},
		{
			name: "a reference by absolute URL to this server resolves",
			seed: []string{p1},
			req:  request{"POST", "/Observation", observationJSON("", "O1", "{base}/Patient/p1", "final", ""), nil},
			want: expect{status: 201},
		},
		{
			name: "an unresolved urn:uuid outside a transaction is 422",
			req:  request{"POST", "/Observation", observationJSON("", "O1", "urn:uuid:0d8c3d6e-2b0f-4a34-9f0e-1d3c7d1a2b3c", "final", ""), nil},
			want: expect{status: 422},
		},
		{
			name: "with validation off a resourceType other than the URL's is still 400",
			opts: []Option{WithValidation(false)},
			req:  request{"POST", "/Patient", observationJSON("", "O1", "", "final", ""), nil},
			want: expect{status: 400, body: map[string]string{"issue.0.code": "invalid"}},
		},
		{
			name: "with validation off a dangling reference is still 422",
			opts: []Option{WithValidation(false)},
			req:  request{"POST", "/Observation", observationJSON("", "O1", "Patient/nope", "final", ""), nil},
			want: expect{status: 422, body: map[string]string{"issue.0.code": "not-found"}},
		},
		{
			name: "a dangling reference is accepted with integrity off",
			opts: []Option{WithReferentialIntegrity(false)},
			req:  request{"POST", "/Observation", observationJSON("", "O1", "Patient/nope", "final", ""), nil},
			want: expect{status: 201},
		},

		// HTTP
		{
			name: "an XML Accept is 406",
			req:  request{"GET", "/metadata", "", []string{"Accept", "application/fhir+xml"}},
			want: expect{status: 406},
		},
		{
			name: "_format=xml is 406",
			req:  request{"GET", "/metadata?_format=xml", "", nil},
			want: expect{status: 406},
		},
		{
			name: "_format=json overrides Accept",
			req:  request{"GET", "/metadata?_format=json", "", []string{"Accept", "text/html"}},
			want: expect{status: 200},
		},
		{
			name: "an XML body is 415",
			req:  request{"POST", "/Patient", `<Patient xmlns="http://hl7.org/fhir"/>`, []string{"Content-Type", "application/fhir+xml"}},
			want: expect{status: 415},
		},
		{
			name: "a body over the limit is 413",
			opts: []Option{WithMaxBodyBytes(64)},
			req:  request{"POST", "/Patient", patientJSON("", strings.Repeat("x", 100)), nil},
			want: expect{status: 413},
		},
		{
			name: "a path outside the base is 404",
			req:  request{"GET", "root:/Patient/p1", "", nil},
			want: expect{status: 404},
		},
		{
			name: "PATCH is 405 with Allow",
			seed: []string{p1},
			req:  request{"PATCH", "/Patient/p1", `[]`, []string{"Content-Type", "application/json-patch+json"}},
			want: expect{status: 405, header: map[string]string{"Allow": "GET, HEAD, PUT, DELETE"}},
		},
		{
			name: "HEAD reads without a body",
			seed: []string{p1},
			req:  request{"HEAD", "/Patient/p1", "", nil},
			want: expect{status: 200, empty: true, header: map[string]string{"ETag": `W/"1"`}},
		},
		{
			name: "a custom base path",
			opts: []Option{WithBasePath("/api/FHIR/R4/")},
			req:  request{"POST", "/Patient", patientJSON("", "M1"), nil},
			want: expect{status: 201, header: map[string]string{"Location": "{base}/Patient/1/_history/1"}},
			check: func(t *testing.T, s *Server, r *resp) {
				if !strings.HasSuffix(s.URL, "/api/FHIR/R4") {
					t.Errorf("URL = %s", s.URL)
				}
			},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := setup(t, tc.opts...)
			for _, r := range tc.seed {
				mustAdd(t, s, r)
			}
			for _, p := range tc.prep {
				if r := c.do(p.method, p.path, p.body, p.header...); r.status/100 != 2 {
					t.Fatalf("prep %s %s: %d %s", p.method, p.path, r.status, r.body)
				}
			}
			body := strings.ReplaceAll(tc.req.body, "{base}", s.URL)
			r := c.do(tc.req.method, tc.req.path, body, tc.req.header...)
			if r.status != tc.want.status {
				t.Fatalf("status = %d, want %d\n%s", r.status, tc.want.status, r.body)
			}
			for h, want := range tc.want.header {
				got, present := r.header[http.CanonicalHeaderKey(h)]
				switch want {
				case "*":
					if !present {
						t.Errorf("header %s missing", h)
					}
				case "-":
					if present {
						t.Errorf("header %s = %v, want none", h, got)
					}
				default:
					want = strings.ReplaceAll(want, "{base}", s.URL)
					if r.header.Get(h) != want {
						t.Errorf("header %s = %q, want %q", h, r.header.Get(h), want)
					}
				}
			}
			if tc.want.empty && len(r.body) > 0 {
				t.Errorf("body = %s, want none", r.body)
			}
			for path, want := range tc.want.body {
				got := r.get(path)
				if want == "-" {
					if got != nil {
						t.Errorf("%s = %v, want absent", path, got)
					}
					continue
				}
				if str(got) != want {
					t.Errorf("%s = %s, want %s", path, str(got), want)
				}
			}
			if tc.check != nil {
				tc.check(t, s, r)
			}
		})
	}
}

func capResourceOf(t *testing.T, r *resp, typ string) any {
	t.Helper()
	for _, res := range r.get("rest.0.resource").([]any) {
		if get(res, "type") == typ {
			return res
		}
	}
	t.Fatalf("CapabilityStatement lacks %s", typ)
	return nil
}

func hasSearchParam(res any, name, typ string) bool {
	params, _ := get(res, "searchParam").([]any)
	for _, p := range params {
		if get(p, "name") == name && (typ == "" || get(p, "type") == typ) {
			return true
		}
	}
	return false
}

// TestLocationIsReadable follows Location and ETag like a client would.
func TestLocationIsReadable(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	created := c.do("POST", "/Patient", patientJSON("", "M1"))
	loc := created.header.Get("Location")
	if !strings.HasPrefix(loc, c.s.URL+"/") {
		t.Fatalf("Location %q is not under %s", loc, c.s.URL)
	}
	read := c.do("GET", loc, "")
	if read.status != 200 || read.get("id") != created.get("id") {
		t.Fatalf("GET Location: %d %s", read.status, read.body)
	}
	updated := c.do("PUT", "/Patient/"+str(created.get("id")), patientJSON(str(created.get("id")), "M1"), "If-Match", created.header.Get("ETag"))
	if updated.status != 200 || updated.header.Get("ETag") != `W/"2"` {
		t.Fatalf("PUT with If-Match from ETag: %d %s", updated.status, updated.body)
	}
}

// With validation off, a resource the validating parser would refuse is
// stored as sent (the one thing WithValidation(false) changes), and with it
// on, the same write is refused and nothing is stored. The answer is read
// with net/http, as the test client refuses invalid R4.
func TestWithValidationOff(t *testing.T) {
	const body = `{"resourceType":"Patient","nickname":"x"}`
	for _, on := range []bool{true, false} {
		s, _ := setup(t, WithValidation(on))
		r, err := http.Post(s.URL+"/Patient", "application/fhir+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r.Body)
		r.Body.Close()
		want := map[bool]int{true: 422, false: 201}[on]
		if r.StatusCode != want {
			t.Fatalf("validation %v: status = %d, want %d\n%s", on, r.StatusCode, want, got)
		}
		wantCount := map[bool]int{true: 0, false: 1}[on]
		if n := s.Count("Patient"); n != wantCount {
			t.Errorf("validation %v: Count = %d, want %d", on, n, wantCount)
		}
		if !on && !strings.Contains(string(got), `"nickname":"x"`) {
			t.Errorf("validation off: the stored resource lost the element: %s", got)
		}
	}
}
