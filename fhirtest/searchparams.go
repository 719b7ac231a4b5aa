package fhirtest

import (
	"sort"

	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// paramKind is the FHIR search parameter type of a supported parameter.
type paramKind int

const (
	kindToken paramKind = iota
	kindReference
	kindDate
)

func (k paramKind) String() string {
	switch k {
	case kindReference:
		return "reference"
	case kindDate:
		return "date"
	default:
		return "token"
	}
}

// searchParam is one supported search parameter of a resource type, with
// the R4 name and the JSON element paths (dot-separated, arrays flattened)
// its values come from.
type searchParam struct {
	name  string
	kind  paramKind
	paths []string
	// targets lists the resource types a reference parameter may point to
	// (the R4 definition's targets); patient-style parameters have one.
	targets []string
	// doc is the CapabilityStatement documentation.
	doc string
}

const (
	paramID          = "_id"
	paramLastUpdated = "_lastUpdated"
	paramIdentifier  = "identifier"
)

var (
	// resourceTypes lists every R4 resource type, sorted; it is the set of
	// types the server accepts.
	resourceTypes []string
	// isResourceTypeSet holds resourceTypes as a set.
	isResourceTypeSet = map[string]bool{}
	// typeParams holds the supported search parameters of each type, by name.
	typeParams = map[string]map[string]*searchParam{}
)

// Reference target lists, from the R4 search parameter definitions.
var (
	patientOnly       = []string{"Patient"}
	subjectMR         = []string{"Patient", "Group"}
	subjectObs        = []string{"Patient", "Group", "Device", "Location"}
	requesterMR       = []string{"Practitioner", "Organization", "Patient", "PractitionerRole", "RelatedPerson", "Device"}
	performerMA       = []string{"Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Device"}
	performerObs      = []string{"Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient", "RelatedPerson"}
	partOfObs         = []string{"MedicationAdministration", "MedicationDispense", "MedicationStatement", "Procedure", "Immunization", "ImagingStudy"}
	hasMemberObs      = []string{"Observation", "QuestionnaireResponse", "MolecularSequence"}
	derivedFromObs    = []string{"DocumentReference", "ImagingStudy", "Media", "QuestionnaireResponse", "Observation", "MolecularSequence"}
	basedOnObs        = []string{"CarePlan", "DeviceRequest", "ImmunizationRecommendation", "MedicationRequest", "NutritionOrder", "ServiceRequest"}
	generalPractition = []string{"Organization", "Practitioner", "PractitionerRole"}
)

func tok(name, doc string, paths ...string) *searchParam {
	return &searchParam{name: name, kind: kindToken, paths: paths, doc: doc}
}

func ref(name string, targets []string, doc string, paths ...string) *searchParam {
	return &searchParam{name: name, kind: kindReference, paths: paths, targets: targets, doc: doc}
}

func date(name, doc string, paths ...string) *searchParam {
	return &searchParam{name: name, kind: kindDate, paths: paths, doc: doc}
}

// specificParams are the type-specific parameters beyond _id, _lastUpdated
// and identifier.
var specificParams = map[string][]*searchParam{
	"Patient": {
		tok("gender", "Gender of the patient", "gender"),
		date("birthdate", "The patient's date of birth", "birthDate"),
		tok("active", "Whether the patient record is active", "active"),
		ref("general-practitioner", generalPractition, "Patient's nominated general practitioner", "generalPractitioner"),
		ref("organization", []string{"Organization"}, "The organization that is the custodian of the patient record", "managingOrganization"),
	},
	"Practitioner": {
		tok("active", "Whether the practitioner record is active", "active"),
		tok("gender", "Gender of the practitioner", "gender"),
	},
	"Medication": {
		tok("code", "Returns medications for a specific code", "code"),
		tok("status", "Returns medications for this status", "status"),
		tok("form", "Returns medications for a specific dose form", "form"),
		tok("lot-number", "Returns medications in a batch with this lot number", "batch.lotNumber"),
		date("expiration-date", "Returns medications in a batch with this expiration date", "batch.expirationDate"),
	},
	"MedicationRequest": {
		tok("status", "Status of the prescription", "status"),
		tok("intent", "Returns prescriptions with different intents", "intent"),
		tok("category", "Returns prescriptions with different categories", "category"),
		tok("code", "Return prescriptions of this medication code", "medicationCodeableConcept"),
		ref("medication", []string{"Medication"}, "Return prescriptions for this medication reference", "medicationReference"),
		ref("patient", patientOnly, "Returns prescriptions for a specific patient", "subject"),
		ref("subject", subjectMR, "The identity of a patient to list orders for", "subject"),
		ref("requester", requesterMR, "Returns prescriptions prescribed by this prescriber", "requester"),
		ref("encounter", []string{"Encounter"}, "Return prescriptions with this encounter identifier", "encounter"),
		date("authoredon", "Return prescriptions written on this date", "authoredOn"),
	},
	"MedicationAdministration": {
		tok("status", "MedicationAdministration event status", "status"),
		tok("code", "Return administrations of this medication code", "medicationCodeableConcept"),
		ref("medication", []string{"Medication"}, "Return administrations of this medication resource", "medicationReference"),
		ref("patient", patientOnly, "The identity of a patient to list administrations for", "subject"),
		ref("subject", subjectMR, "The identity of the individual or group to list administrations for", "subject"),
		ref("request", []string{"MedicationRequest"}, "The identity of a request to list administrations from", "request"),
		ref("performer", performerMA, "The identity of the individual who administered the medication", "performer.actor"),
		ref("context", []string{"Encounter", "EpisodeOfCare"}, "Return administrations that share this encounter or episode of care", "context"),
		date("effective-time", "Date administration happened (or did not happen)", "effectiveDateTime", "effectivePeriod"),
		tok("reason-given", "Reasons for administering the medication", "reasonCode"),
		tok("reason-not-given", "Reasons for not administering the medication", "statusReason"),
	},
	"Observation": {
		tok("status", "The status of the observation", "status"),
		tok("code", "The code of the observation type", "code"),
		tok("category", "The classification of the type of observation", "category"),
		tok("component-code", "The component code of the observation type", "component.code"),
		tok("value-concept", "The value of the observation, if the value is a CodeableConcept", "valueCodeableConcept"),
		ref("patient", patientOnly, "The subject that the observation is about (if patient)", "subject"),
		ref("subject", subjectObs, "The subject that the observation is about", "subject"),
		ref("encounter", []string{"Encounter"}, "Encounter related to the observation", "encounter"),
		ref("part-of", partOfObs, "Part of referenced event", "partOf"),
		ref("has-member", hasMemberObs, "Related resource that belongs to the Observation group", "hasMember"),
		ref("derived-from", derivedFromObs, "Related measurements the observation is made from", "derivedFrom"),
		ref("based-on", basedOnObs, "Reference to the service request", "basedOn"),
		ref("performer", performerObs, "Who performed the observation", "performer"),
		date("date", "Obtained date/time. If the obtained element is a period, a date that falls in the period", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
	},
	"QuestionnaireResponse": {
		tok("status", "The status of the questionnaire response", "status"),
		ref("patient", patientOnly, "The patient that is the subject of the questionnaire response", "subject"),
		ref("subject", nil, "The subject of the questionnaire response", "subject"),
		ref("author", []string{"Device", "Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Organization"}, "The author of the questionnaire response", "author"),
		ref("encounter", []string{"Encounter"}, "Encounter associated with the questionnaire response", "encounter"),
		ref("based-on", []string{"CarePlan", "ServiceRequest"}, "Plan/proposal/order fulfilled by this questionnaire response", "basedOn"),
		ref("part-of", []string{"Observation", "Procedure"}, "Procedure or observation this questionnaire response was performed as a part of", "partOf"),
		date("authored", "When the questionnaire response was last changed", "authored"),
	},
}

func init() {
	od := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().Get(0)
	for i := 0; i < od.Fields().Len(); i++ {
		msg := od.Fields().Get(i).Message()
		name := string(msg.Name())
		resourceTypes = append(resourceTypes, name)
		isResourceTypeSet[name] = true
		params := map[string]*searchParam{
			paramID:          tok(paramID, "Logical id of this artifact"),
			paramLastUpdated: date(paramLastUpdated, "When the resource version last changed"),
		}
		if msg.Fields().ByName("identifier") != nil {
			params[paramIdentifier] = tok(paramIdentifier, "A business identifier of the resource", "identifier")
		}
		for _, p := range specificParams[name] {
			params[p.name] = p
		}
		typeParams[name] = params
	}
	sort.Strings(resourceTypes)
}

// sortedParams returns a type's parameters sorted by name.
func sortedParams(typ string) []*searchParam {
	ps := make([]*searchParam, 0, len(typeParams[typ]))
	for _, p := range typeParams[typ] {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	return ps
}
