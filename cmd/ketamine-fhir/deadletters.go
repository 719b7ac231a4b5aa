package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

func runDeadletters(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "retry") {
		fmt.Fprintln(stderr, "Usage: ketamine-fhir deadletters list [--details] --config C\n       ketamine-fhir deadletters retry ID...|--all --config C")
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("deadletters "+sub, "--config C", stderr)
	configPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	all := fs.Bool("all", false, "retry: re-queue every dead letter")
	details := fs.Bool("details", false, "list: print the EHR's diagnostics (may contain submitted values: operator eyes only)")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	env, code := setup(ctx, *configPath, stderr)
	if env == nil {
		return code
	}
	defer env.close()
	if sub == "list" {
		return listDead(ctx, env.store, *details, stdout, stderr)
	}
	if *all == (fs.NArg() > 0) {
		fmt.Fprintln(stderr, "deadletters retry: give outbox ids or --all")
		return exitUsage
	}
	if *all {
		n, err := env.store.RequeueAll(ctx, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "deadletters retry: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "re-queued %d records; run sync to deliver them\n", n)
		return exitOK
	}
	code = exitOK
	for _, a := range fs.Args() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "deadletters retry: %q is not an outbox id\n", a)
			code = exitUsage
			continue
		}
		if err := env.store.Requeue(ctx, id, time.Now()); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				fmt.Fprintf(stderr, "deadletters retry: no dead letter has id %d\n", id)
			} else {
				fmt.Fprintf(stderr, "deadletters retry: %d: %v\n", id, err)
			}
			code = exitFailed
			continue
		}
		fmt.Fprintf(stdout, "re-queued %d\n", id)
	}
	return code
}

func listDead(ctx context.Context, st store.Store, details bool, stdout, stderr io.Writer) int {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tLOCAL ID\tREASON\tATTEMPTS\tSINCE")
	var after int64
	n := 0
	for {
		rows, err := st.List(ctx, store.StateDead, after, 500)
		if err != nil {
			fmt.Fprintf(stderr, "deadletters list: %v\n", err)
			return exitFailed
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			after = r.ID
			n++
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Kind, displayID(r), r.ErrorClass, r.Attempts, r.UpdatedAt.Format(time.RFC3339))
			if details && r.ErrorDetail != "" {
				fmt.Fprintf(tw, "\t\t\t%s\t\t\n", r.ErrorDetail)
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d dead letters\n", n)
	return exitOK
}

// displayID is a row's local id for operator output, except for patients,
// whose local id is the MRN: those show as "(patient)".
func displayID(r store.Record) string {
	if r.Kind == string(mapping.KindPatient) {
		return "(patient)"
	}
	return r.LocalID
}
