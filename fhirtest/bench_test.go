package fhirtest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// vitalObservation is a heart-rate Observation like the adapter sends.
func vitalObservation(ident string) string {
	return `{"resourceType":"Observation","identifier":[{"system":"https://clinic.example.org/fhir/sid/administration-vitals","value":"` + ident + `"}],` +
		`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart Rate"}]},` +
		`"subject":{"reference":"Patient/p1"},"partOf":[{"reference":"MedicationAdministration/ma1"}],` +
		`"effectiveDateTime":"2024-01-02T10:15:00-05:00",` +
		`"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`
}

func benchSetup(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := NewUnstartedServer(opts...)
	mustAdd(tb, s, patientJSON("p1", "M1"))
	mustAdd(tb, s, `{"resourceType":"MedicationAdministration","id":"ma1","status":"completed",`+product+`,"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-02T09:00:00Z"}`)
	return s
}

// BenchmarkCreate measures simple writes through the HTTP handler: a
// conditional update (PUT Observation?identifier=...) that creates a new
// Observation each time, validation, indexing and referential integrity
// included. Run with -cpu 1 for the per-core rate.
func BenchmarkCreate(b *testing.B) {
	s := benchSetup(b)
	defer s.Close()
	h := s.Handler()
	bodies := make([]string, 1000)
	for i := range bodies {
		bodies[i] = vitalObservation(fmt.Sprint("A-", i, "-hr"))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ident := fmt.Sprint("A-", i, "-hr")
		body := bodies[i%len(bodies)]
		if i >= len(bodies) {
			body = vitalObservation(ident)
		}
		req := httptest.NewRequest("PUT", "http://fhir.test/fhir/R4/Observation?identifier="+
			url.QueryEscape("https://clinic.example.org/fhir/sid/administration-vitals|"+ident), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 201 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkCreateHTTP is BenchmarkCreate over loopback HTTP with 4
// concurrent clients (client and server share the CPUs).
func BenchmarkCreateHTTP(b *testing.B) {
	s := benchSetup(b)
	s.Start()
	defer s.Close()
	client := s.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 8
	var mu sync.Mutex
	next := 0
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= b.N {
					return
				}
				ident := fmt.Sprint("H-", i)
				req, _ := http.NewRequest("PUT", s.URL+"/Observation?identifier="+
					url.QueryEscape("https://clinic.example.org/fhir/sid/administration-vitals|"+ident), strings.NewReader(vitalObservation(ident)))
				req.Header.Set("Content-Type", "application/fhir+json")
				req.Header.Set("Prefer", "return=minimal")
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkSearchIdentifier measures a search by identifier among 20,000
// Observations.
func BenchmarkSearchIdentifier(b *testing.B) {
	s := benchSetup(b)
	defer s.Close()
	loadObservations(b, s, 20000)
	h := s.Handler()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ident := fmt.Sprint("L-", i%20000)
		req := httptest.NewRequest("GET", "http://fhir.test/fhir/R4/Observation?identifier="+
			url.QueryEscape("https://clinic.example.org/fhir/sid/administration-vitals|"+ident), nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"total":1`) {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// loadObservations adds n Observations with identifiers L-0... using both
// cores for validation.
func loadObservations(tb testing.TB, s *Server, n int) {
	tb.Helper()
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := s.Add([]byte(vitalObservation(fmt.Sprint("L-", i)))); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// heapAfterGC returns the live heap.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// measureBytesPerResource stores n Observations and returns the heap growth
// per resource and the average stored JSON size.
func measureBytesPerResource(tb testing.TB, n int) (perResource, jsonSize float64) {
	tb.Helper()
	s := benchSetup(tb, WithRequestLogLimit(0))
	defer s.Close()
	before := heapAfterGC()
	loadObservations(tb, s, n)
	after := heapAfterGC()
	if got := s.Count("Observation"); got != n {
		tb.Fatalf("Count = %d, want %d", got, n)
	}
	var total int
	s.store.mu.RLock()
	for _, r := range s.store.types["Observation"].byID {
		total += len(r.current().body)
	}
	s.store.mu.RUnlock()
	runtime.KeepAlive(s)
	return float64(after-before) / float64(n), float64(total) / float64(n)
}

// TestMemoryPerResource measures the heap each stored resource costs, JSON
// included, and holds it under a ceiling.
func TestMemoryPerResource(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("slow; not meaningful under -race")
	}
	const n = 20000
	per, js := measureBytesPerResource(t, n)
	t.Logf("%d Observations: %.0f heap bytes per resource (stored JSON %.0f bytes, overhead %.0f)", n, per, js, per-js)
	if per > 3*js+1500 {
		t.Errorf("%.0f bytes per resource for %.0f bytes of JSON: too much overhead", per, js)
	}
}

// TestMillionResources stores 1,000,000 Observations and checks the server
// still answers. It takes minutes; set FHIRTEST_MILLION=1 to run it.
func TestMillionResources(t *testing.T) {
	if os.Getenv("FHIRTEST_MILLION") == "" {
		t.Skip("set FHIRTEST_MILLION=1 to run")
	}
	const n = 1000000
	start := time.Now()
	s := benchSetup(t, WithRequestLogLimit(0))
	defer s.Close()
	before := heapAfterGC()
	loadObservations(t, s, n)
	loaded := time.Since(start)
	after := heapAfterGC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	t.Logf("%d Observations loaded in %v; heap %.0f MiB (%.0f bytes per resource), Sys %.0f MiB",
		n, loaded.Round(time.Second), float64(after)/(1<<20), float64(after-before)/n, float64(m.Sys)/(1<<20))
	h := s.Handler()
	for _, q := range []string{
		"/Observation?identifier=" + url.QueryEscape("https://clinic.example.org/fhir/sid/administration-vitals|L-999999"),
		"/Observation?patient=p1&_summary=count",
	} {
		st := time.Now()
		req := httptest.NewRequest("GET", "http://fhir.test/fhir/R4"+q, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Fatalf("%s: %d", q, w.Code)
		}
		t.Logf("%s: %v, %.80s", q, time.Since(st), w.Body.String())
	}
	if s.Count("Observation") != n {
		t.Errorf("Count = %d", s.Count("Observation"))
	}
}
