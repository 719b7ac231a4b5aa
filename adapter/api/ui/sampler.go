package ui

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/internal/ticker"
	"github.com/prometheus/client_golang/prometheus"
)

// SamplePoints is how many samples a Sampler keeps: one hour of minutes.
const SamplePoints = 60

// DefaultSampleInterval is the time between two samples.
const DefaultSampleInterval = time.Minute

// Point is the records delivered in one sampling interval ending At.
type Point struct {
	At        time.Time
	Delivered float64
}

// Sampler reads a cumulative count of delivered records (a Prometheus
// counter) every interval and keeps the increase of each interval in a
// ring of SamplePoints, for the overview's chart. It changes nothing in
// the delivery pipeline.
//
// Start runs it in a goroutine until Stop; its owner (serve) calls both.
// Sample takes one sample now (tests call it instead of waiting). The zero
// Sampler is not usable; use NewSampler.
type Sampler struct {
	src      func() (float64, error)
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu       sync.Mutex
	ring     [SamplePoints]Point
	n, next  int
	last     float64
	haveLast bool

	loop ticker.Loop
}

// SamplerOptions configures a Sampler.
type SamplerOptions struct {
	// Interval is the time between samples. Defaults to a minute.
	Interval time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Logger receives a line when reading the count fails. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// NewSampler returns a sampler of src, the cumulative count of delivered
// records (SyncedCounter in serve).
func NewSampler(src func() (float64, error), opts SamplerOptions) *Sampler {
	s := &Sampler{src: src, interval: opts.Interval, now: opts.Now, log: opts.Logger}
	if s.interval <= 0 {
		s.interval = DefaultSampleInterval
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Interval returns the time between samples.
func (s *Sampler) Interval() time.Duration { return s.interval }

// Sample reads the count now. The first read only sets the baseline; each
// later one adds a point with the increase since the previous read (a
// count that went down, a restarted counter, counts from zero).
func (s *Sampler) Sample() {
	v, err := s.src()
	if err != nil {
		s.log.Warn("console: reading the delivered-records count failed", "err", err)
		return
	}
	at := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.haveLast {
		s.last, s.haveLast = v, true
		return
	}
	d := v - s.last
	if d < 0 {
		d = v
	}
	s.last = v
	s.ring[s.next] = Point{At: at, Delivered: d}
	s.next = (s.next + 1) % SamplePoints
	if s.n < SamplePoints {
		s.n++
	}
}

// Points returns the kept points, oldest first.
func (s *Sampler) Points() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Point, 0, s.n)
	start := (s.next - s.n + SamplePoints) % SamplePoints
	for i := 0; i < s.n; i++ {
		out = append(out, s.ring[(start+i)%SamplePoints])
	}
	return out
}

// Start takes a sample now and then every interval until Stop or ctx
// ends. Starting a started Sampler does nothing.
func (s *Sampler) Start(ctx context.Context) {
	s.loop.Start(ctx, s.interval, func(context.Context) { s.Sample() })
}

// Stop ends the sampling goroutine and waits for it, or for ctx. Stopping
// a Sampler that is not running does nothing.
func (s *Sampler) Stop(ctx context.Context) error {
	if err := s.loop.Stop(ctx); err != nil {
		return fmt.Errorf("console sampler: stopping: %w", err)
	}
	return nil
}

// SyncedMetric is the counter of delivered records the console samples.
const SyncedMetric = "ketamine_fhir_records_synced_total"

// SyncedCounter returns a Sampler source that sums SyncedMetric over its
// labels in g (serve's registry). A registry without the metric counts 0.
func SyncedCounter(g prometheus.Gatherer) func() (float64, error) {
	return func() (float64, error) {
		mfs, err := g.Gather()
		if err != nil {
			return 0, fmt.Errorf("gathering %s: %w", SyncedMetric, err)
		}
		var sum float64
		for _, mf := range mfs {
			if mf.GetName() != SyncedMetric {
				continue
			}
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
		return sum, nil
	}
}
