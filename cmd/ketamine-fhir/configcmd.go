package main

import (
	"context"
	"fmt"
	"io"
)

func runConfig(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: ketamine-fhir config check --config C")
		return exitUsage
	}
	fs := newFlags("config check", "--config C", stderr)
	configPath := fs.String("config", "", "configuration file to check")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if *configPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	if _, ok := loadConfig(*configPath, stderr); !ok {
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok\n", *configPath)
	return exitOK
}
