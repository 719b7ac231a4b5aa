package outcomes

// Schema names the JSON shape of Report. It changes only when a field is
// removed or changes meaning; fields may be added under the same schema.
const Schema = "ketamine-fhir/outcomes/v1"

// Instrument names.
const (
	PHQ9  = "PHQ-9"
	MADRS = "MADRS"
)

// Report is every figure of the outcomes report. It holds aggregates only:
// no patient key, name, identifier or date of any patient. Every count of
// patients below MinCell is replaced by null with Suppressed set. Rates are
// fractions from 0 to 1.
type Report struct {
	// Schema is always the constant Schema.
	Schema string `json:"schema"`
	// MinCell is the smallest count of patients shown.
	MinCell int `json:"min_cell"`
	// Input says what was read and what was left out.
	Input Input `json:"input"`
	// Patients is the number of patients with at least one session.
	Patients *int `json:"patients"`
	// Suppressed is true when Patients is below MinCell: then every figure
	// of the report is suppressed.
	Suppressed bool `json:"suppressed"`
	// Definitions are the rules behind the figures, each with its source.
	Definitions []Definition `json:"definitions"`
	// Instruments holds the PHQ-9 figures, then the MADRS ones.
	Instruments []InstrumentOutcomes `json:"instruments"`
	// Safety holds adverse events per 100 sessions.
	Safety Safety `json:"safety"`
	// BloodPressure compares blood pressure before and after the dose.
	BloodPressure BloodPressure `json:"blood_pressure"`
}

// Input counts the resources read.
type Input struct {
	// Resources is the number of resources read.
	Resources int `json:"resources"`
	// ByType counts the resources of the types the report reads.
	ByType map[string]int `json:"by_type"`
	// Skipped counts resources of other types, which the report skips.
	Skipped map[string]int `json:"skipped"`
	// Excluded counts resources of the report's types left out, by reason.
	Excluded map[string]int `json:"excluded"`
}

// Definition is one rule the report applies.
type Definition struct {
	ID     string `json:"id"`
	Text   string `json:"text"`
	Source string `json:"source"`
}

// InstrumentOutcomes are the figures of one instrument.
type InstrumentOutcomes struct {
	// Instrument is PHQ9 or MADRS.
	Instrument string `json:"instrument"`
	// Code is the code the scores were recognised by (system|code).
	Code string `json:"code"`
	// Remission is the remission rule, e.g. "< 5" or "<= 10".
	Remission string `json:"remission"`
	// Eligible is the number of patients with a baseline above the
	// remission threshold: the cohort the time points follow.
	Eligible *int `json:"eligible"`
	// EligibleSuppressed is true when Eligible is below MinCell.
	EligibleSuppressed bool `json:"eligible_suppressed"`
	// Trajectory is the score by week since the first session, week 0
	// being the baseline.
	Trajectory []Week `json:"trajectory"`
	// TimePoints are the end of the induction series, week 4 and week 12.
	TimePoints []TimePoint `json:"time_points"`
	// SessionsToResponse is how many sessions the first response took.
	SessionsToResponse SessionsToResponse `json:"sessions_to_response"`
}

// Quartiles are a median and its interquartile range (quantiles by linear
// interpolation between order statistics, R's type 7).
type Quartiles struct {
	Q1     float64 `json:"q1"`
	Median float64 `json:"median"`
	Q3     float64 `json:"q3"`
}

// Week is the distribution of scores in one week since the first session:
// one score per patient (the last of the week).
type Week struct {
	Week       int        `json:"week"`
	Patients   *int       `json:"patients"`
	Scores     *Quartiles `json:"scores"`
	Suppressed bool       `json:"suppressed"`
}

// Share is a count of patients within a cohort and its rate.
type Share struct {
	Count *int     `json:"count"`
	Rate  *float64 `json:"rate"`
	// Suppressed is true when the count, or the rest of the cohort, is 1
	// to MinCell-1 patients (or the cohort is suppressed).
	Suppressed bool `json:"suppressed"`
}

// TimePoint is response and remission at one time point.
type TimePoint struct {
	// ID is "end_of_induction", "week_4" or "week_12".
	ID string `json:"id"`
	// Label is the time point in words.
	Label string `json:"label"`
	// Window is the rule that picks the score.
	Window string `json:"window"`
	// Assessed is the number of eligible patients with a score in the
	// window: the denominator.
	Assessed   *int  `json:"assessed"`
	Suppressed bool  `json:"suppressed"`
	Response   Share `json:"response"`
	Remission  Share `json:"remission"`
}

// SessionsToResponse describes when eligible patients first responded.
type SessionsToResponse struct {
	// Followed is the number of eligible patients with a score after the
	// first session.
	Followed   *int `json:"followed"`
	Suppressed bool `json:"suppressed"`
	// EverResponded is the share of Followed with a response at any score.
	EverResponded Share `json:"ever_responded"`
	// Sessions is the number of sessions given before the first responding
	// score, among responders (null if they are fewer than MinCell).
	Sessions *Quartiles `json:"sessions"`
}

// Safety is adverse events per 100 sessions.
type Safety struct {
	Patients           *int     `json:"patients"`
	Sessions           *int     `json:"sessions"`
	AdverseEvents      *int     `json:"adverse_events"`
	PerHundredSessions *float64 `json:"per_100_sessions"`
	Suppressed         bool     `json:"suppressed"`
	// ByType is per adverse-event code, in code order.
	ByType []AdverseEventType `json:"by_type"`
}

// AdverseEventType is one adverse event's rate. It is suppressed when 1 to
// MinCell-1 patients had it.
type AdverseEventType struct {
	Code               string   `json:"code"`
	Display            string   `json:"display"`
	Events             *int     `json:"events"`
	PerHundredSessions *float64 `json:"per_100_sessions"`
	Suppressed         bool     `json:"suppressed"`
}

// BloodPressure is blood pressure before and after the dose, over
// sessions with a reading on each side, in mm[Hg].
type BloodPressure struct {
	Patients   *int `json:"patients"`
	Sessions   *int `json:"sessions"`
	Suppressed bool `json:"suppressed"`
	// Systolic and Diastolic are null when suppressed.
	Systolic  *BPChange `json:"systolic"`
	Diastolic *BPChange `json:"diastolic"`
}

// BPChange is one blood pressure component before and after the dose, and
// the change (after minus before) per session.
type BPChange struct {
	Before Quartiles `json:"before"`
	After  Quartiles `json:"after"`
	Change Quartiles `json:"change"`
}
