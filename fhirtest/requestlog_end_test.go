package fhirtest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

// TestRequestLogEnd checks that the log records when the server finished
// with a request, so tests can find overlapping writes.
func TestRequestLogEnd(t *testing.T) {
	s := fhirtest.NewServer()
	defer s.Close()
	s.SetLatency(30*time.Millisecond, 30*time.Millisecond)
	resp, err := http.Get(s.URL + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests logged, want 1", len(reqs))
	}
	if d := reqs[0].End.Sub(reqs[0].Time); d < 30*time.Millisecond {
		t.Errorf("End - Time = %v, want at least the 30ms latency", d)
	}
}
