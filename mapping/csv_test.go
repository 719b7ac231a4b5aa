package mapping

import (
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestCSVReaderFixtures(t *testing.T) {
	p := newRecParser()
	cases := []struct {
		file  string
		kind  Kind
		lines []int
	}{
		{"patients.csv", KindPatient, []int{2, 3}},
		{"orders.csv", KindOrder, []int{2, 4}}, // the note of line 2 spans two lines
		{"administrations.csv", KindAdministration, []int{2, 3, 5}},
		{"scores.csv", KindScore, []int{2, 3, 4, 5, 6, 7}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open("testdata/records/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := p.NewCSVReader(f, tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			recs, bad := readAll(t, r)
			if len(bad) > 0 {
				t.Fatalf("errors: %v", bad)
			}
			var lines []int
			for _, rec := range recs {
				if rec.Kind != tc.kind {
					t.Errorf("kind %s", rec.Kind)
				}
				lines = append(lines, rec.Line)
			}
			if !equalInts(lines, tc.lines) {
				t.Errorf("lines %v, want %v", lines, tc.lines)
			}
		})
	}
}

func TestCSVReaderMixedFixture(t *testing.T) {
	f, err := os.Open("testdata/records/mixed.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := newRecParser().NewCSVReader(f, "")
	if err != nil {
		t.Fatal(err)
	}
	recs, bad := readAll(t, r)
	var ids []string
	for _, rec := range recs {
		ids = append(ids, rec.ID())
	}
	if got := strings.Join(ids, ","); got != "MRN-400001,sc-40,MRN-400003,sc-43" {
		t.Errorf("good records %s", got)
	}
	if recs[2].Patient.Family != "=SUM(A1:A9)" || recs[2].Patient.Given[0] != "@cmd" {
		t.Errorf("formula-looking values not kept as data: %+v", recs[2].Patient)
	}
	want := []struct {
		line   int
		kind   Kind
		id     string
		field  string
		reason string
	}{
		{3, "", "", "", "quote in an unquoted cell"},
		{5, KindScore, "sc-41", "total", reasonNotInteger},
		{7, KindScore, "sc-42", "family", reasonUnknown},
		{8, "", "", "", "cell count differs from the header"},
		{9, "", "", "kind", reasonRequired},
	}
	if len(bad) != len(want) {
		t.Fatalf("%d errors, want %d: %v", len(bad), len(want), bad)
	}
	for i, w := range want {
		re := bad[i]
		if re.Line != w.line || re.Kind != w.kind || re.RecordID != w.id || len(re.Problems) != 1 ||
			re.Problems[0].Field != w.field || re.Problems[0].Reason != w.reason {
			t.Errorf("error %d = %+v, want %+v", i, re, w)
		}
	}
}

func TestCSVReaderHeader(t *testing.T) {
	p := newRecParser()
	cases := []struct {
		name   string
		kind   Kind
		header string
		fields []string // of the header problems; nil for a good header
		secret string   // header text that must not be in the message
	}{
		{"good, any order, spaces", KindPatient, " sex , given,family,mrn,birth_date,kind", nil, ""},
		{"mixed kinds", "", "kind,mrn,order_id,admin_id,score_id,total", nil, ""},
		{"unknown column", KindPatient, "mrn,famliy,given,birth_date,sex,family", []string{"column 2"}, "famliy"},
		{"column of another kind", KindPatient, "mrn,family,given,birth_date,sex,total", []string{"column 6"}, ""},
		{"duplicate column", KindPatient, "mrn,family,given,birth_date,sex,mrn", []string{"column 6"}, ""},
		{"empty column name", KindPatient, "mrn,family,,given,birth_date,sex", []string{"column 3"}, ""},
		{"missing required column", KindOrder, "order_id,mrn,status,authored_at,prescriber.npi,prescriber.name,medication,route,dose.value",
			[]string{"dose.unit"}, ""},
		{"no kind column for a mixed file", "", "mrn,family", []string{"kind"}, ""},
		{"no header row", KindPatient, "MRN-555123,Smith,John,1980-01-01,female",
			[]string{"column 1", "column 2", "column 3", "column 4", "column 5", "", "mrn", "family", "given", "birth_date", "sex"}, "Smith"},
		{"nested column without member", KindOrder, "order_id,mrn,status,authored_at,prescriber,prescriber.npi,prescriber.name,medication,route,dose.value,dose.unit",
			[]string{"column 5"}, ""},
		{"bad quote", KindPatient, `mrn,"family`, []string{""}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := p.NewCSVReader(strings.NewReader(tc.header+"\n"), tc.kind)
			if tc.fields == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Header()) == 0 {
					t.Error("no header")
				}
				return
			}
			var he *CSVHeaderError
			if !errors.As(err, &he) {
				t.Fatalf("error %v, want a *CSVHeaderError", err)
			}
			var got []string
			for _, pr := range he.Problems {
				got = append(got, pr.Field)
			}
			if strings.Join(got, "|") != strings.Join(tc.fields, "|") {
				t.Errorf("problem fields %q, want %q", got, tc.fields)
			}
			if tc.secret != "" {
				if strings.Contains(he.Error(), tc.secret) {
					t.Errorf("message %q contains %q", he.Error(), tc.secret)
				}
				if !strings.Contains(strings.Join(he.Diagnostics, " "), tc.secret) {
					t.Errorf("diagnostics %q lack %q", he.Diagnostics, tc.secret)
				}
			}
		})
	}
	if _, err := p.NewCSVReader(strings.NewReader("mrn\n"), "vital"); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestCSVReaderEmptyFile(t *testing.T) {
	for _, in := range []string{"", "\n", "\r\n\n"} {
		r, err := newRecParser().NewCSVReader(strings.NewReader(in), KindPatient)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Errorf("%q: Next() = %v, want io.EOF", in, err)
		}
	}
}

