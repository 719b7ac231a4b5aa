package fhirtest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestRejectWrites: the rule refuses the creates and updates it picks with
// 422 business-rule, in a transaction (all or nothing, the entry named) and
// in a batch (that entry alone); other writes, reads and Add go through,
// and ClearFaults removes the rule.
func TestRejectWrites(t *testing.T) {
	t.Parallel()
	s := NewUnstartedServer()
	defer s.Close()
	var seen []string
	s.RejectWrites(func(typ string, resource []byte) string {
		seen = append(seen, typ)
		if bytes.Contains(resource, []byte(`"MRN-BAD"`)) {
			return "unknown practitioner"
		}
		return ""
	})
	checkRejected := func(what string, code int, body string) {
		t.Helper()
		if code != 422 || !strings.Contains(body, `"business-rule"`) || !strings.Contains(body, "unknown practitioner") {
			t.Errorf("%s: %d %s, want 422 business-rule with the reason", what, code, body)
		}
	}

	w := serve(s, "POST", "/Patient", patientJSON("", "MRN-BAD"))
	checkRejected("create", w.Code, w.Body.String())
	w = serve(s, "PUT", "/Patient?identifier=urn:mrn|MRN-BAD", patientJSON("", "MRN-BAD"))
	checkRejected("conditional update", w.Code, w.Body.String())
	if w := serve(s, "POST", "/Patient", patientJSON("", "MRN-OK")); w.Code != 201 {
		t.Errorf("create of an accepted patient: %d %s", w.Code, w.Body)
	}
	if _, err := s.Add([]byte(patientJSON("", "MRN-BAD"))); err != nil {
		t.Errorf("Add is subject to the rule: %v", err)
	}
	if n := s.Count("Patient"); n != 2 {
		t.Errorf("%d patients stored, want 2 (the accepted one and Add's)", n)
	}

	entry := func(mrn string) string {
		return fmt.Sprintf(`{"resource":%s,"request":{"method":"POST","url":"Patient"}}`, patientJSON("", mrn))
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[` + entry("MRN-T1") + `,` + entry("MRN-BAD") + `]}`
	w = serve(s, "POST", "", tx)
	checkRejected("transaction", w.Code, w.Body.String())
	if !strings.Contains(w.Body.String(), "Bundle.entry[1]") {
		t.Errorf("transaction: the OperationOutcome does not name entry 1: %s", w.Body)
	}
	if n := s.Count("Patient"); n != 2 {
		t.Errorf("the refused transaction wrote: %d patients, want 2", n)
	}
	batch := strings.Replace(tx, `"transaction"`, `"batch"`, 1)
	w = serve(s, "POST", "", batch)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"201 Created"`) || !strings.Contains(w.Body.String(), `"status":"422`) {
		t.Errorf("batch: %d %s, want 200 with one entry created and one refused", w.Code, w.Body)
	}
	if n := s.Count("Patient"); n != 3 {
		t.Errorf("after the batch: %d patients, want 3", n)
	}

	log := s.Requests()
	faults := map[Fault]int{}
	for _, r := range log {
		faults[r.Fault]++
	}
	if faults[FaultRejected] != 3 {
		t.Errorf("%d requests logged as rejected, want 3 (create, update, transaction): %+v", faults[FaultRejected], log)
	}
	if len(seen) == 0 || seen[0] != "Patient" {
		t.Errorf("the rule saw types %v", seen)
	}

	s.ClearFaults()
	if w := serve(s, "POST", "/Patient", patientJSON("", "MRN-BAD")); w.Code != 201 {
		t.Errorf("after ClearFaults: %d %s, want 201", w.Code, w.Body)
	}
}

// TestRejectIdentifiers: the ready-made rule refuses resources holding one
// of the identifier values, in any system, and only those.
func TestRejectIdentifiers(t *testing.T) {
	t.Parallel()
	rule := RejectIdentifiers("MRN-9", "A|1")
	for _, tt := range []struct {
		resource string
		refused  bool
	}{
		{patientJSON("", "MRN-9"), true},
		{patientJSON("", "MRN-90"), false},
		{`{"resourceType":"Observation","identifier":[{"system":"urn:a","value":"x"},{"system":"urn:b","value":"A|1"}]}`, true},
		{`{"resourceType":"Observation","status":"final","note":[{"text":"MRN-9"}]}`, false},
		{`not JSON`, false},
	} {
		reason := rule("Patient", []byte(tt.resource))
		if (reason != "") != tt.refused {
			t.Errorf("%s: reason %q, want refused %v", tt.resource, reason, tt.refused)
		}
		if strings.Contains(reason, "MRN-9") {
			t.Errorf("the reason repeats the identifier value: %q", reason)
		}
	}
}
