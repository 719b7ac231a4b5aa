package mapping

import (
	"strconv"
	"strings"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	vspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/valuesets_go_proto"
)

// Every code in this file comes from shared/reference/clinical-codes.md
// (section numbers in the comments). A display is given only where the
// reference shows one; codes the reference marks UNVERIFIED are not used,
// except where the reference names them as the fallback (thigh sites, with
// text and no display).

// Code system URIs (reference section 0).
const (
	systemLOINC       = "http://loinc.org"
	systemRxNorm      = "http://www.nlm.nih.gov/research/umls/rxnorm"
	systemSNOMED      = "http://snomed.info/sct"
	systemUCUM        = "http://unitsofmeasure.org"
	systemICD10CM     = "http://hl7.org/fhir/sid/icd-10-cm"
	systemNDC         = "http://hl7.org/fhir/sid/ndc"
	systemObsCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	systemV20203      = "http://terminology.hl7.org/CodeSystem/v2-0203"
	systemNPI         = "http://hl7.org/fhir/sid/us-npi"
	systemMRCategory  = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
)

// R4 base vital-signs profiles (reference section 6).
const (
	profileBP         = "http://hl7.org/fhir/StructureDefinition/bp"
	profileHeartRate  = "http://hl7.org/fhir/StructureDefinition/heartrate"
	profileOxygenSat  = "http://hl7.org/fhir/StructureDefinition/oxygensat"
	profileBodyWeight = "http://hl7.org/fhir/StructureDefinition/bodyweight"
)

// coding is one code of a code system; display is empty where the reference
// gives none.
type coding struct {
	system, code, display string
}

func (c coding) proto() *dtpb.Coding {
	pb := &dtpb.Coding{System: fURI(c.system), Code: fCode(c.code)}
	if c.display != "" {
		pb.Display = fString(c.display)
	}
	return pb
}

// concept returns a CodeableConcept with the codings and, if not empty, text.
func concept(text string, codings ...coding) *dtpb.CodeableConcept {
	cc := &dtpb.CodeableConcept{Coding: make([]*dtpb.Coding, len(codings))}
	for i, c := range codings {
		cc.Coding[i] = c.proto()
	}
	if text != "" {
		cc.Text = fString(text)
	}
	return cc
}

// Identifier types (reference section 8).
var (
	identifierTypeMR   = coding{systemV20203, "MR", "Medical Record Number"}
	identifierTypePLAC = coding{systemV20203, "PLAC", "Placer Identifier"}
)

// Categories (reference sections 7 and 0). The display "Outpatient" is the
// one of the R4 medicationrequest-category code system.
var (
	categoryVitalSigns = coding{systemObsCategory, "vital-signs", "Vital Signs"}
	categorySurvey     = coding{systemObsCategory, "survey", "Survey"}
	categoryOutpatient = coding{systemMRCategory, "outpatient", "Outpatient"}
)

// Routes (reference section 2), by local route code.
var routeCodings = map[string]coding{
	"IM": {systemSNOMED, "78421000", "Intramuscular route (qualifier value)"},
	"IV": {systemSNOMED, "47625008", "Intravenous route (qualifier value)"},
	"IN": {systemSNOMED, "46713006", "Nasal route (qualifier value)"},
	"SL": {systemSNOMED, "37839007", "Sublingual route"},
	"PO": {systemSNOMED, "26643006", "Oral route"},
}

// routeConcept returns the route of a local route code.
func routeConcept(route string) (*dtpb.CodeableConcept, bool) {
	c, ok := routeCodings[route]
	if !ok {
		return nil, false
	}
	return concept("", c), true
}

// siteCoding is the coded form of a local injection site.
type siteCoding struct {
	codings []coding
	text    string
}

