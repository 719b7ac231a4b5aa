package fhirtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// t0 is the fixed clock of most tests.
var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

const (
	t0Instant      = "2024-05-06T07:08:09.123Z"
	t0LastModified = "Mon, 06 May 2024 07:08:09 GMT"
)

func fixedClock() time.Time { return t0 }

// tclient sends requests to a test server and checks every body it gets
// back is valid R4 JSON.
type tclient struct {
	t testing.TB
	s *Server
	c *http.Client
}

// setup starts a server with a fixed clock (unless opts set another) and
// returns it with a client. The server is closed when the test ends.
func setup(t testing.TB, opts ...Option) (*Server, *tclient) {
	t.Helper()
	s := NewServer(append([]Option{WithClock(fixedClock)}, opts...)...)
	t.Cleanup(s.Close)
	return s, &tclient{t: t, s: s, c: s.Client()}
}

type resp struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

var r4Checker *jsonformat.Unmarshaller

func init() {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		panic(err)
	}
	r4Checker = u
}

// mustValidR4 fails the test unless body is a valid R4 resource.
func mustValidR4(t testing.TB, body []byte) {
	t.Helper()
	_, outcome, err := r4Checker.UnmarshalWithOutcome(body)
	if err != nil {
		t.Fatalf("response is not valid R4: %v\n%s", err, body)
	}
	if outcome != nil && outcome.R4Outcome != nil && len(outcome.R4Outcome.GetIssue()) > 0 {
		t.Fatalf("response has R4 issues: %v\n%s", outcome.R4Outcome.GetIssue(), body)
	}
}

// do sends a request; path is relative to the server URL (the FHIR base)
// unless it is absolute ("http...") or starts with "root:" (a path from the
// host root). hdr holds header names and values.
func (c *tclient) do(method, path, body string, hdr ...string) *resp {
	c.t.Helper()
	u := c.s.URL + path
	switch {
	case strings.HasPrefix(path, "http"):
		u = path
	case strings.HasPrefix(path, "root:"):
		u = strings.TrimSuffix(c.s.URL, c.s.BasePath()) + strings.TrimPrefix(path, "root:")
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	r := &resp{status: res.StatusCode, header: res.Header, body: b}
	if len(b) > 0 && method != http.MethodHead {
		if err := json.Unmarshal(b, &r.json); err != nil {
			c.t.Fatalf("%s %s: body is not a JSON object: %v\n%s", method, path, err, b)
		}
		mustValidR4(c.t, b)
	}
	return r
}

// get walks a decoded JSON value by dotted path; numeric segments index
// arrays. It returns nil when the path does not exist.
func get(v any, path string) any {
	if path == "" {
		return v
	}
	for _, seg := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func (r *resp) get(path string) any { return get(r.json, path) }

// str renders a JSON value for comparisons (numbers without a trailing .0).
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "<nil>"
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// entryIDs returns the resource ids of a Bundle's match entries.
func (r *resp) entryIDs() []string {
	var ids []string
	entries, _ := r.get("entry").([]any)
	for _, e := range entries {
		if get(e, "search.mode") == "outcome" {
			continue
		}
		ids = append(ids, str(get(e, "resource.id")))
	}
	return ids
}

func mustAdd(t testing.TB, s *Server, resource string) string {
	t.Helper()
	id, err := s.Add([]byte(resource))
	if err != nil {
		t.Fatalf("Add: %v\n%s", err, resource)
	}
	return id
}

// Fixtures.

func patientJSON(id, mrn string) string {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return `{"resourceType":"Patient",` + idPart + `"identifier":[{"system":"urn:mrn","value":` + strconv.Quote(mrn) + `}],"gender":"female","birthDate":"1980-02-03"}`
}

func observationJSON(id, ident, subject, status, effective string) string {
	var parts []string
	parts = append(parts, `"resourceType":"Observation"`)
	if id != "" {
		parts = append(parts, `"id":"`+id+`"`)
	}
	if ident != "" {
		parts = append(parts, `"identifier":[{"system":"urn:obs","value":`+strconv.Quote(ident)+`}]`)
	}
	parts = append(parts, `"status":"`+status+`"`,
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}]`,
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart Rate"}]}`,
		`"valueQuantity":{"value":72.50,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}`)
	if subject != "" {
		parts = append(parts, `"subject":{"reference":"`+subject+`"}`)
	}
	if effective != "" {
		parts = append(parts, `"effectiveDateTime":"`+effective+`"`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}
