package mapping

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Check runs every content check of DESIGN.md section 2 on a record built
// in code (Parse runs them itself). It returns nil or a *RecordError
// listing every problem. The size limits of the Parser apply; the JSON
// shape checks (types, unknown fields) do not, having no JSON to look at.
func (p *Parser) Check(r *Record) error {
	var pr fieldProblems
	if r == nil {
		pr.add("", "no record")
		return pr.recordError(0, "", "")
	}
	c := recordChecker{p: p, now: p.now(), pr: &pr}
	c.record(r)
	if len(pr.list) > 0 {
		return pr.recordError(r.Line, r.Kind, recordIDIfValid(r, &pr))
	}
	return nil
}

// The enumerations of DESIGN.md section 2.
var (
	sexes            = stringSet("female", "male", "other", "unknown")
	orderStatuses    = stringSet("active", "on-hold", "completed", "cancelled", "entered-in-error")
	adminStatuses    = stringSet("completed", "not-done", "stopped", "in-progress", "entered-in-error")
	routeCodes       = stringSet("IM", "IV", "IN", "SL", "PO")
	siteCodes        = stringSet("left-deltoid", "right-deltoid", "left-gluteal", "right-gluteal", "left-thigh", "right-thigh")
	orderDoseUnits   = stringSet("mg", "mg/kg")
	frequencyPeriods = stringSet("day", "week", "month")
)

func stringSet(vals ...string) map[string]bool {
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		m[v] = true
	}
	return m
}

// Plausible ranges of the numeric fields, both ends included.
var (
	rangeSystolic  = [2]float64{40, 300}
	rangeDiastolic = [2]float64{20, 200}
	rangeHeartRate = [2]float64{20, 300}
	rangeSpO2      = [2]float64{50, 100}
	rangeWeightKg  = [2]float64{2, 400}
)

// instrument describes how a score instrument is scored.
type instrumentRule struct {
	items    int // number of items
	itemMax  int // each item scores 0..itemMax
	totalMax int // the total scores 0..totalMax
	// total computes the total from valid items; nil means their sum.
	total func(items []int) int
}

// instrumentRules lists the supported instrumentRules by their local code.
var instrumentRules = map[string]instrumentRule{
	"PHQ-9":     {items: 9, itemMax: 3, totalMax: 27},
	"GAD-7":     {items: 7, itemMax: 3, totalMax: 21},
	"PHQ-2":     {items: 2, itemMax: 3, totalMax: 6},
	"MADRS":     {items: 10, itemMax: 6, totalMax: 60},
	"QIDS-SR16": {items: 16, itemMax: 3, totalMax: 27, total: qidsTotal},
}

// qidsTotal scores the QIDS-SR16 from its 16 items (1-based below) over
// nine domains of 0-3 each: the highest of the sleep items 1-4, item 5
// (sad mood), the highest of the appetite/weight items 6-9, items 10-14
// (concentration, self-view, suicidal ideation, interest, energy) and the
// highest of the psychomotor items 15-16. Its total is 0-27 and is not the
// sum of the items.
func qidsTotal(items []int) int {
	maxOf := func(xs []int) int {
		m := xs[0]
		for _, x := range xs[1:] {
			m = max(m, x)
		}
		return m
	}
	total := maxOf(items[0:4]) + items[4] + maxOf(items[5:9])
	for _, x := range items[9:14] {
		total += x
	}
	return total + maxOf(items[14:16])
}

// recordChecker runs the content checks of one record, adding problems to pr.
// A field that already has a problem (from decoding) is not checked again.
type recordChecker struct {
	p   *Parser
	now time.Time
	pr  *fieldProblems
}

func (c *recordChecker) fail(field, reason string) { c.pr.add(field, reason) }

// bad reports whether field already has a problem.
func (c *recordChecker) bad(field string) bool { return c.pr.blocked(field) }

