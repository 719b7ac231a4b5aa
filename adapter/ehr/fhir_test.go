package ehr

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

const transactionResponse = `{"resourceType":"Bundle","type":"transaction-response","entry":[
 {"response":{"status":"201 Created","location":"Patient/p1/_history/1","etag":"W/\"1\"","lastModified":"2025-03-04T10:00:00Z"}},
 {"response":{"status":"200 OK","location":"https://ehr.example/api/FHIR/R4/MedicationRequest/m2/_history/3"}},
 {"response":{"status":"200","etag":"W/\"5\"","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"informational","diagnostics":"unchanged"}]}},
  "resource":{"resourceType":"Observation","id":"o4","meta":{"versionId":"4"}}},
 {"response":{"status":"garbage"}}
]}`

func TestTransaction(t *testing.T) {
	t.Parallel()
	e := setup(t, status(200, transactionResponse))
	bundle := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[]}`)
	results, err := e.c.Transaction(ctxT(t), bundle)
	if err != nil {
		t.Fatal(err)
	}
	want := []EntryResult{
		{Status: 201, Location: "Patient/p1/_history/1", ResourceType: "Patient", ID: "p1", Version: "1", ETag: `W/"1"`,
			LastModified: time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)},
		{Status: 200, Location: "https://ehr.example/api/FHIR/R4/MedicationRequest/m2/_history/3", ResourceType: "MedicationRequest", ID: "m2", Version: "3"},
		{Status: 200, ResourceType: "Observation", ID: "o4", Version: "5", ETag: `W/"5"`,
			Issues: []Issue{{Severity: "warning", Code: "informational", Diagnostics: "unchanged"}}},
		{Status: 0},
	}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results:\n%#v\nwant\n%#v", results, want)
	}
	r := e.ehr.requests()[0]
	if r.Method != http.MethodPost || r.Path != basePath || r.Body != string(bundle) {
		t.Errorf("request = %+v, want POST to the base", r)
	}
	// The results come from the entries' responses: no copy of the
	// resources is asked for.
	if got := r.Header.Get("Prefer"); got != "return=minimal" {
		t.Errorf("Prefer = %q, want return=minimal", got)
	}
}

func TestTransactionFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		code   int
		body   string
		check  func(error) bool
		reason string
	}{
		{"rejected", 400, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","expression":["Bundle.entry[2].resource"]}]}`,
			func(err error) bool {
				var rej *RejectedError
				return errors.As(err, &rej) && len(rej.Issues) == 1 && rej.ResourceType == "Bundle"
			}, "http_400"},
		{"not a bundle", 200, `<html>proxy</html>`, func(err error) bool { return errors.Is(err, ErrBadResponse) }, "bad_response"},
		{"wrong bundle type", 200, `{"resourceType":"Bundle","type":"searchset"}`, func(err error) bool { return errors.Is(err, ErrBadResponse) }, "bad_response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, status(tt.code, tt.body))
			_, err := e.c.Transaction(ctxT(t), []byte(`{}`))
			if !tt.check(err) || Reason(err) != tt.reason {
				t.Errorf("err = %v (reason %q)", err, Reason(err))
			}
		})
	}
}

func TestSearchPaging(t *testing.T) {
	t.Parallel()
	e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch r.URL.Query().Get("_page") {
		case "":
			// Page 1: a match, an included resource, an outcome; next is absolute.
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","link":[
			 {"relation":"self","url":"x"},{"relation":"next","url":"http://%s%s/Patient?_page=2&%s"}],
			 "entry":[
			  {"fullUrl":"http://ehr/Patient/p1","resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"3"}},"search":{"mode":"match"}},
			  {"resource":{"resourceType":"Organization","id":"org1"},"search":{"mode":"include"}},
			  {"resource":{"resourceType":"OperationOutcome","issue":[]}}]}`, r.Host, basePath, mrnQuery)
		case "2":
			// Page 2: a relative next link.
			io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"Patient?_page=3"}],
			 "entry":[{"resource":{"resourceType":"Patient","id":"p2"}}]}`)
		default:
			io.WriteString(w, `{"resourceType":"Bundle","type":"searchset"}`)
		}
	})
	entries, err := e.c.Search(ctxT(t), "Patient", mrnQuery)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.ID+"/"+en.Version+"/"+en.FullURL)
	}
	if want := []string{"p1/3/http://ehr/Patient/p1", "p2//"}; !reflect.DeepEqual(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
	if !strings.Contains(string(entries[0].Resource), `"id":"p1"`) {
		t.Errorf("resource = %s", entries[0].Resource)
	}
	reqs := e.ehr.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	if reqs[0].RawQuery != mrnQuery || reqs[1].RawQuery != "_page=2&"+mrnQuery || reqs[2].Path != basePath+"/Patient" {
		t.Errorf("requests = %+v", reqs)
	}
	noPHI(t, "logs", e.logs.String())
}

func TestSearchPageLimits(t *testing.T) {
	t.Parallel()
	page := func(next string) string {
		return `{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"` + next + `"}]}`
	}
	tests := []struct {
		name string
		next func(r *http.Request, n int) string
		want error
	}{
		{"endless", func(r *http.Request, n int) string { return fmt.Sprintf("Patient?_page=%d", n+1) }, ErrTooManyPages},
		{"loop", func(r *http.Request, n int) string { return "Patient?_page=1" }, ErrTooManyPages},
		{"foreign host", func(r *http.Request, n int) string { return "https://elsewhere.example/Patient?_page=2" }, ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
				io.WriteString(w, page(tt.next(r, n)))
			}, func(c *Config) { c.MaxSearchPages = 4 })
			_, err := e.c.Search(ctxT(t), "Patient", mrnQuery)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n := e.ehr.count(); n > 4 {
				t.Errorf("%d pages read, limit 4", n)
			}
			noPHI(t, "error", err.Error())
		})
	}
}

func TestSearchNotABundle(t *testing.T) {
	t.Parallel()
	e := setup(t, status(200, `{"resourceType":"Patient","id":"p1"}`))
	_, err := e.c.Search(ctxT(t), "Patient", mrnQuery)
	if !errors.Is(err, ErrBadResponse) || Classify(err) != ClassTransient {
		t.Fatalf("err = %v", err)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, n int)
		wantErr string
	}{
		{"R4", status(200, `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1"}`), ""},
		{"STU3", status(200, `{"resourceType":"CapabilityStatement","fhirVersion":"3.0.2"}`), "FHIR 3.0.2, not R4"},
		{"not FHIR", status(200, `<html></html>`), "not a CapabilityStatement"},
		{"down", status(503, ""), "ehr: GET CapabilityStatement transient failure: 503 after 1 attempt (http_503)"},
		{"slow", func(w http.ResponseWriter, r *http.Request, n int) { <-r.Context().Done() },
			"ehr: GET CapabilityStatement transient failure after 1 attempt (timeout)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, tt.handler)
			if tt.name == "slow" {
				e.c.pingTimeout = 50 * time.Millisecond
			}
			err := e.c.Ping(ctxT(t))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Ping: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Ping: %v, want %q", err, tt.wantErr)
			}
			if r := e.ehr.requests(); len(r) != 1 || r[0].Path != basePath+"/metadata" {
				t.Errorf("requests = %+v, want one GET metadata", r)
			}
		})
	}
}
