package mapping

import (
	"time"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
)

// The Observations derived from an administration: per vitals entry a blood
// pressure panel (when both pressures are given), a heart rate and an SpO2;
// a body weight when weight_kg is given; one Observation per adverse event.
// Each is partOf the MedicationAdministration (the administration does not
// point back: that would be a reference cycle). They carry the R4 base
// vital-signs profiles they conform to: status, vital-signs category, LOINC
// code, subject, effectiveDateTime, and UCUM quantities with value, unit,
// system and code.

// checkAdminObservations reports the problems of the derived Observations
// of an administration.
func (m *Mapper) checkAdminObservations(a *Administration, p *mapProblems) {
	for i, v := range a.Vitals {
		field := fieldIndex("vitals", i)
		if v.At.IsZero() {
			p.add(field+".at", "required")
		}
		for _, mv := range []struct {
			name string
			v    *float64
		}{{"systolic", v.Systolic}, {"diastolic", v.Diastolic}, {"heart_rate", v.HeartRate}, {"spo2", v.SpO2}} {
			if mv.v != nil && (!finiteNumber(*mv.v) || *mv.v < 0) {
				p.add(field+"."+mv.name, "not a non-negative number")
			}
		}
	}
	for i, code := range a.AdverseEvents {
		if _, ok := m.cfg.AdverseEvents[code]; !ok {
			p.add(fieldIndex("adverse_events", i), "not a configured adverse event")
		}
	}
}

// adminObservations appends the Observations derived from a to out.
func (m *Mapper) adminObservations(a *Administration, lk Lookup, out []builtResource) []builtResource {
	status := cpb.ObservationStatusCode_FINAL
	if a.Status == "entered-in-error" {
		status = cpb.ObservationStatusCode_ENTERED_IN_ERROR
	}
	newObs := func(id Identifier, profile string, code *dtpb.CodeableConcept, at time.Time) *obspb.Observation {
		o := m.observation(id, status, code, lk, a.MRN, at)
		o.PartOf = []*dtpb.Reference{m.reference(lk, KindAdministration, a.AdminID)}
		if profile != "" {
			o.Meta = &dtpb.Meta{Profile: []*dtpb.Canonical{{Value: profile}}}
			o.Category = []*dtpb.CodeableConcept{concept("", categoryVitalSigns)}
		}
		return o
	}

	for i, v := range a.Vitals {
		if v.Systolic != nil && v.Diastolic != nil {
			id := m.vitalIdentifier(a.AdminID, i, "bp")
			o := newObs(id, profileBP, concept("", loincBPPanel), v.At)
			o.Component = []*obspb.Observation_Component{
				quantityComponent(concept("", loincSystolic), fUCUM(*v.Systolic, "mmHg", "mm[Hg]")),
				quantityComponent(concept("", loincDiastolic), fUCUM(*v.Diastolic, "mmHg", "mm[Hg]")),
			}
			out = append(out, observationResource(id, o))
		}
		if v.HeartRate != nil {
			id := m.vitalIdentifier(a.AdminID, i, "hr")
			o := newObs(id, profileHeartRate, concept("", loincHeartRate), v.At)
			o.Value = quantityValue(fUCUM(*v.HeartRate, "beats/minute", "/min"))
			out = append(out, observationResource(id, o))
		}
		if v.SpO2 != nil {
			id := m.vitalIdentifier(a.AdminID, i, "spo2")
			o := newObs(id, profileOxygenSat, concept("", loincSpO2, loincSpO2Pulse), v.At)
			o.Value = quantityValue(fUCUM(*v.SpO2, "%", "%"))
			out = append(out, observationResource(id, o))
		}
	}
	if a.WeightKg != nil {
		id := m.weightIdentifier(a.AdminID)
		o := newObs(id, profileBodyWeight, concept("", loincWeight), a.StartedAt)
		o.Value = quantityValue(fUCUM(*a.WeightKg, "kg", "kg"))
		out = append(out, observationResource(id, o))
	}
	seen := make(map[string]bool, len(a.AdverseEvents))
	for _, code := range a.AdverseEvents {
		if seen[code] {
			continue // the same event listed twice is one event
		}
		seen[code] = true
		display := m.cfg.AdverseEvents[code]
		id := m.adverseEventIdentifier(a.AdminID, code)
		o := newObs(id, "", concept(display, coding{m.sys.adverseEvent, code, display}), a.StartedAt)
		o.Value = &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Boolean{Boolean: &dtpb.Boolean{Value: true}}}
		out = append(out, observationResource(id, o))
	}
	return out
}

// observation returns an Observation with the elements every Observation of
// this package has: identifier, status, code, subject and
// effectiveDateTime.
func (m *Mapper) observation(id Identifier, status cpb.ObservationStatusCode_Value, code *dtpb.CodeableConcept,
	lk Lookup, mrn string, at time.Time) *obspb.Observation {
	return &obspb.Observation{
		Identifier: []*dtpb.Identifier{{System: fURI(id.System), Value: fString(id.Value)}},
		Status:     &obspb.Observation_StatusCode{Value: status},
		Code:       code,
		Subject:    m.reference(lk, KindPatient, mrn),
		Effective:  &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: fDateTime(at)}},
	}
}

func observationResource(id Identifier, o *obspb.Observation) builtResource {
	return builtResource{typ: "Observation", id: id,
		cr: &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Observation{Observation: o}}}
}

func quantityValue(q *dtpb.Quantity) *obspb.Observation_ValueX {
	return &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Quantity{Quantity: q}}
}

func quantityComponent(code *dtpb.CodeableConcept, q *dtpb.Quantity) *obspb.Observation_Component {
	return &obspb.Observation_Component{
		Code:  code,
		Value: &obspb.Observation_Component_ValueX{Choice: &obspb.Observation_Component_ValueX_Quantity{Quantity: q}},
	}
}
