package fhirtest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports holds the import policy of STYLE.md: fhirtest imports only
// the standard library, google/fhir/go and protobuf, so any project can
// use it in tests.
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goTool, "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(imp, "/")
		switch {
		case !strings.Contains(first, "."): // standard library
		case strings.HasPrefix(imp, "github.com/google/fhir/go/"):
		case strings.HasPrefix(imp, "google.golang.org/protobuf/"):
		default:
			t.Errorf("fhirtest imports %s", imp)
		}
	}
}
