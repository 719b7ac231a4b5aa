package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

// ehrOptions are the flags of `ketamine-fhir ehr`.
type ehrOptions struct {
	addr, basePath    string
	updateCreate      bool
	integrity         bool
	validate          bool
	seed              int64
	latency           string
	failRate          float64
	failStatuses      string
	failNext          int
	failNextStatus    int
	dropRate          float64
	dropNext          int
	loseRate          float64
	loseNext          int
	loseMode          string
	rateLimit         float64
	rateBurst         int
	retryAfter        time.Duration
	pageSize, maxPage int
	maxBodyBytes      int64
	requestLogLimit   int
	logRequests       bool
	shutdownGrace     time.Duration
	rejectIdentifiers []string

	// Parsed by check.
	parsedLatencyMin   time.Duration
	parsedLatencyMax   time.Duration
	parsedFailStatuses []int
	parsedLoseMode     fhirtest.LoseMode
}

// runEHR is `ketamine-fhir ehr`: the fhirtest FHIR R4 server on --addr,
// under --base-path, with a flag for every fault, until ctx is done. It
// prints the base URL when it is listening and a summary of what it holds
// when it stops. Exit codes: 0 after a clean stop, 1 when it cannot listen
// or serve, 2 for bad flags.
func runEHR(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o ehrOptions
	fs := newFlags("ehr", "[flags]", stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8090", "`HOST:PORT` to listen on (port 0 picks a free one)")
	fs.StringVar(&o.basePath, "base-path", fhirtest.DefaultBasePath, "`path` the FHIR API is served under")
	fs.BoolVar(&o.updateCreate, "update-create", true, "allow PUT to create resources with client ids (false: 405, as many EHRs)")
	fs.BoolVar(&o.integrity, "referential-integrity", true, "reject writes whose local references do not resolve (422) and deletes of referenced resources (409)")
	fs.BoolVar(&o.validate, "validate", true, "check every resource written against the FHIR R4 structure definitions (422 when it fails); false only for throughput runs, where validation is most of the EHR's CPU")
	fs.Int64Var(&o.seed, "seed", fhirtest.DefaultSeed, "`seed` of the fault generator: the same seed and requests give the same faults")
	fs.StringVar(&o.latency, "latency", "", "delay every request: a fixed `duration` (50ms) or a uniform range (10ms-200ms)")
	fs.Float64Var(&o.failRate, "fail-rate", 0, "fail this `fraction` of requests (0-1) with a status from --fail-status, before processing")
	fs.StringVar(&o.failStatuses, "fail-status", "503", "comma-separated `statuses` for --fail-rate (429 and 503 carry Retry-After)")
	fs.IntVar(&o.failNext, "fail-next", 0, "fail the first `n` requests with --fail-next-status")
	fs.IntVar(&o.failNextStatus, "fail-next-status", 503, "`status` for --fail-next")
	fs.Float64Var(&o.dropRate, "drop-rate", 0, "close the connection of this `fraction` of requests before processing")
	fs.IntVar(&o.dropNext, "drop-next", 0, "close the connection of the first `n` requests before processing")
	fs.Float64Var(&o.loseRate, "lose-rate", 0, "commit this `fraction` of writes, then lose the response (see --lose-mode)")
	fs.IntVar(&o.loseNext, "lose-next", 0, "commit the first `n` writes, then lose their responses")
	fs.StringVar(&o.loseMode, "lose-mode", "drop", "how responses are lost: drop (close the connection), 503, or hang (never answer: the client must time out)")
	fs.Float64Var(&o.rateLimit, "rate-limit", 0, "allow this many `requests per second`, answering 429 with Retry-After beyond (0: no limit)")
	fs.IntVar(&o.rateBurst, "rate-burst", 0, "burst `size` of --rate-limit (0: one second's worth)")
	fs.DurationVar(&o.retryAfter, "retry-after", time.Second, "Retry-After of injected 429 and 503 answers")
	fs.Func("reject-identifier", "refuse (422 business-rule, as an EHR's own rules) every write of a resource with an identifier of this `value`; repeatable", func(v string) error {
		if v == "" {
			return errors.New("empty identifier value")
		}
		o.rejectIdentifiers = append(o.rejectIdentifiers, v)
		return nil
	})
	fs.IntVar(&o.pageSize, "page-size", 50, "default search page `size`")
	fs.IntVar(&o.maxPage, "max-page-size", 1000, "largest search page `size` (_count)")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", 32<<20, "largest request body in `bytes` (413 beyond)")
	fs.IntVar(&o.requestLogLimit, "request-log-limit", 100000, "requests kept for inspection (0: none, -1: all)")
	fs.BoolVar(&o.logRequests, "log-requests", false, "log every request (method, path without query, status, fault) to stderr")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 5*time.Second, "how long to wait for requests in flight when stopping")
	smart := addSMARTFlags(fs)
	tlsFlags := addEHRTLSFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ehr: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return exitUsage
	}
	if problems := o.check(); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "ehr: %s\n", p)
		}
		return exitUsage
	}

	smartOpt, err := smart.option()
	if err != nil {
		fmt.Fprintf(stderr, "ehr: %v\n", err)
		return exitUsage
	}
	tlsCfg, err := tlsFlags.config()
	if err != nil {
		fmt.Fprintf(stderr, "ehr: %v\n", err)
		return exitUsage
	}
	opts := []fhirtest.Option{
		fhirtest.WithBasePath(o.basePath),
		fhirtest.WithUpdateCreate(o.updateCreate),
		fhirtest.WithReferentialIntegrity(o.integrity),
		fhirtest.WithValidation(o.validate),
		fhirtest.WithSeed(o.seed),
		fhirtest.WithPageSize(o.pageSize, o.maxPage),
		fhirtest.WithMaxBodyBytes(o.maxBodyBytes),
		fhirtest.WithRequestLogLimit(o.requestLogLimit),
	}
	if smartOpt != nil {
		opts = append(opts, smartOpt)
	}
	srv := fhirtest.NewUnstartedServer(opts...)
	defer srv.Close()
	o.applyFaults(srv)

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		fmt.Fprintf(stderr, "ehr: listen on %s: %v\n", o.addr, err)
		return exitFailed
	}
	var handler http.Handler = srv.Handler()
	if o.logRequests {
		handler = logRequests(handler, stderr)
	}
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(stderr, "ehr: http: ", 0),
		TLSConfig:         tlsCfg,
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	base := scheme + "://" + ln.Addr().String() + srv.BasePath()
	fmt.Fprintf(stdout, "fhirtest EHR serving FHIR R4 at %s\n", base)
	if smartOpt != nil {
		fmt.Fprintf(stdout, "SMART Backend Services: client %s, token endpoint %s://%s/auth/token\n", smart.clientID, scheme, ln.Addr())
	}
	if f := o.describeFaults(); f != "" {
		fmt.Fprintf(stdout, "faults: %s\n", f)
	}

	served := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			served <- hs.ServeTLS(ln, "", "") // HTTP/2 too
			return
		}
		served <- hs.Serve(ln)
	}()
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "ehr: serve: %v\n", err)
		return exitFailed
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
	defer cancel()
	srv.Close() // ends injected latency waits, so Shutdown does not wait them out
	if err := hs.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "ehr: shutdown: %v\n", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "ehr: serve: %v\n", err)
	}
	printEHRSummary(stdout, srv)
	return exitOK
}

