package mapping

import (
	"math"
	"strconv"
	"strings"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
)

// score maps a score to one survey Observation: the total as valueInteger,
// the items as components, the severity band as interpretation where the
// reference gives bands (PHQ-9, MADRS), partOf the session's
// MedicationAdministration when admin_id is set.
//
// The interpretation is coded in the clinic's severity system
// (Base + "/severity"): the v3 ObservationInterpretation code system has no
// severity bands.
func (m *Mapper) score(s *Score, lk Lookup, p *mapProblems) []builtResource {
	if strings.TrimSpace(s.ScoreID) == "" {
		p.add("score_id", "required")
	}
	if strings.TrimSpace(s.MRN) == "" {
		p.add("mrn", "required")
	}
	if s.TakenAt.IsZero() {
		p.add("taken_at", "required")
	}
	inst, ok := instrumentCodings[s.Instrument]
	if !ok {
		p.add("instrument", "not one of PHQ-9, GAD-7, MADRS, QIDS-SR16, PHQ-2")
	}
	if s.Total < 0 || s.Total > math.MaxInt32 {
		p.add("total", "out of range")
	}
	band, hasBand := inst.band(s.Total)
	if ok && len(inst.bands) > 0 && !hasBand {
		p.add("total", "outside the instrument's range")
	}
	if ok && inst.itemCodes != nil && len(s.Items) > len(inst.itemCodes) {
		p.add("items", "more items than the instrument has")
	}
	for i, v := range s.Items {
		if v < 0 || v > math.MaxInt32 {
			p.add(fieldIndex("items", i), "out of range")
		}
	}
	if s.Performer != nil {
		checkNPI(p, "performer", *s.Performer)
	}
	if !p.ok() {
		return nil
	}

	id := m.Identifier(KindScore, s.ScoreID)
	o := m.observation(id, cpb.ObservationStatusCode_FINAL, inst.codeConcept(s.Instrument, m.sys.instrument), lk, s.MRN, s.TakenAt)
	o.Category = []*dtpb.CodeableConcept{concept("", categorySurvey)}
	o.Value = &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Integer{Integer: &dtpb.Integer{Value: int32(s.Total)}}}
	if s.Performer != nil {
		o.Performer = []*dtpb.Reference{practitionerRef(*s.Performer)}
	}
	if hasBand {
		text := band.display + " (" + s.Instrument + " " + strconv.Itoa(band.low) + "-" + strconv.Itoa(band.high) + ")"
		o.Interpretation = []*dtpb.CodeableConcept{concept(text, coding{m.sys.severity, band.code, band.display})}
	}
	for i, v := range s.Items {
		code, _ := inst.itemConcept(s.Instrument, m.sys.instrument, i) // count checked above
		o.Component = append(o.Component, &obspb.Observation_Component{
			Code:  code,
			Value: &obspb.Observation_Component_ValueX{Choice: &obspb.Observation_Component_ValueX_Integer{Integer: &dtpb.Integer{Value: int32(v)}}},
		})
	}
	if s.AdminID != "" {
		o.PartOf = []*dtpb.Reference{m.reference(lk, KindAdministration, s.AdminID)}
	}
	return []builtResource{observationResource(id, o)}
}