func (c *recordChecker) record(r *Record) {
	n := 0
	for _, present := range []bool{r.Patient != nil, r.Order != nil, r.Administration != nil, r.Score != nil} {
		if present {
			n++
		}
	}
	ok := n == 1
	switch r.Kind {
	case KindPatient:
		ok = ok && r.Patient != nil
	case KindOrder:
		ok = ok && r.Order != nil
	case KindAdministration:
		ok = ok && r.Administration != nil
	case KindScore:
		ok = ok && r.Score != nil
	default:
		c.fail("kind", "unknown kind")
		return
	}
	if !ok {
		c.fail("", "record content does not match its kind")
		return
	}
	switch r.Kind {
	case KindPatient:
		c.patient(r.Patient)
	case KindOrder:
		c.order(r.Order)
	case KindAdministration:
		c.administration(r.Administration)
	case KindScore:
		c.score(r.Score)
	}
}

func (c *recordChecker) patient(p *Patient) {
	c.id("mrn", p.MRN, true)
	c.name("family", p.Family, true)
	c.names("given", p.Given)
	if !c.bad("birth_date") {
		switch d, ok := parseRecordDate(p.BirthDate); {
		case p.BirthDate == "":
			c.fail("birth_date", reasonRequired)
		case !ok:
			c.pr.addValue("birth_date", reasonNotDate, p.BirthDate)
		case c.dateInFuture(d):
			c.fail("birth_date", "in the future")
		}
	}
	c.enum("sex", p.Sex, sexes, true, "unknown sex")
	if p.Phone != "" && !c.bad("phone") && c.text("phone", p.Phone, c.p.MaxFieldBytes, false) && !validPhone(p.Phone) {
		c.fail("phone", "not a phone number")
	}
	if p.Email != "" && !c.bad("email") && c.text("email", p.Email, c.p.MaxFieldBytes, false) && !validEmail(p.Email) {
		c.fail("email", "not an email address")
	}
	c.optPast("updated_at", p.UpdatedAt)
}

func (c *recordChecker) order(o *Order) {
	c.id("order_id", o.OrderID, true)
	c.id("mrn", o.MRN, true)
	c.enum("status", o.Status, orderStatuses, true, "unknown status")
	c.past("authored_at", o.AuthoredAt)
	c.practitioner("prescriber", o.Prescriber)
	product, known := c.p.cfg.Formulary[o.Medication]
	switch {
	case c.bad("medication"):
		known = false
	case o.Medication == "":
		c.fail("medication", reasonRequired)
	case !known:
		c.fail("medication", "not in the formulary")
	}
	if c.enum("route", o.Route, routeCodes, true, "unknown route") && known && !containsString(product.Routes, o.Route) {
		c.fail("route", "route not allowed for the medication")
	}
	if c.doseValue(o.Dose) && c.enum("dose.unit", o.Dose.Unit, orderDoseUnits, true, "unknown unit (mg or mg/kg)") {
		c.doseCeiling(o.Dose, nil)
	}
	if o.Sessions < 0 {
		c.fail("sessions", reasonAtLeastOne)
	}
	if o.Frequency != "" && !c.bad("frequency") && !validFrequency(o.Frequency) {
		c.pr.addValue("frequency", "not a frequency (N/day, N/week or N/month)", o.Frequency)
	}
	c.list("diagnoses", len(o.Diagnoses))
	for i, code := range o.Diagnoses {
		field := "diagnoses[" + strconv.Itoa(i) + "]"
		switch {
		case c.bad(field):
		case !validICD10CM(code):
			c.pr.addValue(field, "not an ICD-10-CM code", code)
		case containsString(o.Diagnoses[:i], code):
			c.fail(field, "repeated code")
		}
	}
	c.note("note", o.Note)
	c.optPast("updated_at", o.UpdatedAt)
}

