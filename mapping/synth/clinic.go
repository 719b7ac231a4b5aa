package synth

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Products of the default formulary the generator orders.
const (
	productK10  = "ketamine-10mg-ml"
	productK50  = "ketamine-50mg-ml"
	productK100 = "ketamine-100mg-ml"
	productEsk  = "esketamine-28mg-nasal"
)

// lotPeriodDays is how long the clinic uses one lot of a product before the
// next one; a lot expires 30 to 60 days after its period ends.
const lotPeriodDays = 45

// clinic holds what all patients share.
type clinic struct {
	seed int64
	day0 time.Time // midnight of the first day, clinic zone
}

func newClinic(opts Options) *clinic {
	start := opts.Start
	if start.IsZero() {
		start = defaultStart
	}
	start = start.In(clinicZone)
	return &clinic{
		seed: opts.Seed,
		day0: time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, clinicZone),
	}
}

// lot returns the lot number in use for product on day t and its expiry
// date (YYYY-MM-DD).
func (c *clinic) lot(product string, t time.Time) (string, string) {
	var prefix string
	var key uint64
	switch product {
	case productK10:
		prefix, key = "K10", 1
	case productK50:
		prefix, key = "K50", 2
	case productK100:
		prefix, key = "K100", 3
	default:
		prefix, key = "ESK", 4
	}
	period := int(t.Sub(c.day0) / (lotPeriodDays * 24 * time.Hour))
	r := newRNG(c.seed, 0xffff0000+key, uint64(period))
	code := fmt.Sprintf("%s-%06X", prefix, r.next()&0xffffff)
	expires := c.day0.AddDate(0, 0, lotPeriodDays*(period+1)+r.between(30, 60))
	return code, expires.Format(time.DateOnly)
}

// course kinds.
const (
	courseIM = iota
	courseIV
	courseIN
)

// gen generates one patient at a time; its slices are reused.
type gen struct {
	c    *clinic
	r    rng
	pid  string // the patient number, zero padded
	mrn  string
	recs []*mapping.Record

	orders, admins, scores []*mapping.Record
	nOrder, nAdmin, nScore int

	// Stable traits of the patient.
	course       int
	weight       float64
	sys, dia, hr int
	slot         int // usual session start, minutes after midnight
	site         string
	side         int
	adminMgKg    bool // the clinic's system records weight-based doses as mg/kg
	prescriber   mapping.Practitioner
	phqBase      int
	gadBase      int
	madrsBase    int
	response     float64 // fraction of the baseline score lost by the end of the series
	qids         bool    // also completes the QIDS-SR16
}

// treatment is what an order gives at each session.
type treatment struct {
	order   *mapping.Order
	mgPerKg float64 // zero for a fixed dose
	mg      float64 // fixed dose in mg, or zero
}

