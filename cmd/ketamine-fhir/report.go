package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/outcomes/report"
)

func runReport(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const use = "Usage: ketamine-fhir report outcomes --in FILE.ndjson... --out FILE [--format html|json] [--min-cell N] [--config C]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, use)
		return exitUsage
	}
	switch args[0] {
	case "outcomes":
		return runReportOutcomes(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, use)
		return exitOK
	}
	fmt.Fprintf(stderr, "report: unknown report %q\n%s\n", args[0], use)
	return exitUsage
}

func runReportOutcomes(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("report outcomes", "--in FILE.ndjson... --out FILE [--format html|json] [--min-cell N] [--config C]", stderr)
	var inputs stringList
	fs.Var(&inputs, "in", "FHIR R4 NDJSON input, from map or export (repeat for more files; - for stdin)")
	out := fs.String("out", "", "output file (- for stdout)")
	format := fs.String("format", "html", "html (one self-contained page) or json (schema "+outcomes.Schema+")")
	minCell := fs.Int("min-cell", 0, "smallest count of patients shown; smaller cells are suppressed (default: report.min_cell of the config, 11)")
	madrs := fs.Int("madrs-remission", 0, "highest MADRS total counted as remission (default: report.madrs_remission of the config, 10)")
	configPath := fs.String("config", "", "configuration file: the clinic's code systems and report keys (default: built-in defaults)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 || len(inputs) == 0 || *out == "" {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "report outcomes: unexpected argument %q (inputs go after --in)\n", fs.Arg(0))
		}
		fs.Usage()
		return exitUsage
	}
	if *format != "html" && *format != "json" {
		fmt.Fprintf(stderr, "report outcomes: --format %q: want html or json\n", *format)
		return exitUsage
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitUsage
	}
	opts := outcomes.Options{MinCell: cfg.Report.MinCell, MADRSRemission: cfg.Report.MADRSRemission}
	if *minCell != 0 {
		opts.MinCell = *minCell
	}
	if *madrs != 0 {
		opts.MADRSRemission = *madrs
	}
	if *minCell < 0 {
		fmt.Fprintf(stderr, "report outcomes: --min-cell %d: want 1 or more\n", *minCell)
		return exitUsage
	}
	if *madrs < 0 || *madrs > 60 {
		fmt.Fprintf(stderr, "report outcomes: --madrs-remission %d: want 1 to 60\n", *madrs)
		return exitUsage
	}
	c := outcomes.NewCollector(outcomes.CodesFor(&cfg.Mapping))
	for _, name := range inputs {
		if err := readReportInput(ctx, c, name, stdin); err != nil {
			fmt.Fprintf(stderr, "report outcomes: %v\n", err)
			return exitFailed
		}
	}
	rep := c.Compute(opts)
	write := report.HTML
	if *format == "json" {
		write = report.JSON
	}
	if *out == "-" {
		if err := write(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "report outcomes: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	if err := writeFileAtomic(*out, func(w io.Writer) error { return write(w, rep) }); err != nil {
		fmt.Fprintf(stderr, "report outcomes: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "report outcomes: %d resources read, %s written\n", rep.Input.Resources, *out)
	return exitOK
}

// readReportInput adds every resource of one NDJSON input to c. A line
// that cannot be read is an error naming the file and line, never its
// content.
func readReportInput(ctx context.Context, c *outcomes.Collector, name string, stdin io.Reader) error {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("opening %s: %w", name, errors.Unwrap(err))
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxResourceLine)
	line := 0
	for sc.Scan() {
		line++
		if line%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := c.Add(sc.Bytes()); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s:%d: line longer than %d MiB", name, line+1, maxResourceLine>>20)
		}
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return nil
}

// writeFileAtomic writes path through a temporary file in its directory,
// renamed into place only when write succeeds: no partial report.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	err = f.Chmod(0o644)
	if err == nil {
		err = write(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
