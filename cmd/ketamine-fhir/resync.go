package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

func runResync(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("resync", "--config C [--kind K] [--since DATE]", stderr)
	configPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	kind := fs.String("kind", "", "only records of this kind (patient, order, administration, score)")
	since := fs.String("since", "", "only records synced at or after this date (YYYY-MM-DD) or time (RFC 3339)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	if *kind != "" && !mapping.Kind(*kind).Valid() {
		fmt.Fprintf(stderr, "resync: --kind %q is not one of patient, order, administration, score\n", *kind)
		return exitUsage
	}
	var from time.Time
	if *since != "" {
		var err error
		if from, err = parseSince(*since); err != nil {
			fmt.Fprintf(stderr, "resync: --since %q is not a date (YYYY-MM-DD) or an RFC 3339 time\n", *since)
			return exitUsage
		}
	}
	env, code := setup(ctx, *configPath, stderr)
	if env == nil {
		return code
	}
	defer env.close()
	n, err := env.engine.Resync(ctx, *kind, from)
	if err != nil {
		fmt.Fprintf(stderr, "resync: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "re-queued %d synced records; sync sends those whose FHIR output changed\n", n)
	return exitOK
}

// parseSince reads a date (midnight UTC) or an RFC 3339 time.
func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}
