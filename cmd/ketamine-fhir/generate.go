package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

func runGenerate(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("generate", "--patients N --seed S", stderr)
	patients := fs.Int("patients", 10, "number of patients")
	seed := fs.Int64("seed", 1, "random seed: the same seed gives the same bytes")
	start := fs.String("start", "", "first clinic day, YYYY-MM-DD (default 2025-03-03)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 || *patients < 0 {
		fs.Usage()
		return exitUsage
	}
	opts := synth.Options{Patients: *patients, Seed: *seed}
	if *start != "" {
		t, err := time.Parse("2006-01-02", *start)
		if err != nil {
			fmt.Fprintf(stderr, "generate: --start %q is not a date (YYYY-MM-DD)\n", *start)
			return exitUsage
		}
		opts.Start = t
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	n, err := synth.WriteNDJSON(w, opts)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "generate: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stderr, "generated %d records for %d patients (seed %d)\n", n, *patients, *seed)
	return exitOK
}