func (c *recordChecker) administration(a *Administration) {
	c.id("admin_id", a.AdminID, true)
	c.id("order_id", a.OrderID, true)
	c.id("mrn", a.MRN, true)
	c.enum("status", a.Status, adminStatuses, true, "unknown status")
	c.past("started_at", a.StartedAt)
	if c.optPast("ended_at", a.EndedAt) && !c.bad("started_at") && !a.StartedAt.IsZero() && a.EndedAt.Before(a.StartedAt) {
		c.fail("ended_at", "before started_at")
	}
	c.enum("route", a.Route, routeCodes, true, "unknown route")
	c.practitioner("performer", a.Performer)
	c.enum("site", a.Site, siteCodes, false, "unknown site")
	if a.Lot != "" && !c.bad("lot") {
		c.text("lot", a.Lot, c.p.MaxFieldBytes, false)
	}
	if a.LotExpires != "" && !c.bad("lot_expires") {
		if _, ok := parseRecordDate(a.LotExpires); !ok {
			c.pr.addValue("lot_expires", reasonNotDate, a.LotExpires)
		}
	}
	if a.Session < 0 {
		c.fail("session", reasonAtLeastOne)
	}
	weightOK := false
	if a.WeightKg != nil && !c.bad("weight_kg") {
		weightOK = c.inRange("weight_kg", *a.WeightKg, rangeWeightKg)
	}
	if c.doseValue(a.Dose) && c.enum("dose.unit", a.Dose.Unit, orderDoseUnits, true, "unknown unit (mg, or mg/kg with weight_kg)") {
		switch {
		case a.Dose.Unit != "mg/kg":
			c.doseCeiling(a.Dose, nil)
		case c.bad("weight_kg"):
			c.doseCeiling(a.Dose, nil)
		case a.WeightKg == nil && a.Status == "not-done":
			// No dose was given, so no mg is computed or sent: the
			// planned dose in mg/kg needs no weight.
			c.doseCeiling(a.Dose, nil)
		case a.WeightKg == nil:
			c.fail("dose.unit", "mg/kg needs weight_kg")
		case weightOK:
			c.doseCeiling(a.Dose, a.WeightKg)
		default:
			c.doseCeiling(a.Dose, nil)
		}
	}
	c.list("vitals", len(a.Vitals))
	for i := range a.Vitals {
		c.vital("vitals["+strconv.Itoa(i)+"]", &a.Vitals[i])
	}
	c.list("adverse_events", len(a.AdverseEvents))
	for i, code := range a.AdverseEvents {
		field := "adverse_events[" + strconv.Itoa(i) + "]"
		switch {
		case c.bad(field):
		case code == "":
			c.fail(field, "empty code")
		case !inConfig(c.p.cfg.AdverseEvents, code):
			c.fail(field, "unknown adverse event")
		case containsString(a.AdverseEvents[:i], code):
			c.fail(field, "repeated code")
		}
	}
	// not_done_reason is optional even with status not-done (DESIGN.md
	// section 2; FHIR statusReason is 0..*): the note then says why.
	if a.NotDoneReason != "" && !c.bad("not_done_reason") && !c.bad("status") {
		switch {
		case a.Status != "not-done":
			c.fail("not_done_reason", "only allowed when status is not-done")
		case !inConfig(c.p.cfg.NotDoneReasons, a.NotDoneReason):
			c.fail("not_done_reason", "unknown reason")
		}
	}
	c.note("note", a.Note)
	c.optPast("updated_at", a.UpdatedAt)
}

// vital checks one set of vital signs; field is "vitals[i]".
func (c *recordChecker) vital(field string, v *Vital) {
	if c.bad(field) {
		return
	}
	c.past(field+".at", v.At)
	if v.Systolic == nil && v.Diastolic == nil && v.HeartRate == nil && v.SpO2 == nil {
		c.fail(field, "no measurement")
		return
	}
	sys := v.Systolic != nil && !c.bad(field+".systolic") && c.inRange(field+".systolic", *v.Systolic, rangeSystolic)
	dia := v.Diastolic != nil && !c.bad(field+".diastolic") && c.inRange(field+".diastolic", *v.Diastolic, rangeDiastolic)
	if sys && dia && *v.Systolic <= *v.Diastolic {
		c.fail(field+".diastolic", "not below systolic")
	}
	if v.HeartRate != nil && !c.bad(field+".heart_rate") {
		c.inRange(field+".heart_rate", *v.HeartRate, rangeHeartRate)
	}
	if v.SpO2 != nil && !c.bad(field+".spo2") {
		c.inRange(field+".spo2", *v.SpO2, rangeSpO2)
	}
}

