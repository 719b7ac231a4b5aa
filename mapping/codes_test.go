package mapping

import (
	"reflect"
	"testing"

	vspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/valuesets_go_proto"
)

// codingsOf returns (system, code, display) of each coding of a decoded
// CodeableConcept.
func codingsOf(cc any) [][3]string {
	var out [][3]string
	list, _ := jget(cc, "coding").([]any)
	for _, c := range list {
		out = append(out, [3]string{jstr(c, "system"), jstr(c, "code"), jstr(c, "display")})
	}
	return out
}

func TestRouteCodes(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		route, code, display string
	}{
		{"IM", "78421000", "Intramuscular route (qualifier value)"},
		{"IV", "47625008", "Intravenous route (qualifier value)"},
		{"IN", "46713006", "Nasal route (qualifier value)"},
		{"SL", "37839007", "Sublingual route"},
		{"PO", "26643006", "Oral route"},
	}
	for _, tc := range tests {
		t.Run(tc.route, func(t *testing.T) {
			o := fixtureOrderMgKg()
			o.Route = tc.route
			obj := decode(t, mapOK(t, m, &Record{Kind: KindOrder, Order: o}, nil)[0])
			want := [][3]string{{systemSNOMED, tc.code, tc.display}}
			if got := codingsOf(jget(obj, "dosageInstruction.0.route")); !reflect.DeepEqual(got, want) {
				t.Errorf("route = %v, want %v", got, want)
			}
		})
	}
}

func TestSiteCodes(t *testing.T) {
	m := newTestMapper(t)
	tests := []struct {
		site string
		want [][3]string
		text string
	}{
		{"left-deltoid", [][3]string{
			{systemSNOMED, "16217701000119102", "Structure of left deltoid muscle"},
			{systemSNOMED, "35259002", "Deltoid muscle"}}, "left deltoid"},
		{"right-deltoid", [][3]string{
			{systemSNOMED, "16217661000119109", "Structure of right deltoid muscle"},
			{systemSNOMED, "35259002", "Deltoid muscle"}}, "right deltoid"},
		{"left-gluteal", [][3]string{{systemSNOMED, "206007", "Gluteus maximus muscle"}}, "left gluteal"},
		{"right-gluteal", [][3]string{{systemSNOMED, "206007", "Gluteus maximus muscle"}}, "right gluteal"},
		// UNVERIFIED displays: code and text only.
		{"left-thigh", [][3]string{{systemSNOMED, "61396006", ""}}, "left thigh"},
		{"right-thigh", [][3]string{{systemSNOMED, "11207009", ""}}, "right thigh"},
	}
	for _, tc := range tests {
		t.Run(tc.site, func(t *testing.T) {
			a := fixtureAdminIV()
			a.Route, a.Site = "IM", tc.site
			obj := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, logicalLookup())[0])
			site := jget(obj, "dosage.site")
			if got := codingsOf(site); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("site codings = %v, want %v", got, tc.want)
			}
			if got := jstr(site, "text"); got != tc.text {
				t.Errorf("site text = %q, want %q", got, tc.text)
			}
			if got, want := jstr(obj, "dosage.text"), "35 mg IM, "+tc.text; got != want {
				t.Errorf("dosage text = %q, want %q", got, want)
			}
		})
	}
}