// patient returns patient num's records in emit order. The returned slice
// is reused by the next call.
func (g *gen) patient(c *clinic, num int) []*mapping.Record {
	*g = gen{c: c, recs: g.recs[:0], orders: g.orders[:0], admins: g.admins[:0], scores: g.scores[:0]}
	g.r = newRNG(c.seed, uint64(num))
	g.pid = fmt.Sprintf("%07d", num)
	g.mrn = "MRN" + g.pid
	r := &g.r

	intake := weekday(c.day0.AddDate(0, 0, 1+r.intn(60)))
	consult := intake.Add(time.Duration(8*60+30*r.intn(16)) * time.Minute)
	pat := g.demographics(consult)
	g.recs = append(g.recs, &mapping.Record{Kind: mapping.KindPatient, Patient: pat})

	g.traits(pat.Sex)
	dx := diagnoses[r.weighted(diagnosisWeights)]

	// Baseline assessments at the consultation.
	g.phq9(consult.Add(5*time.Minute), 0, "")
	g.gad7(consult.Add(12*time.Minute), 0, "")
	if g.qids {
		g.qidsScore(consult.Add(18*time.Minute), 0, "")
	}
	g.madrs(consult.Add(30*time.Minute), 0, "", &g.prescriber)

	// The induction order, sometimes preceded by one entered in error.
	tr := g.inductionTreatment(dx)
	authored := consult.Add(45 * time.Minute)
	if r.chance(0.01) {
		wrong := *tr.order
		wrong.Diagnoses = slices.Clone(tr.order.Diagnoses)
		wrong.OrderID = g.nextOrderID()
		wrong.Status = "entered-in-error"
		wrong.AuthoredAt = authored
		wrong.Note = "Entered in error; replaced by the next order"
		upd := authored.Add(15 * time.Minute)
		wrong.UpdatedAt = &upd
		switch tr.order.Medication {
		case productK50:
			wrong.Medication = productK100
		case productK100:
			wrong.Medication = productK50
		case productEsk:
			wrong.Dose.Value = 140 - tr.order.Dose.Value // 56 <-> 84
		default:
			wrong.Dose.Value = 0.75
		}
		g.addOrder(&wrong)
		authored = authored.Add(20 * time.Minute)
	}
	tr.order.OrderID = g.nextOrderID()
	tr.order.AuthoredAt = authored
	g.addOrder(tr.order)

	// Twice-weekly induction on a Monday/Thursday or Tuesday/Friday pattern.
	pattern := r.intn(2)
	first := patternDay(intake.AddDate(0, 0, r.between(2, 7)), pattern)
	dropAfter := 0
	if r.chance(0.05) {
		dropAfter = r.between(2, 4)
	}
	last, completed := g.induction(tr, first, dropAfter)

	if !completed {
		tr.order.Status = "cancelled"
		upd := dayOf(last).AddDate(0, 0, 7).Add(10 * time.Hour)
		tr.order.UpdatedAt = &upd
		tr.order.Note = "Series discontinued by the patient"
		return g.flush()
	}
	tr.order.Status = "completed"
	upd := last.Add(2 * time.Hour)
	tr.order.UpdatedAt = &upd

	eligible := g.response >= 0.5 && r.chance(0.85) || g.response >= 0.25 && g.response < 0.5 && r.chance(0.4)
	if eligible {
		g.maintenance(tr, last)
	}
	return g.flush()
}

// flush returns the patient's records in emit order.
func (g *gen) flush() []*mapping.Record {
	g.recs = append(g.recs, g.orders...)
	g.recs = append(g.recs, g.admins...)
	g.recs = append(g.recs, g.scores...)
	return g.recs
}

func (g *gen) demographics(consult time.Time) *mapping.Patient {
	r := &g.r
	p := &mapping.Patient{MRN: g.mrn}
	var given name
	var middle []string
	switch x := r.intn(100); {
	case x < 58:
		p.Sex, given, middle = "female", femaleGiven[r.intn(len(femaleGiven))], middleFemale
	case x < 97:
		p.Sex, given, middle = "male", maleGiven[r.intn(len(maleGiven))], middleMale
	case x < 99:
		p.Sex, given, middle = "other", neutralGiven[r.intn(len(neutralGiven))], nil
	default:
		p.Sex, given, middle = "unknown", neutralGiven[r.intn(len(neutralGiven))], nil
	}
	family := families[r.intn(len(families))]
	p.Family = family.text
	p.Given = []string{given.text}
	if middle != nil && r.chance(0.2) {
		p.Given = append(p.Given, middle[r.intn(len(middle))])
	}
	// Ages 18 to 79 on the clinic's first day, so 18 to 80 at intake.
	age := r.between(18, 79)
	p.BirthDate = g.c.day0.AddDate(-age, 0, -r.intn(365)).Format(time.DateOnly)
	if r.chance(0.9) {
		p.Phone = fmt.Sprintf("+1-%s-555-01%02d", areaCodes[r.intn(len(areaCodes))], r.intn(100))
	}
	if r.chance(0.8) {
		p.Email = fmt.Sprintf("%s.%s%d@%s", given.ascii, family.ascii, r.intn(100), emailDomains[r.intn(len(emailDomains))])
	}
	if r.chance(0.1) {
		upd := consult.Add(-10 * time.Minute)
		p.UpdatedAt = &upd
	}
	return p
}

