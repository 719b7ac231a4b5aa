// Command bareclient measures what a bare Go client reaches against an
// EHR with latency: C goroutines, each sending conditional PUTs of a small
// Patient one after the other over net/http's keep-alive pool, and prints
// the requests per second and their share of C / latency. It is the
// reference for the adapter's latency benchmark (BENCHMARKS.md section
// 2.5): what the EHR and the loopback allow, with no adapter.
//
// Usage:
//
//	ketamine-fhir ehr --addr 127.0.0.1:8099 --latency 50ms &
//	go run ./benchmarks/bareclient -base http://127.0.0.1:8099/fhir/R4 -c 1,8,16,32
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	base := flag.String("base", "http://127.0.0.1:8099/fhir/R4", "FHIR base `URL` of the EHR")
	cs := flag.String("c", "1,8,16,32", "comma-separated `concurrencies`")
	n := flag.Int("n", 60, "requests per goroutine")
	latency := flag.Duration("latency", 50*time.Millisecond, "the EHR's configured latency, for the bound C / latency")
	flag.Parse()
	for _, f := range strings.Split(*cs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "bareclient: -c: %q is not a concurrency\n", f)
			os.Exit(2)
		}
		rate, err := run(*base, c, *n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bareclient: C=%d: %v\n", c, err)
			os.Exit(1)
		}
		bound := float64(c) / latency.Seconds()
		fmt.Printf("C=%d: %.1f requests/s, %.3f of C / %v\n", c, rate, rate/bound, *latency)
	}
}

// run sends c x n conditional PUTs from c goroutines and returns the
// requests per second.
func run(base string, c, n int) (float64, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = c
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	run := time.Now().UnixNano() // identifiers new to the EHR on every run
	errs := make(chan error, c)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				id := fmt.Sprintf("bare-%d-%d-%d", run, g, i)
				body := `{"resourceType":"Patient","identifier":[{"system":"urn:bareclient","value":"` + id + `"}]}`
				u := base + "/Patient?identifier=" + url.QueryEscape("urn:bareclient|"+id)
				req, err := http.NewRequest(http.MethodPut, u, strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Content-Type", "application/fhir+json")
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					errs <- fmt.Errorf("PUT: status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(c*n) / time.Since(start).Seconds(), nil
}
