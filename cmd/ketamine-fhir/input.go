package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// inputFile is one input of map or import: a file (or "-" for stdin) read
// as NDJSON, or as CSV when its name ends in .csv.
type inputFile struct {
	name    string
	f       io.ReadCloser
	size    int64 // 0 if unknown
	counter *countingReader
	reader  mapping.Reader
}

// countingReader counts bytes read, for progress and ETA; the progress
// reporter reads n from its own goroutine.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// openInput opens name for p. A CSV file's kind comes from a `kind` column
// or, failing that, from its name (patients.csv, orders-2025.csv, ...).
func openInput(name string, p *mapping.Parser, stdin io.Reader) (*inputFile, error) {
	in := &inputFile{name: name}
	if name == "-" {
		in.f = io.NopCloser(stdin)
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", name, errors.Unwrap(err))
		}
		if st, err := f.Stat(); err == nil {
			in.size = st.Size()
		}
		in.f = f
	}
	in.counter = &countingReader{r: in.f}
	if strings.EqualFold(filepath.Ext(name), ".csv") {
		r, err := p.NewCSVReader(in.counter, kindFromName(name))
		if err != nil {
			in.f.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		in.reader = r
	} else {
		in.reader = p.NewNDJSONReader(in.counter)
	}
	return in, nil
}

// kindFromName guesses a CSV file's kind from its base name; "" if none
// fits (the file then needs a kind column).
func kindFromName(name string) mapping.Kind {
	base := strings.ToLower(filepath.Base(name))
	for _, k := range mapping.Kinds {
		if strings.HasPrefix(base, string(k)) {
			return k
		}
	}
	return ""
}

func (in *inputFile) close() { in.f.Close() }

// recordError formats a bad record for stderr: the file and the record
// error, which names line, kind, id (never a patient's MRN), field and
// reason.
func recordError(file string, err error) string {
	return fmt.Sprintf("%s: %v", file, err)
}
