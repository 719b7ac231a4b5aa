package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/export"
)

// listFlag is a flag that may be repeated; each value may also hold a
// comma-separated list when split is true.
type listFlag struct {
	vals  []string
	split bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(v string) error {
	if !l.split {
		l.vals = append(l.vals, v)
		return nil
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l.vals = append(l.vals, s)
		}
	}
	return nil
}

var _ flag.Value = (*listFlag)(nil)

const exportUsage = "--config C --out DIR [--since T | --incremental] [--type T,...] [--level system|patient|group --group ID] [--type-filter Q ...]"

func runExport(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("export", exportUsage, stderr)
	configPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	out := fs.String("out", "", "directory for the NDJSON files and manifest.json (required)")
	since := fs.String("since", "", "only resources changed after this date (YYYY-MM-DD) or time (RFC 3339)")
	incremental := fs.Bool("incremental", false, "only resources changed since the last completed export of this level")
	level := fs.String("level", "system", "system, patient or group")
	group := fs.String("group", "", "the Group id of --level group")
	types := &listFlag{split: true}
	fs.Var(types, "type", "resource types to export, comma-separated or repeated (default: all)")
	filters := &listFlag{}
	fs.Var(filters, "type-filter", "a _typeFilter query such as Observation?category=vital-signs (repeatable)")
	workers := fs.Int("workers", 4, "files downloaded at once")
	maxWait := fs.Duration("max-poll-wait", time.Minute, "cap on the server's Retry-After between status polls")
	keep := fs.Bool("keep-job", false, "on interrupt, leave the job on the EHR so the next run resumes it (default: cancel it)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 || *out == "" {
		fs.Usage()
		return exitUsage
	}
	var from time.Time
	if *since != "" {
		if *incremental {
			fmt.Fprintln(stderr, "export: --since and --incremental exclude each other")
			return exitUsage
		}
		var err error
		if from, err = parseSince(*since); err != nil {
			fmt.Fprintf(stderr, "export: --since %q is not a date (YYYY-MM-DD) or an RFC 3339 time\n", *since)
			return exitUsage
		}
	}
	if *level != "group" && *group != "" {
		fmt.Fprintln(stderr, "export: --group needs --level group")
		return exitUsage
	}
	env, code := setup(ctx, *configPath, stderr)
	if env == nil {
		return code
	}
	defer env.close()
	pr := &exportProgress{w: stderr}
	x, err := export.New(env.engine.Client(), env.store, export.Options{
		OutDir: *out, Level: export.Level(*level), Group: *group,
		Types: types.vals, TypeFilters: filters.vals,
		Since: from, Incremental: *incremental,
		Workers: *workers, MaxPollWait: *maxWait, KeepJobOnCancel: *keep,
		Progress: pr.show,
	})
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	res, err := x.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		if errors.Is(err, context.Canceled) && *keep {
			fmt.Fprintln(stderr, "export: interrupted; run the same command again to resume the job")
		}
		return exitFailed
	}
	printExport(stdout, *out, res)
	return exitOK
}

func printExport(w io.Writer, dir string, res *export.Result) {
	types := make([]string, 0, len(res.Counts))
	total := 0
	for t, n := range res.Counts {
		types = append(types, t)
		total += n
	}
	sort.Strings(types)
	how := "Bulk Data job " + res.Job
	if res.Fallback {
		how = "searches (the EHR has no $export)"
	}
	if res.Resumed {
		how += ", resumed"
	}
	fmt.Fprintf(w, "exported %d resources to %s by %s; transactionTime %s\n", total, dir, how, res.TransactionTime.UTC().Format(time.RFC3339))
	for _, t := range types {
		fmt.Fprintf(w, "  %-28s %d\n", t, res.Counts[t])
	}
	if res.Deleted > 0 {
		fmt.Fprintf(w, "  %-28s %d\n", "deleted", res.Deleted)
	}
	if res.Errors > 0 {
		fmt.Fprintf(w, "  %-28s %d (see errors.ndjson)\n", "errors", res.Errors)
	}
}

// exportProgress prints progress lines on stderr when something changes,
// at most one a second while downloading.
type exportProgress struct {
	mu   sync.Mutex
	w    io.Writer
	last export.Progress
	at   time.Time
}

func (p *exportProgress) show(pr export.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	changed := pr.Phase != p.last.Phase || pr.Server != p.last.Server ||
		pr.FilesDone != p.last.FilesDone && (now.Sub(p.at) >= time.Second || pr.FilesDone == pr.FilesTotal)
	if !changed {
		return
	}
	switch pr.Phase {
	case "polling":
		fmt.Fprintf(p.w, "export: waiting for the EHR (%s)\n", pr.Server)
	case "downloading":
		fmt.Fprintf(p.w, "export: downloading: %d/%d files, %d resources\n", pr.FilesDone, pr.FilesTotal, pr.Lines)
	default:
		fmt.Fprintf(p.w, "export: %s\n", pr.Phase)
	}
	p.last, p.at = pr, now
}