func (g *gen) traits(sex string) {
	r := &g.r
	switch sex {
	case "female":
		g.weight = float64(r.between(480, 1050)) / 10
	case "male":
		g.weight = float64(r.between(580, 1250)) / 10
	default:
		g.weight = float64(r.between(500, 1150)) / 10
	}
	g.sys = r.between(108, 135)
	if r.chance(0.1) {
		g.sys = r.between(136, 148)
	}
	g.dia = min(r.between(66, 86), g.sys-30)
	g.hr = r.between(58, 88)
	g.slot = 9*60 + 15*r.intn(26) // 09:00 to 15:15
	switch x := r.intn(100); {
	case x < 60:
		g.site = "deltoid"
	case x < 85:
		g.site = "gluteal"
	default:
		g.site = "thigh"
	}
	g.side = r.intn(2)
	g.adminMgKg = r.chance(0.2)
	g.prescriber = prescribers[r.intn(len(prescribers))]
	g.phqBase = r.between(14, 26)
	g.madrsBase = clamp(g.phqBase*13/10+8+r.jitter(4), 20, 50)
	g.gadBase = r.between(6, 19)
	switch x := r.intn(100); {
	case x < 55: // responder
		g.response = 0.5 + 0.35*r.float()
	case x < 75: // partial responder
		g.response = 0.25 + 0.25*r.float()
	default: // non-responder
		g.response = 0.2 * r.float()
	}
	g.qids = r.chance(0.2)
	switch x := r.intn(100); {
	case x < 65:
		g.course = courseIM
	case x < 85:
		g.course = courseIV
	default:
		g.course = courseIN
	}
}

func (g *gen) inductionTreatment(dx string) treatment {
	r := &g.r
	o := &mapping.Order{
		MRN:        g.mrn,
		Status:     "active",
		Prescriber: g.prescriber,
		Sessions:   6,
		Frequency:  "2/week",
		Diagnoses:  []string{dx},
	}
	tr := treatment{order: o}
	switch g.course {
	case courseIM:
		o.Medication = productK50
		if r.chance(0.3) {
			o.Medication = productK100
		}
		o.Route = "IM"
		tr.mgPerKg = []float64{0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0}[r.intn(7)]
		o.Dose = mapping.Dose{Value: tr.mgPerKg, Unit: "mg/kg"}
		if r.chance(0.3) {
			o.Note = "Induction series, IM ketamine"
		}
	case courseIV:
		o.Medication = productK10
		o.Route = "IV"
		tr.mgPerKg = 0.5
		o.Dose = mapping.Dose{Value: 0.5, Unit: "mg/kg"}
		if r.chance(0.3) {
			o.Note = "Induction series, IV infusion over 40 minutes"
		}
	case courseIN:
		o.Medication = productEsk
		o.Route = "IN"
		tr.mg = 56
		if r.chance(0.4) {
			tr.mg = 84
		}
		o.Dose = mapping.Dose{Value: tr.mg, Unit: "mg"}
		o.Sessions = 8 // twice weekly for four weeks
		if r.chance(0.3) {
			o.Note = "Induction, esketamine nasal spray; 2 h REMS monitoring"
		}
	}
	return tr
}

// induction runs the series from day first. A patient with dropAfter > 0
// stops after that many treatments. It returns the time of the last session
// and whether the series was completed.
func (g *gen) induction(tr treatment, first time.Time, dropAfter int) (time.Time, bool) {
	r := &g.r
	planned := tr.order.Sessions
	day := first
	session, notDone := 1, 0
	var last time.Time
	for session <= planned {
		if dropAfter > 0 && session > dropAfter {
			return last, false
		}
		t := day.Add(time.Duration(g.slot+5*r.intn(4)) * time.Minute)
		last = t
		day = patternDay(day.AddDate(0, 0, 1), patternOf(day))
		if notDone < 2 && r.chance(0.04) {
			notDone++
			g.notDone(tr, t, session)
			continue
		}
		// Pre-dose questionnaires: PHQ-9 at every second session, sometimes
		// a PHQ-2 at the others; the end-of-series set at the last one.
		treated := session - 1
		adm := g.administer(tr, t, session)
		if session%2 == 0 {
			g.phq9(t.Add(-15*time.Minute), treated, adm)
		} else if session > 1 && r.chance(0.15) {
			g.phq2(t.Add(-15*time.Minute), treated, adm)
		}
		if session == planned {
			if r.chance(0.5) {
				g.endOfSeries(t.Add(-25*time.Minute), treated, adm)
			} else {
				follow := weekday(dayOf(t).AddDate(0, 0, r.between(2, 3))).Add(time.Duration(g.slot) * time.Minute)
				g.endOfSeries(follow, planned, "")
			}
		}
		session++
	}
	return last, true
}

