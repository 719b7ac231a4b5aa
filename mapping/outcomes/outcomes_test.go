package outcomes_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
)

// independent is a second, plain implementation of the response and
// remission figures, written from the definitions on the report page and
// reading the score Observations and administrations as generic JSON. It
// shares no code with the package.
type independent struct {
	assessed, responders, remitters int
}

func recompute(t *testing.T, resources [][]byte, instrument string, remission func(float64) bool, eligible func(float64) bool) map[string]independent {
	t.Helper()
	type sess struct {
		at      time.Time
		request string
	}
	type obs struct {
		at    time.Time
		value float64
	}
	sessions := map[string][]sess{}
	scores := map[string][]obs{}
	parse := func(s string) time.Time {
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatalf("time %q: %v", s, err)
		}
		return at
	}
	for _, data := range resources {
		var r map[string]any
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		subject, _ := r["subject"].(map[string]any)
		ident, _ := subject["identifier"].(map[string]any)
		who, _ := ident["value"].(string)
		switch r["resourceType"] {
		case "MedicationAdministration":
			if r["status"] != "completed" && r["status"] != "stopped" {
				continue
			}
			var at time.Time
			if s, ok := r["effectiveDateTime"].(string); ok {
				at = parse(s)
			} else {
				at = parse(r["effectivePeriod"].(map[string]any)["start"].(string))
			}
			req, _ := r["request"].(map[string]any)
			rid, _ := req["identifier"].(map[string]any)
			order, _ := rid["value"].(string)
			sessions[who] = append(sessions[who], sess{at, order})
		case "Observation":
			if r["status"] != "final" {
				continue
			}
			code := r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)
			var name string
			switch {
			case code["system"] == "http://loinc.org" && code["code"] == "44261-6":
				name = "PHQ-9"
			case code["system"] == "https://clinic.example.org/fhir/sid/instrument" && code["code"] == "MADRS":
				name = "MADRS"
			}
			if name != instrument {
				continue
			}
			scores[who] = append(scores[who], obs{parse(r["effectiveDateTime"].(string)), r["valueInteger"].(float64)})
		}
	}
	const d = 24 * time.Hour
	out := map[string]independent{}
	tally := func(point string, baseline, v float64) {
		f := out[point]
		f.assessed++
		if v <= baseline/2 {
			f.responders++
		}
		if remission(v) {
			f.remitters++
		}
		out[point] = f
	}
	for who, ss := range sessions {
		sort.Slice(ss, func(i, j int) bool { return ss[i].at.Before(ss[j].at) })
		sc := scores[who]
		sort.Slice(sc, func(i, j int) bool { return sc[i].at.Before(sc[j].at) })
		first := ss[0].at
		baseline := -1.0
		for _, s := range sc {
			if !s.at.After(first) && first.Sub(s.at) <= 30*d {
				baseline = s.value
			}
		}
		if baseline < 0 || !eligible(baseline) {
			continue
		}
		// The induction series: the first session's order.
		var last time.Time
		for _, s := range ss {
			if s.request == ss[0].request {
				last = s.at
			}
		}
		var next time.Time
		for _, s := range ss {
			if s.at.After(last) && s.request != ss[0].request {
				next = s.at
				break
			}
		}
		var end *obs
		for i, s := range sc {
			if s.at.After(first) && !s.at.Before(last.Add(-4*d)) && !s.at.After(last.Add(7*d)) && (next.IsZero() || s.at.Before(next)) {
				end = &sc[i]
			}
		}
		if end != nil {
			tally("end_of_induction", baseline, end.value)
		}
		for _, p := range []struct {
			id   string
			days int
		}{{"week_4", 28}, {"week_12", 84}} {
			target := first.Add(time.Duration(p.days) * d)
			var best *obs
			for i, s := range sc {
				if !s.at.After(first) {
					continue
				}
				dist := s.at.Sub(target).Abs()
				if dist > 14*d {
					continue
				}
				if best == nil || dist <= best.at.Sub(target).Abs() {
					best = &sc[i]
				}
			}
			if best != nil {
				tally(p.id, baseline, best.value)
			}
		}
	}
	return out
}

