package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/postgres"
)

// openPostgres opens the PostgreSQL outbox of dsn with the postgres keys
// of cfg.
func openPostgres(ctx context.Context, cfg *adapter.Config, dsn string, log *slog.Logger) (store.Store, error) {
	return postgres.Open(ctx, dsn, postgres.WithPassword(cfg.Postgres.Password),
		postgres.WithPoolSize(cfg.Postgres.PoolSize), postgres.WithLogger(log))
}

func runStore(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "migrate":
			return runStoreMigrate(ctx, args[1:], stdout, stderr)
		case "copy":
			return runStoreCopy(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, "Usage: ketamine-fhir store migrate --config C\n       ketamine-fhir store copy --from STORE --to STORE [--resume] [--config C]")
	return exitUsage
}

// runStoreMigrate brings the configured outbox's schema up to date (Open
// migrates; this command does only that, for a deployment step run before
// the instances start).
func runStoreMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("store migrate", "--config C", stderr)
	configPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	log := newLogger(cfg.Log, stderr)
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "store migrate: %s: %v\n", adapter.RedactStore(cfg.Store), err)
		return exitFailed
	}
	st.Close()
	fmt.Fprintf(stdout, "%s: schema up to date\n", adapter.RedactStore(cfg.Store))
	return exitOK
}

// copyPage is how many rows store copy reads and writes per transaction.
const copyPage = 500

// runStoreCopy copies an outbox, row for row, into another (SQLite to
// PostgreSQL, typically). Stop every instance using the source first.
func runStoreCopy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("store copy", "--from STORE --to STORE [--resume] [--config C]", stderr)
	from := fs.String("from", "", "source outbox: sqlite:PATH or postgres://...")
	to := fs.String("to", "", "target outbox: sqlite:PATH or postgres://...")
	resume := fs.Bool("resume", false, "continue into a non-empty target: copy only the rows it lacks")
	configPath := fs.String("config", "", "configuration file for the postgres keys (password, pool size)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 || *from == "" || *to == "" {
		fs.Usage()
		return exitUsage
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	log := newLogger(cfg.Log, stderr)
	open := func(which, url string, mustExist bool) (store.Store, store.Copier, bool) {
		driver, arg, err := adapter.ParseStore(url)
		if err != nil {
			fmt.Fprintf(stderr, "store copy: --%s: %v\n", which, err)
			return nil, nil, false
		}
		if driver == "sqlite" && mustExist {
			if _, err := os.Stat(arg); err != nil {
				fmt.Fprintf(stderr, "store copy: --%s: %s does not exist\n", which, arg)
				return nil, nil, false
			}
		}
		c := *cfg
		c.Store = url
		st, err := openStore(ctx, &c, log)
		if err != nil {
			fmt.Fprintf(stderr, "store copy: --%s %s: %v\n", which, adapter.RedactStore(url), err)
			return nil, nil, false
		}
		cp, ok := st.(store.Copier)
		if !ok {
			st.Close()
			fmt.Fprintf(stderr, "store copy: --%s: the %s driver cannot be copied\n", which, driver)
			return nil, nil, false
		}
		return st, cp, true
	}
	if strings.TrimSpace(*from) == strings.TrimSpace(*to) {
		fmt.Fprintln(stderr, "store copy: --from and --to name the same outbox")
		return exitUsage
	}
	src, srcCopier, ok := open("from", *from, true)
	if !ok {
		return exitUsage
	}
	defer src.Close()
	dst, dstCopier, ok := open("to", *to, false)
	if !ok {
		return exitUsage
	}
	defer dst.Close()

	n, err := copyOutbox(ctx, src, srcCopier, dst, dstCopier, *resume)
	if errors.Is(err, errTargetNotEmpty) {
		fmt.Fprintf(stderr, "store copy: %v\n", err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "store copy: %v (run again with --resume to continue)\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "copied %d rows (%d already in the target) and %d settings from %s to %s\n",
		n.inserted, n.rows-n.inserted, n.meta, adapter.RedactStore(*from), adapter.RedactStore(*to))
	return exitOK
}

var errTargetNotEmpty = errors.New("the target outbox is not empty; give --resume to continue an interrupted copy into it")

type copied struct{ rows, inserted, meta int }

// copyOutbox copies every row of src, state by state in id order, and then
// the meta settings, into dst, each row with its History. It refuses a dst that holds rows or
// settings unless resume; rows dst already has (by kind and local id) are
// kept as they are, so running it again is harmless.
func copyOutbox(ctx context.Context, src store.Store, srcC store.Copier, dst store.Store, dstC store.Copier, resume bool) (copied, error) {
	var n copied
	if !resume {
		counts, err := dst.Counts(ctx)
		if err != nil {
			return n, fmt.Errorf("reading the target: %w", err)
		}
		meta, err := dstC.MetaAll(ctx)
		if err != nil {
			return n, fmt.Errorf("reading the target: %w", err)
		}
		rows := 0
		for _, states := range counts {
			for _, c := range states {
				rows += c
			}
		}
		if rows > 0 || len(meta) > 0 {
			return n, fmt.Errorf("%w (%d rows, %d settings)", errTargetNotEmpty, rows, len(meta))
		}
	}
	for _, state := range store.States {
		var after int64
		for {
			recs, err := src.List(ctx, state, after, copyPage)
			if err != nil {
				return n, fmt.Errorf("reading %s rows of the source: %w", state, err)
			}
			if len(recs) == 0 {
				break
			}
			history := make(map[int64][]store.Attempt, len(recs))
			for _, r := range recs {
				if history[r.ID], err = src.History(ctx, r.ID); err != nil {
					return n, fmt.Errorf("reading the history of row %d of the source: %w", r.ID, err)
				}
			}
			k, err := dstC.Load(ctx, recs, history, nil)
			if err != nil {
				return n, fmt.Errorf("writing %s rows to the target: %w", state, err)
			}
			n.rows += len(recs)
			n.inserted += k
			after = recs[len(recs)-1].ID
		}
	}
	meta, err := srcC.MetaAll(ctx)
	if err != nil {
		return n, fmt.Errorf("reading the source settings: %w", err)
	}
	if _, err := dstC.Load(ctx, nil, nil, meta); err != nil {
		return n, fmt.Errorf("writing the settings to the target: %w", err)
	}
	n.meta = len(meta)
	return n, nil
}