func (g *gen) endOfSeries(t time.Time, treated int, adminID string) {
	g.gad7(t, treated, adminID)
	if g.qids {
		g.qidsScore(t.Add(4*time.Minute), treated, adminID)
	}
	g.madrs(t.Add(8*time.Minute), treated, adminID, &g.prescriber)
}

// maintenance adds a second order and its sessions after the induction
// series that ended at last.
func (g *gen) maintenance(ind treatment, last time.Time) {
	r := &g.r
	o := *ind.order
	o.Diagnoses = slices.Clone(ind.order.Diagnoses)
	o.OrderID = g.nextOrderID()
	o.AuthoredAt = last.Add(90 * time.Minute)
	o.UpdatedAt = nil
	o.Note = ""
	tr := treatment{order: &o, mgPerKg: ind.mgPerKg, mg: ind.mg}
	interval := 7
	switch {
	case g.course == courseIN:
		o.Frequency = "1/week"
		o.Sessions = r.between(4, 8)
		if r.chance(0.3) {
			o.Note = "Maintenance, weekly esketamine"
		}
	case g.course == courseIV || r.chance(0.5):
		o.Frequency = "2/month"
		o.Sessions = r.between(2, 4)
		interval = 14
	default:
		o.Frequency = "1/week"
		o.Sessions = r.between(4, 8)
	}
	if o.Note == "" && r.chance(0.3) {
		o.Note = "Maintenance after response to induction"
	}
	given := o.Sessions
	switch x := r.intn(100); {
	case x < 40:
		o.Status = "completed"
	case x < 90:
		o.Status = "active"
		given = r.between(1, o.Sessions-1)
	default:
		o.Status = "on-hold"
		given = r.between(1, o.Sessions-1)
	}
	g.addOrder(&o)

	day := weekday(dayOf(last).AddDate(0, 0, r.between(7, 12)))
	session, notDone := 1, 0
	var end time.Time
	for session <= given {
		t := day.Add(time.Duration(g.slot+5*r.intn(4)) * time.Minute)
		end = t
		day = day.AddDate(0, 0, interval)
		if notDone < 1 && r.chance(0.05) {
			notDone++
			g.notDone(tr, t, session)
			continue
		}
		adm := g.administer(tr, t, session)
		switch {
		case r.chance(0.8):
			g.phq9(t.Add(-15*time.Minute), -1, adm)
		case r.chance(0.5):
			g.phq2(t.Add(-15*time.Minute), -1, adm)
		}
		session++
	}
	switch o.Status {
	case "completed":
		upd := end.Add(2 * time.Hour)
		o.UpdatedAt = &upd
	case "on-hold":
		upd := dayOf(end).AddDate(0, 0, 3).Add(11 * time.Hour)
		o.UpdatedAt = &upd
		o.Note = "On hold at the patient's request"
	}
}

func (g *gen) nextOrderID() string {
	g.nOrder++
	return fmt.Sprintf("ord-%s-%d", g.pid, g.nOrder)
}

func (g *gen) nextAdminID() string {
	g.nAdmin++
	return fmt.Sprintf("adm-%s-%02d", g.pid, g.nAdmin)
}

func (g *gen) nextScoreID() string {
	g.nScore++
	return fmt.Sprintf("scr-%s-%02d", g.pid, g.nScore)
}

func (g *gen) addOrder(o *mapping.Order) {
	g.orders = append(g.orders, &mapping.Record{Kind: mapping.KindOrder, Order: o})
}

func (g *gen) addAdmin(a *mapping.Administration) {
	g.admins = append(g.admins, &mapping.Record{Kind: mapping.KindAdministration, Administration: a})
}

// sessionWeight is the weight measured at a session.
func (g *gen) sessionWeight() float64 {
	return math.Round(g.weight*10+float64(g.r.jitter(6))) / 10
}

