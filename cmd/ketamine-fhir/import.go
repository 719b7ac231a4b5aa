package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// importBatch is how many records one outbox transaction commits.
const importBatch = 1000

// importStats counts what import did.
type importStats struct {
	read, rejected               int
	inserted, updated, unchanged int
}

func runImport(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("import", "--config C FILE...", stderr)
	configPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	quiet := fs.Bool("quiet", false, "no progress output")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	env, code := setup(ctx, *configPath, stderr)
	if env == nil {
		return code
	}
	defer env.close()
	var prog *progress
	if !*quiet {
		prog = newProgress(stderr, isTerminal(stderr))
	}
	st, err := importFiles(ctx, env.engine, fs.Args(), stdin, stderr, prog)
	fmt.Fprintf(stdout, "imported: %d read, %d inserted, %d updated, %d unchanged, %d rejected\n",
		st.read, st.inserted, st.updated, st.unchanged, st.rejected)
	if err != nil {
		fmt.Fprintf(stderr, "ketamine-fhir import: %v\n", err)
		return exitFailed
	}
	if st.rejected > 0 {
		return exitFailed
	}
	return exitOK
}

// importFiles reads every file, reports each bad record on stderr and
// commits the good ones to the outbox in batches.
func importFiles(ctx context.Context, eng *adapter.Engine, files []string, stdin io.Reader, stderr io.Writer, prog *progress) (importStats, error) {
	var st importStats
	var total int64
	inputs := make([]*inputFile, 0, len(files))
	defer func() {
		for _, in := range inputs {
			in.close()
		}
	}()
	for _, name := range files {
		in, err := openInput(name, eng.Parser(), stdin)
		if err != nil {
			return st, err
		}
		inputs = append(inputs, in)
		total += in.size
	}
	var done int64
	batch := make([]*mapping.Record, 0, importBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := eng.Ingest(ctx, batch)
		if err != nil {
			return err
		}
		for _, r := range res {
			switch r.Outcome {
			case store.Inserted:
				st.inserted++
			case store.Updated:
				st.updated++
			default:
				st.unchanged++
			}
		}
		batch = batch[:0]
		return nil
	}
	for _, in := range inputs {
		for {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			rec, err := in.reader.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			var re *mapping.RecordError
			if errors.As(err, &re) {
				st.read++
				st.rejected++
				eng.Rejected(re)
				fmt.Fprintln(stderr, recordError(in.name, err))
				continue
			}
			if err != nil {
				return st, fmt.Errorf("reading %s: %w", in.name, err)
			}
			st.read++
			eng.Received(rec)
			batch = append(batch, rec)
			if len(batch) == importBatch {
				if err := flush(); err != nil {
					return st, err
				}
				prog.update(st.read, done+in.counter.n, total)
			}
		}
		done += in.counter.n
	}
	if err := flush(); err != nil {
		return st, err
	}
	prog.finish(st.read, done, total)
	return st, nil
}

// progress prints import progress: a redrawn line with rate and ETA on a
// terminal, a plain line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, tty bool) *progress {
	now := time.Now()
	return &progress{w: w, tty: tty, start: now, last: now}
}

func (p *progress) update(records int, bytes, total int64) {
	if p == nil {
		return
	}
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.print(records, bytes, total, now)
}

func (p *progress) print(records int, bytes, total int64, now time.Time) {
	elapsed := now.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(records) / elapsed
	}
	line := fmt.Sprintf("imported %d records (%.0f/s)", records, rate)
	if total > 0 && bytes > 0 {
		pct := float64(bytes) / float64(total)
		line += fmt.Sprintf(", %.1f%%", 100*pct)
		if pct < 1 && elapsed > 0 {
			eta := time.Duration(elapsed*(1-pct)/pct) * time.Second
			line += ", ETA " + eta.Round(time.Second).String()
		}
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) finish(records int, bytes, total int64) {
	if p == nil {
		return
	}
	p.print(records, bytes, total, time.Now())
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
