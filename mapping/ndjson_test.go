package mapping

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

// readAll reads r to the end, returning the good records and the record
// errors; it fails the test on a fatal error.
func readAll(t testing.TB, r Reader) ([]*Record, []*RecordError) {
	t.Helper()
	var recs []*Record
	var bad []*RecordError
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return recs, bad
		}
		var re *RecordError
		switch {
		case errors.As(err, &re):
			bad = append(bad, re)
		case err != nil:
			t.Fatalf("fatal error: %v", err)
		default:
			recs = append(recs, rec)
		}
	}
}

func TestNDJSONReaderValidFixture(t *testing.T) {
	f, err := os.Open("testdata/records/valid.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newRecParser().NewNDJSONReader(f)
	recs, bad := readAll(t, r)
	if len(bad) != 0 || len(recs) != 13 {
		t.Fatalf("%d records, errors %v", len(recs), bad)
	}
	for i, rec := range recs {
		if rec.Line != i+1 {
			t.Errorf("record %d has line %d", i, rec.Line)
		}
	}
	st, _ := f.Stat()
	if r.Offset() != st.Size() || r.Line() != 13 {
		t.Errorf("offset %d line %d, want %d 13", r.Offset(), r.Line(), st.Size())
	}
}

func TestNDJSONReaderMixedFixture(t *testing.T) {
	f, err := os.Open("testdata/records/mixed.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, bad := readAll(t, newRecParser().NewNDJSONReader(f))
	var goodLines []int
	for _, rec := range recs {
		goodLines = append(goodLines, rec.Line)
	}
	if want := []int{1, 5, 8, 13}; !equalInts(goodLines, want) {
		t.Errorf("good lines %v, want %v", goodLines, want)
	}
	want := []struct {
		line  int
		kind  Kind
		id    string
		field string
	}{
		{2, KindPatient, "MRN-200002", "birth_date"},
		{4, "", "", ""},
		{6, KindOrder, "ord-19", "dose.value"},
		{7, "", "", ""}, // invalid UTF-8
		{9, KindAdministration, "adm-9", "dosage"},
		{10, KindScore, "sc-9", "total"},
		{11, "", "", "kind"},
		{14, "", "", ""},
		{15, "", "", "kind"},
	}
	if len(bad) != len(want) {
		t.Fatalf("%d record errors, want %d: %v", len(bad), len(want), bad)
	}
	for i, w := range want {
		re := bad[i]
		if re.Line != w.line || re.Kind != w.kind || re.RecordID != w.id || len(re.Problems) != 1 || re.Problems[0].Field != w.field {
			t.Errorf("error %d = %+v, want line %d kind %q id %q field %q", i, re, w.line, w.kind, w.id, w.field)
		}
		msg := re.Error()
		if !strings.HasPrefix(msg, "line ") || (w.kind != "" && w.kind != KindPatient && !strings.Contains(msg, string(w.kind)+" "+w.id+":")) {
			t.Errorf("message %q", msg)
		}
		if w.field != "" && !strings.Contains(msg, "field "+w.field+":") {
			t.Errorf("message %q does not name field %s", msg, w.field)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// patternReader yields n bytes of b repeated, without allocating them.
type patternReader struct {
	b byte
	n int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = r.b
	}
	r.n -= int64(len(p))
	return len(p), nil
}

func TestNDJSONReaderSkipsHugeLine(t *testing.T) {
	good := string(baseRecord(t, "ord-18"))
	const huge = 10 << 20
	in := io.MultiReader(
		strings.NewReader(good+"\n"+`{"kind":"order","note":"`),
		&patternReader{b: 'x', n: huge},
		strings.NewReader(`"}`+"\n"+good+"\n"),
	)
	r := newRecParser().NewNDJSONReader(in)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rec1, err1 := r.Next()
	_, err2 := r.Next()
	rec3, err3 := r.Next()
	_, err4 := r.Next()
	runtime.ReadMemStats(&after)
	if err1 != nil || rec1.Line != 1 {
		t.Fatalf("line 1: %v", err1)
	}
	re := recordErrorOf(t, err2)
	if re.Line != 2 || re.Problems[0].Reason != "line longer than 1048576 bytes" {
		t.Errorf("line 2: %+v", re)
	}
	if err3 != nil || rec3.Line != 3 || rec3.ID() != "ord-18" {
		t.Fatalf("line 3: %v %+v", err3, rec3)
	}
	if !errors.Is(err4, io.EOF) {
		t.Errorf("end: %v", err4)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 6<<20 {
		t.Errorf("reading a %d-byte line allocated %d bytes", huge, alloc)
	}
}

func TestNDJSONReaderLineForms(t *testing.T) {
	good := string(baseRecord(t, "sc-3"))
	in := "\xEF\xBB\xBF" + good + "\r\n\r\n   \t\n" + good + "\n\n" + "{\"kind\":\"score\",\"score_id\":\"x\xff\"}\n" + good // no final newline
	recs, bad := readAll(t, newRecParser().NewNDJSONReader(strings.NewReader(in)))
	var lines []int
	for _, r := range recs {
		lines = append(lines, r.Line)
	}
	if !equalInts(lines, []int{1, 4, 7}) {
		t.Errorf("record lines %v, want [1 4 7]", lines)
	}
	if len(bad) != 1 || bad[0].Line != 6 || bad[0].Problems[0].Reason != "invalid UTF-8" {
		t.Errorf("errors %v", bad)
	}
}

func TestNDJSONReaderEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "  \r\n"} {
		recs, bad := readAll(t, newRecParser().NewNDJSONReader(strings.NewReader(in)))
		if len(recs)+len(bad) != 0 {
			t.Errorf("%q: %v %v", in, recs, bad)
		}
	}
}

// failingReader returns data, then err.
type failingReader struct {
	data *bytes.Reader
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data.Len() > 0 {
		return r.data.Read(p)
	}
	return 0, r.err
}

func TestNDJSONReaderFatalError(t *testing.T) {
	boom := errors.New("disk on fire")
	good := string(baseRecord(t, "sc-3"))
	r := newRecParser().NewNDJSONReader(&failingReader{data: bytes.NewReader([]byte(good + "\n" + good[:20])), err: boom})
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, err := r.Next()
		var re *RecordError
		if !errors.Is(err, boom) || errors.As(err, &re) {
			t.Fatalf("call %d: %v, want the read error", i, err)
		}
	}
}

func FuzzNDJSONReader(f *testing.F) {
	for _, name := range []string{"valid.ndjson", "mixed.ndjson", "patients_bad.ndjson"} {
		data, err := os.ReadFile("testdata/records/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\n\r\n{}\n[\n"))
	p := newRecParser()
	p.MaxRecordBytes = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		r := p.NewNDJSONReader(bytes.NewReader(data))
		last := 0
		for i := 0; ; i++ {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if i > len(data)+1 {
				t.Fatal("more results than lines")
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
				t.Fatalf("fatal error from a bytes.Reader: %v", err)
			default:
				if rec.Line <= last {
					t.Fatalf("line %d after %d", rec.Line, last)
				}
				last = rec.Line
				checkRoundTrip(t, p, rec)
			}
		}
	})
}