func TestInstrumentCodes(t *testing.T) {
	m := newTestMapper(t)
	const clinic = "https://clinic.example.org/fhir/sid/instrument"
	tests := []struct {
		instrument string
		total      int
		items      []int
		code       [3]string
		item1      [3]string // coding of the first item
		lastItem   [3]string
	}{
		{"PHQ-9", 9, []int{1, 1, 1, 1, 1, 1, 1, 1, 1},
			[3]string{systemLOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"},
			[3]string{systemLOINC, "44250-9", "Little interest or pleasure in doing things in last 2 weeks"},
			[3]string{systemLOINC, "44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way in last 2 weeks [Reported.PHQ]"}},
		{"PHQ-2", 2, []int{1, 1},
			[3]string{systemLOINC, "55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]"},
			[3]string{systemLOINC, "44250-9", "Little interest or pleasure in doing things in last 2 weeks"},
			[3]string{systemLOINC, "44255-8", "Feeling down, depressed, or hopeless in last 2 weeks"}},
		{"GAD-7", 7, []int{1, 1, 1, 1, 1, 1, 1},
			[3]string{systemLOINC, "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"},
			[3]string{clinic, "GAD-7-item-1", "GAD-7 item 1"},
			[3]string{clinic, "GAD-7-item-7", "GAD-7 item 7"}},
		// No verified LOINC: clinic codings, never an invented LOINC.
		{"MADRS", 10, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
			[3]string{clinic, "MADRS", "Montgomery-Asberg Depression Rating Scale (MADRS) total score"},
			[3]string{clinic, "MADRS-item-1", "MADRS item 1"},
			[3]string{clinic, "MADRS-item-10", "MADRS item 10"}},
		{"QIDS-SR16", 16, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
			[3]string{clinic, "QIDS-SR16", "Quick Inventory of Depressive Symptomatology, Self-Report, 16 item (QIDS-SR16) total score"},
			[3]string{clinic, "QIDS-SR16-item-1", "QIDS-SR16 item 1"},
			[3]string{clinic, "QIDS-SR16-item-16", "QIDS-SR16 item 16"}},
	}
	for _, tc := range tests {
		t.Run(tc.instrument, func(t *testing.T) {
			obj := decode(t, mapOK(t, m, &Record{Kind: KindScore, Score: fixtureScore(tc.instrument, tc.total, tc.items)}, nil)[0])
			if got := codingsOf(jget(obj, "code")); !reflect.DeepEqual(got, [][3]string{tc.code}) {
				t.Errorf("code = %v, want %v", got, tc.code)
			}
			comps, _ := jget(obj, "component").([]any)
			if len(comps) != len(tc.items) {
				t.Fatalf("%d components, want %d", len(comps), len(tc.items))
			}
			if got := codingsOf(jget(comps[0], "code")); !reflect.DeepEqual(got, [][3]string{tc.item1}) {
				t.Errorf("item 1 = %v, want %v", got, tc.item1)
			}
			if got := codingsOf(jget(comps[len(comps)-1], "code")); !reflect.DeepEqual(got, [][3]string{tc.lastItem}) {
				t.Errorf("last item = %v, want %v", got, tc.lastItem)
			}
			if got := jget(obj, "valueInteger"); got != float64(tc.total) {
				t.Errorf("valueInteger = %v, want %d", got, tc.total)
			}
		})
	}
}

func TestClinicCodeSystemFromConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Identifiers.ClinicCodeSystem = "https://clinic.example.org/CodeSystem/scales"
	m, err := NewMapper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	obj := decode(t, mapOK(t, m, &Record{Kind: KindScore, Score: fixtureScore("MADRS", 10, nil)}, nil)[0])
	if got := jstr(obj, "code.coding.0.system"); got != cfg.Identifiers.ClinicCodeSystem {
		t.Errorf("MADRS code system = %q, want the configured one", got)
	}
}

func TestPHQ9ItemCodesInOrder(t *testing.T) {
	want := []string{"44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"}
	inst := instrumentCodings["PHQ-9"]
	for i, code := range want {
		cc, ok := inst.itemConcept("PHQ-9", "urn:x", i)
		if !ok || cc.GetCoding()[0].GetCode().GetValue() != code {
			t.Errorf("PHQ-9 item %d = %v, want %s", i+1, cc, code)
		}
	}
	if _, ok := inst.itemConcept("PHQ-9", "urn:x", 9); ok {
		t.Error("PHQ-9 has a 10th item code")
	}
}

func TestSeverityBands(t *testing.T) {
	tests := []struct {
		instrument string
		total      int
		want       string // band code; "" for none
	}{
		{"PHQ-9", 0, "none-minimal"}, {"PHQ-9", 4, "none-minimal"},
		{"PHQ-9", 5, "mild"}, {"PHQ-9", 9, "mild"},
		{"PHQ-9", 10, "moderate"}, {"PHQ-9", 14, "moderate"},
		{"PHQ-9", 15, "moderately-severe"}, {"PHQ-9", 19, "moderately-severe"},
		{"PHQ-9", 20, "severe"}, {"PHQ-9", 27, "severe"},
		{"PHQ-9", 28, ""}, {"PHQ-9", -1, ""},
		{"MADRS", 0, "normal"}, {"MADRS", 6, "normal"},
		{"MADRS", 7, "mild"}, {"MADRS", 19, "mild"},
		{"MADRS", 20, "moderate"}, {"MADRS", 34, "moderate"},
		{"MADRS", 35, "severe"}, {"MADRS", 60, "severe"},
		{"MADRS", 61, ""},
		// The reference gives no bands for these.
		{"PHQ-2", 6, ""}, {"GAD-7", 15, ""}, {"QIDS-SR16", 20, ""},
	}
	for _, tc := range tests {
		b, ok := instrumentCodings[tc.instrument].band(tc.total)
		if got := b.code; got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s %d: band %q (%v), want %q", tc.instrument, tc.total, got, ok, tc.want)
		}
	}
}

