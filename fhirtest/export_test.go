package fhirtest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// manualClock is a server clock that tests move by hand.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// xclient speaks the Bulk Data protocol to a test server. Unlike tclient
// it does not require bodies to be FHIR resources: manifests and NDJSON
// are not.
type xclient struct {
	t     testing.TB
	s     *Server
	c     *http.Client
	clock *manualClock
}

type xresp struct {
	status       int
	header       http.Header
	body         []byte
	err          error // reading the body
	uncompressed bool
}

// exportSetup starts a server on a manual clock at t0 with the export
// fixtures: patients p1 and p2, practitioner dr, medication m1,
// observations o1 (p1, vital signs), o2 (p2) and o3 (p1, survey), and
// group g1 with member p1.
func exportSetup(t testing.TB) (*Server, *xclient) {
	t.Helper()
	clock := &manualClock{t: t0}
	s := NewServer(WithClock(clock.now))
	t.Cleanup(s.Close)
	for _, r := range []string{
		patientJSON("p1", "MRN-1"),
		patientJSON("p2", "MRN-2"),
		`{"resourceType":"Practitioner","id":"dr","active":true}`,
		`{"resourceType":"Medication","id":"m1","status":"active"}`,
		observationJSON("o1", "", "Patient/p1", "final", ""),
		observationJSON("o2", "", "Patient/p2", "final", ""),
		surveyJSON("o3", "Patient/p1"),
		`{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}}]}`,
	} {
		mustAdd(t, s, r)
	}
	return s, &xclient{t: t, s: s, c: s.Client(), clock: clock}
}

func surveyJSON(id, subject string) string {
	return strings.Replace(observationJSON(id, "", subject, "final", ""), `"code":"vital-signs"`, `"code":"survey"`, 1)
}

