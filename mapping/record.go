package mapping

import "time"

// Kind names one of the four kinds of local record (DESIGN.md section 2).
type Kind string

// The kinds of local record, in dependency order: a record may refer only to
// kinds that come before it.
const (
	KindPatient        Kind = "patient"
	KindOrder          Kind = "order"
	KindAdministration Kind = "administration"
	KindScore          Kind = "score"
)

// Kinds lists every kind in dependency order.
var Kinds = []Kind{KindPatient, KindOrder, KindAdministration, KindScore}

// Valid reports whether k is one of the four kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindPatient, KindOrder, KindAdministration, KindScore:
		return true
	}
	return false
}

// Record is one parsed and checked local record. Exactly one of Patient,
// Order, Administration and Score is non-nil, the one that Kind names.
type Record struct {
	// Kind is the record's kind.
	Kind Kind
	// Line is the 1-based physical line of the file the record came from
	// (for CSV the header is line 1); zero for records not from a file.
	Line int

	Patient        *Patient
	Order          *Order
	Administration *Administration
	Score          *Score
}

// ID returns the record's local id: the MRN of a patient, the order_id,
// admin_id or score_id of the others.
func (r *Record) ID() string {
	switch {
	case r.Patient != nil:
		return r.Patient.MRN
	case r.Order != nil:
		return r.Order.OrderID
	case r.Administration != nil:
		return r.Administration.AdminID
	case r.Score != nil:
		return r.Score.ScoreID
	}
	return ""
}

// Dependency names a record that another record refers to.
type Dependency struct {
	Kind Kind
	ID   string
}

// Dependencies returns the records r refers to, in dependency order:
// the patient (by MRN), then the order, then the administration.
func (r *Record) Dependencies() []Dependency {
	switch {
	case r.Order != nil:
		return []Dependency{{KindPatient, r.Order.MRN}}
	case r.Administration != nil:
		return []Dependency{{KindPatient, r.Administration.MRN}, {KindOrder, r.Administration.OrderID}}
	case r.Score != nil:
		deps := []Dependency{{KindPatient, r.Score.MRN}}
		if r.Score.AdminID != "" {
			deps = append(deps, Dependency{KindAdministration, r.Score.AdminID})
		}
		return deps
	}
	return nil
}

// Practitioner is a prescriber or performer, identified by NPI.
type Practitioner struct {
	NPI  string `json:"npi"`
	Name string `json:"name"`
}

// Dose is an amount of medication; Unit is "mg" or "mg/kg".
type Dose struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Patient is a local patient record. MRN is its local id.
type Patient struct {
	MRN       string     `json:"mrn"`
	Family    string     `json:"family"`
	Given     []string   `json:"given"`
	BirthDate string     `json:"birth_date"` // YYYY-MM-DD, checked
	Sex       string     `json:"sex"`        // female, male, other, unknown
	Phone     string     `json:"phone,omitempty"`
	Email     string     `json:"email,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// Order is a local ketamine or esketamine order. OrderID is its local id.
type Order struct {
	OrderID    string       `json:"order_id"`
	MRN        string       `json:"mrn"`
	Status     string       `json:"status"`
	AuthoredAt time.Time    `json:"authored_at"`
	Prescriber Practitioner `json:"prescriber"`
	Medication string       `json:"medication"` // a local product code from the formulary
	Route      string       `json:"route"`      // IM, IV, IN, SL, PO
	Dose       Dose         `json:"dose"`       // mg or mg/kg
	Sessions   int          `json:"sessions,omitempty"`
	Frequency  string       `json:"frequency,omitempty"` // e.g. "2/week"
	Diagnoses  []string     `json:"diagnoses,omitempty"` // ICD-10-CM codes
	Note       string       `json:"note,omitempty"`
	UpdatedAt  *time.Time   `json:"updated_at,omitempty"`
}

// Vital is one set of vital signs taken during an administration. Absent
// measures are nil.
type Vital struct {
	At        time.Time `json:"at"`
	Systolic  *float64  `json:"systolic,omitempty"`
	Diastolic *float64  `json:"diastolic,omitempty"`
	HeartRate *float64  `json:"heart_rate,omitempty"`
	SpO2      *float64  `json:"spo2,omitempty"`
}

// Administration is one dose given (or not given) in a session. AdminID is
// its local id.
type Administration struct {
	AdminID       string       `json:"admin_id"`
	OrderID       string       `json:"order_id"`
	MRN           string       `json:"mrn"`
	Status        string       `json:"status"`
	StartedAt     time.Time    `json:"started_at"`
	EndedAt       *time.Time   `json:"ended_at,omitempty"`
	Dose          Dose         `json:"dose"` // mg, or mg/kg with WeightKg set (mapped to mg)
	Route         string       `json:"route"`
	Performer     Practitioner `json:"performer"`
	Site          string       `json:"site,omitempty"`
	Lot           string       `json:"lot,omitempty"`
	LotExpires    string       `json:"lot_expires,omitempty"` // YYYY-MM-DD
	Session       int          `json:"session,omitempty"`
	WeightKg      *float64     `json:"weight_kg,omitempty"`
	Vitals        []Vital      `json:"vitals,omitempty"`
	AdverseEvents []string     `json:"adverse_events,omitempty"`
	NotDoneReason string       `json:"not_done_reason,omitempty"`
	Note          string       `json:"note,omitempty"`
	UpdatedAt     *time.Time   `json:"updated_at,omitempty"`
}

// Score is one depression or anxiety instrument result. ScoreID is its local
// id.
type Score struct {
	ScoreID    string        `json:"score_id"`
	MRN        string        `json:"mrn"`
	Instrument string        `json:"instrument"` // PHQ-9, GAD-7, MADRS, QIDS-SR16, PHQ-2
	TakenAt    time.Time     `json:"taken_at"`
	Total      int           `json:"total"`
	Items      []int         `json:"items,omitempty"`
	AdminID    string        `json:"admin_id,omitempty"`
	Performer  *Practitioner `json:"performer,omitempty"`
	UpdatedAt  *time.Time    `json:"updated_at,omitempty"`
}
