package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views/builtin"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views/sink"
)

// maxResourceLine bounds one NDJSON line of views run: a longer line is an
// error, not an unbounded allocation.
const maxResourceLine = 64 << 20

// viewFormats are the output formats of views run and their file
// extensions (sqlite: one file for all views).
var viewFormats = map[string]string{"csv": ".csv", "ndjson": ".ndjson", "parquet": ".parquet", "sqlite": ".sqlite"}

var viewName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func runViews(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const use = "Usage: ketamine-fhir views list | show NAME | run [--builtin] [VIEW.json...] --in FILE.ndjson... --format csv|ndjson|parquet|sqlite --out DIR"
	if len(args) == 0 {
		fmt.Fprintln(stderr, use)
		return exitUsage
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			fmt.Fprintln(stderr, "Usage: ketamine-fhir views list")
			return exitUsage
		}
		for _, v := range builtin.All() {
			fmt.Fprintf(stdout, "%-26s %s\n", v.Name, v.Description)
		}
		return exitOK
	case "show":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "Usage: ketamine-fhir views show NAME")
			return exitUsage
		}
		v, ok := builtin.Get(args[1])
		if !ok {
			fmt.Fprintf(stderr, "views show: no built-in view %q (there are: %s)\n", args[1], builtin.Names())
			return exitUsage
		}
		stdout.Write(v.JSON)
		return exitOK
	case "run":
		return runViewsRun(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, use)
		return exitOK
	}
	fmt.Fprintf(stderr, "views: unknown subcommand %q\n%s\n", args[0], use)
	return exitUsage
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// parseInterleaved parses flags that may come before, between or after
// the positional arguments, and returns those.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if code, ok := parseFlags(fs, args); !ok {
			return nil, code, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, exitOK, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// namedView is a view to run and where its rows go.
type namedView struct {
	name string
	view *views.View
	w    sink.Writer
	rows int
	// file output only: the temporary file renamed to path at the end.
	f    *os.File
	path string
}

func runViewsRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("views run", "[--builtin] [VIEW.json...] --in FILE.ndjson... --format csv|ndjson|parquet|sqlite --out DIR", stderr)
	useBuiltin := fs.Bool("builtin", false, "run every built-in view (see views list)")
	var inputs stringList
	fs.Var(&inputs, "in", "FHIR R4 NDJSON input (repeat for more files; - for stdin)")
	format := fs.String("format", "csv", "output format: csv, ndjson, parquet or sqlite")
	outDir := fs.String("out", "", "output directory: DIR/<view>.<format>, or DIR/views.sqlite")
	files, code, ok := parseInterleaved(fs, args)
	if !ok {
		return code
	}
	ext, ok := viewFormats[*format]
	if !ok {
		fmt.Fprintf(stderr, "views run: --format %q: want csv, ndjson, parquet or sqlite\n", *format)
		return exitUsage
	}
	if *outDir == "" || len(inputs) == 0 || (!*useBuiltin && len(files) == 0) {
		fs.Usage()
		return exitUsage
	}
	var list []*namedView
	seen := map[string]bool{}
	add := func(name string, v *views.View) bool {
		if seen[name] {
			fmt.Fprintf(stderr, "views run: two views are named %q\n", name)
			return false
		}
		seen[name] = true
		list = append(list, &namedView{name: name, view: v})
		return true
	}
	if *useBuiltin {
		for _, b := range builtin.All() {
			add(b.Name, b.View)
		}
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "views run: reading %s: %v\n", file, errors.Unwrap(err))
			return exitUsage
		}
		v, err := views.Parse(data)
		if err != nil {
			fmt.Fprintf(stderr, "views run: %s: %v\n", file, err)
			return exitUsage
		}
		name := v.Name()
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		}
		if !viewName.MatchString(name) {
			fmt.Fprintf(stderr, "views run: %s: view name %q cannot name a file or table (a letter, then letters, digits or underscores)\n", file, name)
			return exitUsage
		}
		if !add(name, v) {
			return exitUsage
		}
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "views run: %v\n", err)
		return exitUsage
	}
	closeAll, err := openViewOutputs(ctx, list, *format, ext, *outDir)
	if err != nil {
		fmt.Fprintf(stderr, "views run: %v\n", err)
		return exitFailed
	}
	failed, err := runViewInputs(ctx, list, inputs, stdin, stderr)
	if cerr := closeAll(err == nil); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "views run: %v\n", err)
		return exitFailed
	}
	for _, v := range list {
		fmt.Fprintf(stdout, "%s\t%d rows\t%s\n", v.name, v.rows, v.path)
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "views run: %d resources failed\n", failed)
		return exitFailed
	}
	return exitOK
}

// openViewOutputs creates each view's writer and returns the function
// that finishes them all: with keep, files are renamed into place;
// otherwise they are removed.
func openViewOutputs(ctx context.Context, list []*namedView, format, ext, dir string) (func(keep bool) error, error) {
	if format == "sqlite" {
		path := filepath.Join(dir, "views.sqlite")
		db, err := sink.OpenSQLite(ctx, path)
		if err != nil {
			return nil, err
		}
		for _, v := range list {
			t, err := db.Table(v.name, v.view.Columns())
			if err != nil {
				db.Close()
				return nil, err
			}
			v.w, v.path = t, path
		}
		return func(bool) error { return db.Close() }, nil
	}
	closeFiles := func(keep bool) error {
		var first error
		for _, v := range list {
			if v.f == nil {
				continue
			}
			err := v.w.Close()
			if cerr := v.f.Close(); err == nil {
				err = cerr
			}
			if keep && err == nil {
				err = os.Rename(v.f.Name(), v.path)
			}
			if !keep || err != nil {
				os.Remove(v.f.Name())
			}
			if first == nil && err != nil {
				first = fmt.Errorf("writing %s: %w", v.path, err)
			}
		}
		return first
	}
	for _, v := range list {
		v.path = filepath.Join(dir, v.name+ext)
		f, err := os.CreateTemp(dir, "."+v.name+"-*"+ext)
		if err != nil {
			closeFiles(false)
			return nil, err
		}
		v.f = f
		cols := v.view.Columns()
		switch format {
		case "csv":
			v.w, err = sink.NewCSV(f, cols)
		case "ndjson":
			v.w, err = sink.NewNDJSON(f, cols)
		case "parquet":
			v.w, err = sink.NewParquet(f, v.name, cols)
		}
		if err != nil {
			closeFiles(false)
			return nil, err
		}
	}
	return closeFiles, nil
}