// Sites (reference section 2). The lateralised deltoid codes exist only in
// the SNOMED CT US Edition, so the International-Edition deltoid code follows
// them; gluteal sites have one code for both sides (the side is in text);
// the thigh codes have no verified display, so they carry text only.
var (
	deltoid     = coding{systemSNOMED, "35259002", "Deltoid muscle"}
	gluteus     = coding{systemSNOMED, "206007", "Gluteus maximus muscle"}
	siteCodings = map[string]siteCoding{
		"left-deltoid":  {[]coding{{systemSNOMED, "16217701000119102", "Structure of left deltoid muscle"}, deltoid}, "left deltoid"},
		"right-deltoid": {[]coding{{systemSNOMED, "16217661000119109", "Structure of right deltoid muscle"}, deltoid}, "right deltoid"},
		"left-gluteal":  {[]coding{gluteus}, "left gluteal"},
		"right-gluteal": {[]coding{gluteus}, "right gluteal"},
		"left-thigh":    {[]coding{{systemSNOMED, "61396006", ""}}, "left thigh"},
		"right-thigh":   {[]coding{{systemSNOMED, "11207009", ""}}, "right thigh"},
	}
)

// siteConcept returns the body site of a local site code.
func siteConcept(site string) (*dtpb.CodeableConcept, bool) {
	s, ok := siteCodings[site]
	if !ok {
		return nil, false
	}
	return concept(s.text, s.codings...), true
}

// Medication form (reference section 1): injection solutions only; the
// reference has no verified form code for a nasal spray.
var formInjectionSolution = coding{systemSNOMED, "385219001", "Injection solution (qualifier value)"}

// Reasons a dose was not given (reference section 9): a declined dose is a
// refusal, every other reason a plain non-administration.
var (
	notGivenRefused         = coding{systemSNOMED, "406149000", "Medication refused"}
	notGivenNotAdministered = coding{systemSNOMED, "371900001", "Medication not administered"}
)

// icd10Displays holds the ICD-10-CM descriptions the reference gives
// (section 4); other codes are sent without display.
var icd10Displays = map[string]string{
	"F32.2": "Major depressive disorder, single episode, severe without psychotic features",
	"F32.9": "Major depressive disorder, single episode, unspecified",
	"F32.A": "Depression, unspecified",
	"F33.1": "Major depressive disorder, recurrent, moderate",
	"F33.2": "Major depressive disorder, recurrent severe without psychotic features",
	"F33.9": "Major depressive disorder, recurrent, unspecified",
}

// diagnosisConcept returns an ICD-10-CM reason code.
func diagnosisConcept(code string) *dtpb.CodeableConcept {
	return concept("", coding{systemICD10CM, code, icd10Displays[code]})
}

