package outcomes

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

const day = 24 * time.Hour

// Windows of the definitions (see Definitions).
const (
	// inductionGap ends a series whose sessions name no order: the first
	// gap between sessions longer than this.
	inductionGap = 14 * day
	// endBefore and endAfter bound the end-of-induction score around the
	// last induction session.
	endBefore = 4 * day
	endAfter  = 7 * day
	// pointWindow is the half-width of the week 4 and week 12 windows.
	pointWindow = 14 * day
	// maxWeek is the last week of the trajectories.
	maxWeek = 26
)

// Options are the report's parameters.
type Options struct {
	// MinCell is the smallest number of patients a figure may count.
	// Defaults to 11.
	MinCell int
	// MADRSRemission is the highest MADRS total in remission. Defaults to
	// 10 (Zimmerman et al. 2004); the esketamine phase-3 trials used 12.
	MADRSRemission int
	// BaselineDays is how many days before the first session a baseline
	// score may be. Defaults to 30.
	BaselineDays int
}

func (o Options) withDefaults() Options {
	if o.MinCell <= 0 {
		o.MinCell = 11
	}
	if o.MADRSRemission <= 0 {
		o.MADRSRemission = 10
	}
	if o.BaselineDays <= 0 {
		o.BaselineDays = 30
	}
	return o
}

// instrumentSpec says how one instrument is judged.
type instrumentSpec struct {
	name, code, remissionText string
	remits                    func(v float64) bool
	eligible                  func(baseline float64) bool
}

func (c *Collector) specs(o Options) []instrumentSpec {
	m := float64(o.MADRSRemission)
	return []instrumentSpec{
		{PHQ9, systemLOINC + "|" + loincPHQ9, "< 5",
			func(v float64) bool { return v < 5 }, func(b float64) bool { return b > 9 }},
		{MADRS, c.codes.Instrument + "|" + codeMADRS, fmt.Sprintf("<= %d", o.MADRSRemission),
			func(v float64) bool { return v <= m }, func(b float64) bool { return b > m }},
	}
}

// responds is the NQF 1884/1885 response: at least 50% below baseline.
func responds(baseline, v float64) bool { return 2*v <= baseline }

// Definitions returns the rules the report applies, with their sources.
func Definitions(o Options) []Definition {
	o = o.withDefaults()
	return []Definition{
		{"session", "A session is a MedicationAdministration with status completed or stopped (a dose given in full or in part); not-done and entered-in-error administrations are not sessions. Week n since the first session is the n-th 7-day period after its start (days 0-7 are week 1); week 0 is the baseline.", "DESIGN.md section 2 (administration status)"},
		{"baseline", fmt.Sprintf("Baseline is the last score on or before the start of the first session and no more than %d days before it.", o.BaselineDays), "DESIGN.md section 8"},
		{"eligible", fmt.Sprintf("Response and remission are followed for patients whose baseline is above the remission threshold: PHQ-9 above 9 (the index event of CMS159 and NQF 1884/1885), MADRS above %d.", o.MADRSRemission), "CMS159v12 / NQF 0710 denominator (initial PHQ-9 > 9); MADRS: this report's rule"},
		{"response", "Response is a score at least 50% below baseline (score <= baseline / 2).", "NQF 1884 / 1885 (PHQ-9 response); the same rule for MADRS, as in the esketamine and ketamine trials"},
		{"remission_phq9", "PHQ-9 remission is a total below 5.", "CMS159 Depression Remission at Twelve Months (Kroenke et al. 2001)"},
		{"remission_madrs", fmt.Sprintf("MADRS remission is a total of %d or below.", o.MADRSRemission), madrsSource(o.MADRSRemission)},
		{"induction", "The induction series is the sessions of the order (MedicationRequest) of the first session; when the sessions name no order, the sessions up to the first gap longer than 14 days. Later sessions (maintenance) are not part of it.", "DESIGN.md section 8; mapping/synth (twice-weekly series, then maintenance)"},
		{"end_of_induction", "End of induction: the last score from 4 days before to 7 days after the last induction session (a pre-dose score at that session counts), after the first session and before any later session.", "this report's rule"},
		{"weeks_4_12", "Week 4 and week 12: the score nearest to 28 (84) days after the first session, within 14 days either side (on a tie, the later one).", "this report's rule (NQF measures use 6 and 12 months +/- 60 days)"},
		{"denominator", "A time point's denominator is the eligible patients with a score in its window (available cases): patients who stopped treatment and were not scored are not counted, which favours patients still in care.", "this report's rule"},
		{"sessions_to_response", "Sessions to first response: the number of sessions started on or before the first responding score; the share of patients who ever responded is among eligible patients with a score after the first session.", "this report's rule"},
		{"adverse_events", "Adverse events per 100 sessions: adverse-event Observations (the clinic's adverse-event codes) divided by sessions, times 100.", "DESIGN.md section 8"},
		{"blood_pressure", "Blood pressure before the dose is the last reading at or before the start of the session; after the dose, the first reading after its end. Figures are over sessions with both; change is after minus before.", "DESIGN.md section 8; clinical-codes.md section 6 (LOINC 85354-9, 8480-6, 8462-4)"},
		{"suppression", fmt.Sprintf("No count of 1 to %d patients is shown: a cohort that small is suppressed with all its figures, and a count whose complement in its cohort is that small is suppressed too, so neither can be derived. Zero is shown. Not suppressed: differences between totals shown in different places (patients treated minus patients assessed at week 4, say), which count patients without a score, not the patients of any figure.", o.MinCell-1), "small-cell suppression as in public health reporting (e.g. CMS cell size suppression policy, cells 1-10)"},
	}
}