// viewBatchSize is the number of input lines a worker evaluates at a
// time; at most 2 batches per worker are in flight, which bounds memory.
const viewBatchSize = 128

// viewItem is one input line and, once evaluated, its rows per view.
type viewItem struct {
	file string
	line int
	data []byte
	bad  bool          // not a FHIR resource
	rows [][]views.Row // rows[i]: the rows of the i-th view of its type
	errs []error       // errs[i]: the evaluation error of that view
	vs   []*namedView  // the views of its type
}

// viewBatch is a run of lines, evaluated by one worker; done is closed
// when it has been. err ends the input (a read error after the lines).
type viewBatch struct {
	items []viewItem
	err   error
	done  chan struct{}
}

// runViewInputs streams every input line by line and gives each resource
// to the views of its type. Workers (one per CPU) evaluate batches of
// lines; the rows are written in input order. A line that is not a FHIR
// resource, or a resource a view cannot be evaluated on, is reported by
// file and line (never its content) and counted; an output or read error
// stops everything.
func runViewInputs(ctx context.Context, list []*namedView, inputs []string, stdin io.Reader, stderr io.Writer) (int, error) {
	byType := map[string][]*namedView{}
	for _, v := range list {
		byType[v.view.Resource()] = append(byType[v.view.Resource()], v)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(1, runtime.GOMAXPROCS(0))
	work := make(chan *viewBatch)
	ordered := make(chan *viewBatch, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				evalViewBatch(b, byType)
				close(b.done)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(work)
		readViewInputs(ctx, inputs, stdin, func(b *viewBatch) bool {
			b.done = make(chan struct{})
			select {
			case ordered <- b:
			case <-ctx.Done():
				return false
			}
			if b.items == nil {
				close(b.done)
				return true
			}
			select {
			case work <- b:
				return true
			case <-ctx.Done():
				close(b.done)
				return false
			}
		})
	}()
	failed, err := writeViewBatches(ctx, ordered, stderr)
	cancel()
	for range ordered { // let the reader finish
	}
	wg.Wait()
	return failed, err
}

// writeViewBatches writes the rows of each batch, in order, as batches
// complete.
func writeViewBatches(ctx context.Context, ordered <-chan *viewBatch, stderr io.Writer) (int, error) {
	failed := 0
	for b := range ordered {
		select {
		case <-b.done:
		case <-ctx.Done():
			return failed, ctx.Err()
		}
		for i := range b.items {
			it := &b.items[i]
			if it.bad {
				failed++
				fmt.Fprintf(stderr, "%s:%d: not a FHIR resource (a JSON object with a resourceType)\n", it.file, it.line)
				continue
			}
			for j, v := range it.vs {
				if it.errs[j] != nil {
					failed++
					fmt.Fprintf(stderr, "%s:%d: view %s: %v\n", it.file, it.line, v.name, it.errs[j])
					continue
				}
				for _, r := range it.rows[j] {
					if err := v.w.Write(r); err != nil {
						return failed, fmt.Errorf("view %s: %w", v.name, err)
					}
					v.rows++
				}
			}
		}
		if b.err != nil {
			return failed, b.err
		}
	}
	return failed, ctx.Err()
}

// evalViewBatch runs the views of each line's resource type on it.
func evalViewBatch(b *viewBatch, byType map[string][]*namedView) {
	for i := range b.items {
		it := &b.items[i]
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(it.data, &head); err != nil || head.ResourceType == "" {
			it.bad = true
			continue
		}
		it.vs = byType[head.ResourceType]
		it.rows = make([][]views.Row, len(it.vs))
		it.errs = make([]error, len(it.vs))
		for j, v := range it.vs {
			it.rows[j], it.errs[j] = v.view.Rows(it.data)
		}
		it.data = nil
	}
}

// readViewInputs reads the inputs line by line and hands them on in
// batches; a read error comes last, as a batch with no items. It stops
// when send returns false.
func readViewInputs(ctx context.Context, inputs []string, stdin io.Reader, send func(*viewBatch) bool) {
	var items []viewItem
	flush := func() bool {
		if len(items) == 0 {
			return true
		}
		ok := send(&viewBatch{items: items})
		items = nil
		return ok
	}
	fail := func(err error) {
		if flush() {
			send(&viewBatch{err: err})
		}
	}
	for _, name := range inputs {
		var r io.Reader = stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				fail(fmt.Errorf("opening %s: %w", name, errors.Unwrap(err)))
				return
			}
			defer f.Close()
			r = f
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), maxResourceLine)
		line := 0
		for sc.Scan() {
			line++
			if ctx.Err() != nil {
				return
			}
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			items = append(items, viewItem{file: name, line: line, data: bytes.Clone(sc.Bytes())})
			if len(items) == viewBatchSize && !flush() {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("%s:%d: line longer than %d MiB", name, line+1, maxResourceLine>>20)
			} else {
				err = fmt.Errorf("reading %s: %w", name, err)
			}
			fail(err)
			return
		}
	}
	flush()
}
