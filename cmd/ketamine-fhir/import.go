package main

import (
	"context"
	"errors"
	"fmt"
	"io"

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
	quiet := fs.Bool("quiet", false, "no progress output (a bar on a terminal, else a log line every 10s)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
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
	prog := progressConfig{Job: "import", Unit: unitBytes, Mode: mode, Out: barOut, Log: env.log}
	st, err := importFiles(ctx, env.engine, fs.Args(), stdin, errOut, prog)
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
// commits the good ones to the outbox in batches. It shows progress as
// prog says, in bytes read of the files' total size (unknown when a file
// is stdin).
func importFiles(ctx context.Context, eng *adapter.Engine, files []string, stdin io.Reader, stderr io.Writer, prog progressConfig) (importStats, error) {
	var st importStats
	var total int64 // 0 when a size is unknown
	sized := true
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
		sized = sized && in.size > 0
		total += in.size
	}
	if !sized {
		total = 0
	}
	p := startProgress(prog, func() (int64, int64) {
		var done int64
		for _, in := range inputs {
			done += in.counter.n.Load()
		}
		return done, total
	})
	defer p.Stop()
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
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	return st, nil
}
