package fhirtest

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func FuzzParseDateRange(f *testing.F) {
	for _, s := range []string{"2024", "2024-02", "2024-02-29", "2024-02-29T10:30Z", "2024-02-29T10:30:05.123456789+14:00", "0001-01-01", "9999-12-31T23:59:60Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := parseDateRange(s)
		if ok && r.lo >= r.hi {
			t.Errorf("parseDateRange(%q) = empty range %v", s, r)
		}
	})
}

// FuzzSearch runs arbitrary query strings against a small data set: the
// server must answer 200 with a valid Bundle, or an error status with an
// OperationOutcome.
func FuzzSearch(f *testing.F) {
	for _, q := range []string{
		"identifier=urn:mrn|M1", `identifier=a\|b\,c`, "patient=p1&date=ge2024-01", "code:not=x|y", "_count=2&_offset=1",
		"subject:Patient=p1", "date=ap2024", "_summary=count", "status:missing=true", "foo=bar", "_id=p1,p2", "patient=" + url.QueryEscape("http://x/Patient/1"),
	} {
		f.Add("Observation", q, false)
		f.Add("Patient", q, true)
	}
	s := NewUnstartedServer()
	defer s.Close()
	mustAdd(f, s, patientJSON("p1", "M1"))
	mustAdd(f, s, observationJSON("o1", "O1", "Patient/p1", "final", "2024-01-02"))
	f.Fuzz(func(t *testing.T, typ, query string, strict bool) {
		if !isResourceType(typ) {
			typ = "Observation"
		}
		var hdr []string
		if strict {
			hdr = []string{"Prefer", "handling=strict"}
		}
		path := "/" + typ + "?" + query
		u, err := url.Parse("http://fhir.test" + s.BasePath() + path)
		if err != nil {
			return
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL, req.RequestURI = u, u.RequestURI()
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s: %d, body not JSON: %s", path, w.Code, w.Body)
		}
		switch {
		case w.Code == 200 && m["resourceType"] == "Bundle":
		case w.Code >= 400 && m["resourceType"] == "OperationOutcome":
		default:
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	})
}

// FuzzCreate posts arbitrary bodies: 201 with a stored, valid resource, or
// 400/422 with an OperationOutcome, never a panic.
func FuzzCreate(f *testing.F) {
	for _, b := range []string{
		patientJSON("", "M1"), observationJSON("", "O1", "Patient/p1", "final", "2024"), `{"resourceType":"Patient","a":1}`,
		`{"resourceType":"Patient","name":[{"given":["\u0000\ud800"]}]}`, `[]`, `{"resourceType":"Observation"}`, `{}`, `null`, `{"resourceType":"Patient"}{}`,
	} {
		f.Add(b)
	}
	s := NewUnstartedServer(WithReferentialIntegrity(false))
	defer s.Close()
	f.Fuzz(func(t *testing.T, body string) {
		w := serve(s, "POST", "/Patient", body)
		switch w.Code {
		case 201:
			loc := w.Header().Get("Location")
			id := strings.Split(strings.TrimPrefix(loc, "http://fhir.test/fhir/R4/Patient/"), "/")[0]
			stored, ok := s.Get("Patient", id)
			if !ok {
				t.Fatalf("created %s but not stored", loc)
			}
			mustValidR4(t, stored)
		case 400, 422:
			mustValidR4(t, w.Body.Bytes())
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
}

// FuzzBundle posts arbitrary Bundles: the answer is a valid Bundle or
// OperationOutcome, and a failed transaction leaves the store as it was.
func FuzzBundle(f *testing.F) {
	f.Add(bundle("transaction", entry(urnPatient, patientJSON("", "M1"), "POST", "Patient"), entry("", observationJSON("", "O1", urnPatient, "final", ""), "POST", "Observation")))
	f.Add(bundle("batch", entry("", "", "GET", "Patient/p1"), entry("", "", "DELETE", "Patient?identifier=M1")))
	f.Add(bundle("transaction", entry("", patientJSON("p1", "M1"), "PUT", "Patient/p1", "ifMatch", `W/"1"`)))
	f.Add(`{"resourceType":"Bundle","type":"transaction","entry":[{}]}`)
	s := NewUnstartedServer()
	defer s.Close()
	mustAdd(f, s, patientJSON("p1", "M1"))
	f.Fuzz(func(t *testing.T, body string) {
		before := snapshot(s)
		w := serve(s, "POST", "", body)
		if w.Code != 200 {
			if after := snapshot(s); len(after) != len(before) {
				t.Fatalf("failed bundle (%d) changed the store", w.Code)
			}
		}
		if w.Code == 200 || w.Code >= 400 {
			mustValidR4(t, w.Body.Bytes())
			return
		}
		t.Fatalf("status %d", w.Code)
	})
}

func FuzzParseByteRange(f *testing.F) {
	for _, h := range []string{"bytes=0-9", "bytes=10-", "bytes=-5", "bytes=0-1,3-4", "bytes=9-3", "items=0-1", "bytes=-0"} {
		f.Add(h, 20)
	}
	f.Fuzz(func(t *testing.T, h string, n int) {
		n = max(n, 0) % (1 << 20)
		lo, hi, ok := parseByteRange(h, n)
		if ok && (lo < 0 || lo >= hi || hi > n) {
			t.Errorf("parseByteRange(%q, %d) = [%d, %d)", h, n, lo, hi)
		}
	})
}

// FuzzExportKickoff sends arbitrary kick-off query strings: the server
// must answer 202 with a status URL, or an error status with an
// OperationOutcome, and never start a job it then refuses.
func FuzzExportKickoff(f *testing.F) {
	for _, q := range []string{
		"", "_type=Patient,Observation", "_since=2024-01-02T03:04:05Z", "_outputFormat=ndjson", "_elements=id",
		"_typeFilter=" + url.QueryEscape("Observation?category=survey,Observation?_id=o1"), "_typeFilter=" + url.QueryEscape("Observation?x=,"),
		"_type=,,&_since=2024", "patient=Patient/p1",
	} {
		f.Add("$export", q, false)
		f.Add("Patient/$export", q, true)
		f.Add("Group/g1/$export", q, false)
	}
	s := NewUnstartedServer()
	defer s.Close()
	mustAdd(f, s, patientJSON("p1", "M1"))
	mustAdd(f, s, observationJSON("o1", "O1", "Patient/p1", "final", "2024-01-02"))
	mustAdd(f, s, `{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}}]}`)
	f.Fuzz(func(t *testing.T, op, query string, lenient bool) {
		switch op {
		case "$export", "Patient/$export", "Group/g1/$export":
		default:
			op = "$export"
		}
		u, err := url.Parse("http://fhir.test" + s.BasePath() + "/" + op + "?" + query)
		if err != nil {
			return
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL, req.RequestURI = u, u.RequestURI()
		req.Header.Set("Prefer", "respond-async")
		if lenient {
			req.Header.Set("Prefer", "respond-async, handling=lenient")
		}
		before := len(s.ExportJobs())
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m["resourceType"] != "OperationOutcome" {
			t.Fatalf("%s: %d, body not an OperationOutcome: %s", u, w.Code, w.Body)
		}
		started := len(s.ExportJobs()) - before
		switch {
		case w.Code == 202 && started == 1 && strings.Contains(w.Header().Get("Content-Location"), "/_export/"):
		case w.Code >= 400 && w.Code < 500 && started == 0:
		default:
			t.Fatalf("%s: %d, %d jobs started", u, w.Code, started)
		}
	})
}
