package fhirtest

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentConditionalWrites has several clients write the same
// identifiers at once: conditional update, conditional create and
// transactions. Each identifier must end up held by exactly one resource.
func TestConcurrentConditionalWrites(t *testing.T) {
	t.Parallel()
	const clients, idents = 6, 30
	s := NewServer()
	defer s.Close()
	mustAdd(t, s, patientJSON("p1", "M1"))

	send := func(method, path, body string, hdr ...string) (int, error) {
		req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/fhir+json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*idents*3)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < idents; i++ {
				obs := fmt.Sprint("O", i)
				st, err := send("PUT", "/Observation?identifier="+url.QueryEscape("urn:obs|"+obs),
					observationJSON("", obs, "Patient/p1", "final", ""))
				if err != nil || st != 200 && st != 201 {
					errs <- fmt.Errorf("client %d PUT %s: %d %v", c, obs, st, err)
				}
				mrn := fmt.Sprint("P", i)
				st, err = send("POST", "/Patient", patientJSON("", mrn), "If-None-Exist", "identifier=urn:mrn|"+mrn)
				if err != nil || st != 200 && st != 201 {
					errs <- fmt.Errorf("client %d POST %s: %d %v", c, mrn, st, err)
				}
				med := fmt.Sprint("Q", i)
				tx := bundle("transaction",
					entry(urnPatient, patientJSON("", med), "POST", "Patient", "ifNoneExist", "identifier=urn:mrn|"+med),
					entry("", observationJSON("", med, urnPatient, "final", ""), "PUT", "Observation?identifier="+url.QueryEscape("urn:obs|"+med)))
				st, err = send("POST", "", tx)
				if err != nil || st != 200 {
					errs <- fmt.Errorf("client %d transaction %s: %d %v", c, med, st, err)
				}
				// Readers and inspection run alongside the writers.
				_, _ = send("GET", "/Observation?patient=p1&_count=5", "")
				_ = s.Count("Observation")
				_ = s.DuplicateIdentifiers()
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.Count("Observation"); n != 2*idents {
		t.Errorf("Count(Observation) = %d, want %d", n, 2*idents)
	}
	if n := s.Count("Patient"); n != 1+2*idents {
		t.Errorf("Count(Patient) = %d, want %d", n, 1+2*idents)
	}
	if d := s.DuplicateIdentifiers(); len(d) != 0 {
		t.Errorf("duplicates: %v", d)
	}
	// Every conditional update became a version of the one resource.
	holders := s.IdentifierHolders("urn:obs", "O0")
	if len(holders) != 1 {
		t.Fatalf("holders of O0: %v", holders)
	}
	body, _ := s.Get("Observation", strings.TrimPrefix(holders[0], "Observation/"))
	if !strings.Contains(string(body), fmt.Sprintf(`"versionId":"%d"`, clients)) {
		t.Errorf("O0 is not at version %d: %s", clients, body)
	}
}

// TestConcurrentInspection exercises every inspection method against
// writers and Reset, for the race detector.
func TestConcurrentInspection(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				serve(s, "POST", "/Patient", patientJSON("", fmt.Sprint(w, "-", i)))
				serve(s, "GET", "/Patient?identifier=urn:mrn|"+fmt.Sprint(w, "-", i), "")
				s.SetFailureRate(0.1)
				s.SetLatency(0, 0)
				_ = s.Requests()
				_ = s.Counts()
				_ = s.IdentifierHolders("urn:mrn", fmt.Sprint(w, "-", i))
				_, _ = s.Get("Patient", "1")
				if i == 25 && w == 0 {
					s.Reset()
				}
			}
		}(w)
	}
	wg.Wait()
	if len(s.Requests()) == 0 {
		t.Error("no requests logged")
	}
}
