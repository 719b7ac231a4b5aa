package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
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
	p := startProgress(prog, liveProgress(ctx, env))
	st, err := env.engine.Sync(ctx, until)
	p.Stop()
	if err != nil {
		fmt.Fprintf(stderr, "ketamine-fhir sync: %v\n", err)
	}
	bg := context.WithoutCancel(ctx)
	counts, cerr := env.store.Counts(bg)
	if cerr != nil {
		fmt.Fprintf(stderr, "ketamine-fhir sync: reading the outbox: %v\n", cerr)
		return exitFailed
	}
	fmt.Fprintf(stdout, "sync: %d synced (%d unchanged, not sent), %d retrying, %d waiting, %d dead in %s\n",
		st.Synced, st.Unchanged, st.Retrying, st.Waiting, st.Dead, time.Since(start).Round(time.Millisecond))
	printCounts(stdout, counts)
	for _, state := range []store.State{store.StateRetrying, store.StateWaiting} {
		reasons, err := reasonsIn(bg, env.store, state)
		if err != nil {
			fmt.Fprintf(stderr, "ketamine-fhir sync: reading the outbox: %v\n", err)
			return exitFailed
		}
		if len(reasons) > 0 {
			fmt.Fprintf(stdout, "%s by reason: %s\n", state, formatReasons(reasons))
		}
	}
	if errors.Is(err, adapter.ErrAuthorization) {
		fmt.Fprintln(stderr, "ketamine-fhir sync: records stay queued with reason auth; fix the EHR authorization and run sync again")
	}
	if err != nil || totalIn(counts, store.StateDead) > 0 {
		return exitFailed
	}
	return exitOK
}

// reasonsIn counts the rows in state by error class.
func reasonsIn(ctx context.Context, st store.Store, state store.State) (map[string]int, error) {
	reasons := map[string]int{}
	var after int64
	for {
		rows, err := st.List(ctx, state, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			return reasons, nil
		}
		for _, r := range rows {
			after = r.ID
			class := r.ErrorClass
			if class == "" {
				class = "none"
			}
			reasons[class]++
		}
	}
}

// formatReasons writes "class=n, class=n" in order of class.
func formatReasons(reasons map[string]int) string {
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, reasons[k])
	}
	return strings.Join(parts, ", ")
}

// liveProgress is the progress of a sync from the engine's live
// counters: done is the rows recorded synced or dead since start, total
// the rows not yet synced or dead when the sync began.
func liveProgress(ctx context.Context, env *env) progressSource {
	var total int64
	if counts, err := env.store.Counts(ctx); err == nil {
		for _, states := range counts {
			for state, n := range states {
				if state != store.StateSynced && state != store.StateDead {
					total += int64(n)
				}
			}
		}
	}
	start := env.engine.Progress()
	return func() (int64, int64) {
		done := env.engine.Progress() - start
		return done, max(total, done)
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