// do sends a request to an absolute URL or a path under the FHIR base.
func (x *xclient) do(method, u string, hdr ...string) *xresp {
	x.t.Helper()
	if !strings.HasPrefix(u, "http") {
		u = x.s.URL + u
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		x.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := x.c.Do(req)
	if err != nil {
		x.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return &xresp{status: res.StatusCode, header: res.Header, body: b, err: err, uncompressed: res.Uncompressed}
}

// outcome checks that r's body is a valid OperationOutcome and returns
// its first issue code.
func (r *xresp) outcome(t testing.TB) string {
	t.Helper()
	mustValidR4(t, r.body)
	var oo struct {
		ResourceType string
		Issue        []struct{ Code string }
	}
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", r.body)
	}
	return oo.Issue[0].Code
}

var asyncHdr = []string{"Accept", "application/fhir+json", "Prefer", "respond-async"}

// kickoff starts an export and returns its status URL.
func (x *xclient) kickoff(path string, hdr ...string) string {
	x.t.Helper()
	r := x.do("GET", path, append(append([]string(nil), asyncHdr...), hdr...)...)
	if r.status != http.StatusAccepted {
		x.t.Fatalf("kick-off %s: status %d, want 202: %s", path, r.status, r.body)
	}
	r.outcome(x.t)
	loc := r.header.Get("Content-Location")
	if !strings.HasPrefix(loc, x.s.URL+"/") {
		x.t.Fatalf("Content-Location %q is not an absolute URL under %s", loc, x.s.URL)
	}
	return loc
}

type manifest struct {
	TransactionTime     string          `json:"transactionTime"`
	Request             string          `json:"request"`
	RequiresAccessToken *bool           `json:"requiresAccessToken"`
	Output              []manifestFile  `json:"output"`
	Deleted             *[]manifestFile `json:"deleted"`
	Error               []manifestFile  `json:"error"`
}

// manifest polls statusURL, expecting the complete status.
func (x *xclient) manifest(statusURL string) manifest {
	x.t.Helper()
	r := x.do("GET", statusURL, "Accept", "application/json")
	if r.status != http.StatusOK {
		x.t.Fatalf("status poll: %d, want 200: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		x.t.Errorf("manifest Content-Type %q", ct)
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		x.t.Fatalf("manifest: %v\n%s", err, r.body)
	}
	if m.TransactionTime == "" || m.Request == "" || m.RequiresAccessToken == nil || m.Output == nil || m.Error == nil {
		x.t.Fatalf("manifest misses a required field: %s", r.body)
	}
	return m
}

// lines downloads a file, checks its Content-Type, that the count matches
// and that every line is valid R4 of the file's type, and returns the
// lines' "Type/id"s (for Bundles of deleted files, the DELETE urls).
func (x *xclient) lines(f manifestFile) []string {
	x.t.Helper()
	r := x.do("GET", f.URL, "Accept", "application/fhir+ndjson")
	if r.status != http.StatusOK || r.err != nil {
		x.t.Fatalf("GET %s: %d %v", f.URL, r.status, r.err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/fhir+ndjson" {
		x.t.Errorf("file Content-Type %q", ct)
	}
	var out []string
	for _, line := range strings.SplitAfter(string(r.body), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			x.t.Fatalf("%s: last line does not end in a newline", f.URL)
		}
		mustValidR4(x.t, []byte(line))
		var res struct {
			ResourceType, ID string
			Entry            []struct{ Request struct{ Method, URL string } }
		}
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			x.t.Fatal(err)
		}
		if res.ResourceType != f.Type {
			x.t.Errorf("%s: a %s in a file of %s", f.URL, res.ResourceType, f.Type)
		}
		switch res.ResourceType {
		case "Bundle":
			for _, e := range res.Entry {
				if e.Request.Method != "DELETE" {
					x.t.Errorf("deleted Bundle entry method %q", e.Request.Method)
				}
				out = append(out, e.Request.URL)
			}
		default:
			out = append(out, res.ResourceType+"/"+res.ID)
		}
	}
	if len(strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")) != f.Count && !(f.Count == 0 && len(r.body) == 0) {
		x.t.Errorf("%s: manifest count %d, file has %q", f.URL, f.Count, r.body)
	}
	return out
}

// contents downloads every file of a manifest array and returns the
// resources by type.
func (x *xclient) contents(files []manifestFile) map[string][]string {
	x.t.Helper()
	out := map[string][]string{}
	for _, f := range files {
		out[f.Type] = append(out[f.Type], x.lines(f)...)
	}
	return out
}

func TestExportSelection(t *testing.T) {
	t.Parallel()
	all := map[string][]string{
		"Group":        {"Group/g1"},
		"Medication":   {"Medication/m1"},
		"Observation":  {"Observation/o1", "Observation/o2", "Observation/o3"},
		"Patient":      {"Patient/p1", "Patient/p2"},
		"Practitioner": {"Practitioner/dr"},
	}
	tests := []struct {
		name string
		path string
		want map[string][]string
	}{
		{"system", "/$export", all},
		{"system ndjson", "/$export?_outputFormat=ndjson", all},
		{"system application/ndjson", "/$export?_outputFormat=application%2Fndjson", all},
		{"system application/fhir+ndjson", "/$export?_outputFormat=application%2Ffhir%2Bndjson", all},
		{"patient: compartment only", "/Patient/$export", map[string][]string{
			"Group":       {"Group/g1"},
			"Observation": {"Observation/o1", "Observation/o2", "Observation/o3"},
			"Patient":     {"Patient/p1", "Patient/p2"},
		}},
		{"group: members' compartments", "/Group/g1/$export", map[string][]string{
			"Group":       {"Group/g1"},
			"Observation": {"Observation/o1", "Observation/o3"},
			"Patient":     {"Patient/p1"},
		}},
		{"system _type", "/$export?_type=Patient,Medication", map[string][]string{
			"Medication": {"Medication/m1"},
			"Patient":    {"Patient/p1", "Patient/p2"},
		}},
		{"patient _type repeated", "/Patient/$export?_type=Observation&_type=Patient", map[string][]string{
			"Observation": {"Observation/o1", "Observation/o2", "Observation/o3"},
			"Patient":     {"Patient/p1", "Patient/p2"},
		}},
		{"group _type", "/Group/g1/$export?_type=Observation", map[string][]string{
			"Observation": {"Observation/o1", "Observation/o3"},
		}},
		{"_typeFilter", "/$export?_type=Observation,Patient&_typeFilter=" + url.QueryEscape("Observation?category=survey"), map[string][]string{
			"Observation": {"Observation/o3"},
			"Patient":     {"Patient/p1", "Patient/p2"},
		}},
		{"_typeFilter queries are ORed", "/$export?_type=Observation&_typeFilter=" +
			url.QueryEscape("Observation?category=survey") + "," + url.QueryEscape("Observation?subject=Patient/p2"), map[string][]string{
			"Observation": {"Observation/o2", "Observation/o3"},
		}},
		{"_typeFilter repeated, with AND inside", "/Patient/$export?_type=Observation" +
			"&_typeFilter=" + url.QueryEscape("Observation?category=vital-signs&patient=p2") +
			"&_typeFilter=" + url.QueryEscape("Observation?_id=o3"), map[string][]string{
			"Observation": {"Observation/o2", "Observation/o3"},
		}},
		{"_typeFilter with a comma inside a value", "/$export?_type=Observation&_typeFilter=" + url.QueryEscape("Observation?_id=o1,o2"), map[string][]string{
			"Observation": {"Observation/o1", "Observation/o2"},
		}},
		{"nothing matches", "/$export?_type=Condition", map[string][]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, x := exportSetup(t)
			status := x.kickoff(tt.path)
			m := x.manifest(status)
			if m.TransactionTime != t0Instant {
				t.Errorf("transactionTime %s, want %s", m.TransactionTime, t0Instant)
			}
			if m.Request != x.s.URL+tt.path {
				t.Errorf("request %q, want %q", m.Request, x.s.URL+tt.path)
			}
			if *m.RequiresAccessToken || m.Deleted != nil || len(m.Error) != 0 {
				t.Errorf("requiresAccessToken %v, deleted %v, error %v", *m.RequiresAccessToken, m.Deleted, m.Error)
			}
			got := x.contents(m.Output)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("exported %v\nwant %v", got, tt.want)
			}
			types := make([]string, 0, len(m.Output))
			for _, f := range m.Output {
				types = append(types, f.Type)
			}
			if !sort.StringsAreSorted(types) {
				t.Errorf("output not sorted by type: %v", types)
			}
		})
	}
}

func TestExportKickoffErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		path   string
		hdr    []string
		method string
		status int
		code   string
	}{
		{"no Prefer: respond-async", "/$export", []string{"Accept", "application/fhir+json"}, "", 400, "required"},
		{"Accept XML", "/$export", []string{"Accept", "application/fhir+xml", "Prefer", "respond-async"}, "", 406, "not-supported"},
		{"POST kick-off", "/$export", asyncHdr, "POST", 405, "not-supported"},
		{"_outputFormat JSON", "/$export?_outputFormat=application%2Ffhir%2Bjson", asyncHdr, "", 400, "not-supported"},
		{"_since a date", "/$export?_since=2024-01-01", asyncHdr, "", 400, "value"},
		{"_since without zone", "/$export?_since=2024-01-01T00:00:00", asyncHdr, "", 400, "value"},
		{"_type unknown", "/$export?_type=Patient,Nonsense", asyncHdr, "", 400, "not-supported"},
		{"_type outside the compartment", "/Patient/$export?_type=Practitioner", asyncHdr, "", 400, "not-supported"},
		{"_elements", "/$export?_elements=id", asyncHdr, "", 400, "not-supported"},
		{"includeAssociatedData", "/$export?includeAssociatedData=LatestProvenanceResources", asyncHdr, "", 400, "not-supported"},
		{"patient on GET", "/Patient/$export?patient=Patient/p1", asyncHdr, "", 400, "not-supported"},
		{"_typeFilter unknown parameter", "/$export?_typeFilter=" + url.QueryEscape("Observation?nonsense=1"), asyncHdr, "", 400, "not-supported"},
		{"_typeFilter result parameter", "/$export?_typeFilter=" + url.QueryEscape("Observation?_sort=date"), asyncHdr, "", 400, "not-supported"},
		{"_typeFilter without type", "/$export?_typeFilter=" + url.QueryEscape("category=survey"), asyncHdr, "", 400, "not-supported"},
		{"unknown Group", "/Group/nope/$export", asyncHdr, "", 404, "not-found"},
		{"Group is not a group", "/Group/p1/$export", asyncHdr, "", 404, "not-found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, x := exportSetup(t)
			method := tt.method
			if method == "" {
				method = "GET"
			}
			r := x.do(method, tt.path, tt.hdr...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if code := r.outcome(t); code != tt.code {
				t.Errorf("issue code %q, want %q", code, tt.code)
			}
			if n := len(s.ExportJobs()); n != 0 {
				t.Errorf("%d jobs started", n)
			}
		})
	}
}