// TestRatesRecomputedIndependently: on the generated clinic (200 patients,
// mapped as `ketamine-fhir map` does), the report's response and remission
// figures equal the ones a second implementation gets from the scores.
func TestRatesRecomputedIndependently(t *testing.T) {
	t.Parallel()
	resources := clinic(t)
	rep := compute(t, resources, outcomes.Options{})
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got outcomes.Report // what a script reading --format json sees
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, in := range got.Instruments {
		var want map[string]independent
		switch in.Instrument {
		case "PHQ-9":
			want = recompute(t, resources, "PHQ-9", func(v float64) bool { return v < 5 }, func(b float64) bool { return b > 9 })
		case "MADRS":
			want = recompute(t, resources, "MADRS", func(v float64) bool { return v <= 10 }, func(b float64) bool { return b > 10 })
		default:
			t.Fatalf("unexpected instrument %q", in.Instrument)
		}
		if len(in.TimePoints) != 3 {
			t.Fatalf("%s: %d time points, want 3", in.Instrument, len(in.TimePoints))
		}
		for _, tp := range in.TimePoints {
			w := want[tp.ID]
			if w.assessed > 0 && w.assessed < 11 {
				if !tp.Suppressed || tp.Assessed != nil {
					t.Errorf("%s %s: %d assessed, not suppressed", in.Instrument, tp.ID, w.assessed)
				}
				continue
			}
			if tp.Assessed == nil || *tp.Assessed != w.assessed {
				t.Errorf("%s %s: assessed %v, recomputed %d", in.Instrument, tp.ID, tp.Assessed, w.assessed)
				continue
			}
			if w.assessed == 0 {
				if tp.Response.Rate != nil || tp.Remission.Rate != nil {
					t.Errorf("%s %s: rates of nobody", in.Instrument, tp.ID)
				}
				continue
			}
			for _, c := range []struct {
				name string
				s    outcomes.Share
				n    int
			}{{"response", tp.Response, w.responders}, {"remission", tp.Remission, w.remitters}} {
				hidden := (c.n > 0 && c.n < 11) || (w.assessed-c.n > 0 && w.assessed-c.n < 11)
				if hidden {
					if !c.s.Suppressed || c.s.Count != nil || c.s.Rate != nil {
						t.Errorf("%s %s %s: %d of %d shown, want suppressed", in.Instrument, tp.ID, c.name, c.n, w.assessed)
					}
					continue
				}
				if c.s.Count == nil || *c.s.Count != c.n || c.s.Rate == nil || *c.s.Rate != float64(c.n)/float64(w.assessed) {
					t.Errorf("%s %s %s: report %s, recomputed %d of %d", in.Instrument, tp.ID, c.name, shareText(c.s), c.n, w.assessed)
					continue
				}
				checked++
			}
		}
	}
	// The generated clinic has enough patients for most figures: a report
	// that suppressed everything would pass the loop above.
	if checked < 6 {
		t.Errorf("only %d rates compared; want at least 6", checked)
	}
}

func shareText(s outcomes.Share) string {
	if s.Count == nil || s.Rate == nil {
		return fmt.Sprintf("count %v rate %v suppressed %v", s.Count, s.Rate, s.Suppressed)
	}
	return fmt.Sprintf("%d (%.4f)", *s.Count, *s.Rate)
}

// TestReferenceStyles: the same clinic as `map` writes it (identifiers,
// no ids) and as an EHR exports it (ids, literal references) gives the
// same report.
func TestReferenceStyles(t *testing.T) {
	t.Parallel()
	n := 60
	if raceEnabled {
		n = 25
	}
	logical := compute(t, mapClinic(t, n, false), outcomes.Options{})
	literal := compute(t, mapClinic(t, n, true), outcomes.Options{})
	if !reflect.DeepEqual(logical, literal) {
		a, _ := json.Marshal(logical)
		b, _ := json.Marshal(literal)
		t.Errorf("reports differ:\nlogical %s\nliteral %s", a, b)
	}
	if logical.BloodPressure.Sessions == nil || *logical.BloodPressure.Sessions < 5*n {
		t.Errorf("blood pressure paired over %v sessions; the vitals did not join their administrations", logical.BloodPressure.Sessions)
	}
}

// walkCounts checks every count of patients in the report against min:
// 0 or at least min, and a share's complement likewise.
func walkCounts(t *testing.T, r *outcomes.Report, min int) (shown int) {
	t.Helper()
	ok := func(what string, n *int) {
		if n == nil {
			return
		}
		shown++
		if *n > 0 && *n < min {
			t.Errorf("%s: %d patients shown with min cell %d", what, *n, min)
		}
	}
	share := func(what string, s outcomes.Share, cohort *int) {
		if s.Count == nil {
			if s.Rate != nil {
				t.Errorf("%s: a rate without its count", what)
			}
			return
		}
		if cohort == nil {
			t.Errorf("%s: a count shown in a suppressed cohort", what)
			return
		}
		ok(what, s.Count)
		rest := *cohort - *s.Count
		ok(what+" (complement)", &rest)
	}
	ok("patients", r.Patients)
	for _, in := range r.Instruments {
		ok(in.Instrument+" eligible", in.Eligible)
		for _, w := range in.Trajectory {
			ok(in.Instrument+" trajectory week", w.Patients)
			if w.Patients == nil && w.Scores != nil {
				t.Errorf("%s week %d: scores of a suppressed week", in.Instrument, w.Week)
			}
		}
		for _, tp := range in.TimePoints {
			ok(in.Instrument+" "+tp.ID, tp.Assessed)
			share(in.Instrument+" "+tp.ID+" response", tp.Response, tp.Assessed)
			share(in.Instrument+" "+tp.ID+" remission", tp.Remission, tp.Assessed)
		}
		st := in.SessionsToResponse
		ok(in.Instrument+" followed", st.Followed)
		share(in.Instrument+" ever responded", st.EverResponded, st.Followed)
		if st.Sessions != nil && st.EverResponded.Count == nil {
			t.Errorf("%s: sessions to response of a suppressed group", in.Instrument)
		}
	}
	ok("safety patients", r.Safety.Patients)
	ok("blood pressure patients", r.BloodPressure.Patients)
	return shown
}

