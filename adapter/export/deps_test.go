package export

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportPolicy: export sits beside the EHR client; it never imports
// mapping, the engine, or fhirtest (outside tests).
func TestImportPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	const module = "github.com/ketamine-fhir/ketamine-fhir/"
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, module+"mapping"), dep == module+"adapter", strings.HasPrefix(dep, module+"fhirtest"):
			t.Errorf("adapter/export imports %s", dep)
		}
	}
}