func TestInterpretation(t *testing.T) {
	m := newTestMapper(t)
	obj := decode(t, mapOK(t, m, &Record{Kind: KindScore, Score: fixtureScore("PHQ-9", 15, nil)}, nil)[0])
	want := [][3]string{{"https://clinic.example.org/fhir/sid/severity", "moderately-severe", "Moderately severe"}}
	if got := codingsOf(jget(obj, "interpretation.0")); !reflect.DeepEqual(got, want) {
		t.Errorf("interpretation = %v, want %v", got, want)
	}
	if got := jstr(obj, "interpretation.0.text"); got != "Moderately severe (PHQ-9 15-19)" {
		t.Errorf("interpretation text = %q", got)
	}
	obj = decode(t, mapOK(t, m, &Record{Kind: KindScore, Score: fixtureScore("GAD-7", 15, nil)}, nil)[0])
	if jget(obj, "interpretation") != nil {
		t.Error("GAD-7 has an interpretation; the reference gives no bands")
	}
}

func TestParseTimingFrequency(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want timingFrequency
		text string
	}{
		{"2/week", true, timingFrequency{2, vspb.UnitsOfTimeValueSet_WK, "week"}, "2 times per week"},
		{"1/week", true, timingFrequency{1, vspb.UnitsOfTimeValueSet_WK, "week"}, "once per week"},
		{" 3 / day ", true, timingFrequency{3, vspb.UnitsOfTimeValueSet_D, "day"}, "3 times per day"},
		{"1/mo", true, timingFrequency{1, vspb.UnitsOfTimeValueSet_MO, "month"}, "once per month"},
		{"2/wk", true, timingFrequency{2, vspb.UnitsOfTimeValueSet_WK, "week"}, "2 times per week"},
		{"0/week", false, timingFrequency{}, ""},
		{"-1/week", false, timingFrequency{}, ""},
		{"2/fortnight", false, timingFrequency{}, ""},
		{"twice weekly", false, timingFrequency{}, ""},
		{"2", false, timingFrequency{}, ""},
		{"1.5/week", false, timingFrequency{}, ""},
	}
	for _, tc := range tests {
		got, ok := parseTimingFrequency(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseTimingFrequency(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && got.text() != tc.text {
			t.Errorf("%q text = %q, want %q", tc.in, got.text(), tc.text)
		}
	}
}

// TestUnverifiedProductUsesClinicCoding checks that a product without a
// configured RxNorm code gets a clinic product coding, never RxNorm.
func TestUnverifiedProductUsesClinicCoding(t *testing.T) {
	m := newTestMapper(t)
	obj := decode(t, mapOK(t, m, &Record{Kind: KindOrder, Order: fixtureOrderUnverified()}, nil)[0])
	want := [][3]string{{"https://clinic.example.org/fhir/sid/product", "ketamine-50mg-ml", "ketamine 50 MG/ML Injectable Solution"}}
	if got := codingsOf(jget(obj, "medicationCodeableConcept")); !reflect.DeepEqual(got, want) {
		t.Errorf("medication = %v, want %v", got, want)
	}
}

func TestNotDoneReasons(t *testing.T) {
	m := newTestMapper(t)
	for code, display := range DefaultConfig().NotDoneReasons {
		t.Run(code, func(t *testing.T) {
			a := fixtureAdminNotDone()
			a.NotDoneReason = code
			obj := decode(t, mapOK(t, m, &Record{Kind: KindAdministration, Administration: a}, literalLookup())[0])
			snomed := [3]string{systemSNOMED, "371900001", "Medication not administered"}
			if code == "patient-declined" {
				snomed = [3]string{systemSNOMED, "406149000", "Medication refused"}
			}
			want := [][3]string{{"https://clinic.example.org/fhir/sid/not-done-reason", code, display}, snomed}
			if got := codingsOf(jget(obj, "statusReason.0")); !reflect.DeepEqual(got, want) {
				t.Errorf("statusReason = %v, want %v", got, want)
			}
			if got := jstr(obj, "statusReason.0.text"); got != display {
				t.Errorf("statusReason text = %q, want %q", got, display)
			}
			if jget(obj, "dosage") != nil {
				t.Error("a dose not given has a dosage")
			}
		})
	}
}

func TestDiagnosisDisplays(t *testing.T) {
	m := newTestMapper(t)
	o := fixtureOrderMgKg()
	o.Diagnoses = []string{"F32.A", "F33.9", "F99"}
	obj := decode(t, mapOK(t, m, &Record{Kind: KindOrder, Order: o}, nil)[0])
	want := [][3]string{
		{systemICD10CM, "F32.A", "Depression, unspecified"},
		{systemICD10CM, "F33.9", "Major depressive disorder, recurrent, unspecified"},
		{systemICD10CM, "F99", ""}, // not in the reference: code only
	}
	for i, w := range want {
		if got := codingsOf(jget(obj, "reasonCode."+string(rune('0'+i)))); !reflect.DeepEqual(got, [][3]string{w}) {
			t.Errorf("reasonCode %d = %v, want %v", i, got, w)
		}
	}
}
