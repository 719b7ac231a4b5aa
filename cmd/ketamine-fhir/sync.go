package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

func runSync(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("sync", "--config C", stderr)
	configPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	deadline := fs.Duration("deadline", -1, "stop after this long even if records are still retrying (default: sync.deadline)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	env, code := setup(ctx, *configPath, stderr)
	if env == nil {
		return code
	}
	defer env.close()
	return syncAndReport(ctx, env, *deadline, stdout, stderr)
}

// syncAndReport runs one sync and prints the summary; exit 0 when nothing
// is dead, 1 otherwise.
func syncAndReport(ctx context.Context, env *env, deadline time.Duration, stdout, stderr io.Writer) int {
	if deadline < 0 {
		deadline = env.cfg.Sync.Deadline.D()
	}
	var until time.Time
	if deadline > 0 {
		until = time.Now().Add(deadline)
	}
	start := time.Now()
	st, err := env.engine.Sync(ctx, until)
	if err != nil {
		fmt.Fprintf(stderr, "ketamine-fhir sync: %v\n", err)
	}
	counts, cerr := env.store.Counts(context.WithoutCancel(ctx))
	if cerr != nil {
		fmt.Fprintf(stderr, "ketamine-fhir sync: reading the outbox: %v\n", cerr)
		return exitFailed
	}
	fmt.Fprintf(stdout, "sync: %d delivered, %d dead in %s\n", st.Synced, st.Dead, time.Since(start).Round(time.Millisecond))
	printCounts(stdout, counts)
	if err != nil || totalIn(counts, store.StateDead) > 0 {
		return exitFailed
	}
	return exitOK
}

// printCounts prints the outbox as a table of kinds by states.
func printCounts(w io.Writer, counts store.Counts) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "kind\t")
	for _, s := range store.States {
		fmt.Fprintf(tw, "%s\t", s)
	}
	fmt.Fprintln(tw)
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	rank := map[string]int{}
	for i, k := range mapping.Kinds {
		rank[string(k)] = i
	}
	sort.Slice(kinds, func(i, j int) bool { return rank[kinds[i]] < rank[kinds[j]] })
	for _, k := range kinds {
		fmt.Fprintf(tw, "%s\t", k)
		for _, s := range store.States {
			fmt.Fprintf(tw, "%d\t", counts[k][s])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func totalIn(counts store.Counts, s store.State) int {
	n := 0
	for _, states := range counts {
		n += states[s]
	}
	return n
}
