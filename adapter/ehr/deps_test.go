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

// TestAuthLibraries: the JWS, JWK and OAuth2 mechanics come from go-jose
// and x/oauth2, not from code of our own.
func TestAuthLibraries(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	deps := " " + strings.Join(strings.Fields(string(out)), " ") + " "
	for _, want := range []string{"github.com/go-jose/go-jose/v4", "github.com/go-jose/go-jose/v4/jwt", "golang.org/x/oauth2", "golang.org/x/oauth2/clientcredentials"} {
		if !strings.Contains(deps, " "+want+" ") {
			t.Errorf("adapter/ehr does not depend on %s", want)
		}
	}
}
