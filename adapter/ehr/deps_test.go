package ehr

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportPolicy: ehr knows HTTP, FHIR JSON envelopes and auth; it never
// imports mapping (nor the validating jsonformat, whose unmarshaller fails
// a whole EHR answer on one unknown field).
func TestImportPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/ketamine-fhir/ketamine-fhir/mapping") ||
			strings.HasPrefix(dep, "github.com/google/fhir/go") {
			t.Errorf("adapter/ehr imports %s", dep)
		}
	}
}
