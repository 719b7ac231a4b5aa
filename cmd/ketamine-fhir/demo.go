package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

func runDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "[flags]", stderr)
	patients := fs.Int("patients", 25, "patients in the sample clinic")
	seed := fs.Int64("seed", 1, "seed of the sample clinic and of the injected faults")
	faultRate := fs.Float64("fault-rate", 0.1, "share of EHR requests answered 429 or 503 (0 to 0.9)")
	loseRate := fs.Float64("lose-rate", 0.02, "share of EHR writes committed but answered with a dropped connection")
	dir := fs.String("dir", "", "folder for the records and the SQLite outbox (default: a new temporary folder, removed afterwards)")
	hold := fs.String("hold", "", "after the sync, keep serving the EHR and /metrics on this address (HOST:PORT) until interrupted")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 || *patients < 1 || *faultRate < 0 || *faultRate > 0.9 || *loseRate < 0 || *loseRate > 0.5 {
		fs.Usage()
		return exitUsage
	}
	work := *dir
	if work == "" {
		tmp, err := os.MkdirTemp("", "ketamine-fhir-demo-")
		if err != nil {
			fmt.Fprintf(stderr, "demo: %v\n", err)
			return exitFailed
		}
		defer os.RemoveAll(tmp)
		work = tmp
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailed
	}

	// 1. A sample clinic.
	recordsPath := filepath.Join(work, "records.ndjson")
	f, err := os.Create(recordsPath)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailed
	}
	n, err := synth.WriteNDJSON(f, synth.Options{Patients: *patients, Seed: *seed})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: writing sample records: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "1. generated %d local records for %d patients in %s\n", n, *patients, recordsPath)

	// 2. An EHR that fails now and then, as real ones do.
	ehr := fhirtest.NewServer(fhirtest.WithSeed(*seed))
	defer ehr.Close()
	if *faultRate > 0 {
		ehr.SetFailureRate(*faultRate, http.StatusTooManyRequests, http.StatusServiceUnavailable)
	}
	if *loseRate > 0 {
		ehr.SetLoseRate(*loseRate, fhirtest.LoseDrop)
	}
	fmt.Fprintf(stdout, "2. started the fhirtest EHR at %s (%.0f%% of requests answered 429/503, %.0f%% of writes lose their response)\n",
		ehr.URL, 100**faultRate, 100**loseRate)

	// 3. The embedded defaults, pointed at it.
	cfg := adapter.DefaultConfig()
	cfg.Store = "sqlite:" + filepath.Join(work, "outbox.db")
	cfg.EHR.BaseURL = ehr.URL
	cfg.EHR.RetryWaitMax = adapter.Duration(200 * time.Millisecond)
	cfg.Sync.RetryMin = adapter.Duration(50 * time.Millisecond)
	cfg.Sync.RetryBackoffMax = adapter.Duration(time.Second)
	cfg.Sync.PollInterval = adapter.Duration(50 * time.Millisecond)
	cfg.Sync.Deadline = adapter.Duration(5 * time.Minute)
	cfg.Log.Level = "error"
	env, code := setupWith(ctx, cfg, stderr, adapter.Options{})
	if env == nil {
		return code
	}
	defer env.close()

	st, err := importFiles(ctx, env.engine, []string{recordsPath}, nil, stderr, progressConfig{})
	if err != nil {
		fmt.Fprintf(stderr, "demo: import: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "3. imported them into the SQLite outbox: %d inserted, %d rejected\n", st.inserted, st.rejected)

	fmt.Fprintln(stdout, "4. synced:")
	code = syncAndReport(ctx, env, -1, progressConfig{}, stdout, stderr)

	// 5. What the EHR holds.
	fmt.Fprintln(stdout, "5. the EHR now holds:")
	counts := ehr.Counts()
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, t := range types {
		fmt.Fprintf(tw, "\t%s\t%d\t\n", t, counts[t])
	}
	tw.Flush()
	statuses := map[int]int{}
	faults := 0
	for _, r := range ehr.Requests() {
		statuses[r.Status]++
		if r.Fault != "" {
			faults++
		}
	}
	codes := make([]int, 0, len(statuses))
	for c := range statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	fmt.Fprintf(stdout, "   requests by status:")
	for _, c := range codes {
		fmt.Fprintf(stdout, " %d=%d", c, statuses[c])
	}
	fmt.Fprintf(stdout, " (%d injected faults)\n", faults)
	if dups := ehr.DuplicateIdentifiers(); len(dups) > 0 {
		fmt.Fprintf(stdout, "   DUPLICATES: %d identifiers are held by more than one resource\n", len(dups))
		code = exitFailed
	} else {
		fmt.Fprintln(stdout, "   no identifier is held twice: every record is in the EHR exactly once")
	}

	if *hold != "" {
		return holdDemo(ctx, *hold, ehr, env, stdout, stderr, code)
	}
	fmt.Fprintln(stdout, "Run `ketamine-fhir demo --hold 127.0.0.1:8091` to browse the EHR and /metrics afterwards.")
	return code
}

// holdDemo serves the EHR under /fhir/R4 and the metrics at /metrics on
// addr until ctx ends.
func holdDemo(ctx context.Context, addr string, ehr *fhirtest.Server, env *env, stdout, stderr io.Writer, code int) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "demo: --hold: %v\n", err)
		return exitUsage
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(env.reg, promhttp.HandlerOpts{}))
	mux.Handle(ehr.BasePath()+"/", ehr.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "serving the EHR at http://%s%s and metrics at http://%s/metrics; Ctrl-C to stop\n",
		ln.Addr(), ehr.BasePath(), ln.Addr())
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFailed
	}
	return code
}