func (c *recordChecker) score(s *Score) {
	c.id("score_id", s.ScoreID, true)
	c.id("mrn", s.MRN, true)
	inst, known := instrumentRules[s.Instrument]
	if !c.enum("instrument", s.Instrument, nil, true, "unknown instrument") {
		known = false
	} else if !known {
		c.fail("instrument", "unknown instrument")
	}
	c.past("taken_at", s.TakenAt)
	totalOK := false
	if !c.bad("total") && known {
		if s.Total < 0 || s.Total > inst.totalMax {
			c.fail("total", "outside the instrument's range")
		} else {
			totalOK = true
		}
	}
	if s.Items != nil && !c.bad("items") && known {
		itemsOK := true
		if len(s.Items) != inst.items {
			c.fail("items", "item count does not match the instrument")
			itemsOK = false
		}
		for i, x := range s.Items {
			if !itemsOK {
				break
			}
			field := "items[" + strconv.Itoa(i) + "]"
			if c.bad(field) {
				itemsOK = false
			} else if x < 0 || x > inst.itemMax {
				c.fail(field, "outside the item's range")
				itemsOK = false
			}
		}
		if itemsOK && totalOK {
			total := inst.total
			if total == nil {
				total = sumItems
			}
			if total(s.Items) != s.Total {
				c.fail("total", "does not match the items")
			}
		}
	}
	c.id("admin_id", s.AdminID, false)
	if s.Performer != nil {
		c.practitioner("performer", *s.Performer)
	}
	c.optPast("updated_at", s.UpdatedAt)
}