func TestExportLenient(t *testing.T) {
	t.Parallel()
	_, x := exportSetup(t)
	path := "/Patient/$export?_type=Patient,Nonsense,Practitioner&_elements=id&_typeFilter=" + url.QueryEscape("Patient?nonsense=1")
	status := x.kickoff(path, "Prefer", "respond-async, handling=lenient")
	m := x.manifest(status)
	if got := x.contents(m.Output); !reflect.DeepEqual(got, map[string][]string{"Patient": {"Patient/p1", "Patient/p2"}}) {
		t.Errorf("exported %v", got)
	}
	if len(m.Error) != 1 || m.Error[0].Type != "OperationOutcome" || m.Error[0].Count != 4 {
		t.Fatalf("error files %+v, want one with 4 OperationOutcomes", m.Error)
	}
	r := x.do("GET", m.Error[0].URL)
	for _, want := range []string{"_elements", "Nonsense", "Practitioner", "_typeFilter query 1 on Patient (parameters nonsense)"} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("error file does not mention %s:\n%s", want, r.body)
		}
	}
	x.lines(m.Error[0])
}

func TestExportPolling(t *testing.T) {
	t.Parallel()
	t.Run("by polls", func(t *testing.T) {
		t.Parallel()
		s, x := exportSetup(t)
		s.SetExportDelay(2, 0)
		status := x.kickoff("/$export?_type=Patient")
		for i, want := range []string{"0% complete", "50% complete"} {
			r := x.do("GET", status)
			if r.status != http.StatusAccepted || r.header.Get("X-Progress") != want || r.header.Get("Retry-After") != "1" || len(r.body) != 0 {
				t.Fatalf("poll %d: %d X-Progress %q Retry-After %q, want 202 %q 1", i+1, r.status, r.header.Get("X-Progress"), r.header.Get("Retry-After"), want)
			}
			// Done once it has answered two 202s: the next poll gets the
			// manifest.
			wantState := map[bool]ExportState{true: ExportInProgress, false: ExportComplete}[i == 0]
			if j := s.ExportJobs()[0]; j.State != wantState || j.Polls != i+1 {
				t.Fatalf("job after poll %d: %+v", i+1, j)
			}
		}
		m := x.manifest(status)
		if len(m.Output) != 1 || m.Output[0].Count != 2 {
			t.Errorf("output %+v", m.Output)
		}
		j := s.ExportJobs()[0]
		want := ExportJob{
			ID: "1", Level: ExportSystem, Request: x.s.URL + "/$export?_type=Patient", State: ExportComplete,
			TransactionTime: t0.Truncate(time.Millisecond), Types: []string{"Patient"}, Polls: 3,
			Files: []ExportFile{{Kind: ExportOutput, Type: "Patient", Name: "Patient-1.ndjson", Count: 2}},
		}
		if !reflect.DeepEqual(j, want) {
			t.Errorf("job %+v\nwant %+v", j, want)
		}
	})
	t.Run("by time", func(t *testing.T) {
		t.Parallel()
		s, x := exportSetup(t)
		s.SetExportDelay(0, 10*time.Second)
		status := x.kickoff("/$export")
		x.clock.advance(4 * time.Second)
		r := x.do("GET", status)
		if r.status != http.StatusAccepted || r.header.Get("X-Progress") != "40% complete" || r.header.Get("Retry-After") != "6" {
			t.Fatalf("poll: %d X-Progress %q Retry-After %q", r.status, r.header.Get("X-Progress"), r.header.Get("Retry-After"))
		}
		if st := s.ExportJobs()[0].State; st != ExportInProgress {
			t.Fatalf("state %s", st)
		}
		x.clock.advance(6 * time.Second)
		if st := s.ExportJobs()[0].State; st != ExportComplete {
			t.Fatalf("state after the delay: %s", st)
		}
		x.manifest(status)
	})
	t.Run("unknown job", func(t *testing.T) {
		t.Parallel()
		_, x := exportSetup(t)
		for _, p := range []string{"/_export/9", "/_export/", "/_export/1/1/Patient-1.ndjson"} {
			if r := x.do("GET", p); r.status != http.StatusNotFound || r.outcome(t) != "not-found" {
				t.Errorf("GET %s: %d", p, r.status)
			}
		}
	})
}

