package mapping

// Benchmarks for DESIGN.md section 6: mapping plus validation within 1.35x
// of the bare google/fhir/go cost. BenchmarkMap/<kind> maps a record with
// the Mapper; BenchmarkBare/<kind> builds the same protos by hand, then
// runs fhirvalidate.Validate and Marshal on them. TestBareMatchesMap checks
// that both give the same JSON, so the two measure the same work.
//
//	go test ./mapping -run '^$' -bench . -benchmem

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	"google.golang.org/protobuf/types/known/anypb"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	mapb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_administration_go_proto"
	medpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_go_proto"
	mrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_request_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
	ppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"
	vspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/valuesets_go_proto"
)

// benchCase is one kind: the record the Mapper maps and the hand-built
// protos of the same resources.
type benchCase struct {
	kind string
	rec  func() *Record
	lk   Lookup
	bare func() []*bcrpb.ContainedResource
}

func benchCases() []benchCase {
	phq9 := func() *Record {
		s := fixtureScore("PHQ-9", 14, []int{2, 2, 1, 2, 1, 2, 2, 1, 1})
		s.AdminID = "ADM-1"
		s.Performer = &Practitioner{NPI: "1234567893", Name: "Dr. Lena Park"}
		return &Record{Kind: KindScore, Score: s}
	}
	return []benchCase{
		{"patient", func() *Record { return &Record{Kind: KindPatient, Patient: fixturePatient()} }, literalLookup(), barePatient},
		{"order", func() *Record { return &Record{Kind: KindOrder, Order: fixtureOrderMgKg()} }, literalLookup(), bareOrder},
		{"administration", func() *Record { return &Record{Kind: KindAdministration, Administration: fixtureAdminIM()} }, literalLookup(), bareAdministration},
		{"score", phq9, literalLookup(), bareScore},
	}
}

func BenchmarkMap(b *testing.B) {
	m := newTestMapper(b)
	for _, bc := range benchCases() {
		rec := bc.rec()
		b.Run(bc.kind, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				res, err := m.Map(rec, bc.lk)
				if err != nil {
					b.Fatal(err)
				}
				n = len(res)
			}
			b.ReportMetric(float64(n), "resources/op")
		})
	}
}

func BenchmarkBare(b *testing.B) {
	marshaller, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range benchCases() {
		b.Run(bc.kind, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				crs := bc.bare()
				for _, cr := range crs {
					if err := fhirvalidate.Validate(cr); err != nil {
						b.Fatal(err)
					}
					if _, err := marshaller.Marshal(cr); err != nil {
						b.Fatal(err)
					}
				}
				n = len(crs)
			}
			b.ReportMetric(float64(n), "resources/op")
		})
	}
}