func sumItems(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

// practitioner checks an {npi, name} object; field is its path.
func (c *recordChecker) practitioner(field string, pr Practitioner) {
	if c.bad(field) {
		return
	}
	npi := field + ".npi"
	switch {
	case c.bad(npi):
	case pr.NPI == "":
		c.fail(npi, reasonRequired)
	case !ValidNPI(pr.NPI):
		c.pr.addValue(npi, "not an NPI (10 digits with a valid check digit)", pr.NPI)
	}
	c.name(field+".name", pr.Name, true)
}

// doseValue checks that a dose value is positive; it reports whether the
// value is usable for the ceiling checks.
func (c *recordChecker) doseValue(d Dose) bool {
	if c.bad("dose.value") {
		return false
	}
	if !(d.Value > 0) || math.IsInf(d.Value, 0) {
		c.fail("dose.value", "not positive")
		return false
	}
	return true
}

// doseCeiling checks a positive dose of a known unit against the
// configured ceilings. For mg/kg, weightKg (if not nil) gives the mg dose,
// which must also be under the mg ceiling.
func (c *recordChecker) doseCeiling(d Dose, weightKg *float64) {
	lim := c.p.cfg.Limits
	switch d.Unit {
	case "mg":
		if d.Value > lim.MaxDoseMg {
			c.fail("dose.value", "above the dose ceiling (max_dose_mg)")
		}
	case "mg/kg":
		if d.Value > lim.MaxDoseMgPerKg {
			c.fail("dose.value", "above the dose ceiling (max_dose_mg_per_kg)")
		} else if weightKg != nil && d.Value**weightKg > lim.MaxDoseMg {
			c.fail("dose.value", "computed mg dose above the dose ceiling (max_dose_mg)")
		}
	}
}

// inRange checks that x is within r, both ends included.
func (c *recordChecker) inRange(field string, x float64, r [2]float64) bool {
	if !(x >= r[0] && x <= r[1]) {
		c.fail(field, "outside the plausible range "+formatNumber(r[0])+"-"+formatNumber(r[1]))
		return false
	}
	return true
}

func formatNumber(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// enum checks that v is in allowed (nil: the caller checks membership);
// "" means absent. It reports whether v is present and allowed.
func (c *recordChecker) enum(field, v string, allowed map[string]bool, required bool, reason string) bool {
	switch {
	case c.bad(field):
		return false
	case v == "":
		if required {
			c.fail(field, reasonRequired)
		}
		return false
	case allowed != nil && !allowed[v]:
		c.pr.addValue(field, reason, v)
		return false
	}
	return true
}

// list checks the length of a list field built in code (decoding already
// bounds lists read from JSON or CSV).
func (c *recordChecker) list(field string, n int) {
	if n > c.p.MaxListItems {
		c.fail(field, reasonTooMany)
	}
}

// id checks an id or reference: not empty, at most MaxFieldBytes, no
// control characters, no leading or trailing space.
func (c *recordChecker) id(field, s string, required bool) {
	if c.bad(field) {
		return
	}
	if s == "" {
		if required {
			c.fail(field, reasonRequired)
		}
		return
	}
	if !c.text(field, s, c.p.MaxFieldBytes, false) {
		return
	}
	if strings.TrimSpace(s) != s {
		c.fail(field, "leading or trailing space")
	}
}

// name checks a name: not empty or blank, at most MaxFieldBytes, no control
// characters.
func (c *recordChecker) name(field, s string, required bool) {
	if c.bad(field) {
		return
	}
	switch {
	case s == "":
		if required {
			c.fail(field, reasonRequired)
		}
		return
	case strings.TrimSpace(s) == "":
		c.fail(field, "blank")
		return
	}
	c.text(field, s, c.p.MaxFieldBytes, false)
}

// names checks the given names: a non-empty list of names.
func (c *recordChecker) names(field string, l []string) {
	if c.bad(field) {
		return
	}
	if len(l) == 0 {
		c.fail(field, reasonRequired)
		return
	}
	c.list(field, len(l))
	for i, s := range l {
		c.name(field+"["+strconv.Itoa(i)+"]", s, true)
	}
}

// note checks a free-text note: at most MaxNoteBytes; tab and line breaks
// are the only control characters allowed.
func (c *recordChecker) note(field, s string) {
	if s != "" && !c.bad(field) {
		c.text(field, s, c.p.MaxNoteBytes, true)
	}
}

// text checks a string's encoding, size and characters. It reports
// whether s passed.
func (c *recordChecker) text(field, s string, maxBytes int, multiline bool) bool {
	switch {
	case len(s) > maxBytes:
		c.fail(field, "longer than "+strconv.Itoa(maxBytes)+" bytes")
		return false
	case !utf8.ValidString(s):
		c.fail(field, "invalid UTF-8")
		return false
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			c.fail(field, "control character")
			return false
		}
	}
	return true
}

// past checks a required time: set, and not in the future beyond the
// allowed clock skew.
func (c *recordChecker) past(field string, t time.Time) {
	if c.bad(field) {
		return
	}
	if t.IsZero() {
		c.fail(field, reasonRequired)
		return
	}
	c.notFuture(field, t)
}

// optPast checks an optional time; it reports whether t is set and fine.
func (c *recordChecker) optPast(field string, t *time.Time) bool {
	if t == nil || c.bad(field) {
		return false
	}
	if t.IsZero() {
		c.fail(field, reasonRequired)
		return false
	}
	return c.notFuture(field, *t)
}

func (c *recordChecker) notFuture(field string, t time.Time) bool {
	if t.After(c.now.Add(c.skew())) {
		c.fail(field, "in the future")
		return false
	}
	return true
}

func (c *recordChecker) skew() time.Duration {
	return time.Duration(c.p.cfg.Limits.ClockSkewSeconds) * time.Second
}

// dateInFuture reports whether the date d (midnight UTC) has not begun
// anywhere on Earth at now plus the clock skew: a date is in the future
// only when it is in the future in every time zone, the earliest being
// UTC+14.
func (c *recordChecker) dateInFuture(d time.Time) bool {
	return d.Add(-14 * time.Hour).After(c.now.Add(c.skew()))
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func inConfig(m map[string]string, code string) bool {
	_, ok := m[code]
	return ok
}

// ValidNPI reports whether npi is a National Provider Identifier: ten
// digits whose last is the Luhn check digit computed over the prefix
// "80840" followed by the first nine digits.
func ValidNPI(npi string) bool {
	if len(npi) != 10 {
		return false
	}
	for i := 0; i < len(npi); i++ {
		if npi[i] < '0' || npi[i] > '9' {
			return false
		}
	}
	return NPICheckDigit(npi[:9]) == npi[9]
}

// NPICheckDigit returns the check digit of an NPI whose first nine digits
// are base: the Luhn check digit of "80840" + base (the card issuer prefix
// the NPI standard prescribes). base must be nine ASCII digits.
func NPICheckDigit(base string) byte {
	digits := "80840" + base
	total := 0
	// The check digit goes on the right, so the rightmost digit of digits
	// is doubled, then every second digit going left.
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		total += d
	}
	return byte('0' + (10-total%10)%10)
}

// validICD10CM reports whether code looks like an ICD-10-CM code: a
// letter, a digit, a digit or letter (as in M1A), then optionally a dot
// and one to four digits or letters; letters upper case.
func validICD10CM(code string) bool {
	if len(code) != 3 && (len(code) < 5 || len(code) > 8) {
		return false
	}
	if !asciiUpper(code[0]) || !asciiDigit(code[1]) || !(asciiDigit(code[2]) || asciiUpper(code[2])) {
		return false
	}
	if len(code) == 3 {
		return true
	}
	if code[3] != '.' {
		return false
	}
	for i := 4; i < len(code); i++ {
		if !asciiDigit(code[i]) && !asciiUpper(code[i]) {
			return false
		}
	}
	return true
}

func asciiDigit(b byte) bool { return b >= '0' && b <= '9' }
func asciiUpper(b byte) bool { return b >= 'A' && b <= 'Z' }

// validFrequency reports whether s is "N/day", "N/week" or "N/month" with
// N an integer from 1 to 999 without leading zeros.
func validFrequency(s string) bool {
	n, period, ok := strings.Cut(s, "/")
	if !ok || len(n) == 0 || len(n) > 3 || n[0] == '0' || !frequencyPeriods[period] {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !asciiDigit(n[i]) {
			return false
		}
	}
	return true
}

// validPhone reports whether s looks like a phone number: 7 to 20 digits,
// with only spaces and + - ( ) . / between them and an optional extension
// after "x".
func validPhone(s string) bool {
	digits := 0
	num, ext, hasExt := strings.Cut(s, "x")
	for i := 0; i < len(num); i++ {
		switch b := num[i]; {
		case asciiDigit(b):
			digits++
		case strings.IndexByte(" +-()./", b) >= 0:
		default:
			return false
		}
	}
	if hasExt {
		ext = strings.TrimSpace(ext)
		if ext == "" || len(ext) > 6 {
			return false
		}
		for i := 0; i < len(ext); i++ {
			if !asciiDigit(ext[i]) {
				return false
			}
		}
	}
	return digits >= 7 && digits <= 20
}

// validEmail reports whether s has the shape local@domain: one "@", a
// non-empty local part, a domain with a dot between non-empty labels, no
// spaces or control characters, at most 254 bytes.
func validEmail(s string) bool {
	if len(s) > 254 || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return false
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || len(local) > 64 || strings.Contains(domain, "@") {
		return false
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return false
		}
	}
	return true
}
