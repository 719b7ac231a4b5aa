// Command gateway is a rate-limiting reverse proxy, as an EHR's API
// gateway puts in front of its FHIR server: a token bucket of -rate
// requests per second and -burst tokens, refusing a request that finds it
// empty with -status (and, if asked, a Retry-After) before it reaches the
// upstream. It is independent of fhirtest's own SetRateLimit (which
// answers 429 with a Retry-After of whole seconds and a burst of its
// caller's choosing), so that the adapter's pacer is measured against a
// limiter it was not written with (BENCHMARKS.md section 3.4).
//
// On SIGINT or SIGTERM it prints one line: the requests it saw, those it
// refused, and the requests per second it passed from the first request
// to the last passed one, against -rate.
//
// Usage:
//
//	ketamine-fhir ehr --addr 127.0.0.1:8098 --latency 50ms &
//	go run ./benchmarks/gateway -upstream http://127.0.0.1:8098 -rate 40 -burst 40 &
//	# point ehr.base_url at http://127.0.0.1:8099/fhir/R4 and sync
//
// benchmarks/gateway.sh runs the whole measurement.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8099", "`HOST:PORT` to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:8098", "`URL` of the FHIR server behind the gateway")
	rps := flag.Float64("rate", 40, "requests per second the bucket refills at")
	burst := flag.Int("burst", 40, "tokens the bucket holds (1: no burst, requests closer than 1/rate apart are refused)")
	retryAfter := flag.String("retry-after", "none", "Retry-After of a refusal: none, ceil (the seconds until a token, rounded up) or a number of seconds")
	status := flag.Int("status", http.StatusTooManyRequests, "HTTP status of a refusal (429, or 503 as nginx's limit_req)")
	flag.Parse()
	if err := run(*listen, *upstream, *rps, *burst, *retryAfter, *status); err != nil {
		log.Fatal(err)
	}
}

// counts is what the gateway saw. Times are Unix nanoseconds.
type counts struct {
	total, refused atomic.Int64
	first, last    atomic.Int64 // the first request, the last passed one answered
}

func run(listen, upstream string, rps float64, burst int, retryAfter string, status int) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-upstream %q: not an absolute URL", upstream)
	}
	if rps <= 0 || burst < 1 {
		return errors.New("-rate must be positive and -burst at least 1")
	}
	fixed := -1
	if retryAfter != "none" && retryAfter != "ceil" {
		if fixed, err = strconv.Atoi(retryAfter); err != nil || fixed < 0 {
			return fmt.Errorf("-retry-after %q: want none, ceil or a number of seconds", retryAfter)
		}
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	bucket := rate.NewLimiter(rate.Limit(rps), burst)
	var c counts
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.total.Add(1)
		c.first.CompareAndSwap(0, time.Now().UnixNano())
		res := bucket.Reserve()
		if d := res.Delay(); d > 0 {
			res.Cancel()
			c.refused.Add(1)
			switch {
			case retryAfter == "ceil":
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
			case fixed >= 0:
				w.Header().Set("Retry-After", strconv.Itoa(fixed))
			}
			w.WriteHeader(status)
			return
		}
		proxy.ServeHTTP(w, r)
		c.last.Store(time.Now().UnixNano())
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Printf("gateway at http://%s: %.0f requests/s, burst %d, refusals %d with Retry-After %s\n", ln.Addr(), rps, burst, status, retryAfter)
	select {
	case err := <-done:
		return err
	case <-stop:
	}
	srv.Close()
	total, refused := c.total.Load(), c.refused.Load()
	passed := total - refused
	span := time.Duration(c.last.Load() - c.first.Load()).Seconds()
	share, perSec := 0.0, 0.0
	if total > 0 {
		share = float64(refused) / float64(total)
	}
	if span > 0 {
		perSec = float64(passed) / span
	}
	fmt.Printf("requests %d, refused %d (%.2f%%), passed %d in %.1fs: %.2f/s = %.3f R\n",
		total, refused, 100*share, passed, span, perSec, perSec/rps)
	return nil
}
