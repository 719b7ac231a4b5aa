package synth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// Span bounds the generated calendar: every time and date the generator
// writes (lot expiry dates included), birth dates excepted, lies in
// [Start, Start+Span). A caller that sets Options.Start should pick one at
// least Span in the past so that no record is in the future.
const Span = 300 * 24 * time.Hour

// clinicZone is the clinic's fixed UTC offset; every generated time carries
// it.
var clinicZone = time.FixedZone("", -5*60*60)

// defaultStart is the first day of the clinic when Options.Start is zero.
var defaultStart = time.Date(2025, time.March, 3, 9, 0, 0, 0, clinicZone)

// Options configures Generate.
type Options struct {
	// Patients is the number of patients. Zero generates nothing; a negative
	// number is an error. Each patient yields about 21 records on average
	// (1,000,000 records take about 48,000 patients).
	Patients int
	// Seed selects the synthetic clinic: the same Options give the same
	// records, byte for byte, on every run and platform.
	Seed int64
	// Start is the clinic's first day. Only its date (in the clinic's
	// UTC-05:00 offset) is used: patients arrive on weekdays within the 60
	// days after it, however many there are, and every record lies within
	// Span of it. Zero means 2025-03-03 09:00 -05:00, so that the output
	// never depends on the wall clock and every record lies before
	// 2026-01-01.
	Start time.Time
}

// Generate calls emit with the clinic's records, patient by patient, each
// patient's records in dependency order: the patient, its orders, its
// administrations (in time order), then its scores (in time order). A score
// names only administrations emitted before it, an administration only an
// order and an MRN emitted before it.
//
// Generate streams: it holds one patient's records at a time, so any number
// of records can be generated in constant memory. Patient n (counting from
// 1) has MRN "MRN%07d" and its records depend only on Seed, Start and n, so
// the output for a smaller Patients is a prefix of that for a larger one.
//
// Each record is newly allocated and emit may keep it. If emit returns an
// error, Generate stops and returns that error, wrapped.
func Generate(opts Options, emit func(*mapping.Record) error) error {
	if opts.Patients < 0 {
		return fmt.Errorf("synth: Options.Patients is %d, want 0 or more", opts.Patients)
	}
	if emit == nil {
		return errors.New("synth: emit function is nil")
	}
	c := newClinic(opts)
	var g gen
	n := 0
	for i := 0; i < opts.Patients; i++ {
		for _, rec := range g.patient(c, i+1) {
			n++
			if err := emit(rec); err != nil {
				return fmt.Errorf("synth: emit record %d (%s): %w", n, rec.Kind, err)
			}
		}
	}
	return nil
}

// WriteNDJSON writes the records of Generate to w as NDJSON in the local
// record format v1: one JSON object per line, each the record's
// (*mapping.Record).CanonicalJSON ("kind" first, then the record's fields). It returns the number of records written. On error the
// count is that of the records encoded before the failure, some of which
// may not have reached w.
func WriteNDJSON(w io.Writer, opts Options) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	var buf bytes.Buffer
	n := 0
	err := Generate(opts, func(rec *mapping.Record) error {
		buf.Reset()
		if err := encodeRecord(&buf, rec); err != nil {
			return err
		}
		if _, err := bw.Write(buf.Bytes()); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("synth: write NDJSON: %w", err)
	}
	return n, nil
}

// encodeRecord appends rec to buf as one NDJSON line: its canonical JSON
// ("kind" first) and a newline.
func encodeRecord(buf *bytes.Buffer, rec *mapping.Record) error {
	b, err := rec.CanonicalJSON()
	if err != nil {
		return fmt.Errorf("synth: encode %s record: %w", rec.Kind, err)
	}
	buf.Write(b)
	buf.WriteByte('\n')
	return nil
}
