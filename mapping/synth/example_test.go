package synth_test

import (
	"bytes"
	"fmt"
	"log"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

// The first records of the clinic for seed 1: a patient, then its orders.
func ExampleWriteNDJSON() {
	var buf bytes.Buffer
	n, err := synth.WriteNDJSON(&buf, synth.Options{Patients: 1, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	lines := strings.SplitN(buf.String(), "\n", 4)
	fmt.Println(n, "records, the first three:")
	for _, line := range lines[:3] {
		fmt.Println(line)
	}
	// Output:
	// 21 records, the first three:
	// {"kind":"patient","mrn":"MRN0000001","family":"van der Berg","given":["Ahmed"],"birth_date":"1974-06-09","sex":"male","phone":"+1-508-555-0108","email":"ahmed.vanderberg38@example.com"}
	// {"kind":"order","order_id":"ord-0000001-1","mrn":"MRN0000001","status":"completed","authored_at":"2025-04-29T13:15:00-05:00","prescriber":{"npi":"1198745204","name":"Kwabena Mensah, MD"},"medication":"ketamine-50mg-ml","route":"IM","dose":{"value":1,"unit":"mg/kg"},"sessions":6,"frequency":"2/week","diagnoses":["F33.2"],"updated_at":"2025-05-23T11:45:00-05:00"}
	// {"kind":"order","order_id":"ord-0000001-2","mrn":"MRN0000001","status":"completed","authored_at":"2025-05-23T11:15:00-05:00","prescriber":{"npi":"1198745204","name":"Kwabena Mensah, MD"},"medication":"ketamine-50mg-ml","route":"IM","dose":{"value":1,"unit":"mg/kg"},"sessions":2,"frequency":"2/month","diagnoses":["F33.2"],"updated_at":"2025-06-18T11:45:00-05:00"}
}

// Generate streams records to a callback, here counted by kind.
func ExampleGenerate() {
	counts := map[mapping.Kind]int{}
	err := synth.Generate(synth.Options{Patients: 10, Seed: 1}, func(r *mapping.Record) error {
		counts[r.Kind]++
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range mapping.Kinds {
		fmt.Println(k, counts[k])
	}
	// Output:
	// patient 10
	// order 17
	// administration 88
	// score 106
}