// plannedMg is the dose in mg a treatment gives at weight w.
func (tr treatment) plannedMg(w float64) float64 {
	if tr.mgPerKg > 0 {
		return math.Round(tr.mgPerKg * w)
	}
	return tr.mg
}

func (g *gen) newAdmin(tr treatment, t time.Time, session int) *mapping.Administration {
	return &mapping.Administration{
		AdminID:   g.nextAdminID(),
		OrderID:   tr.order.OrderID,
		MRN:       g.mrn,
		StartedAt: t,
		Route:     tr.order.Route,
		Session:   session,
	}
}

// notDone records a session that did not happen, with the planned dose.
func (g *gen) notDone(tr treatment, t time.Time, session int) {
	r := &g.r
	a := g.newAdmin(tr, t, session)
	a.Status = "not-done"
	a.NotDoneReason = notDoneReasons[r.weighted(notDoneWeights)]
	a.Performer = g.performer()
	w := g.sessionWeight()
	a.Dose = mapping.Dose{Value: tr.plannedMg(w), Unit: "mg"}
	switch a.NotDoneReason {
	case "missed-appointment":
		a.Note = "Did not attend"
	case "elevated-blood-pressure":
		a.WeightKg = &w
		a.Vitals = []mapping.Vital{vital(t.Add(-10*time.Minute), r.between(162, 178), r.between(96, 108), g.hr+r.jitter(6), r.between(96, 99))}
		a.Note = "Pre-dose blood pressure above the clinic's threshold"
	default:
		a.WeightKg = &w
		a.Vitals = []mapping.Vital{g.preVital(t)}
	}
	g.addAdmin(a)
}

// administer records a session that took place (completed, or stopped for
// some infusions and nasal doses) and returns its id.
func (g *gen) administer(tr treatment, t time.Time, session int) string {
	r := &g.r
	a := g.newAdmin(tr, t, session)
	a.Status = "completed"
	a.Performer = g.performer()
	w := g.sessionWeight()
	a.WeightKg = &w
	mg := tr.plannedMg(w)
	a.Dose = mapping.Dose{Value: mg, Unit: "mg"}
	if tr.mgPerKg > 0 && g.adminMgKg {
		a.Dose = mapping.Dose{Value: tr.mgPerKg, Unit: "mg/kg"}
	}
	a.Lot, a.LotExpires = g.c.lot(tr.order.Medication, t)
	pre := g.preVital(t)

	switch tr.order.Route {
	case "IM":
		sides := [2]string{"left-", "right-"}
		a.Site = sides[g.side] + g.site
		g.side = 1 - g.side
		post := g.postVital(t.Add(40*time.Minute), pre)
		a.Vitals = []mapping.Vital{pre, post}
		a.AdverseEvents = g.adverseEvents(0.18, post)
	case "IV":
		if r.chance(0.03) {
			minutes := r.between(12, 30)
			end := t.Add(time.Duration(minutes) * time.Minute)
			a.Status = "stopped"
			a.EndedAt = &end
			a.Dose = mapping.Dose{Value: math.Round(mg * float64(minutes) / 40), Unit: "mg"}
			a.Vitals = []mapping.Vital{pre, g.postVital(end.Add(10*time.Minute), pre)}
			a.AdverseEvents = []string{[]string{aeAnxiety, aeDissociation, aeNausea}[r.intn(3)]}
			a.Note = "Infusion stopped early"
			break
		}
		end := t.Add(40 * time.Minute)
		a.EndedAt = &end
		mid := g.postVital(t.Add(20*time.Minute), pre)
		a.Vitals = []mapping.Vital{pre, mid, g.settle(end.Add(20*time.Minute), mid)}
		a.AdverseEvents = g.adverseEvents(0.25, mid)
	case "IN":
		if r.chance(0.015) {
			end := t.Add(time.Minute)
			a.Status = "stopped"
			a.EndedAt = &end
			a.Dose = mapping.Dose{Value: 28, Unit: "mg"}
			a.Vitals = []mapping.Vital{pre, g.postVital(t.Add(40*time.Minute), pre)}
			a.AdverseEvents = []string{[]string{aeAnxiety, aeNausea, aeDizziness}[r.intn(3)]}
			a.Note = "Stopped after the first device"
			break
		}
		// One 28 mg device every five minutes.
		end := t.Add(time.Duration(5*(int(mg)/28-1)) * time.Minute)
		a.EndedAt = &end
		post := g.postVital(t.Add(40*time.Minute), pre)
		a.Vitals = []mapping.Vital{pre, post, g.settle(t.Add(2*time.Hour), post)}
		a.AdverseEvents = g.adverseEvents(0.3, post)
	}
	g.addAdmin(a)

	// Now and then the session is charted twice and the copy voided.
	if r.chance(0.015) {
		dup := cloneAdmin(a)
		dup.AdminID = g.nextAdminID()
		dup.Status = "entered-in-error"
		dup.Note = "Duplicate entry"
		upd := t.Add(time.Duration(r.between(60, 180)) * time.Minute)
		dup.UpdatedAt = &upd
		g.addAdmin(dup)
	}
	return a.AdminID
}