// check validates the flags and parses the composite ones; it returns
// every problem.
func (o *ehrOptions) check() []string {
	var problems []string
	rate := func(name string, v float64) {
		if v < 0 || v > 1 || v != v {
			problems = append(problems, fmt.Sprintf("--%s must be between 0 and 1, got %v", name, v))
		}
	}
	status := func(name string, v int) bool {
		if v < 400 || v > 599 {
			problems = append(problems, fmt.Sprintf("--%s must be an error status (400-599), got %d", name, v))
			return false
		}
		return true
	}
	rate("fail-rate", o.failRate)
	rate("drop-rate", o.dropRate)
	rate("lose-rate", o.loseRate)
	for _, part := range strings.Split(o.failStatuses, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			problems = append(problems, fmt.Sprintf("--fail-status: %q is not a status", part))
			continue
		}
		if status("fail-status", n) {
			o.parsedFailStatuses = append(o.parsedFailStatuses, n)
		}
	}
	status("fail-next-status", o.failNextStatus)
	switch o.loseMode {
	case "drop":
		o.parsedLoseMode = fhirtest.LoseDrop
	case "503":
		o.parsedLoseMode = fhirtest.Lose503
	case "hang":
		o.parsedLoseMode = fhirtest.LoseHang
	default:
		problems = append(problems, fmt.Sprintf("--lose-mode must be drop, 503 or hang, got %q", o.loseMode))
	}
	if o.latency != "" {
		lo, hi, ok := strings.Cut(o.latency, "-")
		if !ok {
			hi = lo
		}
		min, err1 := time.ParseDuration(strings.TrimSpace(lo))
		max, err2 := time.ParseDuration(strings.TrimSpace(hi))
		switch {
		case err1 != nil || err2 != nil:
			problems = append(problems, fmt.Sprintf("--latency must be a duration (50ms) or a range (10ms-200ms), got %q", o.latency))
		case min < 0 || max < min:
			problems = append(problems, fmt.Sprintf("--latency range %q must have 0 <= min <= max", o.latency))
		default:
			o.parsedLatencyMin, o.parsedLatencyMax = min, max
		}
	}
	for name, v := range map[string]int{"fail-next": o.failNext, "drop-next": o.dropNext, "lose-next": o.loseNext, "rate-burst": o.rateBurst} {
		if v < 0 {
			problems = append(problems, fmt.Sprintf("--%s must not be negative", name))
		}
	}
	if o.rateLimit < 0 {
		problems = append(problems, "--rate-limit must not be negative")
	}
	if o.pageSize < 1 || o.maxPage < 1 {
		problems = append(problems, "--page-size and --max-page-size must be at least 1")
	}
	if o.maxBodyBytes < 1 {
		problems = append(problems, "--max-body-bytes must be at least 1")
	}
	sort.Strings(problems)
	return problems
}

