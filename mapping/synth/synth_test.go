package synth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// collect returns every record Generate emits for opts.
func collect(t testing.TB, opts Options) []*mapping.Record {
	t.Helper()
	var recs []*mapping.Record
	if err := Generate(opts, func(r *mapping.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return recs
}

func ndjson(t testing.TB, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := WriteNDJSON(&buf, opts)
	if err != nil {
		t.Fatalf("WriteNDJSON: %v", err)
	}
	if got := bytes.Count(buf.Bytes(), []byte("\n")); got != n {
		t.Fatalf("WriteNDJSON returned %d, wrote %d lines", n, got)
	}
	return buf.Bytes()
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a := ndjson(t, Options{Patients: 50, Seed: 42})
	b := ndjson(t, Options{Patients: 50, Seed: 42})
	if !bytes.Equal(a, b) {
		t.Fatal("same options gave different output")
	}
	c := ndjson(t, Options{Patients: 50, Seed: 43})
	if bytes.Equal(a, c) {
		t.Fatal("seeds 42 and 43 gave the same output")
	}
	// Patient n depends only on the seed and n: fewer patients is a prefix.
	small := ndjson(t, Options{Patients: 7, Seed: 42})
	if !bytes.HasPrefix(a, small) {
		t.Fatal("output for 7 patients is not a prefix of the output for 50")
	}
	// A zero Start is the documented default.
	d := ndjson(t, Options{Patients: 50, Seed: 42, Start: defaultStart})
	if !bytes.Equal(a, d) {
		t.Fatal("zero Start and the default start differ")
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	// Golden numbers for seed 1: a change here changes every consumer's
	// fixtures, so it must be deliberate.
	recs := collect(t, Options{Patients: 200, Seed: 1})
	kinds := map[mapping.Kind]int{}
	status := map[string]int{}
	instruments := map[string]int{}
	for _, r := range recs {
		kinds[r.Kind]++
		switch r.Kind {
		case mapping.KindOrder:
			status["order/"+r.Order.Status]++
		case mapping.KindAdministration:
			status["administration/"+r.Administration.Status]++
		case mapping.KindScore:
			instruments[r.Score.Instrument]++
		}
	}
	wantKinds := map[mapping.Kind]int{
		mapping.KindPatient:        200,
		mapping.KindOrder:          313,
		mapping.KindAdministration: 1656,
		mapping.KindScore:          2037,
	}
	wantStatus := map[string]int{
		"order/completed":                 245,
		"order/active":                    44,
		"order/on-hold":                   12,
		"order/cancelled":                 7,
		"order/entered-in-error":          5,
		"administration/completed":        1572,
		"administration/not-done":         56,
		"administration/stopped":          12,
		"administration/entered-in-error": 16,
	}
	wantInstruments := map[string]int{
		"PHQ-9": 1092, "GAD-7": 393, "MADRS": 393, "PHQ-2": 83, "QIDS-SR16": 76,
	}
	if len(recs) != 4206 {
		t.Errorf("got %d records, want 4206", len(recs))
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{{"kinds", kinds, wantKinds}, {"statuses", status, wantStatus}, {"instruments", instruments, wantInstruments}} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s:\n got %v\nwant %v", c.name, c.got, c.want)
		}
	}
}

// TestNDJSON checks the encoding: "kind" first, then exactly the fields of
// the record type, which decode back to the same record.
func TestNDJSON(t *testing.T) {
	t.Parallel()
	opts := Options{Patients: 40, Seed: 3}
	data := ndjson(t, opts)
	recs := collect(t, opts)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	i := 0
	for sc.Scan() {
		line := sc.Bytes()
		if i >= len(recs) {
			t.Fatalf("more lines than records")
		}
		rec := recs[i]
		prefix := `{"kind":"` + string(rec.Kind) + `",`
		if !bytes.HasPrefix(line, []byte(prefix)) {
			t.Fatalf("line %d does not start with %s: %.60s", i+1, prefix, line)
		}
		// The rest, with its brace back, is the payload; it must decode
		// strictly and re-encode to the same bytes.
		payload := append([]byte("{"), line[len(prefix):]...)
		var v any
		switch rec.Kind {
		case mapping.KindPatient:
			v = new(mapping.Patient)
		case mapping.KindOrder:
			v = new(mapping.Order)
		case mapping.KindAdministration:
			v = new(mapping.Administration)
		case mapping.KindScore:
			v = new(mapping.Score)
		}
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		var again bytes.Buffer
		if err := encodeRecord(&again, recordOf(rec.Kind, v)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bytes.TrimSuffix(again.Bytes(), []byte("\n")), line) {
			t.Fatalf("line %d does not round-trip:\n got %s\nwant %s", i+1, again.Bytes(), line)
		}
		i++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(recs) {
		t.Fatalf("got %d lines, want %d", i, len(recs))
	}
}

func recordOf(kind mapping.Kind, v any) *mapping.Record {
	r := &mapping.Record{Kind: kind}
	switch v := v.(type) {
	case *mapping.Patient:
		r.Patient = v
	case *mapping.Order:
		r.Order = v
	case *mapping.Administration:
		r.Administration = v
	case *mapping.Score:
		r.Score = v
	}
	return r
}

var (
	mrnRE   = regexp.MustCompile(`^MRN\d{7}$`)
	orderRE = regexp.MustCompile(`^ord-\d{7}-\d+$`)
	adminRE = regexp.MustCompile(`^adm-\d{7}-\d{2,}$`)
	scoreRE = regexp.MustCompile(`^scr-\d{7}-\d{2,}$`)
	dateRE  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// luhnNPI checks an NPI independently of the package: Luhn over
// "80840" + all ten digits must be a multiple of 10.
func luhnNPI(npi string) bool {
	if len(npi) != 10 {
		return false
	}
	s := "80840" + npi
	sum := 0
	for i := 0; i < len(s); i++ {
		d := int(s[i] - '0')
		if d < 0 || d > 9 {
			return false
		}
		if (len(s)-i)%2 == 0 { // every second digit from the right
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func TestNPI(t *testing.T) {
	t.Parallel()
	// 1234567893 is the example NPI of the CMS check-digit paper.
	if got := makeNPI("123456789"); got != "1234567893" {
		t.Errorf("makeNPI(123456789) = %s, want 1234567893", got)
	}
	if !validNPI("1234567893") || validNPI("1234567894") || validNPI("123456789") || validNPI("12345678a3") {
		t.Error("validNPI accepts or rejects the wrong numbers")
	}
	for _, p := range slices.Concat(prescribers, nurses, infusionists) {
		if !luhnNPI(p.NPI) {
			t.Errorf("staff NPI %s has a bad check digit", p.NPI)
		}
	}
}

func TestQIDSTotal(t *testing.T) {
	t.Parallel()
	//            sleep 1-4   5  appetite 6-9  10 11 12 13 14  15 16
	items := []int{1, 3, 0, 2, 2, 0, 1, 2, 0, 3, 1, 0, 2, 3, 1, 2}
	// max(1,3,0,2)=3 + 2 + max(0,1,2,0)=2 + 3+1+0+2+3 + max(1,2)=2 = 18
	if got := qidsTotal(items); got != 18 {
		t.Errorf("qidsTotal = %d, want 18", got)
	}
	max := []int{3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3}
	if got := qidsTotal(max); got != 27 {
		t.Errorf("qidsTotal(all 3) = %d, want 27", got)
	}
}

// TestStructure checks the properties every consumer relies on, over a
// larger clinic than the golden test.
func TestStructure(t *testing.T) {
	t.Parallel()
	start := defaultStart
	end := start.Add(Span)
	cfg := mapping.DefaultConfig()
	recs := collect(t, Options{Patients: 600, Seed: 7})

	patients := map[string]*mapping.Patient{}
	orders := map[string]*mapping.Order{}
	admins := map[string]*mapping.Administration{}
	scoreIDs := map[string]bool{}
	byOrder := map[string][]*mapping.Administration{}
	var lastMRN string
	seen := map[string]bool{} // every coverage case met at least once
	var baseSum, endSum, nSeries float64
	phqByMRN := map[string][]*mapping.Score{}

	checkTime := func(what string, tm time.Time) {
		t.Helper()
		if tm.Before(start) || !tm.Before(end) {
			t.Errorf("%s %v outside [Start, Start+Span)", what, tm)
		}
		if _, off := tm.Zone(); off != -5*3600 {
			t.Errorf("%s %v not in the clinic's -05:00 offset", what, tm)
		}
		if tm.Nanosecond() != 0 || tm.Second() != 0 {
			t.Errorf("%s %v has seconds", what, tm)
		}
	}
	checkNPI := func(what string, p mapping.Practitioner) {
		t.Helper()
		if !luhnNPI(p.NPI) || p.Name == "" {
			t.Errorf("%s: bad practitioner %+v", what, p)
		}
	}

	for i, r := range recs {
		if r.Line != 0 {
			t.Errorf("record %d: Line = %d, want 0", i, r.Line)
		}
		switch r.Kind {
		case mapping.KindPatient:
			p := r.Patient
			if !mrnRE.MatchString(p.MRN) || patients[p.MRN] != nil {
				t.Fatalf("record %d: bad or repeated MRN %q", i, p.MRN)
			}
			patients[p.MRN] = p
			lastMRN = p.MRN
			if p.Family == "" || len(p.Given) == 0 || len(p.Given) > 2 {
				t.Errorf("%s: bad name %q %q", p.MRN, p.Given, p.Family)
			}
			if len(p.Given) == 2 {
				seen["two given names"] = true
			}
			if strings.ContainsAny(p.Family, "'ü") || strings.Contains(strings.Join(p.Given, " "), "ë") {
				seen["name with apostrophe or diaeresis"] = true
			}
			seen["sex "+p.Sex] = true
			birth, err := time.Parse(time.DateOnly, p.BirthDate)
			if err != nil {
				t.Fatalf("%s: birth date: %v", p.MRN, err)
			}
			if age := start.Year() - birth.Year(); age < 18 || age > 81 {
				t.Errorf("%s: age %d at Start", p.MRN, age)
			}
			if p.Phone == "" || p.Email == "" {
				seen["missing phone or email"] = true
			}
			if p.UpdatedAt != nil {
				checkTime(p.MRN+" updated_at", *p.UpdatedAt)
			}
		case mapping.KindOrder:
			o := r.Order
			if !orderRE.MatchString(o.OrderID) || orders[o.OrderID] != nil {
				t.Fatalf("record %d: bad or repeated order id %q", i, o.OrderID)
			}
			if o.MRN != lastMRN || patients[o.MRN] == nil {
				t.Errorf("%s: MRN %s is not the current patient", o.OrderID, o.MRN)
			}
			orders[o.OrderID] = o
			checkTime(o.OrderID, o.AuthoredAt)
			if o.UpdatedAt != nil {
				checkTime(o.OrderID+" updated_at", *o.UpdatedAt)
				if o.UpdatedAt.Before(o.AuthoredAt) {
					t.Errorf("%s: updated before authored", o.OrderID)
				}
			}
			checkNPI(o.OrderID, o.Prescriber)
			prod, ok := cfg.Formulary[o.Medication]
			if !ok || !slices.Contains(prod.Routes, o.Route) {
				t.Errorf("%s: product %q by route %q not in the default formulary", o.OrderID, o.Medication, o.Route)
			}
			switch o.Dose.Unit {
			case "mg/kg":
				if o.Dose.Value < 0.5 || o.Dose.Value > 1 || o.Route == "IN" {
					t.Errorf("%s: dose %v mg/kg by %s", o.OrderID, o.Dose.Value, o.Route)
				}
			case "mg":
				if o.Dose.Value != 56 && o.Dose.Value != 84 || o.Route != "IN" {
					t.Errorf("%s: dose %v mg by %s", o.OrderID, o.Dose.Value, o.Route)
				}
			default:
				t.Errorf("%s: dose unit %q", o.OrderID, o.Dose.Unit)
			}
			if o.Sessions <= 0 || (o.Frequency != "2/week" && o.Frequency != "1/week" && o.Frequency != "2/month") {
				t.Errorf("%s: sessions %d, frequency %q", o.OrderID, o.Sessions, o.Frequency)
			}
			if len(o.Diagnoses) != 1 || !slices.Contains(diagnoses, o.Diagnoses[0]) {
				t.Errorf("%s: diagnoses %v", o.OrderID, o.Diagnoses)
			}
			seen["order "+o.Status] = true
			seen["route "+o.Route] = true
		case mapping.KindAdministration:
			a := r.Administration
			if !adminRE.MatchString(a.AdminID) || admins[a.AdminID] != nil {
				t.Fatalf("record %d: bad or repeated admin id %q", i, a.AdminID)
			}
			o := orders[a.OrderID]
			if o == nil || o.MRN != a.MRN || a.MRN != lastMRN {
				t.Fatalf("%s: order %s or MRN not emitted before it", a.AdminID, a.OrderID)
			}
			if o.Status == "entered-in-error" {
				t.Errorf("%s: given under an order entered in error", a.AdminID)
			}
			admins[a.AdminID] = a
			if a.Status != "entered-in-error" {
				byOrder[a.OrderID] = append(byOrder[a.OrderID], a)
			}
			checkAdministration(t, cfg, o, a, checkTime, checkNPI, seen)
		case mapping.KindScore:
			s := r.Score
			if !scoreRE.MatchString(s.ScoreID) || scoreIDs[s.ScoreID] {
				t.Fatalf("record %d: bad or repeated score id %q", i, s.ScoreID)
			}
			scoreIDs[s.ScoreID] = true
			if s.MRN != lastMRN || patients[s.MRN] == nil {
				t.Fatalf("%s: MRN not emitted before it", s.ScoreID)
			}
			checkTime(s.ScoreID, s.TakenAt)
			if s.AdminID != "" {
				a := admins[s.AdminID]
				if a == nil || a.MRN != s.MRN {
					t.Fatalf("%s: admin %s not emitted before it", s.ScoreID, s.AdminID)
				}
				if a.Status != "completed" && a.Status != "stopped" {
					t.Errorf("%s: linked to a %s administration", s.ScoreID, a.Status)
				}
				if !s.TakenAt.Before(a.StartedAt) || a.StartedAt.Sub(s.TakenAt) > time.Hour {
					t.Errorf("%s: taken at %v, session at %v", s.ScoreID, s.TakenAt, a.StartedAt)
				}
				seen["score linked"] = true
			}
			if s.Performer != nil {
				checkNPI(s.ScoreID, *s.Performer)
			}
			checkScore(t, s, seen)
			if s.Instrument == instrPHQ9 {
				phqByMRN[s.MRN] = append(phqByMRN[s.MRN], s)
			}
		default:
			t.Fatalf("record %d: kind %q", i, r.Kind)
		}
	}

	// Sessions of each order: the series' rhythm and numbering.
	for id, list := range byOrder {
		o := orders[id]
		sort.Slice(list, func(i, j int) bool { return list[i].StartedAt.Before(list[j].StartedAt) })
		want := map[string][]int{"2/week": {3, 4}, "1/week": {7}, "2/month": {14}}[o.Frequency]
		next := 1 // the next session number to be given
		for k, a := range list {
			if k > 0 {
				days := int(math.Round(dayOf(a.StartedAt).Sub(dayOf(list[k-1].StartedAt)).Hours() / 24))
				if !slices.Contains(want, days) {
					t.Errorf("%s: %s is %d days after the previous session, want %v", id, a.AdminID, days, want)
				}
				if o.Frequency == "2/week" {
					seen[fmt.Sprint("gap ", days)] = true
				}
			}
			if wd := a.StartedAt.Weekday(); wd == time.Saturday || wd == time.Sunday {
				t.Errorf("%s: session on a %v", a.AdminID, wd)
			}
			if a.Session != next {
				t.Errorf("%s: session %d, want %d", a.AdminID, a.Session, next)
			}
			if a.Status != "not-done" {
				next++
			}
		}
		given := next - 1
		switch {
		case o.Status == "completed" && given != o.Sessions:
			t.Errorf("%s: completed with %d of %d sessions", id, given, o.Sessions)
		case o.Status != "completed" && given >= o.Sessions:
			t.Errorf("%s: %s with %d of %d sessions", id, o.Status, given, o.Sessions)
		}
		if o.Frequency == "2/week" {
			if want := map[string]int{"IM": 6, "IV": 6, "IN": 8}[o.Route]; o.Sessions != want {
				t.Errorf("%s: %s induction of %d sessions, want %d", id, o.Route, o.Sessions, want)
			}
			if o.Route == "IM" && o.Status == "completed" && given == 6 {
				seen["IM induction of 6"] = true
			}
		}
	}

	// PHQ-9 falls over the series: the mean at the last induction session
	// is well below the mean baseline.
	for _, list := range phqByMRN {
		var last *mapping.Score
		for _, s := range list[1:] {
			if s.AdminID != "" && orders[admins[s.AdminID].OrderID].Frequency == "2/week" {
				last = s
			}
		}
		if last != nil && admins[last.AdminID].Session >= 6 {
			baseSum += float64(list[0].Total)
			endSum += float64(last.Total)
			nSeries++
		}
	}
	if nSeries < 100 {
		t.Fatalf("only %v patients with a PHQ-9 at the end of the series", nSeries)
	}
	if base, fin := baseSum/nSeries, endSum/nSeries; base < 15 || fin > 0.75*base {
		t.Errorf("mean PHQ-9 %.1f at baseline, %.1f at the end of the series: no response", base, fin)
	}

	for _, c := range []string{
		"two given names", "name with apostrophe or diaeresis", "missing phone or email",
		"sex female", "sex male", "sex other", "sex unknown",
		"route IM", "route IV", "route IN",
		"order completed", "order active", "order on-hold", "order cancelled", "order entered-in-error",
		"administration completed", "administration not-done", "administration stopped", "administration entered-in-error",
		"dose mg/kg", "adverse event", "elevated post-dose BP", "lot", "site", "score linked", "score without items",
		"PHQ-9", "PHQ-2", "GAD-7", "MADRS", "QIDS-SR16", "gap 3", "gap 4", "IM induction of 6",
	} {
		if !seen[c] {
			t.Errorf("no record shows %q", c)
		}
	}
}

func checkAdministration(t *testing.T, cfg *mapping.Config, o *mapping.Order, a *mapping.Administration,
	checkTime func(string, time.Time), checkNPI func(string, mapping.Practitioner), seen map[string]bool) {
	t.Helper()
	id := a.AdminID
	seen["administration "+a.Status] = true
	checkTime(id, a.StartedAt)
	checkNPI(id, a.Performer)
	if a.Route != o.Route || a.Session <= 0 {
		t.Errorf("%s: route %s (order %s), session %d", id, a.Route, o.Route, a.Session)
	}
	if a.EndedAt != nil {
		checkTime(id+" ended_at", *a.EndedAt)
		if a.EndedAt.Before(a.StartedAt) {
			t.Errorf("%s: ends before it starts", id)
		}
	}
	if a.UpdatedAt != nil {
		checkTime(id+" updated_at", *a.UpdatedAt)
	}
	// Dose: below the ceilings; mg/kg only with a weight; mg matches the
	// order for a full dose.
	switch a.Dose.Unit {
	case "mg":
		if a.Dose.Value <= 0 || a.Dose.Value > cfg.Limits.MaxDoseMg {
			t.Errorf("%s: dose %v mg", id, a.Dose.Value)
		}
		if a.Status == "completed" || a.Status == "not-done" {
			want := o.Dose.Value
			if o.Dose.Unit == "mg/kg" {
				if a.WeightKg == nil && a.Status == "completed" {
					t.Fatalf("%s: weight-based dose without weight", id)
				}
				if a.WeightKg != nil {
					want = math.Round(o.Dose.Value * *a.WeightKg)
				} else {
					want = a.Dose.Value
				}
			}
			if math.Abs(a.Dose.Value-want) > 1 {
				t.Errorf("%s: dose %v mg, order gives %v", id, a.Dose.Value, want)
			}
		}
	case "mg/kg":
		seen["dose mg/kg"] = true
		if a.WeightKg == nil || a.Dose.Value != o.Dose.Value || a.Dose.Value > cfg.Limits.MaxDoseMgPerKg {
			t.Errorf("%s: dose %v mg/kg (order %v) with weight %v", id, a.Dose.Value, o.Dose.Value, a.WeightKg)
		}
	default:
		t.Errorf("%s: dose unit %q", id, a.Dose.Unit)
	}
	if a.WeightKg != nil && (*a.WeightKg < 40 || *a.WeightKg > 140) {
		t.Errorf("%s: weight %v kg", id, *a.WeightKg)
	}
	switch a.Status {
	case "not-done":
		if _, ok := cfg.NotDoneReasons[a.NotDoneReason]; !ok {
			t.Errorf("%s: not_done_reason %q not in the default config", id, a.NotDoneReason)
		}
		if a.Lot != "" || a.Site != "" || len(a.AdverseEvents) > 0 {
			t.Errorf("%s: not-done with lot, site or adverse events", id)
		}
	default:
		if a.NotDoneReason != "" {
			t.Errorf("%s: %s with a not_done_reason", id, a.Status)
		}
		if a.Lot == "" || !dateRE.MatchString(a.LotExpires) {
			t.Errorf("%s: lot %q expires %q", id, a.Lot, a.LotExpires)
		} else {
			seen["lot"] = true
			exp, _ := time.ParseInLocation(time.DateOnly, a.LotExpires, clinicZone)
			if exp.Before(dayOf(a.StartedAt)) || !exp.Before(defaultStart.Add(Span)) {
				t.Errorf("%s: lot expires %s, given %v", id, a.LotExpires, a.StartedAt)
			}
		}
		if (a.Route == "IM") != (a.Site != "") {
			t.Errorf("%s: route %s with site %q", id, a.Route, a.Site)
		}
		if a.Site != "" {
			seen["site"] = true
			if !slices.Contains([]string{"left-deltoid", "right-deltoid", "left-gluteal", "right-gluteal", "left-thigh", "right-thigh"}, a.Site) {
				t.Errorf("%s: site %q", id, a.Site)
			}
		}
		if a.Route == "IV" && a.Status == "completed" && (a.EndedAt == nil || a.EndedAt.Sub(a.StartedAt) != 40*time.Minute) {
			t.Errorf("%s: IV infusion does not last 40 minutes", id)
		}
		if len(a.Vitals) < 2 {
			t.Errorf("%s: %d vitals, want before and after", id, len(a.Vitals))
		}
	}
	for _, ev := range a.AdverseEvents {
		seen["adverse event"] = true
		if _, ok := cfg.AdverseEvents[ev]; !ok {
			t.Errorf("%s: adverse event %q not in the default config", id, ev)
		}
	}
	for k, v := range a.Vitals {
		if v.Systolic == nil || v.Diastolic == nil || v.HeartRate == nil || v.SpO2 == nil {
			t.Fatalf("%s: vital %d incomplete", id, k)
		}
		checkTime(id+" vital", v.At)
		sys, dia, hr, spo2 := *v.Systolic, *v.Diastolic, *v.HeartRate, *v.SpO2
		if sys < 90 || sys > 200 || dia < 50 || dia > 115 || sys-dia < 20 || hr < 45 || hr > 130 || spo2 < 90 || spo2 > 100 {
			t.Errorf("%s: implausible vital %v/%v hr %v spo2 %v", id, sys, dia, hr, spo2)
		}
		if k == 0 && !v.At.Before(a.StartedAt) {
			t.Errorf("%s: first vital not before the dose", id)
		}
		if k == 1 && a.Status == "completed" {
			if !v.At.After(a.StartedAt) || sys <= *a.Vitals[0].Systolic {
				t.Errorf("%s: post-dose vital at %v with systolic %v (pre %v)", id, v.At, sys, *a.Vitals[0].Systolic)
			}
			if sys >= 160 && slices.Contains(a.AdverseEvents, "elevated-blood-pressure") {
				seen["elevated post-dose BP"] = true
			}
		}
	}
}

func checkScore(t *testing.T, s *mapping.Score, seen map[string]bool) {
	t.Helper()
	spec := map[string]struct{ items, itemMax, totalMax int }{
		instrPHQ9: {9, 3, 27}, instrPHQ2: {2, 3, 6}, instrGAD7: {7, 3, 21},
		instrMADRS: {10, 6, 60}, instrQIDS: {16, 3, 27},
	}[s.Instrument]
	if spec.items == 0 {
		t.Fatalf("%s: instrument %q", s.ScoreID, s.Instrument)
	}
	seen[s.Instrument] = true
	if s.Total < 0 || s.Total > spec.totalMax {
		t.Errorf("%s: %s total %d", s.ScoreID, s.Instrument, s.Total)
	}
	if s.Items == nil {
		seen["score without items"] = true
		return
	}
	if len(s.Items) != spec.items {
		t.Fatalf("%s: %s with %d items", s.ScoreID, s.Instrument, len(s.Items))
	}
	for _, v := range s.Items {
		if v < 0 || v > spec.itemMax {
			t.Errorf("%s: item %d out of range", s.ScoreID, v)
		}
	}
	want := 0
	if s.Instrument == instrQIDS {
		it := s.Items
		want = max(it[0], it[1], it[2], it[3]) + it[4] + max(it[5], it[6], it[7], it[8]) +
			it[9] + it[10] + it[11] + it[12] + it[13] + max(it[14], it[15])
	} else {
		for _, v := range s.Items {
			want += v
		}
	}
	if s.Total != want {
		t.Errorf("%s: %s total %d, items give %d", s.ScoreID, s.Instrument, s.Total, want)
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	// Only Start's date in the clinic zone counts: 2024-06-01 03:00 UTC is
	// 2024-05-31 in the clinic, as is 2024-05-31 22:30 -05:00.
	a := ndjson(t, Options{Patients: 5, Seed: 9, Start: time.Date(2024, 6, 1, 3, 0, 0, 0, time.UTC)})
	b := ndjson(t, Options{Patients: 5, Seed: 9, Start: time.Date(2024, 5, 31, 22, 30, 0, 0, clinicZone)})
	if !bytes.Equal(a, b) {
		t.Error("the same clinic day gave different output")
	}
	day0 := time.Date(2024, 5, 31, 0, 0, 0, 0, clinicZone)
	for _, r := range collect(t, Options{Patients: 30, Seed: 9, Start: day0}) {
		var tm time.Time
		switch r.Kind {
		case mapping.KindOrder:
			tm = r.Order.AuthoredAt
		case mapping.KindAdministration:
			tm = r.Administration.StartedAt
		case mapping.KindScore:
			tm = r.Score.TakenAt
		default:
			continue
		}
		if !tm.After(day0.AddDate(0, 0, 1)) || !tm.Before(day0.Add(Span)) {
			t.Fatalf("%s %s at %v, outside the span of a clinic opened %v", r.Kind, r.ID(), tm, day0)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	if err := Generate(Options{Patients: -1}, func(*mapping.Record) error { return nil }); err == nil {
		t.Error("negative Patients: no error")
	}
	if err := Generate(Options{Patients: 1}, nil); err == nil {
		t.Error("nil emit: no error")
	}
	n := 0
	if err := Generate(Options{Patients: 0}, func(*mapping.Record) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("zero patients: %d records, error %v", n, err)
	}

	// An emit error stops the stream at once and comes back wrapped.
	stop := errors.New("stop")
	n = 0
	err := Generate(Options{Patients: 1000, Seed: 1}, func(*mapping.Record) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("emit error: got %v after %d records, want %v after 3", err, n, stop)
	}
	if strings.Contains(err.Error(), "MRN") {
		t.Errorf("error names an MRN: %v", err)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, io.ErrShortWrite
	}
	w.after--
	return len(p), nil
}

func TestWriteNDJSONError(t *testing.T) {
	t.Parallel()
	// The first 64 KiB buffer flush succeeds, the second fails.
	n, err := WriteNDJSON(&failWriter{after: 1}, Options{Patients: 100, Seed: 1})
	if !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("got error %v, want io.ErrShortWrite", err)
	}
	if n == 0 || n >= 2000 {
		t.Errorf("got count %d, want the records encoded before the failure", n)
	}
	// A failure at the final flush is reported too.
	if _, err := WriteNDJSON(&failWriter{}, Options{Patients: 1, Seed: 1}); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("final flush: got %v, want io.ErrShortWrite", err)
	}
}

func BenchmarkGenerate(b *testing.B) {
	opts := Options{Patients: 1000, Seed: 1}
	records := 0
	b.ReportAllocs()
	for b.Loop() {
		if err := Generate(opts, func(*mapping.Record) error { records++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkWriteNDJSON(b *testing.B) {
	opts := Options{Patients: 1000, Seed: 1}
	records := 0
	b.ReportAllocs()
	for b.Loop() {
		n, err := WriteNDJSON(io.Discard, opts)
		if err != nil {
			b.Fatal(err)
		}
		records += n
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

// TestNoSharedMemory checks that a record copied from another (a session
// charted twice) shares no pointer or slice with it.
func TestNoSharedMemory(t *testing.T) {
	t.Parallel()
	var prev *mapping.Administration
	dups := 0
	for _, r := range collect(t, Options{Patients: 300, Seed: 5}) {
		a := r.Administration
		if a == nil {
			continue
		}
		if a.Status == "entered-in-error" {
			dups++
			if prev == nil || prev.StartedAt != a.StartedAt || len(prev.Vitals) != len(a.Vitals) {
				t.Fatalf("%s: not a copy of the record before it", a.AdminID)
			}
			if prev.WeightKg == a.WeightKg || &prev.Vitals[0] == &a.Vitals[0] || prev.Vitals[0].Systolic == a.Vitals[0].Systolic ||
				(prev.EndedAt != nil && prev.EndedAt == a.EndedAt) ||
				(len(a.AdverseEvents) > 0 && &prev.AdverseEvents[0] == &a.AdverseEvents[0]) {
				t.Errorf("%s shares memory with %s", a.AdminID, prev.AdminID)
			}
		}
		prev = a
	}
	if dups == 0 {
		t.Fatal("no entered-in-error administration to check")
	}
}