// cloneAdmin returns a deep copy of a, so that two records never share
// memory.
func cloneAdmin(a *mapping.Administration) *mapping.Administration {
	c := *a
	if a.EndedAt != nil {
		t := *a.EndedAt
		c.EndedAt = &t
	}
	if a.WeightKg != nil {
		w := *a.WeightKg
		c.WeightKg = &w
	}
	c.AdverseEvents = slices.Clone(a.AdverseEvents)
	c.Vitals = nil
	for _, v := range a.Vitals {
		c.Vitals = append(c.Vitals, vital(v.At, int(*v.Systolic), int(*v.Diastolic), int(*v.HeartRate), int(*v.SpO2)))
	}
	return &c
}

func (g *gen) performer() mapping.Practitioner {
	if g.course == courseIV {
		return infusionists[g.r.intn(len(infusionists))]
	}
	return nurses[g.r.intn(len(nurses))]
}

func (g *gen) adverseEvents(dissociation float64, peak mapping.Vital) []string {
	r := &g.r
	var ev []string
	if r.chance(dissociation) {
		ev = append(ev, aeDissociation)
	}
	if r.chance(0.05) {
		ev = append(ev, aeNausea)
		if r.chance(0.2) {
			ev = append(ev, aeVomiting)
		}
	}
	if r.chance(0.04) {
		ev = append(ev, aeDizziness)
	}
	if r.chance(0.03) {
		ev = append(ev, aeHeadache)
	}
	if r.chance(0.03) {
		ev = append(ev, aeSedation)
	}
	if r.chance(0.015) {
		ev = append(ev, aeAnxiety)
	}
	if *peak.Systolic >= 160 || *peak.Diastolic >= 100 {
		ev = append(ev, aeElevatedBP)
	}
	return ev
}

// preVital is taken ten minutes before the dose.
func (g *gen) preVital(t time.Time) mapping.Vital {
	r := &g.r
	return vital(t.Add(-10*time.Minute), g.sys+r.jitter(6), g.dia+r.jitter(4), g.hr+r.jitter(5), r.between(96, 100))
}

// postVital shows ketamine's usual rise in blood pressure and heart rate.
func (g *gen) postVital(at time.Time, pre mapping.Vital) mapping.Vital {
	r := &g.r
	return vital(at, int(*pre.Systolic)+r.between(4, 18), int(*pre.Diastolic)+r.between(2, 9),
		int(*pre.HeartRate)+r.between(-2, 10), int(*pre.SpO2)-r.intn(2))
}

// settle is a later reading, back towards the pre-dose values.
func (g *gen) settle(at time.Time, peak mapping.Vital) mapping.Vital {
	r := &g.r
	return vital(at, int(*peak.Systolic)-r.between(4, 12), int(*peak.Diastolic)-r.between(2, 6),
		int(*peak.HeartRate)-r.between(0, 6), min(100, int(*peak.SpO2)+r.intn(2)))
}

// vital builds a Vital with values clamped to plausible ranges and the
// systolic pressure at least 20 mmHg above the diastolic.
func vital(at time.Time, sys, dia, hr, spo2 int) mapping.Vital {
	sys = clamp(sys, 90, 200)
	dia = clamp(dia, 50, min(115, sys-20))
	f := func(x int) *float64 { v := float64(x); return &v }
	return mapping.Vital{At: at, Systolic: f(sys), Diastolic: f(dia), HeartRate: f(clamp(hr, 48, 130)), SpO2: f(clamp(spo2, 92, 100))}
}

