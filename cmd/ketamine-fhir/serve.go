package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/api/ui"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
)

// Timeouts of the API's HTTP server. A request body may be up to
// api.max_body_bytes (10 MiB by default) from a slow clinic network, and
// committing it to the outbox takes one transaction.
const (
	serveReadHeaderTimeout = 10 * time.Second
	serveReadTimeout       = 2 * time.Minute
	serveWriteTimeout      = 2 * time.Minute
	serveIdleTimeout       = 2 * time.Minute
)

// runServe is `ketamine-fhir serve --config C`: the HTTP API, /metrics and
// continuous delivery until ctx ends (SIGINT or SIGTERM in main). Then it
// shuts down gracefully within sync.shutdown_timeout: the listener stops
// accepting, requests in flight finish (their records are committed or
// not acknowledged), deliveries in flight finish or are aborted and left
// in the outbox for the next run. Exit 0 after a clean or a deadline-cut
// shutdown (nothing is lost either way), 1 if serving failed, 2 for a
// usage or configuration error (api.token empty, unusable address or TLS
// files).
func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	fs := newFlags("serve", "--config C", stderr)
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
	if cfg.API.Token == "" {
		fmt.Fprintln(stderr, "config: api.token: required by serve (set it in the file, as ${ENV} or file:PATH, or with KETAMINE_FHIR_API_TOKEN)")
		return exitUsage
	}
	var tlsCfg *tls.Config
	if cfg.API.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.API.TLSCert, cfg.API.TLSKey)
		if err != nil {
			fmt.Fprintf(stderr, "config: api.tls_cert, api.tls_key: %v\n", err)
			return exitUsage
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	env, code := setupWith(ctx, cfg, stderr, adapter.Options{})
	if env == nil {
		return code
	}
	defer env.close()
	log := env.log

	ln, err := net.Listen("tcp", cfg.API.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "ketamine-fhir serve: api.addr: %v\n", err)
		return exitUsage
	}
	// The EHR's reachability is probed in the background for /v1/status
	// and ketamine_fhir_ehr_up; readiness (/readyz) is the store's alone.
	prober := api.NewEHRProber(env.engine.PingEHR, api.ProberOptions{
		Interval: cfg.API.EHRProbeInterval.D(),
		Timeout:  cfg.API.ReadyTimeout.D(),
		Classify: ehr.Reason,
		Metrics:  env.metrics,
		Logger:   log,
	})
	// The operator console at /ui samples the delivered-records counter
	// once a minute for its chart; serve owns the sampler.
	sampler := ui.NewSampler(ui.SyncedCounter(env.reg), ui.SamplerOptions{Logger: log})
	console := ui.New(env.engine, ui.Options{
		APIToken: cfg.API.Token, UIToken: cfg.API.UIToken, EHR: consoleEHR(prober),
		Sampler: sampler, Settings: consoleSettings(cfg), Logger: log,
	})
	var jwks []byte
	if cfg.API.JWKSPath != "" {
		// Validate checked the keys; this cannot fail on a valid config.
		if jwks, err = ehr.PublicJWKS([]byte(cfg.EHR.Auth.PrivateKey), cfg.EHR.Auth.KeyID); err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "config: ehr.auth.private_key: %v\n", err)
			return exitUsage
		}
	}
	handler := api.NewRouter(env.engine, api.Options{
		JWKSPath:     cfg.API.JWKSPath,
		JWKS:         jwks,
		Token:        cfg.API.Token,
		MaxBodyBytes: cfg.API.MaxBodyBytes,
		ReadyTimeout: cfg.API.ReadyTimeout.D(),
		EHR:          prober,
		Gatherer:     env.reg,
		Metrics:      env.metrics,
		Logger:       log,
		Console:      console,
	})
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: serveReadHeaderTimeout,
		ReadTimeout:       serveReadTimeout,
		WriteTimeout:      serveWriteTimeout,
		IdleTimeout:       serveIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Requests keep running under their own context when ctx ends:
		// Shutdown lets them finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	env.engine.Start(ctx)
	prober.Start(ctx)
	sampler.Start(ctx)
	defer sampler.Stop(context.WithoutCancel(ctx)) // its goroutine ends with ctx
	serveErr := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	log.Info("listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil)

	code = exitOK
	select {
	case <-ctx.Done():
		log.Info("shutting down", "deadline", cfg.Sync.ShutdownTimeout.D().String())
	case err := <-serveErr:
		// Serve returns only on failure before Shutdown.
		log.Error("the HTTP server stopped", "err", err)
		code = exitFailed
	}
	shutdown(context.WithoutCancel(ctx), srv, env.engine, prober, cfg.Sync.ShutdownTimeout.D(), log)
	return code
}

// shutdown stops the HTTP server, the engine and the EHR prober at the
// same time, all within timeout. Requests still running at the deadline
// are cut; the engine aborts its deliveries, whose rows stay in the outbox
// (in flight until their lease expires or retrying) and are delivered,
// idempotently, by the next run; a probe in flight is abandoned.
func shutdown(ctx context.Context, srv *http.Server, eng *adapter.Engine, prober *api.EHRProber, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("HTTP requests still running at the shutdown deadline were cut", "err", err)
			srv.Close()
		}
	}()
	go func() {
		defer wg.Done()
		if err := prober.Stop(ctx); err != nil {
			log.Warn("the EHR probe did not stop by the shutdown deadline", "err", err)
		}
	}()
	if err := eng.Stop(ctx); err != nil {
		log.Warn("deliveries still running at the shutdown deadline were aborted; their records stay in the outbox for the next run", "err", err)
	}
	wg.Wait()
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
}
