package views_test

import (
	"fmt"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
)

func Example() {
	view, err := views.Parse([]byte(`{
	  "resourceType": "ViewDefinition",
	  "resource": "Observation",
	  "select": [
	    {"column": [
	      {"name": "patient", "path": "subject.getReferenceKey(Patient)", "type": "string"},
	      {"name": "loinc", "path": "code.coding.where(system = 'http://loinc.org').code.first()", "type": "code"},
	      {"name": "score", "path": "value.ofType(Quantity).value", "type": "decimal"}
	    ]}
	  ]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	var names []any
	for _, c := range view.Columns() {
		names = append(names, c.Name)
	}
	fmt.Println(names...)
	ndjson := []string{
		`{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"valueQuantity":{"value":17}}`,
		`{"resourceType":"Patient","id":"p1"}`,
		`{"resourceType":"Observation","id":"o2","status":"final","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"valueQuantity":{"value":6.5}}`,
	}
	for _, line := range ndjson {
		err := view.Run([]byte(line), func(r views.Row) error {
			fmt.Println(r...)
			return nil
		})
		if err != nil {
			fmt.Println(err)
		}
	}
	// Output:
	// patient loinc score
	// p1 44261-6 17
	// p1 44261-6 6.5
}
