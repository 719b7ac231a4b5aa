// Package builtin holds the ketamine clinic's built-in SQL on FHIR views,
// as ViewDefinition JSON files embedded in the binary: patients,
// ketamine_orders, ketamine_administrations, depression_scores and
// vital_signs.
//
// The views are de-identified (DESIGN.md section 8): they never output
// names, MRNs, exact birth dates, addresses or free-text notes. A patient
// is known by its key, getResourceKey() (the EHR's logical id), and the
// other views join to it by subject.getReferenceKey(Patient). Resources
// without ids or with logical (identifier-only) references, such as the
// output of `ketamine-fhir map`, give null keys: run the views on the
// EHR's Bulk Data export to join tables. Resources marked
// entered-in-error are left out.
//
// Each file is an ordinary ViewDefinition: `ketamine-fhir views show NAME`
// prints it, and a copy may be edited and run with `views run VIEW.json`.
package builtin

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
)

//go:embed *.json
var files embed.FS

// View is one built-in view.
type View struct {
	// Name is the view's name, also its file name without ".json" and
	// the name of its output table.
	Name string
	// Description is the view's one-line description.
	Description string
	// JSON is the ViewDefinition as embedded.
	JSON []byte
	// View is the parsed view.
	View *views.View
}

var all = load()

func load() []View {
	entries, err := files.ReadDir(".")
	if err != nil {
		panic(err)
	}
	var out []View
	for _, e := range entries {
		data, err := files.ReadFile(e.Name())
		if err != nil {
			panic(err)
		}
		var meta struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		}
		if err := json.Unmarshal(data, &meta); err != nil {
			panic(fmt.Sprintf("builtin view %s: %v", e.Name(), err))
		}
		if meta.Name+".json" != e.Name() {
			panic(fmt.Sprintf("builtin view %s is named %q", e.Name(), meta.Name))
		}
		v, err := views.Parse(data)
		if err != nil {
			panic(fmt.Sprintf("builtin view %s: %v", e.Name(), err))
		}
		out = append(out, View{Name: meta.Name, Description: meta.Description, JSON: data, View: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// All returns the built-in views in name order.
func All() []View { return append([]View(nil), all...) }

// Get returns the built-in view called name; false if there is none.
func Get(name string) (View, bool) {
	for _, v := range all {
		if v.Name == name {
			return v, true
		}
	}
	return View{}, false
}

// Names returns the names of the built-in views, comma-separated, for
// messages.
func Names() string {
	n := make([]string, len(all))
	for i, v := range all {
		n[i] = v.Name
	}
	return strings.Join(n, ", ")
}