func (o *ehrOptions) applyFaults(srv *fhirtest.Server) {
	srv.SetRetryAfter(o.retryAfter)
	if o.parsedLatencyMax > 0 {
		srv.SetLatency(o.parsedLatencyMin, o.parsedLatencyMax)
	}
	if o.failRate > 0 {
		srv.SetFailureRate(o.failRate, o.parsedFailStatuses...)
	}
	if o.failNext > 0 {
		srv.FailNext(o.failNext, o.failNextStatus)
	}
	if o.dropRate > 0 {
		srv.SetDropRate(o.dropRate)
	}
	if o.dropNext > 0 {
		srv.DropNext(o.dropNext)
	}
	if o.loseRate > 0 {
		srv.SetLoseRate(o.loseRate, o.parsedLoseMode)
	}
	if o.loseNext > 0 {
		srv.LoseNext(o.loseNext, o.parsedLoseMode)
	}
	if o.rateLimit > 0 {
		srv.SetRateLimit(o.rateLimit, o.rateBurst)
	}
	if len(o.rejectIdentifiers) > 0 {
		srv.RejectWrites(fhirtest.RejectIdentifiers(o.rejectIdentifiers...))
	}
}

// describeFaults says which faults are on, for the start-up banner.
func (o *ehrOptions) describeFaults() string {
	var parts []string
	if o.parsedLatencyMax > 0 {
		parts = append(parts, "latency "+o.latency)
	}
	if o.failRate > 0 {
		parts = append(parts, fmt.Sprintf("fail %g%% with %s", o.failRate*100, o.failStatuses))
	}
	if o.failNext > 0 {
		parts = append(parts, fmt.Sprintf("fail next %d with %d", o.failNext, o.failNextStatus))
	}
	if o.dropRate > 0 {
		parts = append(parts, fmt.Sprintf("drop %g%%", o.dropRate*100))
	}
	if o.dropNext > 0 {
		parts = append(parts, fmt.Sprintf("drop next %d", o.dropNext))
	}
	if o.loseRate > 0 {
		parts = append(parts, fmt.Sprintf("lose %g%% of write responses (%s)", o.loseRate*100, o.loseMode))
	}
	if o.loseNext > 0 {
		parts = append(parts, fmt.Sprintf("lose next %d write responses (%s)", o.loseNext, o.loseMode))
	}
	if o.rateLimit > 0 {
		parts = append(parts, fmt.Sprintf("rate limit %g/s", o.rateLimit))
	}
	if n := len(o.rejectIdentifiers); n > 0 {
		parts = append(parts, fmt.Sprintf("refuse writes of %d identifier value(s)", n))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + fmt.Sprintf(" (seed %d)", o.seed)
}

// printEHRSummary prints what the server holds and received.
func printEHRSummary(w io.Writer, srv *fhirtest.Server) {
	counts := srv.Counts()
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	var held []string
	for _, t := range types {
		held = append(held, fmt.Sprintf("%s=%d", t, counts[t]))
	}
	if len(held) == 0 {
		held = []string{"none"}
	}
	faults := map[fhirtest.Fault]int{}
	reqs := srv.Requests()
	for _, r := range reqs {
		if r.Fault != fhirtest.FaultNone {
			faults[r.Fault]++
		}
	}
	fmt.Fprintf(w, "fhirtest EHR stopped: %d requests logged", len(reqs))
	if len(faults) > 0 {
		var fs []string
		for f, n := range faults {
			fs = append(fs, fmt.Sprintf("%s=%d", f, n))
		}
		sort.Strings(fs)
		fmt.Fprintf(w, " (faults: %s)", strings.Join(fs, ", "))
	}
	fmt.Fprintf(w, "\nresources: %s\n", strings.Join(held, ", "))
	fmt.Fprintf(w, "duplicate identifiers: %d\n", len(srv.DuplicateIdentifiers()))
}

// logRequests logs each request's method, path (never the query, which
// carries identifiers), status and duration. A dropped connection is
// logged with status 0 before the abort continues.
func logRequests(next http.Handler, w io.Writer) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: rw}
		defer func() {
			mu.Lock()
			fmt.Fprintf(w, "%s %s %s %d %s\n", start.UTC().Format(time.RFC3339), r.Method, r.URL.Path, sw.status, time.Since(start).Round(time.Microsecond))
			mu.Unlock()
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
