package mapping

import (
	"math"
	"strconv"
	"strings"

	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	"google.golang.org/protobuf/types/known/anypb"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	mapb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_administration_go_proto"
	medpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_go_proto"
)

// fhirAdminStatus maps a local administration status to
// MedicationAdministration.status.
var fhirAdminStatus = map[string]cpb.MedicationAdministrationStatusCode_Value{
	"completed":        cpb.MedicationAdministrationStatusCode_COMPLETED,
	"not-done":         cpb.MedicationAdministrationStatusCode_NOT_DONE,
	"stopped":          cpb.MedicationAdministrationStatusCode_STOPPED,
	"in-progress":      cpb.MedicationAdministrationStatusCode_IN_PROGRESS,
	"entered-in-error": cpb.MedicationAdministrationStatusCode_ENTERED_IN_ERROR,
}

// containedMedicationID is the local id of the contained Medication that
// carries an administration's lot.
const containedMedicationID = "med"

// administeredMg returns the dose given in mg: the dose itself, or for a
// dose in mg/kg, value × weight rounded to 2 decimals.
func administeredMg(d Dose, weightKg *float64) (float64, bool) {
	switch d.Unit {
	case "mg":
		return d.Value, true
	case "mg/kg":
		if weightKg == nil {
			return 0, false
		}
		return math.Round(d.Value**weightKg*100) / 100, true
	}
	return 0, false
}

// administration maps an administration to a MedicationAdministration,
// followed by the Observations derived from it (vital signs, body weight,
// adverse events).
func (m *Mapper) administration(a *Administration, lk Lookup, p *mapProblems) []builtResource {
	if strings.TrimSpace(a.AdminID) == "" {
		p.add("admin_id", "required")
	}
	if strings.TrimSpace(a.MRN) == "" {
		p.add("mrn", "required")
	}
	status, ok := fhirAdminStatus[a.Status]
	if !ok {
		p.add("status", "not an administration status")
	}
	if a.StartedAt.IsZero() {
		p.add("started_at", "required")
	}
	if a.EndedAt != nil && a.EndedAt.Before(a.StartedAt) {
		p.add("ended_at", "before started_at")
	}
	checkNPI(p, "performer", a.Performer)

	var prodCode string
	var prod Product
	if order := lk.Order(a.OrderID); order == nil {
		p.addErr("order_id", "order unknown (its product gives the medication)", ErrOrderUnknown)
	} else if prod, ok = m.cfg.Formulary[order.Medication]; !ok {
		p.add("order_id", "the order's product is not in the formulary")
	} else {
		prodCode = order.Medication
	}
	route, ok := routeConcept(a.Route)
	if !ok {
		p.add("route", "not one of IM, IV, IN, SL, PO")
	}
	var site *dtpb.CodeableConcept
	if a.Site != "" {
		if site, ok = siteConcept(a.Site); !ok {
			p.add("site", "not a known injection site")
		}
	}
	if a.WeightKg != nil && (!finiteNumber(*a.WeightKg) || *a.WeightKg <= 0) {
		p.add("weight_kg", "not a positive number")
	}
	if !finiteNumber(a.Dose.Value) || a.Dose.Value <= 0 {
		p.add("dose.value", "not a positive number")
	}
	mg, ok := administeredMg(a.Dose, a.WeightKg)
	switch {
	case a.Dose.Unit != "mg" && a.Dose.Unit != "mg/kg":
		p.add("dose.unit", "not mg or mg/kg")
	case a.Status == "not-done":
		// No dose was given: none is computed or sent.
	case !ok:
		p.add("weight_kg", "required for a dose in mg/kg")
	case !finiteNumber(mg) || mg <= 0:
		p.add("dose.value", "does not give a positive dose in mg")
	}
	var lotExpires *dtpb.DateTime
	if a.LotExpires != "" {
		day, ok := m.parseDay(a.LotExpires)
		if !ok {
			p.add("lot_expires", "not a YYYY-MM-DD date")
		}
		lotExpires = m.fDayDateTime(day)
	}
	var notDoneText string
	if a.NotDoneReason != "" {
		if notDoneText, ok = m.cfg.NotDoneReasons[a.NotDoneReason]; !ok {
			p.add("not_done_reason", "not a configured reason")
		}
	}
	m.checkAdminObservations(a, p)
	if !p.ok() {
		return nil
	}

	id := m.Identifier(KindAdministration, a.AdminID)
	res := &mapb.MedicationAdministration{
		Identifier: []*dtpb.Identifier{{System: fURI(id.System), Value: fString(id.Value)}},
		Status:     &mapb.MedicationAdministration_StatusCode{Value: status},
		Subject:    m.reference(lk, KindPatient, a.MRN),
		Performer:  []*mapb.MedicationAdministration_Performer{{Actor: practitionerRef(a.Performer)}},
		Request:    m.reference(lk, KindOrder, a.OrderID),
		Note:       fNote(a.Note),
	}
	if a.Status == "not-done" && a.NotDoneReason != "" {
		res.StatusReason = []*dtpb.CodeableConcept{m.notDoneConcept(a.NotDoneReason, notDoneText)}
	}

	medCode := m.productConcept(prodCode, prod)
	if a.Lot == "" {
		res.Medication = &mapb.MedicationAdministration_MedicationX{
			Choice: &mapb.MedicationAdministration_MedicationX_CodeableConcept{CodeableConcept: medCode},
		}
	} else {
		med := &medpb.Medication{
			Id:    &dtpb.Id{Value: containedMedicationID},
			Code:  medCode,
			Batch: &medpb.Medication_Batch{LotNumber: fString(a.Lot), ExpirationDate: lotExpires},
		}
		if prod.Form == "injection-solution" {
			med.Form = concept("", formInjectionSolution)
		}
		cr := &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Medication{Medication: med}}
		// fhirvalidate does not look inside contained resources (they are
		// packed in Any), so the Medication is validated on its own.
		if err := fhirvalidate.Validate(cr); err != nil {
			p.addErr("lot", "contained Medication fails FHIR validation", err)
			return nil
		}
		packed, err := anypb.New(cr)
		if err != nil {
			p.addErr("lot", "cannot pack the contained Medication", err)
			return nil
		}
		res.Contained = []*anypb.Any{packed}
		res.Medication = &mapb.MedicationAdministration_MedicationX{
			Choice: &mapb.MedicationAdministration_MedicationX_Reference{Reference: &dtpb.Reference{
				Reference: &dtpb.Reference_Fragment{Fragment: fString(containedMedicationID)},
			}},
		}
	}

	if a.EndedAt != nil {
		res.Effective = &mapb.MedicationAdministration_EffectiveX{Choice: &mapb.MedicationAdministration_EffectiveX_Period{
			Period: &dtpb.Period{Start: fDateTime(a.StartedAt), End: fDateTime(*a.EndedAt)},
		}}
	} else {
		res.Effective = &mapb.MedicationAdministration_EffectiveX{Choice: &mapb.MedicationAdministration_EffectiveX_DateTime{
			DateTime: fDateTime(a.StartedAt),
		}}
	}

	// A dose that was not given has no dosage (mad-1 would need a dose).
	if a.Status != "not-done" {
		res.Dosage = &mapb.MedicationAdministration_Dosage{
			Text:  fString(adminDosageText(a, mg, site)),
			Site:  site,
			Route: route,
			Dose:  fSimpleUCUM(mg, "mg", "mg"),
		}
	}

	out := make([]builtResource, 0, 1+3*len(a.Vitals)+1+len(a.AdverseEvents))
	out = append(out, builtResource{typ: "MedicationAdministration", id: id,
		cr: &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_MedicationAdministration{MedicationAdministration: res}}})
	return m.adminObservations(a, lk, out)
}

