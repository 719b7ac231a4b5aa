package adapter_test

// BenchmarkPostgresInstances (issue #11): delivery throughput of 1, 2 and
// 4 instances sharing one PostgreSQL outbox, against fhirtest with 50 ms
// latency and against a rate limit. Each instance is an Engine with its
// own postgres.Store (its own pool, listener, owner and pacer), as a
// separate process would have; they run in this process, so they share
// its CPUs. latency50ms uses the default 8 workers per instance (a bound
// of 160 requests/s each), latency50ms-c2 two (40/s each), ratelimit100
// an EHR allowing 100 requests/s with ehr.max_rate 100. Results in
// BENCHMARKS.md:
//
//	go test ./adapter -run '^$' -bench PostgresInstances -benchtime 1x

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/postgres"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/pgtest"
)

func BenchmarkPostgresInstances(b *testing.B) {
	const rateLimit = 100 // requests per second the rate-limited EHR allows
	for _, sc := range []struct {
		name   string
		scores int
		ehr    func(*fhirtest.Server)
		tune   func(*adapter.Config)
	}{
		{"latency50ms", 1200, func(s *fhirtest.Server) { s.SetLatency(benchLatency, benchLatency) }, nil},
		// Two workers per instance: a latency bound (40 requests/s per
		// instance) low enough that the machine's CPU is not what limits
		// 4 instances, so the scaling of the outbox itself shows.
		{"latency50ms-c2", 400, func(s *fhirtest.Server) { s.SetLatency(benchLatency, benchLatency) },
			func(c *adapter.Config) { c.Sync.Concurrency = 2 }},
		{"ratelimit100", 600, func(s *fhirtest.Server) { s.SetRateLimit(rateLimit, 0) },
			func(c *adapter.Config) { c.EHR.MaxRate = rateLimit }},
	} {
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/instances=%d", sc.name, n), func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					r := runInstances(b, n, sc.scores, sc.ehr, sc.tune)
					b.ReportMetric(float64(sc.scores)/r.elapsed.Seconds(), "records/s")
					b.ReportMetric(float64(r.requests)/r.elapsed.Seconds(), "req/s")
					b.ReportMetric(100*float64(r.throttled)/float64(max(r.requests, 1)), "%429")
				}
			})
		}
	}
}

type instancesRun struct {
	elapsed             time.Duration
	requests, throttled int
}

// runInstances delivers the patients untimed with one instance, then
// times n instances delivering the scores (one Observation each).
func runInstances(b *testing.B, n, scores int, ehr func(*fhirtest.Server), tune func(*adapter.Config)) instancesRun {
	b.Helper()
	ctx := context.Background()
	dsn, _ := pgtest.Schema(b)
	srv := fhirtest.NewServer()
	defer srv.Close()
	cfg := adapter.DefaultConfig()
	cfg.EHR.BaseURL = srv.URL
	cfg.Store = dsn
	cfg.Postgres.Heartbeat = adapter.Duration(200 * time.Millisecond)
	cfg.Sync.PollInterval = adapter.Duration(time.Second) // notifications wake the instances
	if tune != nil {
		tune(cfg)
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	patients, recs := benchScores(b, scores)
	engines := make([]*adapter.Engine, n)
	for i := range engines {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		if engines[i], err = adapter.New(cfg, st, adapter.Options{Logger: slog.New(slog.DiscardHandler), Owner: fmt.Sprintf("bench-%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := engines[0].Ingest(ctx, patients); err != nil {
		b.Fatal(err)
	}
	if _, err := engines[0].Sync(ctx, time.Now().Add(5*time.Minute)); err != nil {
		b.Fatal(err)
	}
	if _, err := engines[0].Ingest(ctx, recs); err != nil {
		b.Fatal(err)
	}
	ehr(srv)
	before := len(srv.Requests())
	start := time.Now()
	b.StartTimer()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, e := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.Sync(ctx, start.Add(5*time.Minute))
		}()
	}
	wg.Wait()
	b.StopTimer()
	r := instancesRun{elapsed: time.Since(start)}
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range srv.Requests()[before:] {
		r.requests++
		if q.Status == http.StatusTooManyRequests {
			r.throttled++
		}
	}
	if got := srv.Count("Observation"); got != scores {
		b.Fatalf("EHR holds %d Observations, want %d", got, scores)
	}
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	counts, err := st.Counts(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if got := counts["score"][store.StateSynced]; got != scores {
		b.Fatalf("%d of %d score rows synced: %v", got, scores, counts)
	}
	return r
}
