package mapping_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// staticLookup answers with the EHR ids the adapter already knows.
type staticLookup map[mapping.Kind]map[string]string

func (l staticLookup) Reference(kind mapping.Kind, id string) string { return l[kind][id] }
func (l staticLookup) Order(string) *mapping.Order                   { return nil }

func ExampleMapper_Map() {
	m, err := mapping.NewMapper(mapping.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	rec := &mapping.Record{Kind: mapping.KindScore, Score: &mapping.Score{
		ScoreID:    "score-42",
		MRN:        "MRN-0001",
		Instrument: "PHQ-2",
		TakenAt:    time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC),
		Total:      3,
		Items:      []int{1, 2},
	}}
	lk := staticLookup{mapping.KindPatient: {"MRN-0001": "Patient/123"}}

	resources, err := m.Map(rec, lk)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range resources {
		fmt.Println(r.Type, r.Identifier.Query())
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, r.JSON, "", "  "); err != nil {
			log.Fatal(err)
		}
		fmt.Println(pretty.String())
	}
	// Output:
	// Observation identifier=https%3A%2F%2Fclinic.example.org%2Ffhir%2Fsid%2Fscore%7Cscore-42
	// {
	//   "category": [
	//     {
	//       "coding": [
	//         {
	//           "code": "survey",
	//           "display": "Survey",
	//           "system": "http://terminology.hl7.org/CodeSystem/observation-category"
	//         }
	//       ]
	//     }
	//   ],
	//   "code": {
	//     "coding": [
	//       {
	//         "code": "55758-7",
	//         "display": "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]",
	//         "system": "http://loinc.org"
	//       }
	//     ],
	//     "text": "PHQ-2 total score"
	//   },
	//   "component": [
	//     {
	//       "code": {
	//         "coding": [
	//           {
	//             "code": "44250-9",
	//             "display": "Little interest or pleasure in doing things in last 2 weeks",
	//             "system": "http://loinc.org"
	//           }
	//         ],
	//         "text": "PHQ-2 item 1"
	//       },
	//       "valueInteger": 1
	//     },
	//     {
	//       "code": {
	//         "coding": [
	//           {
	//             "code": "44255-8",
	//             "display": "Feeling down, depressed, or hopeless in last 2 weeks",
	//             "system": "http://loinc.org"
	//           }
	//         ],
	//         "text": "PHQ-2 item 2"
	//       },
	//       "valueInteger": 2
	//     }
	//   ],
	//   "effectiveDateTime": "2025-03-04T09:00:00Z",
	//   "identifier": [
	//     {
	//       "system": "https://clinic.example.org/fhir/sid/score",
	//       "value": "score-42"
	//     }
	//   ],
	//   "resourceType": "Observation",
	//   "status": "final",
	//   "subject": {
	//     "reference": "Patient/123"
	//   },
	//   "valueInteger": 3
	// }
}

func ExampleIdentifier_Query() {
	id := mapping.Identifier{System: "https://clinic.example.org/fhir/sid/order", Value: `ORD|7,$1\b`}
	fmt.Println(id.Token())
	fmt.Println(id.Query())
	fmt.Println(mapping.URNFor(id))
	// Output:
	// https://clinic.example.org/fhir/sid/order|ORD\|7\,\$1\\b
	// identifier=https%3A%2F%2Fclinic.example.org%2Ffhir%2Fsid%2Forder%7CORD%5C%7C7%5C%2C%5C%241%5C%5Cb
	// urn:uuid:22322870-48de-5e30-91c2-afa949ff44e1
}
