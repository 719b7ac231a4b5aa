package adapter_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// connEngine builds an engine on a new outbox for srv with concurrency c.
// ehr.max_rate is set far above what the test sends, so that the pacer
// starts without slow start and C requests are in flight from the first
// batch on. hc is the base HTTP client (nil: the engine's default pooled
// transport, as in production).
func connEngine(t *testing.T, srv *fhirtest.Server, c int, hc *http.Client) *adapter.Engine {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := adapter.DefaultConfig()
	cfg.EHR.BaseURL = srv.URL
	cfg.EHR.MaxRate = 100000
	cfg.Sync.Concurrency = c
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	eng, err := adapter.New(cfg, st, adapter.Options{Logger: slog.New(slog.DiscardHandler), HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// syncAll ingests recs and syncs them all.
func syncAll(t *testing.T, eng *adapter.Engine, recs []*mapping.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := eng.Ingest(ctx, recs); err != nil {
		t.Fatal(err)
	}
	st, err := eng.Sync(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Synced != len(recs) {
		t.Fatalf("synced %d of %d records: %+v", st.Synced, len(recs), st)
	}
}

// TestSteadyStateOpensNoConnections: a sync at C = 16 with the engine's
// default transport keeps its connections alive. A first sync warms the
// pool; a second sync of 320 more records opens no new connection: the
// count of connections the EHR accepted does not grow beyond
// max(C, the count after warm-up) (issue #9).
//
// The warm-up itself may open a few more than C: Go's transport dials for
// a request that finds no idle connection, and when a connection frees up
// before the dial ends the request takes it and the dialed one joins the
// pool (which holds up to 2 x C).
func TestSteadyStateOpensNoConnections(t *testing.T) {
	t.Parallel()
	const c = 16
	srv := fhirtest.NewServer()
	t.Cleanup(srv.Close)
	// A little latency keeps C requests in flight at once.
	srv.SetLatency(5*time.Millisecond, 5*time.Millisecond)
	eng := connEngine(t, srv, c, nil)

	patients, scores := benchScores(t, 480)
	syncAll(t, eng, append(patients, scores[:160]...))
	warm := srv.Connections()
	if warm > 2*c {
		t.Errorf("warm-up opened %d connections for %d concurrent requests", warm, c)
	}
	before := len(srv.Requests())
	syncAll(t, eng, scores[160:])
	requests := len(srv.Requests()) - before
	got := srv.Connections()
	t.Logf("warm-up: %d connections; second batch: %d requests, %d new connections", warm, requests, got-warm)
	if got > max(c, warm) {
		t.Errorf("the second batch opened %d connections for %d requests (%d after warm-up), want none beyond C = %d",
			got-warm, requests, warm, c)
	}
	if requests < len(scores)-160 {
		t.Errorf("second batch: %d requests for %d records", requests, len(scores)-160)
	}
}

// TestTLSUsesHTTP2: against an EHR offering HTTP/2 over TLS, the engine's
// client speaks HTTP/2 (fhirtest.RequestLog.Proto) and multiplexes its C
// concurrent requests over one connection. The base client is a clone of
// http.DefaultTransport that trusts the test certificate, as a clinic with
// a private CA would configure it.
//
// One request (PingEHR) goes first: Go's transport does not know that a
// server speaks HTTP/2 until a TLS handshake has told it, so C requests
// that start together on a cold client dial C connections and close all
// but one once the first handshake ends (the EHR sees C connections
// accepted). The second part shows this start-up cost and that it is not
// paid again.
func TestTLSUsesHTTP2(t *testing.T) {
	t.Parallel()
	const c = 16
	for _, warm := range []bool{true, false} {
		srv := fhirtest.NewUnstartedServer()
		srv.StartTLS()
		t.Cleanup(srv.Close)
		srv.SetLatency(5*time.Millisecond, 5*time.Millisecond)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		eng := connEngine(t, srv, c, &http.Client{Transport: tr})
		if warm {
			if err := eng.PingEHR(context.Background()); err != nil {
				t.Fatal(err)
			}
		}

		patients, scores := benchScores(t, 320)
		syncAll(t, eng, append(patients, scores[:160]...))
		first := srv.Connections()
		syncAll(t, eng, scores[160:])
		reqs := srv.Requests()
		for _, r := range reqs {
			if r.Proto != "HTTP/2.0" {
				t.Fatalf("%s %s came over %s, want HTTP/2.0", r.Method, r.Path, r.Proto)
			}
		}
		conns := srv.Connections()
		t.Logf("warm=%v: %d requests over HTTP/2; connections accepted: %d after the first sync, %d after the second",
			warm, len(reqs), first, conns)
		switch {
		case conns != first:
			t.Errorf("warm=%v: the second sync opened %d connections", warm, conns-first)
		case warm && conns != 1:
			t.Errorf("warm=%v: %d connections for %d concurrent requests, want 1 (HTTP/2 multiplexes)", warm, conns, c)
		case conns > c:
			t.Errorf("warm=%v: %d connections for %d concurrent requests", warm, conns, c)
		}
	}
}