// BenchmarkRatio/<kind> alternates one Map and one bare run per iteration
// (taking turns at going first) and reports the ratio of their median
// times as "map/bare": on a shared, noisy machine both then see the same
// load, which separate benchmarks run seconds apart do not, and medians
// ignore the runs a preemption or a GC cycle hit.
func BenchmarkRatio(b *testing.B) {
	m := newTestMapper(b)
	marshaller, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range benchCases() {
		rec := bc.rec()
		runMap := func() time.Duration {
			start := time.Now()
			if _, err := m.Map(rec, bc.lk); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		runBare := func() time.Duration {
			start := time.Now()
			for _, cr := range bc.bare() {
				if err := fhirvalidate.Validate(cr); err != nil {
					b.Fatal(err)
				}
				if _, err := marshaller.Marshal(cr); err != nil {
					b.Fatal(err)
				}
			}
			return time.Since(start)
		}
		b.Run(bc.kind, func(b *testing.B) {
			var mapped, bare []time.Duration
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					mapped = append(mapped, runMap())
					bare = append(bare, runBare())
				} else {
					bare = append(bare, runBare())
					mapped = append(mapped, runMap())
				}
			}
			b.ReportMetric(float64(median(mapped))/float64(median(bare)), "map/bare")
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestBareMatchesMap checks that the hand-built protos of the benchmarks
// marshal to exactly what the Mapper produces.
func TestBareMatchesMap(t *testing.T) {
	m := newTestMapper(t)
	marshaller, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	for _, bc := range benchCases() {
		t.Run(bc.kind, func(t *testing.T) {
			res := mapOK(t, m, bc.rec(), bc.lk)
			crs := bc.bare()
			if len(crs) != len(res) {
				t.Fatalf("bare builds %d resources, Map %d", len(crs), len(res))
			}
			for i, cr := range crs {
				if err := fhirvalidate.Validate(cr); err != nil {
					t.Fatalf("bare resource %d: %v", i, err)
				}
				data, err := marshaller.Marshal(cr)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, res[i].JSON) {
					t.Errorf("resource %d:\nbare %s\nmap  %s", i, data, res[i].JSON)
				}
			}
		})
	}
}

// Hand-built protos: the resources of the bench cases, written out literally.

func bStr(s string) *dtpb.String { return &dtpb.String{Value: s} }
func bURI(s string) *dtpb.Uri    { return &dtpb.Uri{Value: s} }
func bCoding(system, code, display string) *dtpb.Coding {
	c := &dtpb.Coding{System: bURI(system), Code: &dtpb.Code{Value: code}}
	if display != "" {
		c.Display = bStr(display)
	}
	return c
}
func bCC(text string, codings ...*dtpb.Coding) *dtpb.CodeableConcept {
	cc := &dtpb.CodeableConcept{Coding: codings}
	if text != "" {
		cc.Text = bStr(text)
	}
	return cc
}

// bDateTime is the DateTime of an RFC 3339 time, in UTC ("Z", the one
// zone jsonformat resolves without time.LoadLocation), as the Mapper
// builds it.
func bDateTime(s string) *dtpb.DateTime {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &dtpb.DateTime{ValueUs: t.UnixMicro(), Timezone: "Z", Precision: dtpb.DateTime_SECOND}
}
func bQuantity(v, unit, code string) *dtpb.Quantity {
	return &dtpb.Quantity{Value: &dtpb.Decimal{Value: v}, Unit: bStr(unit), System: bURI("http://unitsofmeasure.org"), Code: &dtpb.Code{Value: code}}
}
func bIdentifier(system, value string) []*dtpb.Identifier {
	return []*dtpb.Identifier{{System: bURI(system), Value: bStr(value)}}
}
func bPatient123() *dtpb.Reference {
	return &dtpb.Reference{Reference: &dtpb.Reference_PatientId{PatientId: &dtpb.ReferenceId{Value: "123"}}}
}
func bLogical(typ, system, value string) *dtpb.Reference {
	return &dtpb.Reference{Type: bURI(typ), Identifier: &dtpb.Identifier{System: bURI(system), Value: bStr(value)}}
}
func bNPI(npi, name string) *dtpb.Reference {
	r := bLogical("Practitioner", "http://hl7.org/fhir/sid/us-npi", npi)
	r.Display = bStr(name)
	return r
}

func barePatient() []*bcrpb.ContainedResource {
	p := &ppb.Patient{
		Identifier: []*dtpb.Identifier{{
			Type:   bCC("", bCoding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number")),
			System: bURI("https://clinic.example.org/fhir/sid/patient"),
			Value:  bStr("MRN-0001"),
		}},
		Name: []*dtpb.HumanName{{
			Use:    &dtpb.HumanName_UseCode{Value: cpb.NameUseCode_OFFICIAL},
			Family: bStr("Okafor"),
			Given:  []*dtpb.String{bStr("Adaeze"), bStr("Grace")},
		}},
		Telecom: []*dtpb.ContactPoint{
			{System: &dtpb.ContactPoint_SystemCode{Value: cpb.ContactPointSystemCode_PHONE}, Value: bStr("+1 555 0100")},
			{System: &dtpb.ContactPoint_SystemCode{Value: cpb.ContactPointSystemCode_EMAIL}, Value: bStr("adaeze@example.org")},
		},
		Gender:    &ppb.Patient_GenderCode{Value: cpb.AdministrativeGenderCode_FEMALE},
		BirthDate: &dtpb.Date{ValueUs: time.Date(1984, 7, 19, 0, 0, 0, 0, time.UTC).UnixMicro(), Timezone: "Z", Precision: dtpb.Date_DAY},
	}
	return []*bcrpb.ContainedResource{{OneofResource: &bcrpb.ContainedResource_Patient{Patient: p}}}
}

func bareOrder() []*bcrpb.ContainedResource {
	r := &mrpb.MedicationRequest{
		Identifier: []*dtpb.Identifier{{
			Type:   bCC("", bCoding("http://terminology.hl7.org/CodeSystem/v2-0203", "PLAC", "Placer Identifier")),
			System: bURI("https://clinic.example.org/fhir/sid/order"),
			Value:  bStr("ORD-100"),
		}},
		Status:   &mrpb.MedicationRequest_StatusCode{Value: cpb.MedicationrequestStatusCode_ACTIVE},
		Intent:   &mrpb.MedicationRequest_IntentCode{Value: cpb.MedicationRequestIntentCode_ORDER},
		Category: []*dtpb.CodeableConcept{bCC("", bCoding("http://terminology.hl7.org/CodeSystem/medicationrequest-category", "outpatient", "Outpatient"))},
		Medication: &mrpb.MedicationRequest_MedicationX{Choice: &mrpb.MedicationRequest_MedicationX_CodeableConcept{
			CodeableConcept: bCC("ketamine 100 MG/ML Injectable Solution", bCoding("http://www.nlm.nih.gov/research/umls/rxnorm", "238083", "")),
		}},
		Subject:    bPatient123(),
		AuthoredOn: bDateTime("2025-03-03T14:05:00-05:00"),
		Requester:  bNPI("1234567893", "Dr. Lena Park"),
		ReasonCode: []*dtpb.CodeableConcept{
			bCC("", bCoding("http://hl7.org/fhir/sid/icd-10-cm", "F33.2", "Major depressive disorder, recurrent severe without psychotic features")),
			bCC("", bCoding("http://hl7.org/fhir/sid/icd-10-cm", "F41.1", "")),
		},
		Note: []*dtpb.Annotation{{Text: &dtpb.Markdown{Value: "Titrate per protocol."}}},
		DosageInstruction: []*dtpb.Dosage{{
			Text: bStr("0.5 mg/kg IM, 2 times per week, 6 sessions"),
			Timing: &dtpb.Timing{Repeat: &dtpb.Timing_Repeat{
				Count:      &dtpb.PositiveInt{Value: 6},
				Frequency:  &dtpb.PositiveInt{Value: 2},
				Period:     &dtpb.Decimal{Value: "1"},
				PeriodUnit: &dtpb.Timing_Repeat_PeriodUnitCode{Value: vspb.UnitsOfTimeValueSet_WK},
			}},
			Route: bCC("", bCoding("http://snomed.info/sct", "78421000", "Intramuscular route (qualifier value)")),
			DoseAndRate: []*dtpb.Dosage_DoseAndRate{{Dose: &dtpb.Dosage_DoseAndRate_DoseX{Choice: &dtpb.Dosage_DoseAndRate_DoseX_Quantity{
				Quantity: &dtpb.SimpleQuantity{Value: &dtpb.Decimal{Value: "0.5"}, Unit: bStr("mg/kg"), System: bURI("http://unitsofmeasure.org"), Code: &dtpb.Code{Value: "mg/kg"}},
			}}}},
		}},
	}
	return []*bcrpb.ContainedResource{{OneofResource: &bcrpb.ContainedResource_MedicationRequest{MedicationRequest: r}}}
}

func bareAdministration() []*bcrpb.ContainedResource {
	const obsSystem = "https://clinic.example.org/fhir/sid/administration-observation"
	med := &medpb.Medication{
		Id:    &dtpb.Id{Value: "med"},
		Code:  bCC("ketamine 100 MG/ML Injectable Solution", bCoding("http://www.nlm.nih.gov/research/umls/rxnorm", "238083", "")),
		Form:  bCC("", bCoding("http://snomed.info/sct", "385219001", "Injection solution (qualifier value)")),
		Batch: &medpb.Medication_Batch{LotNumber: bStr("KX2291"), ExpirationDate: &dtpb.DateTime{ValueUs: time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC).UnixMicro(), Timezone: "Z", Precision: dtpb.DateTime_DAY}},
	}
	packed, err := anypb.New(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Medication{Medication: med}})
	if err != nil {
		panic(err)
	}
	ma := &mapb.MedicationAdministration{
		Contained:  []*anypb.Any{packed},
		Identifier: bIdentifier("https://clinic.example.org/fhir/sid/administration", "ADM-1"),
		Status:     &mapb.MedicationAdministration_StatusCode{Value: cpb.MedicationAdministrationStatusCode_COMPLETED},
		Medication: &mapb.MedicationAdministration_MedicationX{Choice: &mapb.MedicationAdministration_MedicationX_Reference{
			Reference: &dtpb.Reference{Reference: &dtpb.Reference_Fragment{Fragment: bStr("med")}},
		}},
		Subject:   bPatient123(),
		Effective: &mapb.MedicationAdministration_EffectiveX{Choice: &mapb.MedicationAdministration_EffectiveX_DateTime{DateTime: bDateTime("2025-03-04T09:30:00-05:00")}},
		Performer: []*mapb.MedicationAdministration_Performer{{Actor: bNPI("1987654321", "Sam Rivera, RN")}},
		Request:   &dtpb.Reference{Reference: &dtpb.Reference_MedicationRequestId{MedicationRequestId: &dtpb.ReferenceId{Value: "456"}}},
		Note:      []*dtpb.Annotation{{Text: &dtpb.Markdown{Value: "Tolerated well."}}},
		Dosage: &mapb.MedicationAdministration_Dosage{
			Text: bStr("0.5 mg/kg x 70.4 kg = 35.2 mg IM, left deltoid"),
			Site: bCC("left deltoid",
				bCoding("http://snomed.info/sct", "16217701000119102", "Structure of left deltoid muscle"),
				bCoding("http://snomed.info/sct", "35259002", "Deltoid muscle")),
			Route: bCC("", bCoding("http://snomed.info/sct", "78421000", "Intramuscular route (qualifier value)")),
			Dose:  &dtpb.SimpleQuantity{Value: &dtpb.Decimal{Value: "35.2"}, Unit: bStr("mg"), System: bURI("http://unitsofmeasure.org"), Code: &dtpb.Code{Value: "mg"}},
		},
	}
	out := []*bcrpb.ContainedResource{{OneofResource: &bcrpb.ContainedResource_MedicationAdministration{MedicationAdministration: ma}}}

	obs := func(value, profile, at string, code *dtpb.CodeableConcept) *obspb.Observation {
		o := &obspb.Observation{
			Identifier: bIdentifier(obsSystem, value),
			PartOf:     []*dtpb.Reference{bLogical("MedicationAdministration", "https://clinic.example.org/fhir/sid/administration", "ADM-1")},
			Status:     &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
			Code:       code,
			Subject:    bPatient123(),
			Effective:  &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: bDateTime(at)}},
		}
		if profile != "" {
			o.Meta = &dtpb.Meta{Profile: []*dtpb.Canonical{{Value: profile}}}
			o.Category = []*dtpb.CodeableConcept{bCC("", bCoding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs"))}
		}
		return o
	}
	qty := func(q *dtpb.Quantity) *obspb.Observation_ValueX {
		return &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Quantity{Quantity: q}}
	}
	add := func(o *obspb.Observation) {
		out = append(out, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Observation{Observation: o}})
	}
	hrCode := func() *dtpb.CodeableConcept { return bCC("", bCoding("http://loinc.org", "8867-4", "Heart Rate")) }
	spo2Code := func() *dtpb.CodeableConcept {
		return bCC("", bCoding("http://loinc.org", "2708-6", "Oxygen saturation in Arterial blood"),
			bCoding("http://loinc.org", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"))
	}

	bp := obs("ADM-1/vitals/1/bp", "http://hl7.org/fhir/StructureDefinition/bp", "2025-03-04T09:25:00-05:00",
		bCC("", bCoding("http://loinc.org", "85354-9", "Blood pressure panel with all children optional")))
	bp.Component = []*obspb.Observation_Component{
		{Code: bCC("", bCoding("http://loinc.org", "8480-6", "Systolic blood pressure")),
			Value: &obspb.Observation_Component_ValueX{Choice: &obspb.Observation_Component_ValueX_Quantity{Quantity: bQuantity("128", "mmHg", "mm[Hg]")}}},
		{Code: bCC("", bCoding("http://loinc.org", "8462-4", "Diastolic blood pressure")),
			Value: &obspb.Observation_Component_ValueX{Choice: &obspb.Observation_Component_ValueX_Quantity{Quantity: bQuantity("82", "mmHg", "mm[Hg]")}}},
	}
	add(bp)
	hr := obs("ADM-1/vitals/1/hr", "http://hl7.org/fhir/StructureDefinition/heartrate", "2025-03-04T09:25:00-05:00", hrCode())
	hr.Value = qty(bQuantity("74", "beats/minute", "/min"))
	add(hr)
	spo2 := obs("ADM-1/vitals/1/spo2", "http://hl7.org/fhir/StructureDefinition/oxygensat", "2025-03-04T09:25:00-05:00", spo2Code())
	spo2.Value = qty(bQuantity("98", "%", "%"))
	add(spo2)
	hr2 := obs("ADM-1/vitals/2/hr", "http://hl7.org/fhir/StructureDefinition/heartrate", "2025-03-04T10:10:00-05:00", hrCode())
	hr2.Value = qty(bQuantity("80", "beats/minute", "/min"))
	add(hr2)
	spo22 := obs("ADM-1/vitals/2/spo2", "http://hl7.org/fhir/StructureDefinition/oxygensat", "2025-03-04T10:10:00-05:00", spo2Code())
	spo22.Value = qty(bQuantity("97.5", "%", "%"))
	add(spo22)
	weight := obs("ADM-1/weight", "http://hl7.org/fhir/StructureDefinition/bodyweight", "2025-03-04T09:30:00-05:00",
		bCC("", bCoding("http://loinc.org", "29463-7", "Body Weight")))
	weight.Value = qty(bQuantity("70.4", "kg", "kg"))
	add(weight)
	for _, ae := range [][2]string{{"nausea", "Nausea"}, {"dissociation", "Dissociation"}} {
		o := obs("ADM-1/adverse-event/"+ae[0], "", "2025-03-04T09:30:00-05:00",
			bCC(ae[1], bCoding("https://clinic.example.org/fhir/sid/adverse-event", ae[0], ae[1])))
		o.Value = &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Boolean{Boolean: &dtpb.Boolean{Value: true}}}
		add(o)
	}
	return out
}

