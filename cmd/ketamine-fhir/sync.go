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
	quiet := fs.Bool("quiet", false, "no progress output (a bar on a terminal, else a log line every 10s)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	mode := progressModeFor(*quiet, stderr)
	errOut, barOut := progressOutputs(mode, stderr)
	env, code := setup(ctx, *configPath, errOut)
	if env == nil {
		return code
	}
	defer env.close()
	prog := progressConfig{Job: "sync", Unit: unitRecords, Mode: mode, Out: barOut, Log: env.log}
	return syncAndReport(ctx, env, *deadline, prog, stdout, errOut)
}

// syncAndReport runs one sync, showing progress as prog says, and prints
// the summary; exit 0 when nothing is dead, 1 otherwise.
func syncAndReport(ctx context.Context, env *env, deadline time.Duration, prog progressConfig, stdout, stderr io.Writer) int {
	if deadline < 0 {
		deadline = env.cfg.Sync.Deadline.D()
	}
	var until time.Time
	if deadline > 0 {
		until = time.Now().Add(deadline)
	}
	start := time.Now()
	p := startProgress(prog, outboxProgress(ctx, env.store))
	st, err := env.engine.Sync(ctx, until)
	p.Stop()
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

// outboxProgress is the progress of a sync read from the outbox counts:
// done is the rows synced or dead, total all rows. A failed read repeats
// the last numbers.
//
// TODO(lead): replace with the engine's live counters.
func outboxProgress(ctx context.Context, st store.Store) progressSource {
	var done, total int64
	return func() (int64, int64) {
		counts, err := st.Counts(ctx)
		if err != nil {
			return done, total
		}
		done, total = 0, 0
		for _, states := range counts {
			for state, n := range states {
				total += int64(n)
				if state == store.StateSynced || state == store.StateDead {
					done += int64(n)
				}
			}
		}
		return done, total
	}
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