func TestExportFileSplit(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	for _, id := range []string{"o4", "o5"} {
		mustAdd(t, s, observationJSON(id, "", "Patient/p2", "final", ""))
	}
	s.SetExportFileLines(2)
	m := x.manifest(x.kickoff("/$export?_type=Observation,Patient"))
	var got []string
	for _, f := range m.Output {
		got = append(got, f.Type+":"+strings.TrimPrefix(f.URL, x.s.URL+"/_export/1/1/")+":"+str(float64(f.Count)))
	}
	want := []string{"Observation:Observation-1.ndjson:2", "Observation:Observation-2.ndjson:2", "Observation:Observation-3.ndjson:1", "Patient:Patient-1.ndjson:2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("files %v\nwant %v", got, want)
	}
	all := x.contents(m.Output)
	if want := []string{"Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4", "Observation/o5"}; !reflect.DeepEqual(all["Observation"], want) {
		t.Errorf("observations %v", all["Observation"])
	}
}

func TestExportGzip(t *testing.T) {
	t.Parallel()
	_, x := exportSetup(t)
	m := x.manifest(x.kickoff("/$export?_type=Observation"))
	u := m.Output[0].URL
	plain := x.do("GET", u, "Accept-Encoding", "identity")
	if plain.header.Get("Content-Encoding") != "" || bytes.Count(plain.body, []byte("\n")) != 3 {
		t.Fatalf("identity: %v\n%s", plain.header, plain.body)
	}
	// net/http's transport asks for gzip itself and decompresses.
	auto := x.do("GET", u)
	if !auto.uncompressed || !bytes.Equal(auto.body, plain.body) {
		t.Errorf("transparent gzip: uncompressed %v, body equal %v", auto.uncompressed, bytes.Equal(auto.body, plain.body))
	}
	explicit := x.do("GET", u, "Accept-Encoding", "gzip")
	if explicit.header.Get("Content-Encoding") != "gzip" || explicit.header.Get("Content-Type") != "application/fhir+ndjson" {
		t.Fatalf("explicit gzip headers: %v", explicit.header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(explicit.body))
	if err != nil {
		t.Fatal(err)
	}
	unz, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unz, plain.body) {
		t.Errorf("gunzipped body differs (%v)", err)
	}
}