func bareScore() []*bcrpb.ContainedResource {
	items := []struct {
		code, display string
		value         int32
	}{
		{"44250-9", "Little interest or pleasure in doing things in last 2 weeks", 2},
		{"44255-8", "Feeling down, depressed, or hopeless in last 2 weeks", 2},
		{"44259-0", "Trouble falling or staying asleep, or sleeping too much in last 2 weeks [Reported.PHQ]", 1},
		{"44254-1", "Feeling tired or having little energy in last 2 weeks [Reported.PHQ]", 2},
		{"44251-7", "Poor appetite or overeating in last 2 weeks [Reported.PHQ]", 1},
		{"44258-2", "", 2},
		{"44252-5", "", 2},
		{"44253-3", "", 1},
		{"44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way in last 2 weeks [Reported.PHQ]", 1},
	}
	o := &obspb.Observation{
		Identifier: bIdentifier("https://clinic.example.org/fhir/sid/score", "SC-PHQ-9"),
		PartOf:     []*dtpb.Reference{bLogical("MedicationAdministration", "https://clinic.example.org/fhir/sid/administration", "ADM-1")},
		Status:     &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
		Category:   []*dtpb.CodeableConcept{bCC("", bCoding("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey"))},
		Code:       bCC("PHQ-9 total score", bCoding("http://loinc.org", "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]")),
		Subject:    bPatient123(),
		Effective:  &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: bDateTime("2025-03-04T09:00:00-05:00")}},
		Performer:  []*dtpb.Reference{bNPI("1234567893", "Dr. Lena Park")},
		Value:      &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Integer{Integer: &dtpb.Integer{Value: 14}}},
		Interpretation: []*dtpb.CodeableConcept{
			bCC("Moderate (PHQ-9 10-14)", bCoding("https://clinic.example.org/fhir/sid/severity", "moderate", "Moderate")),
		},
	}
	for i, it := range items {
		o.Component = append(o.Component, &obspb.Observation_Component{
			Code:  bCC("PHQ-9 item "+string(rune('1'+i)), bCoding("http://loinc.org", it.code, it.display)),
			Value: &obspb.Observation_Component_ValueX{Choice: &obspb.Observation_Component_ValueX_Integer{Integer: &dtpb.Integer{Value: it.value}}},
		})
	}
	return []*bcrpb.ContainedResource{{OneofResource: &bcrpb.ContainedResource_Observation{Observation: o}}}
}