func madrsSource(threshold int) string {
	switch threshold {
	case 10:
		return "Zimmerman M, Posternak MA, Chelminski I. J Psychiatr Res 2004;38(6):577-82 (MADRS <= 10); compare Hawley CJ, Gale TM, Sivakumaran T. J Affect Disord 2002 (MADRS < 10); the esketamine phase-3 trials used <= 12"
	case 12:
		return "esketamine phase-3 trials (e.g. ASPIRE, BMC Psychiatry 2023, doi:10.1186/s12888-023-05017-y): MADRS <= 12"
	}
	return "configured threshold"
}

// Compute returns the report of everything added.
func (c *Collector) Compute(o Options) *Report {
	o = o.withDefaults()
	r := &Report{
		Schema:      Schema,
		MinCell:     o.MinCell,
		Definitions: Definitions(o),
		Input: Input{
			Resources: c.resCount,
			ByType:    cloneCounts(c.types),
			Skipped:   cloneCounts(c.skipped),
			Excluded:  cloneCounts(c.excluded),
		},
	}
	var treated []*patientData
	keys := make([]string, 0, len(c.patients))
	for k := range c.patients {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a deterministic order; keys never leave this function
	for _, k := range keys {
		p := c.patients[k]
		if len(p.sessions) == 0 {
			continue
		}
		sort.SliceStable(p.sessions, func(i, j int) bool { return p.sessions[i].start.Before(p.sessions[j].start) })
		for _, s := range p.scores {
			sort.SliceStable(s, func(i, j int) bool { return s[i].t.Before(s[j].t) })
		}
		treated = append(treated, p)
	}
	small := func(n int) bool { return n > 0 && n < o.MinCell }
	r.Patients, r.Suppressed = count(len(treated), o.MinCell)
	for _, spec := range c.specs(o) {
		r.Instruments = append(r.Instruments, instrument(spec, treated, o, small))
	}
	r.Safety = c.safety(treated, o, small)
	r.BloodPressure = c.bloodPressure(treated, o)
	if r.Suppressed {
		// Too few patients for any figure: keep the definitions and input
		// counts only.
		for i := range r.Instruments {
			r.Instruments[i] = suppressInstrument(r.Instruments[i])
		}
		r.Safety = Safety{Suppressed: true}
		r.BloodPressure = BloodPressure{Suppressed: true}
	}
	return r
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// count returns n, or nil and true when n is 1 to min-1.
func count(n, min int) (*int, bool) {
	if n > 0 && n < min {
		return nil, true
	}
	return &n, false
}

// share returns k of n; suppressed when k or n-k is 1 to min-1.
func share(k, n int, small func(int) bool) Share {
	if n == 0 || small(n) || small(k) || small(n-k) {
		return Share{Suppressed: small(n) || small(k) || small(n-k)}
	}
	rate := float64(k) / float64(n)
	return Share{Count: &k, Rate: &rate}
}

// quartiles returns the quartiles of xs (sorted in place), type 7.
func quartiles(xs []float64) Quartiles {
	slices.Sort(xs)
	q := func(p float64) float64 {
		h := p * float64(len(xs)-1)
		lo := math.Floor(h)
		i := int(lo)
		if i+1 >= len(xs) {
			return xs[len(xs)-1]
		}
		return xs[i] + (h-lo)*(xs[i+1]-xs[i])
	}
	return Quartiles{Q1: q(0.25), Median: q(0.5), Q3: q(0.75)}
}

// induction returns the sessions of p's induction series.
func induction(p *patientData) []*admin {
	first := p.sessions[0]
	if first.request != "" {
		var out []*admin
		for _, s := range p.sessions {
			if s.request == first.request {
				out = append(out, s)
			}
		}
		return out
	}
	out := []*admin{p.sessions[0]} // a new slice: appending must not write into p.sessions
	for _, s := range p.sessions[1:] {
		if s.start.Sub(out[len(out)-1].start) > inductionGap {
			break
		}
		out = append(out, s)
	}
	return out
}

// followUp is one eligible patient's scores at the time points.
type followUp struct {
	baseline float64
	points   [3]*score // end of induction, week 4, week 12
}

var timePoints = []struct{ id, label, window string }{
	{"end_of_induction", "End of the induction series", "last score from 4 days before to 7 days after the last induction session"},
	{"week_4", "4 weeks after the first session", "score nearest to day 28, within 14 days"},
	{"week_12", "12 weeks after the first session", "score nearest to day 84, within 14 days"},
}

func instrument(spec instrumentSpec, treated []*patientData, o Options, small func(int) bool) InstrumentOutcomes {
	out := InstrumentOutcomes{Instrument: spec.name, Code: spec.code, Remission: spec.remissionText}
	weeks := make([][]float64, maxWeek+1)
	var follows []followUp
	var toResponse []float64
	followed, responded := 0, 0
	for _, p := range treated {
		scores := p.scores[spec.name]
		if len(scores) == 0 {
			continue
		}
		first := p.sessions[0].start
		// Baseline and the trajectory: the last score of each week.
		var base *score
		last := map[int]float64{}
		for i := range scores {
			s := &scores[i]
			if !s.t.After(first) {
				if first.Sub(s.t) <= time.Duration(o.BaselineDays)*day {
					base = s
				}
				continue
			}
			w := int(math.Ceil(float64(s.t.Sub(first)) / float64(7*day)))
			if w <= maxWeek {
				last[w] = s.value
			}
		}
		if base != nil {
			last[0] = base.value
		}
		for w, v := range last {
			weeks[w] = append(weeks[w], v)
		}
		if base == nil || !spec.eligible(base.value) {
			continue
		}
		f := followUp{baseline: base.value}
		ind := induction(p)
		lastInd := ind[len(ind)-1].start
		var next time.Time // the first session after the series
		for _, s := range p.sessions {
			if s.start.After(lastInd) && !slices.Contains(ind, s) {
				next = s.start
				break
			}
		}
		after := scores[:0:0]
		for _, s := range scores {
			if s.t.After(first) {
				after = append(after, s)
			}
		}
		for i := range after {
			s := &after[i]
			if !s.t.Before(lastInd.Add(-endBefore)) && !s.t.After(lastInd.Add(endAfter)) && (next.IsZero() || s.t.Before(next)) {
				f.points[0] = s
			}
		}
		for j, target := range []time.Time{first.Add(28 * day), first.Add(84 * day)} {
			var best *score
			var bestDist time.Duration
			for i := range after {
				s := &after[i]
				d := s.t.Sub(target).Abs()
				if d <= pointWindow && (best == nil || d <= bestDist) {
					best, bestDist = s, d
				}
			}
			f.points[j+1] = best
		}
		follows = append(follows, f)
		if len(after) > 0 {
			followed++
			for _, s := range after {
				if responds(base.value, s.value) {
					responded++
					n := 0
					for _, ses := range p.sessions {
						if !ses.start.After(s.t) {
							n++
						}
					}
					toResponse = append(toResponse, float64(n))
					break
				}
			}
		}
	}
	out.Eligible, out.EligibleSuppressed = count(len(follows), o.MinCell)
	// The trajectory runs to the last week with any score.
	lastWeek := 0
	for w := range weeks {
		if len(weeks[w]) > 0 {
			lastWeek = w
		}
	}
	for w := 0; w <= lastWeek; w++ {
		wk := Week{Week: w}
		wk.Patients, wk.Suppressed = count(len(weeks[w]), o.MinCell)
		if !wk.Suppressed && len(weeks[w]) > 0 {
			q := quartiles(weeks[w])
			wk.Scores = &q
		}
		out.Trajectory = append(out.Trajectory, wk)
	}
	for j, tp := range timePoints {
		assessed, resp, rem := 0, 0, 0
		for _, f := range follows {
			s := f.points[j]
			if s == nil {
				continue
			}
			assessed++
			if responds(f.baseline, s.value) {
				resp++
			}
			if spec.remits(s.value) {
				rem++
			}
		}
		p := TimePoint{ID: tp.id, Label: tp.label, Window: tp.window}
		p.Assessed, p.Suppressed = count(assessed, o.MinCell)
		p.Response = share(resp, assessed, small)
		p.Remission = share(rem, assessed, small)
		out.TimePoints = append(out.TimePoints, p)
	}
	st := SessionsToResponse{}
	st.Followed, st.Suppressed = count(followed, o.MinCell)
	st.EverResponded = share(responded, followed, small)
	if len(toResponse) >= o.MinCell && !st.EverResponded.Suppressed {
		q := quartiles(toResponse)
		st.Sessions = &q
	}
	out.SessionsToResponse = st
	return out
}

func suppressInstrument(in InstrumentOutcomes) InstrumentOutcomes {
	out := InstrumentOutcomes{Instrument: in.Instrument, Code: in.Code, Remission: in.Remission, EligibleSuppressed: true}
	for _, tp := range in.TimePoints {
		out.TimePoints = append(out.TimePoints, TimePoint{ID: tp.ID, Label: tp.Label, Window: tp.Window, Suppressed: true,
			Response: Share{Suppressed: true}, Remission: Share{Suppressed: true}})
	}
	out.SessionsToResponse = SessionsToResponse{Suppressed: true, EverResponded: Share{Suppressed: true}}
	return out
}

func (c *Collector) safety(treated []*patientData, o Options, small func(int) bool) Safety {
	sessions := 0
	for _, p := range treated {
		sessions += len(p.sessions)
	}
	s := Safety{}
	s.Patients, s.Suppressed = count(len(treated), o.MinCell)
	if s.Suppressed || sessions == 0 {
		return s
	}
	events := len(c.events)
	per := 100 * float64(events) / float64(sessions)
	s.Sessions, s.AdverseEvents, s.PerHundredSessions = &sessions, &events, &per
	byCode := map[string]int{}
	patients := map[string]map[string]bool{}
	for _, e := range c.events {
		byCode[e.code]++
		if patients[e.code] == nil {
			patients[e.code] = map[string]bool{}
		}
		patients[e.code][e.patient] = true
	}
	codes := make([]string, 0, len(byCode))
	for k := range byCode {
		codes = append(codes, k)
	}
	sort.Strings(codes)
	for _, code := range codes {
		t := AdverseEventType{Code: code, Display: c.aeNames[code]}
		if small(len(patients[code])) {
			t.Suppressed = true
		} else {
			n := byCode[code]
			rate := 100 * float64(n) / float64(sessions)
			t.Events, t.PerHundredSessions = &n, &rate
		}
		s.ByType = append(s.ByType, t)
	}
	return s
}

func (c *Collector) bloodPressure(treated []*patientData, o Options) BloodPressure {
	readings := map[*admin][]*bpReading{}
	for i := range c.vitals {
		v := &c.vitals[i]
		for _, id := range v.admins {
			if id >= 0 && int(id) < len(c.admins) && c.admins[id] != nil {
				a := c.admins[id]
				readings[a] = append(readings[a], v)
				break
			}
		}
	}
	var bs, as, cs, bd, ad, cd []float64
	patients := 0
	for _, p := range treated {
		any := false
		for _, ses := range p.sessions {
			var pre, post *bpReading
			start, end := ses.start.Unix(), ses.end.Unix()
			for _, v := range readings[ses] {
				if v.t <= start && (pre == nil || v.t > pre.t) {
					pre = v
				}
				if v.t > end && (post == nil || v.t < post.t) {
					post = v
				}
			}
			if pre == nil || post == nil {
				continue
			}
			any = true
			ps, pd, qs, qd := float64(pre.sys), float64(pre.dia), float64(post.sys), float64(post.dia)
			bs, as, cs = append(bs, ps), append(as, qs), append(cs, qs-ps)
			bd, ad, cd = append(bd, pd), append(ad, qd), append(cd, qd-pd)
		}
		if any {
			patients++
		}
	}
	b := BloodPressure{}
	b.Patients, b.Suppressed = count(patients, o.MinCell)
	if b.Suppressed || patients == 0 {
		return b
	}
	n := len(bs)
	b.Sessions = &n
	b.Systolic = &BPChange{Before: quartiles(bs), After: quartiles(as), Change: quartiles(cs)}
	b.Diastolic = &BPChange{Before: quartiles(bd), After: quartiles(ad), Change: quartiles(cd)}
	return b
}
