package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// The import policy (STYLE.md practice 12), checked on the real build
// graph:
//   - mapping (and its subpackages) and fhirtest import only the standard
//     library, google/fhir/go and protobuf (and, for mapping/..., mapping);
//     mapping/views alone may also import github.com/gofhir/fhirpath (its
//     FHIRPath engine) and that library's parser runtime, and the mapping
//     package itself must not depend on them, even indirectly;
//   - mapping/views/sink (the view writers) may also import
//     github.com/parquet-go/parquet-go and modernc.org/sqlite, and nothing
//     else of mapping may depend on them;
//   - mapping/outcomes/report (the outcomes page) may also import
//     gonum.org/v1/plot (its charts), and nothing else of mapping may
//     depend on it;
//   - adapter/store and adapter/ehr never import mapping, even indirectly;
//   - nothing but cmd imports fhirtest outside tests, and nothing imports
//     cmd;
//   - arrows point one way: mapping and fhirtest import nothing of adapter;
//   - internal/testutil imports only the standard library, and only tests
//     import it.
const module = "github.com/ketamine-fhir/ketamine-fhir"

type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Standard   bool
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps=false", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestImportPolicy(t *testing.T) {
	fhirLib := []string{"github.com/google/fhir/go", "google.golang.org/protobuf", "github.com/golang/protobuf"}
	allowedLib := func(imp string) bool {
		if isStd(imp) {
			return true
		}
		for _, p := range fhirLib {
			if under(imp, p) {
				return true
			}
		}
		return false
	}
	// FHIRPath for ViewDefinitions: only mapping/views needs it.
	viewsLib := []string{"github.com/gofhir/fhirpath", "github.com/antlr4-go/antlr/v4"}
	isViewsLib := func(imp string) bool {
		for _, p := range viewsLib {
			if under(imp, p) {
				return true
			}
		}
		return false
	}
	// File formats for view output: only mapping/views/sink writes them.
	sinkLib := []string{"github.com/parquet-go/parquet-go", "modernc.org/sqlite"}
	isSinkLib := func(imp string) bool {
		for _, p := range sinkLib {
			if under(imp, p) {
				return true
			}
		}
		return false
	}
	// Charts of the outcomes report: only mapping/outcomes/report draws them.
	isPlotLib := func(imp string) bool { return under(imp, "gonum.org/v1/plot") }
	checked := 0
	for _, p := range listPackages(t) {
		switch {
		case under(p.ImportPath, module+"/mapping"):
			checked++
			for _, imp := range p.Imports {
				if under(p.ImportPath, module+"/mapping/views") && isViewsLib(imp) {
					continue
				}
				if under(p.ImportPath, module+"/mapping/views/sink") && isSinkLib(imp) {
					continue
				}
				if under(p.ImportPath, module+"/mapping/outcomes/report") && isPlotLib(imp) {
					continue
				}
				if !allowedLib(imp) && !under(imp, module+"/mapping") {
					t.Errorf("%s imports %s: mapping may import only the standard library, google/fhir/go and protobuf (and mapping/views gofhir/fhirpath, mapping/views/sink parquet-go and sqlite)", p.ImportPath, imp)
				}
			}
			if !under(p.ImportPath, module+"/mapping/views/sink") {
				for _, dep := range p.Deps {
					if isSinkLib(dep) {
						t.Errorf("%s depends on %s: only mapping/views/sink writes Parquet and SQLite", p.ImportPath, dep)
					}
				}
			}
			if !under(p.ImportPath, module+"/mapping/outcomes/report") {
				for _, dep := range p.Deps {
					if isPlotLib(dep) {
						t.Errorf("%s depends on %s: only mapping/outcomes/report draws charts", p.ImportPath, dep)
					}
				}
			}
			if p.ImportPath == module+"/mapping" {
				for _, dep := range p.Deps {
					if isViewsLib(dep) || under(dep, module+"/mapping/views") {
						t.Errorf("mapping depends on %s: the record mapper must not carry the FHIRPath engine", dep)
					}
				}
			}
		case under(p.ImportPath, module+"/fhirtest"):
			checked++
			for _, imp := range p.Imports {
				if !allowedLib(imp) && !under(imp, module+"/fhirtest") {
					t.Errorf("%s imports %s: fhirtest may import only the standard library, google/fhir/go and protobuf", p.ImportPath, imp)
				}
			}
		case under(p.ImportPath, module+"/adapter/store"), under(p.ImportPath, module+"/adapter/ehr"):
			checked++
			for _, dep := range p.Deps {
				if under(dep, module+"/mapping") {
					t.Errorf("%s depends on %s: store and ehr must not know mapping", p.ImportPath, dep)
				}
			}
		}
		if under(p.ImportPath, module+"/internal/testutil") {
			checked++
			for _, imp := range p.Imports {
				if !isStd(imp) {
					t.Errorf("%s imports %s: testutil may import only the standard library, so every package's tests can use it", p.ImportPath, imp)
				}
			}
		}
		for _, imp := range p.Imports {
			if under(imp, module+"/internal/testutil") {
				t.Errorf("%s imports %s outside its tests: testutil is for _test.go files", p.ImportPath, imp)
			}
		}
		if !under(p.ImportPath, module+"/cmd") {
			for _, imp := range p.Imports {
				if under(imp, module+"/fhirtest") && !under(p.ImportPath, module+"/fhirtest") {
					t.Errorf("%s imports %s: only cmd wires fhirtest in", p.ImportPath, imp)
				}
				if under(imp, module+"/cmd") {
					t.Errorf("%s imports %s: nothing imports cmd", p.ImportPath, imp)
				}
			}
		}
	}
	if checked < 4 {
		t.Errorf("checked only %d packages under the policy; the module layout changed?", checked)
	}
}
