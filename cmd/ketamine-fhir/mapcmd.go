package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

func runMap(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("map", "[--bundle] [--config C] FILE... (- for stdin)", stderr)
	bundle := fs.Bool("bundle", false, "write one transaction Bundle (conditional entries, urn:uuid references) instead of NDJSON")
	configPath := fs.String("config", "", "configuration file (identifier systems, formulary; default: built-in defaults)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	mapper, err := mapping.NewMapper(&cfg.Mapping)
	if err != nil {
		fmt.Fprintf(stderr, "ketamine-fhir map: %v\n", err)
		return exitUsage
	}
	parser := mapping.NewParser(&cfg.Mapping, nil)
	out := bufio.NewWriterSize(stdout, 64<<10)
	defer out.Flush()
	var failed int
	if *bundle {
		failed, err = mapBundle(ctx, files, parser, mapper, stdin, out, stderr)
	} else {
		failed, err = mapNDJSON(ctx, files, parser, mapper, stdin, out, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ketamine-fhir map: %v\n", err)
		return exitFailed
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "ketamine-fhir map: %d records failed\n", failed)
		return exitFailed
	}
	return exitOK
}

// eachRecord reads every file and calls fn for each good record; bad ones
// are reported on stderr and counted.
func eachRecord(ctx context.Context, files []string, parser *mapping.Parser, stdin io.Reader, stderr io.Writer, fn func(file string, rec *mapping.Record)) (int, error) {
	bad := 0
	for _, name := range files {
		in, err := openInput(name, parser, stdin)
		if err != nil {
			return bad, err
		}
		for {
			if err := ctx.Err(); err != nil {
				in.close()
				return bad, err
			}
			rec, err := in.reader.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			var re *mapping.RecordError
			if errors.As(err, &re) {
				bad++
				fmt.Fprintln(stderr, recordError(name, err))
				continue
			}
			if err != nil {
				in.close()
				return bad, fmt.Errorf("reading %s: %w", name, err)
			}
			fn(name, rec)
		}
		in.close()
	}
	return bad, nil
}

// streamLookup serves NDJSON mapping: references are logical (by business
// identifier) and administrations find the orders read before them.
type streamLookup struct{ orders map[string]*mapping.Order }

func (l *streamLookup) Reference(mapping.Kind, string) string { return "" }
func (l *streamLookup) Order(id string) *mapping.Order        { return l.orders[id] }

// mapNDJSON maps record by record, streaming: one FHIR resource per line.
// Files must list an order before its administrations (as exports and
// `generate` do); only orders are kept in memory.
func mapNDJSON(ctx context.Context, files []string, parser *mapping.Parser, mapper *mapping.Mapper, stdin io.Reader, out io.Writer, stderr io.Writer) (int, error) {
	lk := &streamLookup{orders: map[string]*mapping.Order{}}
	failed := 0
	var werr error
	bad, err := eachRecord(ctx, files, parser, stdin, stderr, func(file string, rec *mapping.Record) {
		if rec.Order != nil {
			lk.orders[rec.Order.OrderID] = rec.Order
		}
		res, err := mapper.Map(rec, lk)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			return
		}
		for _, r := range res {
			if werr == nil {
				_, werr = out.Write(append(r.JSON, '\n'))
			}
		}
	})
	if err == nil {
		err = werr
	}
	return bad + failed, err
}

// mapBundle maps every record into one transaction Bundle. References
// between records in the Bundle are urn:uuid fullUrls; a record that fails
// to map is left out and the others are mapped again without it, so no
// reference dangles.
func mapBundle(ctx context.Context, files []string, parser *mapping.Parser, mapper *mapping.Mapper, stdin io.Reader, out io.Writer, stderr io.Writer) (int, error) {
	type item struct {
		file string
		rec  *mapping.Record
	}
	var items []item
	bad, err := eachRecord(ctx, files, parser, stdin, stderr, func(file string, rec *mapping.Record) {
		items = append(items, item{file, rec})
	})
	if err != nil {
		return bad, err
	}
	failed := 0
	for {
		recs := make([]*mapping.Record, len(items))
		for i, it := range items {
			recs[i] = it.rec
		}
		lk := mapping.NewBundleLookup(mapper, recs)
		var entries []mapping.BundleEntry
		var kept []item
		for _, it := range items {
			res, err := mapper.Map(it.rec, lk)
			if err != nil {
				failed++
				fmt.Fprintf(stderr, "%s: %v\n", it.file, err)
				continue
			}
			kept = append(kept, it)
			for _, r := range res {
				entries = append(entries, mapping.EntryFor(r))
			}
		}
		if len(kept) < len(items) {
			items = kept // map again without the failed records
			continue
		}
		data, err := mapping.TransactionBundle(entries)
		if err != nil {
			return bad + failed, err
		}
		if _, err := out.Write(append(data, '\n')); err != nil {
			return bad + failed, err
		}
		return bad + failed, nil
	}
}
