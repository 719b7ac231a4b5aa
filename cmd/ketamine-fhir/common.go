package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/metrics"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
)

// newFlags returns a flag set that reports errors to stderr and does not
// exit.
func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ketamine-fhir %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns an exit code and false when the
// command should stop (help asked: 0, bad flags: 2).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}

// loadConfig loads the config file (empty path: defaults) and prints every
// problem.
func loadConfig(path string, stderr io.Writer) (*adapter.Config, bool) {
	cfg, err := adapter.LoadConfig(path, os.Getenv)
	if err != nil {
		var ce *adapter.ConfigError
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				fmt.Fprintf(stderr, "config: %s\n", p)
			}
		} else {
			fmt.Fprintf(stderr, "config: %v\n", err)
		}
		return nil, false
	}
	return cfg, true
}

// newLogger builds the process logger: JSON by default, text on a
// terminal (log.format auto).
func newLogger(cfg adapter.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	text := cfg.Format == "text" || (cfg.Format == "auto" && isTerminal(w))
	if text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// openStore opens the configured outbox.
func openStore(ctx context.Context, cfg *adapter.Config, log *slog.Logger) (store.Store, error) {
	driver, arg, err := adapter.ParseStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	switch driver {
	case "sqlite":
		return sqlite.Open(ctx, arg)
	case "postgres":
		return openPostgres(ctx, cfg, arg, log)
	}
	return nil, fmt.Errorf("store driver %q is not available", driver)
}

// env is what most commands need: config, logger, store, metrics, engine.
type env struct {
	cfg     *adapter.Config
	log     *slog.Logger
	store   store.Store
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	engine  *adapter.Engine
}

// setup loads the config and opens the store and engine; it prints what
// went wrong and returns the exit code when it fails.
func setup(ctx context.Context, configPath string, stderr io.Writer) (*env, int) {
	cfg, ok := loadConfig(configPath, stderr)
	if !ok {
		return nil, exitUsage
	}
	return setupWith(ctx, cfg, stderr, adapter.Options{})
}

func setupWith(ctx context.Context, cfg *adapter.Config, stderr io.Writer, opts adapter.Options) (*env, int) {
	log := newLogger(cfg.Log, stderr)
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "ketamine-fhir: opening the outbox: %v\n", err)
		return nil, exitUsage
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	opts.Logger, opts.Metrics = log, m
	eng, err := adapter.New(cfg, st, opts)
	if err != nil {
		st.Close()
		fmt.Fprintf(stderr, "ketamine-fhir: %v\n", err)
		return nil, exitUsage
	}
	if err := metrics.RegisterOutbox(reg, eng, opts.Now); err != nil {
		st.Close()
		fmt.Fprintf(stderr, "ketamine-fhir: %v\n", err)
		return nil, exitUsage
	}
	if driver, _, _ := adapter.ParseStore(cfg.Store); metrics.RegisterStore(reg, driver, eng.Instances) != nil {
		st.Close()
		fmt.Fprintln(stderr, "ketamine-fhir: registering the store metrics failed")
		return nil, exitUsage
	}
	return &env{cfg: cfg, log: log, store: st, reg: reg, metrics: m, engine: eng}, exitOK
}

func (e *env) close() { e.store.Close() }
