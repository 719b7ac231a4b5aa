package synth

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// TestParse runs every generated line through the adapter's own parser and
// checks, with the default config and a fixed clock: no record is
// rejected, and each parses back to the record Generate emitted (the same
// canonical JSON).
func TestParse(t *testing.T) {
	t.Parallel()
	opts := Options{Patients: 200, Seed: 1}
	fixedNow := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	p := mapping.NewParser(mapping.DefaultConfig(), func() time.Time { return fixedNow })

	var want []*mapping.Record
	if err := Generate(opts, func(r *mapping.Record) error {
		want = append(want, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WriteNDJSON(&buf, opts); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	line, rejected := 0, 0
	for sc.Scan() {
		line++
		rec, err := p.Parse(sc.Bytes(), line)
		if err != nil {
			rejected++
			if rejected <= 10 {
				t.Errorf("%v", err)
			}
			continue
		}
		w := want[line-1]
		if rec.Line != line {
			t.Errorf("line %d: parsed with Line %d", line, rec.Line)
		}
		got, err := rec.CanonicalJSON()
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if !bytes.Equal(got, sc.Bytes()) {
			t.Errorf("line %d (%s %s) does not parse back to itself:\n got %s\nwant %s", line, w.Kind, w.ID(), got, sc.Bytes())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rejected > 0 {
		t.Errorf("%d of %d records rejected", rejected, line)
	}
	if line != len(want) {
		t.Errorf("parsed %d lines, want %d", line, len(want))
	}
}
