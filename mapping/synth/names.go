package synth

import "github.com/ketamine-fhir/ketamine-fhir/mapping"

// name is a name as written and its plain ASCII form (for e-mail addresses).
type name struct{ text, ascii string }

var femaleGiven = []name{
	{"Zoë", "zoe"}, {"María", "maria"}, {"Siobhán", "siobhan"}, {"Chloé", "chloe"},
	{"Renée", "renee"}, {"Ana", "ana"}, {"Mai", "mai"}, {"Aoife", "aoife"},
	{"Ingrid", "ingrid"}, {"Sarah", "sarah"}, {"Emily", "emily"}, {"Jessica", "jessica"},
	{"Linh", "linh"}, {"Priya", "priya"}, {"Fátima", "fatima"}, {"Léa", "lea"},
	{"Anaïs", "anais"}, {"Małgorzata", "malgorzata"}, {"Ayşe", "ayse"}, {"Sinéad", "sinead"},
	{"Jennifer", "jennifer"}, {"Olivia", "olivia"}, {"Grace", "grace"}, {"Hana", "hana"},
	{"Guðrún", "gudrun"}, {"Nadia", "nadia"}, {"Keisha", "keisha"}, {"Laura", "laura"},
}

var maleGiven = []name{
	{"José", "jose"}, {"François", "francois"}, {"Jürgen", "jurgen"}, {"Seán", "sean"},
	{"Đức", "duc"}, {"Björn", "bjorn"}, {"Søren", "soren"}, {"Michael", "michael"},
	{"David", "david"}, {"James", "james"}, {"Daniel", "daniel"}, {"Ahmed", "ahmed"},
	{"Kwame", "kwame"}, {"Hiroshi", "hiroshi"}, {"Raúl", "raul"}, {"Nicolás", "nicolas"},
	{"Łukasz", "lukasz"}, {"Mateo", "mateo"}, {"Thomas", "thomas"}, {"Omar", "omar"},
	{"Pádraig", "padraig"}, {"Jean-Luc", "jeanluc"}, {"Emre", "emre"}, {"Robert", "robert"},
}

var neutralGiven = []name{
	{"Alex", "alex"}, {"Sam", "sam"}, {"Jordan", "jordan"}, {"Robin", "robin"},
	{"Noa", "noa"}, {"Kai", "kai"}, {"Andréa", "andrea"}, {"Charlie", "charlie"},
	{"Eli", "eli"}, {"Sasha", "sasha"},
}

// middleNames are second given names; some are gendered in practice, which
// the generator ignores for simplicity except for Thị and Văn.
var middleFemale = []string{"Marie", "José", "Anne", "Thị", "Elizabeth", "Inés", "Louise", "Sofía"}
var middleMale = []string{"Luis", "Văn", "Michael", "José", "Andrés", "Pierre", "Jan", "Ólafur"}

var families = []name{
	{"O'Brien", "obrien"}, {"D'Angelo", "dangelo"}, {"Müller", "muller"}, {"Nguyễn", "nguyen"},
	{"Ólafsdóttir", "olafsdottir"}, {"García", "garcia"}, {"Núñez", "nunez"}, {"Smith", "smith"},
	{"Johnson", "johnson"}, {"Williams", "williams"}, {"Brown", "brown"}, {"Kowalski", "kowalski"},
	{"Dubois", "dubois"}, {"Schäfer", "schafer"}, {"Søndergaard", "sondergaard"}, {"Ó Briain", "obriain"},
	{"van der Berg", "vanderberg"}, {"López", "lopez"}, {"Martínez", "martinez"}, {"Okafor", "okafor"},
	{"Haddad", "haddad"}, {"Kim", "kim"}, {"Tanaka", "tanaka"}, {"Patel", "patel"},
	{"Łęcki", "lecki"}, {"Çelik", "celik"}, {"Papadopoulos", "papadopoulos"}, {"MacLeod", "macleod"},
	{"St. John", "stjohn"}, {"Smith-Jones", "smithjones"}, {"Trần", "tran"}, {"Lefèvre", "lefevre"},
	{"Jónsson", "jonsson"}, {"Rodríguez", "rodriguez"}, {"Wójcik", "wojcik"}, {"Hernández", "hernandez"},
	{"Yılmaz", "yilmaz"}, {"Mensah", "mensah"}, {"Cohen", "cohen"}, {"Ng", "ng"},
}

var emailDomains = []string{"example.com", "example.org", "example.net"}

// areaCodes are eastern US area codes, matching the clinic's UTC-05:00
// offset; phone numbers use the fictional 555-0100..555-0199 range.
var areaCodes = []string{"617", "781", "857", "508", "978", "413"}

// Clinic staff: prescribers (psychiatrists), nurses who give IM and nasal
// doses and monitor, and clinicians who run IV infusions. NPIs are nine
// fixed digits plus their Luhn check digit.
var (
	prescribers = []mapping.Practitioner{
		{NPI: makeNPI("104583726"), Name: "Amélie Laurent, MD"},
		{NPI: makeNPI("119874520"), Name: "Kwabena Mensah, MD"},
		{NPI: makeNPI("132065987"), Name: "Ingrid Þórsdóttir, MD"},
	}
	nurses = []mapping.Practitioner{
		{NPI: makeNPI("145239876"), Name: "Renée Dubois, RN"},
		{NPI: makeNPI("158720341"), Name: "Tomás Ó Ceallaigh, RN"},
		{NPI: makeNPI("163498250"), Name: "Grace O'Neill, NP"},
		{NPI: makeNPI("176054382"), Name: "Mei-Ling Chén, RN"},
	}
	infusionists = []mapping.Practitioner{
		{NPI: makeNPI("181627394"), Name: "Jürgen Hoffmann, MD"},
		nurses[2], // Grace O'Neill, NP, also runs infusions
	}
)

// adverseEvents are the adverse_events codes the generator uses, all from
// the default config list.
const (
	aeNausea       = "nausea"
	aeVomiting     = "vomiting"
	aeDizziness    = "dizziness"
	aeHeadache     = "headache"
	aeDissociation = "dissociation"
	aeSedation     = "sedation"
	aeElevatedBP   = "elevated-blood-pressure"
	aeAnxiety      = "anxiety"
)

// notDoneReasons are the not_done_reason codes the generator uses, all from
// the default config list, with their relative frequency.
var notDoneReasons = []string{"missed-appointment", "patient-unwell", "elevated-blood-pressure", "patient-declined", "clinical-decision"}
var notDoneWeights = []int{35, 25, 20, 12, 8}

// diagnoses are ICD-10-CM codes of reference/clinical-codes.md with their
// relative frequency in a treatment-resistant depression clinic.
var diagnoses = []string{"F33.2", "F33.1", "F32.2", "F33.9", "F32.9", "F32.A"}
var diagnosisWeights = []int{45, 20, 15, 10, 5, 5}
