package mapping

import (
	"strings"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	ppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"
)

// fhirGender maps a local sex to Patient.gender (AdministrativeGender).
var fhirGender = map[string]cpb.AdministrativeGenderCode_Value{
	"female":  cpb.AdministrativeGenderCode_FEMALE,
	"male":    cpb.AdministrativeGenderCode_MALE,
	"other":   cpb.AdministrativeGenderCode_OTHER,
	"unknown": cpb.AdministrativeGenderCode_UNKNOWN,
}

// patient maps a patient record to a Patient: identifier (type MR, the
// clinic MRN system), official name, gender, birthDate, telecom.
func (m *Mapper) patient(pt *Patient, p *mapProblems) []builtResource {
	if strings.TrimSpace(pt.MRN) == "" {
		p.add("mrn", "required")
	}
	gender, ok := fhirGender[pt.Sex]
	if !ok {
		p.add("sex", "not one of female, male, other, unknown")
	}
	birth, ok := m.parseDay(pt.BirthDate)
	if !ok {
		p.add("birth_date", "not a YYYY-MM-DD date")
	}
	if !p.ok() {
		return nil
	}

	id := m.Identifier(KindPatient, pt.MRN)
	res := &ppb.Patient{
		Identifier: []*dtpb.Identifier{{
			Type:   concept("", identifierTypeMR),
			System: fURI(id.System),
			Value:  fString(id.Value),
		}},
		Gender:    &ppb.Patient_GenderCode{Value: gender},
		BirthDate: m.fDate(birth),
	}
	name := &dtpb.HumanName{Use: &dtpb.HumanName_UseCode{Value: cpb.NameUseCode_OFFICIAL}}
	if family := strings.TrimSpace(pt.Family); family != "" {
		name.Family = fString(family)
	}
	for _, g := range pt.Given {
		if g = strings.TrimSpace(g); g != "" {
			name.Given = append(name.Given, fString(g))
		}
	}
	if name.Family != nil || len(name.Given) > 0 {
		res.Name = []*dtpb.HumanName{name}
	}
	if phone := strings.TrimSpace(pt.Phone); phone != "" {
		res.Telecom = append(res.Telecom, &dtpb.ContactPoint{
			System: &dtpb.ContactPoint_SystemCode{Value: cpb.ContactPointSystemCode_PHONE},
			Value:  fString(phone),
		})
	}
	if email := strings.TrimSpace(pt.Email); email != "" {
		res.Telecom = append(res.Telecom, &dtpb.ContactPoint{
			System: &dtpb.ContactPoint_SystemCode{Value: cpb.ContactPointSystemCode_EMAIL},
			Value:  fString(email),
		})
	}
	return []builtResource{{typ: "Patient", id: id,
		cr: &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Patient{Patient: res}}}}
}