func TestExportCancel(t *testing.T) {
	t.Parallel()
	for _, delay := range []int{0, 5} {
		s, x := exportSetup(t)
		s.SetExportDelay(delay, 0)
		status := x.kickoff("/$export")
		x.do("GET", status)
		var fileURL string
		if delay == 0 {
			fileURL = x.manifest(status).Output[0].URL
		}
		r := x.do("DELETE", status)
		if r.status != http.StatusAccepted {
			t.Fatalf("delay %d: DELETE %d: %s", delay, r.status, r.body)
		}
		r.outcome(t)
		if r := x.do("GET", status); r.status != http.StatusNotFound || r.outcome(t) != "not-found" {
			t.Errorf("delay %d: poll after DELETE: %d", delay, r.status)
		}
		if r := x.do("DELETE", status); r.status != http.StatusNotFound {
			t.Errorf("delay %d: second DELETE: %d", delay, r.status)
		}
		if fileURL != "" {
			if r := x.do("GET", fileURL); r.status != http.StatusNotFound {
				t.Errorf("file after DELETE: %d", r.status)
			}
		}
		if st := s.ExportJobs()[0].State; st != ExportCancelled {
			t.Errorf("delay %d: state %s", delay, st)
		}
	}
}

func TestExportSince(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	c := &tclient{t: t, s: s, c: s.Client()}
	first := x.manifest(x.kickoff("/Patient/$export"))
	// Written at the same clock reading as the snapshot: still after it.
	if r := c.do("PUT", "/Observation/o1", observationJSON("o1", "", "Patient/p1", "amended", "")); r.status != 200 {
		t.Fatalf("update: %d", r.status)
	}
	x.clock.advance(time.Minute)
	if r := c.do("DELETE", "/Observation/o2", ""); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	mustAdd(t, s, observationJSON("o4", "", "Patient/p2", "final", ""))
	mustAdd(t, s, `{"resourceType":"Medication","id":"m2","status":"active"}`)
	// Created and deleted since: the client may never have seen it, but a
	// deleted entry does no harm.
	mustAdd(t, s, observationJSON("o5", "", "Patient/p1", "final", ""))
	if r := c.do("DELETE", "/Observation/o5", ""); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}

	since := "/Patient/$export?_since=" + url.QueryEscape(first.TransactionTime)
	status := x.kickoff(since)
	// After the kick-off: not in this export.
	mustAdd(t, s, observationJSON("o6", "", "Patient/p1", "final", ""))
	m := x.manifest(status)
	if got, want := x.contents(m.Output), map[string][]string{"Observation": {"Observation/o1", "Observation/o4"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("output %v, want %v", got, want)
	}
	if m.Deleted == nil {
		t.Fatal("no deleted array with _since")
	}
	if got, want := x.contents(*m.Deleted), map[string][]string{"Bundle": {"Observation/o2", "Observation/o5"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("deleted %v, want %v", got, want)
	}
	if j := s.ExportJobs()[1]; !j.Since.Equal(t0.Truncate(time.Millisecond)) {
		t.Errorf("job since %v", j.Since)
	}

	// A group export _since: only the member's compartment, deletions
	// included.
	m = x.manifest(x.kickoff("/Group/g1/$export?_since=" + url.QueryEscape(first.TransactionTime)))
	if got, want := x.contents(m.Output), map[string][]string{"Observation": {"Observation/o1", "Observation/o6"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("group output %v, want %v", got, want)
	}
	if got, want := x.contents(*m.Deleted), map[string][]string{"Bundle": {"Observation/o5"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("group deleted %v, want %v", got, want)
	}
}

func TestExportPollTooFast(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	s.SetExportDelay(2, 0)
	s.SetExportPollInterval(30 * time.Second)
	status := x.kickoff("/$export")
	r := x.do("GET", status)
	if r.status != http.StatusAccepted || r.header.Get("Retry-After") != "30" {
		t.Fatalf("first poll: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	x.clock.advance(10 * time.Second)
	r = x.do("GET", status)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "20" || r.outcome(t) != "throttled" {
		t.Fatalf("early poll: %d Retry-After %q: %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if j := s.ExportJobs()[0]; j.Polls != 1 {
		t.Errorf("a 429 counted as a poll: %d", j.Polls)
	}
	x.clock.advance(20 * time.Second)
	if r := x.do("GET", status); r.status != http.StatusAccepted {
		t.Fatalf("poll after waiting: %d", r.status)
	}
	var faults []Fault
	for _, e := range s.Requests() {
		if e.Fault != FaultNone {
			faults = append(faults, e.Fault)
		}
	}
	if !reflect.DeepEqual(faults, []Fault{FaultExportPollTooFast}) {
		t.Errorf("logged faults %v", faults)
	}
	s.ClearFaults()
	if r := x.do("GET", status); r.status != http.StatusOK {
		t.Errorf("poll right after ClearFaults: %d", r.status)
	}
}

func TestExportLinkExpiry(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	s.SetExportLinkExpiry(time.Minute)
	status := x.kickoff("/$export?_type=Patient")
	r := x.do("GET", status)
	if want := t0.Add(time.Minute).Format(http.TimeFormat); r.header.Get("Expires") != want {
		t.Errorf("Expires %q, want %q", r.header.Get("Expires"), want)
	}
	old := x.manifest(status).Output[0].URL
	x.clock.advance(59 * time.Second)
	x.lines(manifestFile{Type: "Patient", URL: old, Count: 2})
	x.clock.advance(time.Second)
	r = x.do("GET", old)
	if r.status != http.StatusGone || r.outcome(t) != "expired" {
		t.Fatalf("expired link: %d %s", r.status, r.body)
	}
	fresh := x.manifest(status).Output[0].URL
	if fresh == old {
		t.Fatal("the manifest issued the expired link again")
	}
	x.lines(manifestFile{Type: "Patient", URL: fresh, Count: 2})
	if r := x.do("GET", old); r.status != http.StatusGone {
		t.Errorf("old link after a fresh manifest: %d", r.status)
	}
	if got := s.Requests()[len(s.Requests())-1].Fault; got != FaultExportLinkExpired {
		t.Errorf("logged fault %q", got)
	}
}

func TestExportFailure(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	s.FailNextExport(1)
	failed := x.kickoff("/$export")
	ok := x.kickoff("/$export")
	for i := 0; i < 2; i++ {
		r := x.do("GET", failed)
		if r.status != http.StatusInternalServerError || r.outcome(t) != "exception" {
			t.Fatalf("failed job poll: %d %s", r.status, r.body)
		}
	}
	x.manifest(ok)
	jobs := s.ExportJobs()
	if jobs[0].State != ExportFailed || jobs[1].State != ExportComplete {
		t.Errorf("states %s, %s", jobs[0].State, jobs[1].State)
	}
	if r := x.do("DELETE", failed); r.status != http.StatusAccepted {
		t.Errorf("DELETE of a failed job: %d", r.status)
	}
}

func TestExportTruncated(t *testing.T) {
	t.Parallel()
	for _, enc := range []string{"identity", "transparent gzip"} {
		t.Run(enc, func(t *testing.T) {
			t.Parallel()
			s, x := exportSetup(t)
			s.TruncateExportFiles(true)
			m := x.manifest(x.kickoff("/$export?_type=Observation"))
			u := m.Output[0].URL
			var hdr []string
			if enc == "identity" {
				hdr = []string{"Accept-Encoding", "identity"}
			}
			if r := x.do("HEAD", u, hdr...); r.status != http.StatusOK || r.err != nil {
				t.Fatalf("HEAD: %d %v", r.status, r.err)
			}
			cut := x.do("GET", u, hdr...)
			if cut.status != http.StatusOK || !errors.Is(cut.err, io.ErrUnexpectedEOF) {
				t.Fatalf("truncated download: %d, err %v", cut.status, cut.err)
			}
			if len(cut.body) == 0 || cut.body[len(cut.body)-1] == '\n' || bytes.Count(cut.body, []byte("\n")) != 1 {
				t.Fatalf("not cut in the middle line: %q", cut.body)
			}
			// Resume from where the cut left off.
			rest := x.do("GET", u, "Range", "bytes="+str(float64(len(cut.body)))+"-")
			if rest.status != http.StatusPartialContent || rest.err != nil {
				t.Fatalf("resume: %d %v", rest.status, rest.err)
			}
			full := x.do("GET", u, "Accept-Encoding", "identity")
			if full.err != nil || !bytes.Equal(append(cut.body, rest.body...), full.body) {
				t.Errorf("cut + resumed != whole file (err %v)", full.err)
			}
			if r := x.do("GET", u); r.err != nil {
				t.Errorf("a second full download was cut too: %v", r.err)
			}
			var faults []Fault
			for _, e := range s.Requests() {
				if e.Fault != FaultNone {
					faults = append(faults, e.Fault)
				}
			}
			if !reflect.DeepEqual(faults, []Fault{FaultExportTruncated}) {
				t.Errorf("faults %v", faults)
			}
			if f := s.ExportJobs()[0].Files[0]; f.Requests != 5 {
				t.Errorf("file requests %d, want 5", f.Requests)
			}
		})
	}
}

func TestExportRange(t *testing.T) {
	t.Parallel()
	_, x := exportSetup(t)
	u := x.manifest(x.kickoff("/$export?_type=Patient")).Output[0].URL
	full := x.do("GET", u).body
	n := len(full)
	tests := []struct {
		rng    string
		status int
		body   []byte
	}{
		{"bytes=0-9", 206, full[:10]},
		{"bytes=10-", 206, full[10:]},
		{"bytes=-5", 206, full[n-5:]},
		{"bytes=5-100000", 206, full[5:]},
		{"bytes=100000-", 416, nil},
		{"bytes=0-1,3-4", 416, nil},
	}
	for _, tt := range tests {
		r := x.do("GET", u, "Range", tt.rng)
		if r.status != tt.status || tt.body != nil && !bytes.Equal(r.body, tt.body) {
			t.Errorf("Range %s: %d %q", tt.rng, r.status, r.body)
		}
	}
}

func TestExportRequiresAccessToken(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	s.SetExportRequiresAccessToken(true)
	if m := x.manifest(x.kickoff("/$export")); !*m.RequiresAccessToken {
		t.Error("requiresAccessToken false")
	}
}

func TestExportReset(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	status := x.kickoff("/$export")
	s.Reset()
	if len(s.ExportJobs()) != 0 {
		t.Error("Reset kept the jobs")
	}
	if r := x.do("GET", status); r.status != http.StatusNotFound {
		t.Errorf("poll after Reset: %d", r.status)
	}
}

func TestExportCapabilityStatement(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	r := c.do("GET", "/metadata", "")
	if got := str(r.get("instantiates.0")); got != bulkDataCapStmt {
		t.Errorf("instantiates %s", got)
	}
	if got := str(r.get("rest.0.operation.0.definition")); got != "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export" {
		t.Errorf("system operation %s", got)
	}
	defs := map[string]string{}
	resources, _ := r.get("rest.0.resource").([]any)
	for _, res := range resources {
		if d := get(res, "operation.0.definition"); d != nil {
			defs[str(get(res, "type"))] = str(get(res, "operation.0.name")) + " " + str(d)
		}
	}
	want := map[string]string{
		"Patient": "export http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
		"Group":   "export http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
	}
	if !reflect.DeepEqual(defs, want) {
		t.Errorf("resource operations %v", defs)
	}
}

// Several clients export and poll at once; the race detector checks the
// locking.
func TestExportConcurrent(t *testing.T) {
	t.Parallel()
	s, x := exportSetup(t)
	s.SetExportDelay(1, 0)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := x.kickoff("/Patient/$export")
			x.do("GET", status)
			m := x.manifest(status)
			x.contents(m.Output)
			_ = s.ExportJobs()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustAdd(t, s, observationJSON("", "", "Patient/p1", "final", ""))
		}()
	}
	wg.Wait()
	if n := len(s.ExportJobs()); n != 4 {
		t.Errorf("%d jobs", n)
	}
}