func TestCSVReaderHostileRows(t *testing.T) {
	const header = "admin_id,order_id,mrn,status,started_at,dose.value,dose.unit,route,performer.npi,performer.name,vitals,note,kind\n"
	const good = "adm-1,ord-1,MRN-1,completed,2025-05-06T09:00:00Z,56,mg,IN,1765432103,RN Osei,,,\n"
	row := func(vitals, note string) string {
		return "adm-1,ord-1,MRN-1,completed,2025-05-06T09:00:00Z,56,mg,IN,1765432103,RN Osei," + vitals + "," + note + ",\n"
	}
	cases := []struct {
		name   string
		rows   string
		field  string // of the single problem of the first row
		reason string
	}{
		{"good", good, "-", ""},
		{"quoted cells", row(`"2025-05-06T08:55:00Z|150|90|80|97"`, `"he said ""ok"", then, left"`), "-", ""},
		{"CRLF", strings.ReplaceAll(good, "\n", "\r\n"), "-", ""},
		{"formula in note", row("", "=cmd|' /C calc'!A0"), "-", ""},
		{"vitals with absent parts", row("2025-05-06T08:55:00Z|||80|", ""), "-", ""},
		{"vitals group short", row("2025-05-06T08:55:00Z|150|90", ""), "vitals[0]", "not at|systolic|diastolic|heart_rate|spo2"},
		{"vitals second group short", row("2025-05-06T08:55:00Z|150|90|80|97;x", ""), "vitals[1]", "not at|systolic|diastolic|heart_rate|spo2"},
		{"vitals measure not a number", row("2025-05-06T08:55:00Z|high|90|80|97", ""), "vitals[0].systolic", reasonNotNumber},
		{"vitals time without offset", row("2025-05-06T08:55:00|150|90|80|97", ""), "vitals[0].at", reasonNotTime},
		{"number with comma", strings.Replace(good, ",56,", `,"56,5",`, 1), "dose.value", reasonNotNumber},
		{"number in hex", strings.Replace(good, ",56,", ",0x38,", 1), "dose.value", reasonNotNumber},
		{"number Inf", strings.Replace(good, ",56,", ",Inf,", 1), "dose.value", reasonNotNumber},
		{"kind of another file", strings.Replace(good, ",,\n", ",,order\n", 1), "kind", "does not match the file's kind"},
		{"invalid UTF-8", strings.Replace(good, "RN Osei", "RN Os\xe9i", 1), "performer.name", "invalid UTF-8"},
		{"control character", strings.Replace(good, "RN Osei", "RN\x00Osei", 1), "performer.name", "control character"},
		{"bare quote", strings.Replace(good, "RN Osei", `RN "Osei"`, 1), "", "quote in an unquoted cell"},
		{"text after quote", strings.Replace(good, "RN Osei", `"RN" Osei`, 1), "", "text after the closing quote of a cell"},
		{"too few cells", "adm-1,ord-1\n", "", "cell count differs from the header"},
		{"too many cells", strings.Replace(good, "\n", ",extra\n", 1), "", "cell count differs from the header"},
		{"unterminated quote", strings.TrimSuffix(good, ",,\n") + `,"never closed`, "", "quoted cell not closed before the end of the file"},
	}
	p := newRecParser()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := p.NewCSVReader(strings.NewReader(header+tc.rows+good), KindAdministration)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := r.Next()
			if tc.field == "-" {
				if err != nil {
					t.Fatalf("first row: %v", err)
				}
				if rec.Line != 2 {
					t.Errorf("line %d", rec.Line)
				}
			} else {
				re := recordErrorOf(t, err)
				if len(re.Problems) != 1 || re.Problems[0].Field != tc.field || re.Problems[0].Reason != tc.reason || re.Line != 2 {
					t.Fatalf("error %+v, want line 2 field %q reason %q", re, tc.field, tc.reason)
				}
			}
			// The following row is read unless the quote swallowed the rest of the file.
			rec, err = r.Next()
			if tc.name == "unterminated quote" {
				if !errors.Is(err, io.EOF) {
					t.Errorf("after an unterminated quote: %v %v", rec, err)
				}
				return
			}
			if err != nil || rec.ID() != "adm-1" {
				t.Fatalf("next row: %v", err)
			}
			if _, err := r.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("end: %v", err)
			}
		})
	}
}

