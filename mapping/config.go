package mapping

// Config is what varies between clinics in parsing and mapping. The zero
// value is not usable: start from DefaultConfig, which holds the defaults of
// configs/default.yaml, and override fields. Config carries yaml tags so the
// adapter can load it from the clinic's YAML file; mapping itself reads no
// files.
type Config struct {
	// Identifiers configures the business identifier systems.
	Identifiers IdentifierConfig `yaml:"identifiers"`
	// Formulary maps a local product code (an order's "medication") to its
	// coded product. Defaults to the four products of DESIGN.md section 2.
	Formulary map[string]Product `yaml:"formulary"`
	// AdverseEvents lists the accepted adverse_events codes and their display
	// text. Defaults to the list in DESIGN.md section 2.
	AdverseEvents map[string]string `yaml:"adverse_events"`
	// NotDoneReasons lists the accepted not_done_reason codes and their
	// display text. Defaults to the list in DESIGN.md section 2.
	NotDoneReasons map[string]string `yaml:"not_done_reasons"`
	// Limits holds the dose ceilings and the allowed clock skew.
	Limits Limits `yaml:"limits"`
	// TimeZone is the IANA zone used for display text (for example a dosage
	// text's session date). Defaults to "UTC".
	TimeZone string `yaml:"time_zone"`
}

// IdentifierConfig configures the business identifier systems.
type IdentifierConfig struct {
	// Base is the base URI of the clinic's identifier systems; the system of
	// a kind's identifier is Base + "/" + kind. Defaults to
	// "https://clinic.example.org/fhir/sid".
	Base string `yaml:"base"`
	// ClinicCodeSystem is the URI of the clinic-owned code system used for
	// instruments without a verified LOINC code (and their items). Defaults
	// to Base + "/instrument" when empty.
	ClinicCodeSystem string `yaml:"clinic_code_system"`
}

// Product is one formulary entry.
type Product struct {
	// RxNorm is the RxNorm code (RxCUI) of the product. Leave it empty when
	// no verified RxCUI exists: the product is then coded in the clinic's
	// product code system (IdentifierConfig.Base + "/product") with text,
	// never with an unverified RxNorm code.
	RxNorm string `yaml:"rxnorm,omitempty"`
	// Display is the product's display text; required.
	Display string `yaml:"display"`
	// NDC is the NDC product code, if known.
	NDC string `yaml:"ndc,omitempty"`
	// Ingredient is "ketamine" or "esketamine" (used for display and checks).
	Ingredient string `yaml:"ingredient"`
	// StrengthMg and StrengthPerML give the strength as StrengthMg mg per
	// StrengthPerML mL (for a nasal device, mg per device volume).
	StrengthMg    float64 `yaml:"strength_mg"`
	StrengthPerML float64 `yaml:"strength_per_ml"`
	// Form is the dose form: "injection-solution" or "nasal-spray".
	Form string `yaml:"form"`
	// Routes lists the routes this product may be given by (IM, IV, IN, SL, PO).
	Routes []string `yaml:"routes"`
}

// Limits holds the numeric checks of DESIGN.md section 2.
type Limits struct {
	// MaxDoseMg is the ceiling of an administered dose in mg (and of an
	// order in mg). Defaults to 500.
	MaxDoseMg float64 `yaml:"max_dose_mg"`
	// MaxDoseMgPerKg is the ceiling of a weight-based dose. Defaults to 5.
	MaxDoseMgPerKg float64 `yaml:"max_dose_mg_per_kg"`
	// ClockSkewSeconds is how far in the future a time may be before it is
	// rejected. Defaults to 300.
	ClockSkewSeconds int `yaml:"clock_skew_seconds"`
}

// DefaultConfig returns the defaults of configs/default.yaml: the formulary
// and code lists of DESIGN.md section 2 with codes from
// shared/reference/clinical-codes.md. Each call returns a fresh copy.
func DefaultConfig() *Config {
	return &Config{
		Identifiers: IdentifierConfig{Base: "https://clinic.example.org/fhir/sid"},
		Formulary: map[string]Product{
			"ketamine-10mg-ml": {
				RxNorm: "238082", Display: "ketamine 10 MG/ML Injectable Solution",
				Ingredient: "ketamine", StrengthMg: 10, StrengthPerML: 1,
				Form: "injection-solution", Routes: []string{"IM", "IV"},
			},
			// The reference lists 238084 for 50 mg/mL only as inferred
			// (UNVERIFIED): it is not shipped. A clinic that confirms the
			// RxCUI in RxNav sets rxnorm in its config.
			"ketamine-50mg-ml": {
				Display:    "ketamine 50 MG/ML Injectable Solution",
				Ingredient: "ketamine", StrengthMg: 50, StrengthPerML: 1,
				Form: "injection-solution", Routes: []string{"IM", "IV"},
			},
			"ketamine-100mg-ml": {
				RxNorm: "238083", Display: "ketamine 100 MG/ML Injectable Solution",
				Ingredient: "ketamine", StrengthMg: 100, StrengthPerML: 1,
				Form: "injection-solution", Routes: []string{"IM", "IV"},
			},
			// RxNorm has no verified SCD for the 28 mg device; the verified
			// SCDF (esketamine Nasal Spray) and the single-device NDC are used.
			"esketamine-28mg-nasal": {
				RxNorm: "2201623", Display: "esketamine Nasal Spray", NDC: "50458-028-00",
				Ingredient: "esketamine", StrengthMg: 28, StrengthPerML: 0.2,
				Form: "nasal-spray", Routes: []string{"IN"},
			},
		},
		AdverseEvents: map[string]string{
			"nausea":                  "Nausea",
			"vomiting":                "Vomiting",
			"dizziness":               "Dizziness",
			"headache":                "Headache",
			"dissociation":            "Dissociation",
			"sedation":                "Sedation",
			"elevated-blood-pressure": "Elevated blood pressure",
			"anxiety":                 "Anxiety",
		},
		NotDoneReasons: map[string]string{
			"patient-declined":        "Patient declined",
			"elevated-blood-pressure": "Elevated blood pressure",
			"patient-unwell":          "Patient unwell",
			"missed-appointment":      "Missed appointment",
			"clinical-decision":       "Clinical decision",
		},
		Limits:   Limits{MaxDoseMg: 500, MaxDoseMgPerKg: 5, ClockSkewSeconds: 300},
		TimeZone: "UTC",
	}
}