// notDoneConcept returns the status reason of a dose not given: the clinic
// reason coding with its configured display, then the SNOMED CT reason
// (406149000 "Medication refused" for a patient who declined, 371900001
// "Medication not administered" otherwise).
func (m *Mapper) notDoneConcept(code, display string) *dtpb.CodeableConcept {
	snomed := notGivenNotAdministered
	if code == "patient-declined" {
		snomed = notGivenRefused
	}
	return concept(display, coding{m.sys.notDoneReason, code, display}, snomed)
}

// adminDosageText returns the human-readable dose given, e.g. "35 mg IM,
// left deltoid" or "0.5 mg/kg x 70 kg = 35 mg IM".
func adminDosageText(a *Administration, mg float64, site *dtpb.CodeableConcept) string {
	var b strings.Builder
	if a.Dose.Unit == "mg/kg" {
		b.WriteString(decimalText(a.Dose.Value))
		b.WriteString(" mg/kg x ")
		b.WriteString(decimalText(*a.WeightKg))
		b.WriteString(" kg = ")
	}
	b.WriteString(decimalText(mg))
	b.WriteString(" mg ")
	b.WriteString(a.Route)
	if site.GetText().GetValue() != "" {
		b.WriteString(", ")
		b.WriteString(site.GetText().GetValue())
	}
	return b.String()
}

// fieldIndex returns "name[i]".
func fieldIndex(name string, i int) string {
	return name + "[" + strconv.Itoa(i) + "]"
}
