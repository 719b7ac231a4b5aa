package sink_test

import (
	"fmt"
	"os"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views/sink"
)

func Example() {
	view := views.MustParse([]byte(`{
	  "resourceType": "ViewDefinition", "name": "scores", "resource": "Observation",
	  "select": [{"column": [
	    {"name": "patient", "path": "subject.getReferenceKey(Patient)", "type": "string"},
	    {"name": "total", "path": "value.ofType(integer)", "type": "integer"},
	    {"name": "codes", "path": "code.coding.code", "collection": true}
	  ]}]}`))
	w, err := sink.NewCSV(os.Stdout, view.Columns())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, line := range []string{
		`{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"code":{"coding":[{"code":"44261-6"}]},"valueInteger":17}`,
		`{"resourceType":"Patient","id":"p1"}`,
		`{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}`,
	} {
		if err := view.Run([]byte(line), w.Write); err != nil {
			fmt.Println(err)
		}
	}
	if err := w.Close(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// patient,total,codes
	// p1,17,"[""44261-6""]"
	// p2,,[]
}
