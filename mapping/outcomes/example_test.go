package outcomes_test

import (
	"fmt"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
)

func Example() {
	phq9 := func(patient, at string, total int) string {
		return fmt.Sprintf(`{"resourceType":"Observation","status":"final",`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},`+
			`"subject":{"reference":"Patient/%s"},"effectiveDateTime":"%s","valueInteger":%d}`, patient, at, total)
	}
	session := func(patient, at string) string {
		return fmt.Sprintf(`{"resourceType":"MedicationAdministration","status":"completed",`+
			`"subject":{"reference":"Patient/%s"},"request":{"reference":"MedicationRequest/%s-1"},"effectiveDateTime":"%s"}`, patient, patient, at)
	}
	c := outcomes.NewCollector(outcomes.DefaultCodes())
	for _, r := range []string{
		// Patient a: 20 at baseline, 8 before the third session.
		phq9("a", "2025-03-03T09:00:00Z", 20),
		session("a", "2025-03-04T10:00:00Z"),
		session("a", "2025-03-07T10:00:00Z"),
		phq9("a", "2025-03-11T09:45:00Z", 8),
		session("a", "2025-03-11T10:00:00Z"),
		// Patient b: 16 at baseline, 12 after the series.
		phq9("b", "2025-03-03T11:00:00Z", 16),
		session("b", "2025-03-04T11:00:00Z"),
		session("b", "2025-03-07T11:00:00Z"),
		phq9("b", "2025-03-10T11:00:00Z", 12),
	} {
		if err := c.Add([]byte(r)); err != nil {
			fmt.Println(err)
			return
		}
	}
	// MinCell 1 shows every figure: for this example only, since two
	// patients are far below any real minimum cell size.
	rep := c.Compute(outcomes.Options{MinCell: 1})
	end := rep.Instruments[0].TimePoints[0]
	fmt.Printf("%s, %s: %d assessed, response %.0f%%, remission %.0f%%\n",
		rep.Instruments[0].Instrument, end.Label, *end.Assessed, 100**end.Response.Rate, 100**end.Remission.Rate)

	// With the default minimum of 11, nothing is shown.
	rep = c.Compute(outcomes.Options{})
	fmt.Println("default min cell:", rep.Suppressed, rep.Patients == nil)
	// Output:
	// PHQ-9, End of the induction series: 2 assessed, response 50%, remission 0%
	// default min cell: true true
}