func TestCSVReaderQuotedNote(t *testing.T) {
	f, err := os.Open("testdata/records/orders.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := newRecParser().NewCSVReader(f, KindOrder)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if rec.Order.Note != "Induction series.\nMonitor BP." || strings.Join(rec.Order.Diagnoses, ",") != "F33.2,F32.A" {
		t.Errorf("order %+v", rec.Order)
	}
}

func TestCSVReaderHugeCell(t *testing.T) {
	const header = "mrn,family,given,birth_date,sex\n"
	const good = "MRN-1,Okafor,Ada,1984-03-09,female\n"
	const huge = 8 << 20
	in := io.MultiReader(
		strings.NewReader(header+good+`MRN-2,"`),
		&patternReader{b: ',', n: huge}, // commas inside a quoted cell
		strings.NewReader("\",Ada,1984-03-09,female\nMRN-3,"),
		&patternReader{b: ',', n: huge}, // commas as separators: millions of cells
		strings.NewReader("\n"+good),
	)
	r, err := newRecParser().NewCSVReader(in, KindPatient)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var got []string
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *RecordError
		switch {
		case errors.As(err, &re):
			got = append(got, re.Problems[0].Reason)
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, rec.ID())
		}
	}
	runtime.ReadMemStats(&after)
	want := "MRN-1|row longer than 1048576 bytes|row with more than 1024 cells|MRN-1"
	if strings.Join(got, "|") != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("reading two %d-byte rows allocated %d bytes", huge, alloc)
	}
}

func FuzzCSVReader(f *testing.F) {
	for _, name := range []string{"patients.csv", "orders.csv", "administrations.csv", "scores.csv", "mixed.csv"} {
		data, err := os.ReadFile("testdata/records/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint8(0))
		f.Add(data, uint8(len(name)))
	}
	f.Add([]byte("kind,mrn\n\"\n"), uint8(0))
	p := newRecParser()
	p.MaxRecordBytes = 4096
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		kind := Kind("")
		if int(k)%5 > 0 {
			kind = Kinds[int(k)%5-1]
		}
		r, err := p.NewCSVReader(strings.NewReader(string(data)), kind)
		if err != nil {
			var he *CSVHeaderError
			if !errors.As(err, &he) {
				t.Fatalf("header error of type %T: %v", err, err)
			}
			_ = he.Error()
			return
		}
		last := 0
		for i := 0; ; i++ {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if i > len(data)+1 {
				t.Fatal("more results than bytes")
			}
			var re *RecordError
			switch {
			case errors.As(err, &re):
				if re.Line <= last {
					t.Fatalf("line %d after %d", re.Line, last)
				}
				last = re.Line
				_ = re.Error()
			case err != nil:
				t.Fatalf("fatal error from a strings.Reader: %v", err)
			default:
				if rec.Line <= last {
					t.Fatalf("line %d after %d", rec.Line, last)
				}
				last = rec.Line
				if kind != "" && rec.Kind != kind {
					t.Fatalf("kind %s in a %s file", rec.Kind, kind)
				}
				checkRoundTrip(t, p, rec)
			}
		}
	})
}
