package mapping_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

func ExampleParser_NewNDJSONReader() {
	now := func() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) }
	p := mapping.NewParser(mapping.DefaultConfig(), now)
	in := `{"kind":"patient","mrn":"MRN-1","family":"Okafor","given":["Ada"],"birth_date":"1984-02-30","sex":"female"}
{"kind":"order","order_id":"ord-17","mrn":"MRN-1","status":"active","authored_at":"2025-05-01T14:30:00-04:00","prescriber":{"npi":"1234567893","name":"Dr. Rivera"},"medication":"ketamine-10mg-ml","route":"IN","dose":{"value":900,"unit":"mg"}}
{"kind":"score","score_id":"sc-1","mrn":"MRN-1","instrument":"PHQ-2","taken_at":"2025-05-05T09:45:00-04:00","total":4,"items":[2,2]}
`
	r := p.NewNDJSONReader(strings.NewReader(in))
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *mapping.RecordError
		if errors.As(err, &re) {
			fmt.Println("rejected:", err)
			continue
		}
		if err != nil {
			panic(err)
		}
		fmt.Println("read:", rec.Kind, rec.ID())
	}
	// Output:
	// rejected: line 1: patient record: field birth_date: not a date (YYYY-MM-DD)
	// rejected: line 2: order ord-17: field route: route not allowed for the medication; field dose.value: above the dose ceiling (max_dose_mg)
	// read: score sc-1
}

func ExampleParser_NewCSVReader() {
	now := func() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) }
	p := mapping.NewParser(nil, now)
	in := "admin_id,order_id,mrn,status,started_at,dose.value,dose.unit,route,performer.npi,performer.name,vitals\n" +
		"adm-1,ord-17,MRN-1,completed,2025-05-05T10:00:00-04:00,36,mg,IV,1456789019,RN Patel,2025-05-05T09:55:00-04:00|128|82|74|98;2025-05-05T10:40:00-04:00|142|88||\n"
	r, err := p.NewCSVReader(strings.NewReader(in), mapping.KindAdministration)
	if err != nil {
		panic(err)
	}
	rec, err := r.Next()
	if err != nil {
		panic(err)
	}
	b, _ := rec.CanonicalJSON()
	fmt.Println(string(b))
	// Output:
	// {"kind":"administration","admin_id":"adm-1","order_id":"ord-17","mrn":"MRN-1","status":"completed","started_at":"2025-05-05T10:00:00-04:00","dose":{"value":36,"unit":"mg"},"route":"IV","performer":{"npi":"1456789019","name":"RN Patel"},"vitals":[{"at":"2025-05-05T09:55:00-04:00","systolic":128,"diastolic":82,"heart_rate":74,"spo2":98},{"at":"2025-05-05T10:40:00-04:00","systolic":142,"diastolic":88}]}
}