// Vital signs (reference section 6).
var (
	loincBPPanel   = coding{systemLOINC, "85354-9", "Blood pressure panel with all children optional"}
	loincSystolic  = coding{systemLOINC, "8480-6", "Systolic blood pressure"}
	loincDiastolic = coding{systemLOINC, "8462-4", "Diastolic blood pressure"}
	loincHeartRate = coding{systemLOINC, "8867-4", "Heart Rate"}
	loincSpO2      = coding{systemLOINC, "2708-6", "Oxygen saturation in Arterial blood"}
	loincSpO2Pulse = coding{systemLOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"}
	loincWeight    = coding{systemLOINC, "29463-7", "Body Weight"}
)

// instrumentCoding describes how a score instrument is coded.
type instrumentCoding struct {
	// loinc is the LOINC total-score coding; zero when the reference has no
	// verified LOINC code (the clinic code system is used).
	loinc coding
	// text is the code's text, and the display of the clinic coding.
	text string
	// itemCodes are the LOINC codes of the items, in instrument order; nil
	// when items use clinic codes "<instrument>-item-<n>".
	itemCodes []coding
	// bands are the severity bands the reference gives, in score order.
	bands []severityBand
}

// severityBand is one interpretation band of a total score, inclusive.
type severityBand struct {
	low, high     int
	code, display string
}

// PHQ-9 items (reference section 5). Items 6 to 8 have abridged displays in
// the reference, so they are sent without display.
var phq9Items = []coding{
	{systemLOINC, "44250-9", "Little interest or pleasure in doing things in last 2 weeks"},
	{systemLOINC, "44255-8", "Feeling down, depressed, or hopeless in last 2 weeks"},
	{systemLOINC, "44259-0", "Trouble falling or staying asleep, or sleeping too much in last 2 weeks [Reported.PHQ]"},
	{systemLOINC, "44254-1", "Feeling tired or having little energy in last 2 weeks [Reported.PHQ]"},
	{systemLOINC, "44251-7", "Poor appetite or overeating in last 2 weeks [Reported.PHQ]"},
	{systemLOINC, "44258-2", ""},
	{systemLOINC, "44252-5", ""},
	{systemLOINC, "44253-3", ""},
	{systemLOINC, "44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way in last 2 weeks [Reported.PHQ]"},
}

// instrumentCodings codes each local instrument (reference section 5). MADRS and
// QIDS-SR16 have no verified LOINC code: they use the clinic code system.
var instrumentCodings = map[string]instrumentCoding{
	"PHQ-9": {
		loinc:     coding{systemLOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"},
		text:      "PHQ-9 total score",
		itemCodes: phq9Items,
		bands: []severityBand{
			{0, 4, "none-minimal", "None/minimal"},
			{5, 9, "mild", "Mild"},
			{10, 14, "moderate", "Moderate"},
			{15, 19, "moderately-severe", "Moderately severe"},
			{20, 27, "severe", "Severe"},
		},
	},
	"PHQ-2": {
		loinc:     coding{systemLOINC, "55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]"},
		text:      "PHQ-2 total score",
		itemCodes: phq9Items[:2],
	},
	"GAD-7": {
		loinc: coding{systemLOINC, "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"},
		text:  "GAD-7 total score",
	},
	"MADRS": {
		text: "Montgomery-Asberg Depression Rating Scale (MADRS) total score",
		bands: []severityBand{
			{0, 6, "normal", "Normal"},
			{7, 19, "mild", "Mild"},
			{20, 34, "moderate", "Moderate"},
			{35, 60, "severe", "Severe"},
		},
	},
	"QIDS-SR16": {
		text: "Quick Inventory of Depressive Symptomatology, Self-Report, 16 item (QIDS-SR16) total score",
	},
}

// band returns the severity band of total, if the instrument has bands and
// one contains it.
func (in instrumentCoding) band(total int) (severityBand, bool) {
	for _, b := range in.bands {
		if total >= b.low && total <= b.high {
			return b, true
		}
	}
	return severityBand{}, false
}

// codeConcept returns the total-score code of the instrument named name.
func (in instrumentCoding) codeConcept(name, clinicSystem string) *dtpb.CodeableConcept {
	if in.loinc.code != "" {
		return concept(in.text, in.loinc)
	}
	return concept(in.text, coding{clinicSystem, name, in.text})
}

// itemConcept returns the code of the 0-based item i of the instrument named
// name, and false if the instrument has fewer LOINC-coded items.
func (in instrumentCoding) itemConcept(name, clinicSystem string, i int) (*dtpb.CodeableConcept, bool) {
	n := strconv.Itoa(i + 1)
	text := name + " item " + n
	if in.itemCodes != nil {
		if i >= len(in.itemCodes) {
			return nil, false
		}
		return concept(text, in.itemCodes[i]), true
	}
	return concept(text, coding{clinicSystem, name + "-item-" + n, text}), true
}

// timingFrequency is a parsed order frequency such as "2/week".
type timingFrequency struct {
	times int
	unit  vspb.UnitsOfTimeValueSet_Value
	word  string // "day", "week", "month"
}

// parseTimingFrequency parses "N/day", "N/week" or "N/month" (also "N/d", "N/wk",
// "N/mo"), N a positive integer.
func parseTimingFrequency(s string) (timingFrequency, bool) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return timingFrequency{}, false
	}
	times, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || times < 1 || times > 1000 {
		return timingFrequency{}, false
	}
	f := timingFrequency{times: times}
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "day", "d":
		f.unit, f.word = vspb.UnitsOfTimeValueSet_D, "day"
	case "week", "wk":
		f.unit, f.word = vspb.UnitsOfTimeValueSet_WK, "week"
	case "month", "mo":
		f.unit, f.word = vspb.UnitsOfTimeValueSet_MO, "month"
	default:
		return timingFrequency{}, false
	}
	return f, true
}

// text returns the frequency as words: "once per week", "2 times per week".
func (f timingFrequency) text() string {
	if f.times == 1 {
		return "once per " + f.word
	}
	return strconv.Itoa(f.times) + " times per " + f.word
}
