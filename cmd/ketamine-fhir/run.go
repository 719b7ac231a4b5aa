package main

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// Exit codes (DESIGN.md section 5).
const (
	exitOK     = 0 // success
	exitFailed = 1 // some records failed
	exitUsage  = 2 // usage or configuration error
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands lists every subcommand of ketamine-fhir.
var commands = map[string]command{
	"demo":        {"generate a sample clinic, sync it to an embedded fhirtest EHR, print a summary", runDemo},
	"map":         {"map local records to FHIR R4 NDJSON (or one transaction Bundle) on stdout", runMap},
	"validate":    {"validate FHIR R4 JSON, NDJSON or Bundle files", runValidate},
	"generate":    {"write a deterministic synthetic clinic as local records (NDJSON)", runGenerate},
	"import":      {"check local records and commit them to the outbox", runImport},
	"sync":        {"deliver everything pending to the EHR, then exit (for cron)", runSync},
	"serve":       {"HTTP API, metrics and continuous sync until SIGTERM", runServe},
	"deadletters": {"list or re-queue records the EHR rejected", runDeadletters},
	"resync":      {"re-queue synced records; only those whose FHIR output changed are sent again", runResync},
	"config":      {"check a configuration file: config check --config C", runConfig},
	"export":      {"copy the EHR's data to NDJSON files with FHIR Bulk Data $export (resumable, incremental)", runExport},
	"ehr":         {"run the fhirtest FHIR R4 server standalone, with fault injection", runEHRCommand},
	"store":       {"outbox schema and moves: store migrate --config C; store copy --from S --to T [--resume]", runStore},
	"views":       {"SQL on FHIR views over FHIR NDJSON to CSV, NDJSON, Parquet or SQLite: views list|show|run", runViews},
	"keys":        {"make a SMART Backend Services signing key and its JWKS: keys generate --alg RS384|ES384 --out DIR", runKeys},
	"report":      {"response, remission and safety figures from FHIR NDJSON: report outcomes (self-contained HTML or JSON)", runReport},
}

// run is the whole program behind main, testable without a subprocess.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ketamine-fhir: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return cmd.run(ctx, args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: ketamine-fhir COMMAND [flags] [args]")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'ketamine-fhir COMMAND -h' for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 some records failed, 2 usage or configuration error.")
}

// runEHRCommand adapts runEHR (which takes no stdin) to the command table.
func runEHRCommand(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	return runEHR(ctx, args, stdout, stderr)
}