// reduction is the fraction of the baseline score lost after treated
// treatments of the induction series; treated < 0 means during maintenance.
func (g *gen) reduction(treated int) float64 {
	switch {
	case treated == 0:
		return 0
	case treated < 0:
		return g.response
	}
	const tau = 2.0
	f := (1 - math.Exp(-float64(treated)/tau)) / (1 - math.Exp(-6/tau))
	return g.response * math.Min(f, 1)
}

func (g *gen) phqTotal(treated int) int {
	return clamp(int(math.Round(float64(g.phqBase)*(1-g.reduction(treated))))+g.r.jitter(2), 0, 27)
}

func (g *gen) phq9(t time.Time, treated int, adminID string) {
	total := g.phqTotal(treated)
	g.addScore(instrPHQ9, t, total, g.r.distribute(total, 3, phq9Weights), adminID, nil)
}

func (g *gen) phq2(t time.Time, treated int, adminID string) {
	items := g.r.distribute(g.phqTotal(treated), 3, phq9Weights)[:2]
	g.addScore(instrPHQ2, t, sum(items), items, adminID, nil)
}

func (g *gen) gad7(t time.Time, treated int, adminID string) {
	total := clamp(int(math.Round(float64(g.gadBase)*(1-0.7*g.reduction(treated))))+g.r.jitter(2), 0, 21)
	g.addScore(instrGAD7, t, total, g.r.distribute(total, 3, gad7Weights), adminID, nil)
}

func (g *gen) madrs(t time.Time, treated int, adminID string, performer *mapping.Practitioner) {
	total := clamp(int(math.Round(float64(g.madrsBase)*(1-g.reduction(treated))))+g.r.jitter(3), 0, 60)
	g.addScore(instrMADRS, t, total, g.r.distribute(total, 6, madrsWeights), adminID, performer)
}

func (g *gen) qidsScore(t time.Time, treated int, adminID string) {
	severity := float64(g.phqBase) * (1 - g.reduction(treated)) / 27
	items := g.r.qidsItems(severity)
	g.addScore(instrQIDS, t, qidsTotal(items), items, adminID, nil)
}

// addScore records a score; a few summed scores are sent without items.
func (g *gen) addScore(instrument string, t time.Time, total int, items []int, adminID string, performer *mapping.Practitioner) {
	s := &mapping.Score{
		ScoreID:    g.nextScoreID(),
		MRN:        g.mrn,
		Instrument: instrument,
		TakenAt:    t,
		Total:      total,
		Items:      items,
		AdminID:    adminID,
	}
	if performer != nil {
		p := *performer
		s.Performer = &p
	}
	if instrument != instrQIDS && g.r.chance(0.05) {
		s.Items = nil
	}
	g.scores = append(g.scores, &mapping.Record{Kind: mapping.KindScore, Score: s})
}

// dayOf returns midnight of t's day in the clinic zone.
func dayOf(t time.Time) time.Time {
	t = t.In(clinicZone)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, clinicZone)
}

// weekday moves a Saturday or Sunday to the next Monday.
func weekday(day time.Time) time.Time {
	switch day.Weekday() {
	case time.Saturday:
		return day.AddDate(0, 0, 2)
	case time.Sunday:
		return day.AddDate(0, 0, 1)
	}
	return day
}

// Session patterns: 0 is Monday and Thursday, 1 is Tuesday and Friday, so
// sessions are 3 and 4 days apart in turn.
func patternOf(day time.Time) int {
	switch day.Weekday() {
	case time.Tuesday, time.Friday:
		return 1
	}
	return 0
}

// patternDay returns the first day on or after day that is in pattern.
func patternDay(day time.Time, pattern int) time.Time {
	for {
		switch wd := day.Weekday(); {
		case pattern == 0 && (wd == time.Monday || wd == time.Thursday),
			pattern == 1 && (wd == time.Tuesday || wd == time.Friday):
			return day
		}
		day = day.AddDate(0, 0, 1)
	}
}
