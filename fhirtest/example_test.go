package fhirtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

const patient = `{"resourceType":"Patient","identifier":[{"system":"https://clinic.example.org/fhir/sid/patient","value":"MRN-1"}]}`

// create sends a conditional create of the Patient, as an idempotent client
// would.
func create(srv *fhirtest.Server) (*http.Response, error) {
	req, err := http.NewRequest("POST", srv.URL+"/Patient", strings.NewReader(patient))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("If-None-Exist", "identifier="+url.QueryEscape("https://clinic.example.org/fhir/sid/patient|MRN-1"))
	resp, err := srv.Client().Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// A test starts a server, points the code under test at srv.URL and then
// checks what the server holds.
func Example() {
	srv := fhirtest.NewServer()
	defer srv.Close()

	for i := 0; i < 2; i++ {
		resp, err := create(srv)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(resp.Status, resp.Header.Get("ETag"), strings.TrimPrefix(resp.Header.Get("Location"), srv.URL))
	}
	fmt.Println("patients:", srv.Count("Patient"))
	fmt.Println("duplicate identifiers:", len(srv.DuplicateIdentifiers()))
	// Output:
	// 201 Created W/"1" /Patient/1/_history/1
	// 200 OK W/"1" /Patient/1/_history/1
	// patients: 1
	// duplicate identifiers: 0
}

// A lost response: the server commits the write and then drops the
// connection. The client sees an error although the Patient exists; a
// retry that is not conditional would create a second one.
func Example_lostResponse() {
	srv := fhirtest.NewServer()
	defer srv.Close()
	srv.LoseNext(1, fhirtest.LoseDrop)

	_, err := create(srv)
	fmt.Println("client saw an error:", err != nil)
	fmt.Println("patients:", srv.Count("Patient"))

	resp, err := create(srv) // the retry, conditional: finds the Patient
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retry:", resp.Status, "patients:", srv.Count("Patient"))

	for _, r := range srv.Requests() {
		fmt.Println(r.Method, r.Path, "client got", r.Status, "handler said", r.HandlerStatus, r.Fault)
	}
	// Output:
	// client saw an error: true
	// patients: 1
	// retry: 200 OK patients: 1
	// POST /fhir/R4/Patient client got 0 handler said 201 lose-drop
	// POST /fhir/R4/Patient client got 200 handler said 200
}

// Injected failures answer before processing; 429 and 503 carry
// Retry-After.
func ExampleServer_FailNext() {
	srv := fhirtest.NewServer()
	defer srv.Close()
	srv.FailNext(2, http.StatusServiceUnavailable)

	for i := 0; i < 3; i++ {
		resp, err := create(srv)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d Retry-After=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	fmt.Println("patients:", srv.Count("Patient"))
	// Output:
	// 503 Retry-After="1"
	// 503 Retry-After="1"
	// 201 Retry-After=""
	// patients: 1
}

// Set up data and faults before serving, then start the server, or serve
// srv.Handler() on a listener of your own.
func ExampleNewUnstartedServer() {
	srv := fhirtest.NewUnstartedServer(fhirtest.WithUpdateCreate(false))
	defer srv.Close()
	id, err := srv.Add([]byte(`{"resourceType":"Patient","id":"pat-1","gender":"female"}`))
	if err != nil {
		log.Fatal(err)
	}
	srv.Start()

	resp, err := srv.Client().Get(srv.URL + "/Patient/" + id)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("ETag"))
	fmt.Println(strings.Contains(string(body), `"gender":"female"`))
	// Output:
	// 200 OK W/"1"
	// true
}

// A client at steady state reuses its connection: over HTTP/2 (StartTLS)
// concurrent requests share one.
func ExampleServer_Connections() {
	srv := fhirtest.NewUnstartedServer()
	srv.StartTLS()
	defer srv.Close()

	for i := 0; i < 3; i++ {
		if _, err := create(srv); err != nil {
			log.Fatal(err)
		}
	}
	reqs := srv.Requests()
	fmt.Println("requests:", len(reqs), "over", reqs[len(reqs)-1].Proto)
	fmt.Println("connections:", srv.Connections())
	// Output:
	// requests: 3 over HTTP/2.0
	// connections: 1
}

// A Bulk Data export: kick off with Prefer: respond-async, poll the status
// URL until the manifest arrives, then download the NDJSON files it lists.
func ExampleServer_ExportJobs() {
	srv := fhirtest.NewUnstartedServer()
	defer srv.Close()
	for _, r := range []string{
		`{"resourceType":"Patient","id":"p1","gender":"female"}`,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"PHQ-9"},"subject":{"reference":"Patient/p1"}}`,
		`{"resourceType":"Practitioner","id":"dr"}`,
	} {
		if _, err := srv.Add([]byte(r)); err != nil {
			log.Fatal(err)
		}
	}
	srv.SetExportDelay(1, 0) // one "in progress" answer first
	srv.Start()

	get := func(u string, hdr ...string) (*http.Response, []byte) {
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			log.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			log.Fatal(err)
		}
		return resp, body
	}

	resp, _ := get(srv.URL+"/Patient/$export?_type=Patient,Observation",
		"Accept", "application/fhir+json", "Prefer", "respond-async")
	status := resp.Header.Get("Content-Location")
	fmt.Println("kick-off:", resp.StatusCode, strings.TrimPrefix(status, srv.URL))

	resp, _ = get(status)
	fmt.Println("poll:", resp.StatusCode, resp.Header.Get("X-Progress"))

	resp, body := get(status)
	var manifest struct {
		Output []struct {
			Type  string
			URL   string
			Count int
		}
	}
	if err := json.Unmarshal(body, &manifest); err != nil {
		log.Fatal(err)
	}
	fmt.Println("poll:", resp.StatusCode, resp.Header.Get("Content-Type"))
	for _, f := range manifest.Output {
		resp, ndjson := get(f.URL)
		fmt.Println(f.Type, "count", f.Count, resp.Header.Get("Content-Type"))
		for _, line := range strings.Split(strings.TrimSpace(string(ndjson)), "\n") {
			var r struct{ ResourceType, ID string }
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				log.Fatal(err)
			}
			fmt.Println(" ", r.ResourceType+"/"+r.ID)
		}
	}
	fmt.Println("job:", srv.ExportJobs()[0].State)
	// Output:
	// kick-off: 202 /_export/1
	// poll: 202 0% complete
	// poll: 200 application/json
	// Observation count 1 application/fhir+ndjson
	//   Observation/o1
	// Patient count 1 application/fhir+ndjson
	//   Patient/p1
	// job: complete
}

// An EHR's business rule: the server refuses, with 422 and an
// OperationOutcome, the writes a rule picks. No retry changes that answer;
// the client under test should set the resource aside as a dead letter.
func ExampleServer_RejectWrites() {
	srv := fhirtest.NewServer()
	defer srv.Close()
	srv.RejectWrites(func(resourceType string, resource []byte) string {
		if resourceType == "Patient" && strings.Contains(string(resource), `"MRN-1"`) {
			return "MRN-1 was merged into another record"
		}
		return ""
	})

	resp, err := create(srv)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, "patients:", srv.Count("Patient"))
	for _, r := range srv.Requests() {
		fmt.Println(r.Method, r.Path, r.Status, r.Fault)
	}
	// Output:
	// 422 Unprocessable Entity patients: 0
	// POST /fhir/R4/Patient 422 rejected
}
