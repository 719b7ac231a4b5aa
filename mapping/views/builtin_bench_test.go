//go:build unix

package views_test

import (
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/views/builtin"
)

type benchLookup map[string]*mapping.Order

func (benchLookup) Reference(mapping.Kind, string) string { return "" }
func (l benchLookup) Order(id string) *mapping.Order      { return l[id] }

// BenchmarkBuiltinViews runs every built-in view over a generated clinic
// mapped as `ketamine-fhir map` writes it (200 patients, 17,821
// resources: the real mix of Patients, orders, administrations, vitals and
// scores), one resource at a time as `views run --builtin` does: read the
// resourceType, then run the views of that type. resources/s is per core
// (run it with -cpu 1) of wall time; resources/cpu-s divides by the
// process's user+system CPU time over the loop instead, which holds on a
// loaded machine where the wall clock does not; benchmarks/views.sh measures the whole command over
// 1,000,000 resources with its peak RSS.
//
//	go test ./mapping/views -run '^$' -bench BenchmarkBuiltinViews -cpu 1 -count 3
func BenchmarkBuiltinViews(b *testing.B) {
	m, err := mapping.NewMapper(mapping.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	lk := benchLookup{}
	var resources [][]byte
	err = synth.Generate(synth.Options{Patients: 200, Seed: 1}, func(rec *mapping.Record) error {
		if rec.Order != nil {
			lk[rec.Order.OrderID] = rec.Order
		}
		res, err := m.Map(rec, lk)
		for _, r := range res {
			resources = append(resources, r.JSON)
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	byType := map[string][]*views.View{}
	for _, v := range builtin.All() {
		byType[v.View.Resource()] = append(byType[v.View.Resource()], v.View)
	}
	rows := 0
	emit := func(views.Row) error { rows++; return nil }
	n := 0
	cpu0 := cpuTime(b)
	for b.Loop() {
		r := resources[n%len(resources)]
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(r, &head); err != nil {
			b.Fatal(err)
		}
		for _, v := range byType[head.ResourceType] {
			if err := v.Run(r, emit); err != nil {
				b.Fatal(err)
			}
		}
		n++
	}
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "resources/cpu-s")
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