// TestSuppression: at several minimum cell sizes no figure counts 1 to
// min-1 patients, nor lets such a count be derived; a clinic smaller than
// the minimum shows no figure at all.
func TestSuppression(t *testing.T) {
	t.Parallel()
	resources := clinic(t)
	for _, min := range []int{11, clinicSize() / 3, clinicSize() / 2, 3 * clinicSize() / 4} {
		rep := compute(t, resources, outcomes.Options{MinCell: min})
		if rep.MinCell != min {
			t.Errorf("min cell %d reported as %d", min, rep.MinCell)
		}
		if shown := walkCounts(t, rep, min); shown == 0 {
			t.Errorf("min cell %d: nothing shown at all", min)
		}
	}
	// At three quarters of the clinic, end of induction PHQ-9 (everyone
	// assessed) keeps its cohort but hides a response count whose
	// complement is below the minimum.
	rep := compute(t, resources, outcomes.Options{MinCell: 3 * clinicSize() / 4})
	tp := rep.Instruments[0].TimePoints[0]
	if tp.Assessed == nil || !tp.Response.Suppressed || tp.Response.Count != nil {
		t.Errorf("min cell 3/4 of the clinic, PHQ-9 end of induction: assessed %v, response %+v; want the cohort shown and the response hidden", tp.Assessed, tp.Response)
	}

	// Eight patients: below the default minimum of 11.
	small := mapClinic(t, 8, false)
	rep = compute(t, small, outcomes.Options{})
	if !rep.Suppressed || rep.Patients != nil {
		t.Fatalf("8 patients: suppressed %v, patients %v", rep.Suppressed, rep.Patients)
	}
	walkCounts(t, rep, 11)
	data, _ := json.Marshal(rep)
	for _, field := range []string{`"median"`, `"rate":0`, `"rate":1`, `"per_100_sessions":1`, `"per_100_sessions":2`, `"per_100_sessions":3`} {
		if strings.Contains(string(data), field) {
			t.Errorf("8 patients: the JSON still has %s", field)
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	c := outcomes.NewCollector(outcomes.DefaultCodes())
	for _, tc := range []struct {
		in, want string
	}{
		{`{"resourceType":`, "not valid JSON"},
		{`[1,2]`, "not a FHIR resource"},
		{`{"id":"x"}`, "not a FHIR resource"},
		{`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/1"},"effectiveDateTime":"yesterday","valueInteger":3}`, "Observation: effectiveDateTime: not a FHIR dateTime"},
		{`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/1"},"effectiveDateTime":"2025-01-02","valueInteger":"7"}`, "Observation: valueInteger: wrong JSON type"},
		{`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/1"},"effectiveDateTime":"2025-01-02","valueInteger":31}`, "Observation: value[x]: PHQ-9 total outside 0-27"},
		{`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"effectiveDateTime":"2025-01-02","valueInteger":3}`, "Observation: subject: no reference or identifier"},
	} {
		err := c.Add([]byte(tc.in))
		var re *outcomes.ResourceError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add(%s) = %v, want a *ResourceError with %q", tc.in, err, tc.want)
		}
	}
	// Types the report does not use are skipped and counted; so are
	// scores it cannot use.
	for _, in := range []string{
		`{"resourceType":"Encounter","id":"e1"}`,
		`{"resourceType":"Encounter","id":"e2"}`,
		`{"resourceType":"Condition","id":"c1"}`,
		`{"resourceType":"Observation","status":"entered-in-error","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/1"},"effectiveDateTime":"2025-01-02","valueInteger":3}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/1"},"effectiveDateTime":"2025-01-02","dataAbsentReason":{"text":"asked, declined"}}`,
		`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/1"},"effectiveDateTime":"2025-01-02","valueString":" 12 "}`,
	} {
		if err := c.Add([]byte(in)); err != nil {
			t.Errorf("Add(%s): %v", in, err)
		}
	}
	rep := c.Compute(outcomes.Options{})
	if want := map[string]int{"Encounter": 2, "Condition": 1}; !reflect.DeepEqual(rep.Input.Skipped, want) {
		t.Errorf("skipped %v, want %v", rep.Input.Skipped, want)
	}
	if rep.Input.Excluded["score without a value"] != 1 || rep.Input.Excluded["observation not final, amended or corrected"] != 1 {
		t.Errorf("excluded %v", rep.Input.Excluded)
	}
	if rep.Input.Resources != 6 || rep.Input.ByType["Observation"] != 3 {
		t.Errorf("input %+v, want 6 resources of which 3 Observations", rep.Input)
	}
}
