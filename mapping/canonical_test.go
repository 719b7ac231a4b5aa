package mapping

import (
	"bytes"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// checkRoundTrip asserts that rec's canonical JSON parses back to rec and
// is a fixed point.
func checkRoundTrip(t *testing.T, p *Parser, rec *Record) {
	t.Helper()
	b, err := rec.CanonicalJSON()
	if err != nil {
		t.Fatalf("CanonicalJSON: %v", err)
	}
	if !bytes.HasPrefix(b, []byte(`{"kind":"`+string(rec.Kind)+`"`)) {
		t.Fatalf("canonical JSON does not start with kind: %s", b)
	}
	back, err := p.Parse(b, rec.Line)
	if err != nil {
		t.Fatalf("Parse(CanonicalJSON) = %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, rec) {
		t.Fatalf("round trip changed the record:\n got %+v\nwant %+v\n%s", back, rec, b)
	}
	b2, err := back.CanonicalJSON()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("canonical JSON not stable:\n%s\n%s", b, b2)
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	p := newRecParser()
	for i, l := range fixtureLines(t, "valid.ndjson") {
		rec, err := p.Parse(l, i+1)
		if err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, p, rec)
	}
}

func TestCanonicalJSONForm(t *testing.T) {
	p := newRecParser()
	// Members in another order, an integer written 19.0, nulls, empty
	// optional fields, a fraction of a second: the same record.
	in := `{"total":19.0,"items":[3,2,2,3,2,2,2,1,2],"performer":null,"admin_id":"","mrn":"MRN-100234",` +
		`"taken_at":"2025-05-05T09:45:00.500-04:00","instrument":"PHQ-9","score_id":"sc-<1>&","kind":"score"}`
	rec, err := p.Parse([]byte(in), 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rec.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"score","score_id":"sc-<1>&","mrn":"MRN-100234","instrument":"PHQ-9","taken_at":"2025-05-05T09:45:00.5-04:00","total":19,"items":[3,2,2,3,2,2,2,1,2]}`
	if string(got) != want {
		t.Errorf("CanonicalJSON =\n%s\nwant\n%s", got, want)
	}
	checkRoundTrip(t, p, rec)
}

func TestCanonicalKeepsOffsets(t *testing.T) {
	p := newRecParser()
	rec, err := p.Parse(baseRecord(t, "adm-17-1"), 1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := rec.CanonicalJSON()
	for _, s := range []string{`"started_at":"2025-05-05T10:00:00-04:00"`, `"at":"2025-05-05T09:55:00-04:00"`, `"ended_at":"2025-05-05T10:40:00-04:00"`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("canonical JSON lacks %s:\n%s", s, b)
		}
	}
}

func TestHash(t *testing.T) {
	p := newRecParser()
	lines := fixtureLines(t, "valid.ndjson")
	seen := map[string]bool{}
	hex := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for i, l := range lines {
		rec, err := p.Parse(l, i+1)
		if err != nil {
			t.Fatal(err)
		}
		h := rec.Hash()
		if !hex.MatchString(h) {
			t.Fatalf("Hash() = %q", h)
		}
		if seen[h] {
			t.Errorf("line %d: hash %s seen before", i+1, h)
		}
		seen[h] = true
		// The line does not take part; content does.
		again, _ := p.Parse(l, 99)
		if again.Hash() != h {
			t.Errorf("line %d: hash depends on the line number", i+1)
		}
	}
	a, _ := p.Parse(baseRecord(t, "ord-17"), 1)
	b, _ := p.Parse(mutate(t, baseRecord(t, "ord-17"), map[string]any{"note": "Induction series.\nMonitor BP!"}), 1)
	if a.Hash() == b.Hash() {
		t.Error("a changed note keeps the hash")
	}
	// The same instant at another offset is a change of content.
	c, _ := p.Parse(mutate(t, baseRecord(t, "ord-17"), map[string]any{"authored_at": "2025-05-01T18:30:00Z"}), 1)
	if a.Hash() == c.Hash() {
		t.Error("a changed offset keeps the hash")
	}
}

func TestCanonicalJSONErrors(t *testing.T) {
	cases := map[string]*Record{
		"no content":   {Kind: KindOrder},
		"wrong kind":   {Kind: KindPatient, Order: &Order{}},
		"two contents": {Kind: KindOrder, Order: &Order{}, Score: &Score{}},
		"unknown kind": {Kind: "vital", Order: &Order{}},
		"NaN":          {Kind: KindOrder, Order: &Order{Dose: Dose{Value: nan()}}},
	}
	for name, rec := range cases {
		if _, err := rec.CanonicalJSON(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if h := rec.Hash(); h != "" {
			t.Errorf("%s: Hash() = %q", name, h)
		}
	}
}

func TestCSVAndNDJSONGiveEqualRecords(t *testing.T) {
	p := newRecParser()
	var fromNDJSON []*Record
	for _, l := range fixtureLines(t, "valid.ndjson") {
		rec, err := p.Parse(l, 0)
		if err != nil {
			t.Fatal(err)
		}
		fromNDJSON = append(fromNDJSON, rec)
	}
	var fromCSV []*Record
	for _, name := range []string{"patients.csv", "orders.csv", "administrations.csv", "scores.csv"} {
		f, err := os.Open("testdata/records/" + name)
		if err != nil {
			t.Fatal(err)
		}
		kind := Kind(strings.TrimSuffix(strings.TrimSuffix(name, ".csv"), "s"))
		r, err := p.NewCSVReader(f, kind)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		recs, bad := readAll(t, r)
		f.Close()
		if len(bad) > 0 {
			t.Fatalf("%s: %v", name, bad)
		}
		fromCSV = append(fromCSV, recs...)
	}
	if len(fromCSV) != len(fromNDJSON) {
		t.Fatalf("%d CSV records, %d NDJSON records", len(fromCSV), len(fromNDJSON))
	}
	for i := range fromCSV {
		fromCSV[i].Line = 0
		if !reflect.DeepEqual(fromCSV[i], fromNDJSON[i]) {
			a, _ := fromCSV[i].CanonicalJSON()
			b, _ := fromNDJSON[i].CanonicalJSON()
			t.Errorf("record %d differs:\n csv %s\njson %s", i, a, b)
		}
		if fromCSV[i].Hash() != fromNDJSON[i].Hash() {
			t.Errorf("record %d: hashes differ", i)
		}
	}
}
