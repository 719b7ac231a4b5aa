package mapping

import (
	"strconv"
	"strings"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	mrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_request_go_proto"
)

// fhirOrderStatus maps a local order status to MedicationRequest.status.
var fhirOrderStatus = map[string]cpb.MedicationrequestStatusCode_Value{
	"active":           cpb.MedicationrequestStatusCode_ACTIVE,
	"on-hold":          cpb.MedicationrequestStatusCode_ON_HOLD,
	"completed":        cpb.MedicationrequestStatusCode_COMPLETED,
	"cancelled":        cpb.MedicationrequestStatusCode_CANCELLED,
	"entered-in-error": cpb.MedicationrequestStatusCode_ENTERED_IN_ERROR,
}

// ucumDoseUnits maps a local dose unit to its UCUM code (the same text).
var ucumDoseUnits = map[string]string{"mg": "mg", "mg/kg": "mg/kg"}

// productConcept returns the coded product of formulary entry code: its
// RxNorm coding, or, with no RxNorm code configured, a coding in the clinic
// product system (never an invented RxNorm code); then the NDC coding when
// configured; the product display as text. The RxNorm coding carries no
// display: the reference could not verify the RxNorm name strings.
func (m *Mapper) productConcept(code string, prod Product) *dtpb.CodeableConcept {
	codings := make([]coding, 0, 2)
	if prod.RxNorm != "" {
		codings = append(codings, coding{systemRxNorm, prod.RxNorm, ""})
	} else {
		codings = append(codings, coding{m.sys.product, code, prod.Display})
	}
	if prod.NDC != "" {
		codings = append(codings, coding{systemNDC, prod.NDC, ""})
	}
	return concept(prod.Display, codings...)
}

// medicationRequest maps an order to a MedicationRequest.
func (m *Mapper) medicationRequest(o *Order, lk Lookup, p *mapProblems) []builtResource {
	if strings.TrimSpace(o.OrderID) == "" {
		p.add("order_id", "required")
	}
	if strings.TrimSpace(o.MRN) == "" {
		p.add("mrn", "required")
	}
	status, ok := fhirOrderStatus[o.Status]
	if !ok {
		p.add("status", "not an order status")
	}
	if o.AuthoredAt.IsZero() {
		p.add("authored_at", "required")
	}
	checkNPI(p, "prescriber", o.Prescriber)
	prod, ok := m.cfg.Formulary[o.Medication]
	if !ok {
		p.add("medication", "product not in the formulary")
	}
	route, ok := routeConcept(o.Route)
	if !ok {
		p.add("route", "not one of IM, IV, IN, SL, PO")
	}
	unit, ok := ucumDoseUnits[o.Dose.Unit]
	if !ok {
		p.add("dose.unit", "not mg or mg/kg")
	}
	if !finiteNumber(o.Dose.Value) || o.Dose.Value <= 0 {
		p.add("dose.value", "not a positive number")
	}
	var freq timingFrequency
	if o.Frequency != "" {
		if freq, ok = parseTimingFrequency(o.Frequency); !ok {
			p.add("frequency", "not N/day, N/week or N/month")
		}
	}
	if o.Sessions < 0 {
		p.add("sessions", "negative")
	}
	for i, d := range o.Diagnoses {
		if strings.TrimSpace(d) == "" || strings.ContainsAny(d, " \t\r\n") {
			p.add(fieldIndex("diagnoses", i), "not an ICD-10-CM code")
		}
	}
	if !p.ok() {
		return nil
	}

	id := m.Identifier(KindOrder, o.OrderID)
	res := &mrpb.MedicationRequest{
		Identifier: []*dtpb.Identifier{{
			Type:   concept("", identifierTypePLAC),
			System: fURI(id.System),
			Value:  fString(id.Value),
		}},
		Status:   &mrpb.MedicationRequest_StatusCode{Value: status},
		Intent:   &mrpb.MedicationRequest_IntentCode{Value: cpb.MedicationRequestIntentCode_ORDER},
		Category: []*dtpb.CodeableConcept{concept("", categoryOutpatient)},
		Medication: &mrpb.MedicationRequest_MedicationX{Choice: &mrpb.MedicationRequest_MedicationX_CodeableConcept{
			CodeableConcept: m.productConcept(o.Medication, prod),
		}},
		Subject:    m.reference(lk, KindPatient, o.MRN),
		AuthoredOn: fDateTime(o.AuthoredAt),
		Requester:  practitionerRef(o.Prescriber),
		Note:       fNote(o.Note),
	}
	for _, d := range o.Diagnoses {
		res.ReasonCode = append(res.ReasonCode, diagnosisConcept(d))
	}

	dosage := &dtpb.Dosage{
		Text:  fString(orderDosageText(o, freq)),
		Route: route,
		DoseAndRate: []*dtpb.Dosage_DoseAndRate{{
			Dose: &dtpb.Dosage_DoseAndRate_DoseX{Choice: &dtpb.Dosage_DoseAndRate_DoseX_Quantity{
				Quantity: fSimpleUCUM(o.Dose.Value, o.Dose.Unit, unit),
			}},
		}},
	}
	if freq.times > 0 || o.Sessions > 0 {
		repeat := &dtpb.Timing_Repeat{}
		if freq.times > 0 {
			repeat.Frequency = &dtpb.PositiveInt{Value: uint32(freq.times)}
			repeat.Period = fDecimal(1)
			repeat.PeriodUnit = &dtpb.Timing_Repeat_PeriodUnitCode{Value: freq.unit}
		}
		if o.Sessions > 0 {
			repeat.Count = &dtpb.PositiveInt{Value: uint32(o.Sessions)}
		}
		dosage.Timing = &dtpb.Timing{Repeat: repeat}
	}
	res.DosageInstruction = []*dtpb.Dosage{dosage}

	return []builtResource{{typ: "MedicationRequest", id: id,
		cr: &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_MedicationRequest{MedicationRequest: res}}}}
}

// orderDosageText returns the human-readable dosage of an order, e.g.
// "0.5 mg/kg IM, 2 times per week, 6 sessions".
func orderDosageText(o *Order, freq timingFrequency) string {
	var b strings.Builder
	b.WriteString(decimalText(o.Dose.Value))
	b.WriteByte(' ')
	b.WriteString(o.Dose.Unit)
	b.WriteByte(' ')
	b.WriteString(o.Route)
	if freq.times > 0 {
		b.WriteString(", ")
		b.WriteString(freq.text())
	}
	switch {
	case o.Sessions == 1:
		b.WriteString(", 1 session")
	case o.Sessions > 1:
		b.WriteString(", ")
		b.WriteString(strconv.Itoa(o.Sessions))
		b.WriteString(" sessions")
	}
	return b.String()
}
