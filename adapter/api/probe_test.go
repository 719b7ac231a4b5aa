package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/metrics"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// errQuery is a failure whose text holds a URL with a query (and so an
// MRN): it must reach neither /v1/status nor the log.
var errQuery = errors.New(`Get "https://ehr.example.org/fhir/Patient?identifier=MRN-PROBE-0001": connection refused`)

// TestEHRDownThenUp follows an EHR outage through /v1/status, the
// ketamine_fhir_ehr_up gauge, /readyz and the log.
func TestEHRDownThenUp(t *testing.T) {
	t.Parallel()
	e := setup(t)
	status := func() api.EHRStatus {
		t.Helper()
		var st api.Status
		decode(t, e.authed(http.MethodGet, "/v1/status", "", nil), &st)
		return st.EHR
	}
	metric := func() string {
		t.Helper()
		rec := e.do(http.MethodGet, "/metrics", "", nil)
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, "ketamine_fhir_ehr_up ") {
				return strings.TrimPrefix(l, "ketamine_fhir_ehr_up ")
			}
		}
		t.Fatalf("/metrics has no ketamine_fhir_ehr_up:\n%s", rec.Body)
		return ""
	}
	if got := metric(); got != "0" {
		t.Errorf("ketamine_fhir_ehr_up before the first probe = %s, want 0", got)
	}

	e.b.setPing(errQuery, false)
	e.prober.Probe(t.Context())
	st := status()
	if st.Reachable || st.ErrorClass != "error" || st.CheckedAt == nil || !st.CheckedAt.Equal(now) {
		t.Errorf("EHR down: status %+v", st)
	}
	if got := metric(); got != "0" {
		t.Errorf("EHR down: ketamine_fhir_ehr_up = %s, want 0", got)
	}
	if rec := e.do(http.MethodGet, "/readyz", "", nil); rec.Code != http.StatusOK {
		t.Errorf("EHR down: /readyz = %d, want 200 (records are still accepted)", rec.Code)
	}
	body := e.authed(http.MethodGet, "/v1/status", "", nil).Body.String()
	e.prober.Probe(t.Context()) // still down: logged once

	e.b.setPing(nil, false)
	e.prober.Probe(t.Context())
	if st := status(); !st.Reachable || st.ErrorClass != "" || st.CheckedAt == nil {
		t.Errorf("EHR back: status %+v", st)
	}
	if got := metric(); got != "1" {
		t.Errorf("EHR back: ketamine_fhir_ehr_up = %s, want 1", got)
	}

	var phi testutil.PHI
	phi.Values("MRN-PROBE-0001", "identifier=", "connection refused", "ehr.example.org")
	phi.Check(t, "/v1/status", body)
	phi.Check(t, "the log", e.log.String())
	var down, up int
	for _, l := range testutil.JSONLines(t, e.log.String()) {
		switch l["msg"] {
		case "the EHR does not answer; records are still accepted and stored":
			down++
			if l["class"] != "error" || l["level"] != "WARN" {
				t.Errorf("down line = %v", l)
			}
		case "the EHR answers":
			up++
		}
	}
	if down != 1 || up != 1 {
		t.Errorf("logged the outage %d times and the recovery %d times, want once each", down, up)
	}
}

func TestEHRProberClassify(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	p := api.NewEHRProber(func(context.Context) error { return errQuery }, api.ProberOptions{
		Classify: func(err error) string {
			if errors.Is(err, errQuery) {
				return "connection"
			}
			return "other"
		},
		Metrics: m,
		Logger:  testutil.JSONLogger(&testutil.Buffer{}),
	})
	if st := p.Status(); st.Reachable || st.CheckedAt != nil || st.ErrorClass != "" {
		t.Errorf("before the first probe: %+v", st)
	}
	if st := p.Probe(t.Context()); st.Reachable || st.ErrorClass != "connection" {
		t.Errorf("Probe = %+v, want class connection", st)
	}
	if got := promtest.ToFloat64(m.EHRUp); got != 0 {
		t.Errorf("gauge = %v", got)
	}
}

// TestEHRProberLoop runs the prober in a synctest bubble: it probes at
// once and every interval, stops with Stop (cutting a probe in flight
// short without recording it), and Stop is idempotent.
func TestEHRProberLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBackend()
		m := metrics.New(prometheus.NewRegistry())
		p := api.NewEHRProber(b.PingEHR, api.ProberOptions{
			Interval: 30 * time.Second, Timeout: 5 * time.Second,
			Metrics: m, Logger: testutil.JSONLogger(&testutil.Buffer{}),
		})
		p.Start(t.Context())
		p.Start(t.Context()) // a second Start does nothing
		synctest.Wait()
		if n := b.pingCount(); n != 1 {
			t.Fatalf("%d probes at start, want 1", n)
		}
		if st := p.Status(); !st.Reachable || promtest.ToFloat64(m.EHRUp) != 1 {
			t.Fatalf("after the first probe: %+v", st)
		}

		b.setPing(errQuery, false)
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if n := b.pingCount(); n != 1 {
			t.Fatalf("%d probes before the interval, want 1", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := p.Status(); b.pingCount() != 2 || st.Reachable || promtest.ToFloat64(m.EHRUp) != 0 {
			t.Fatalf("after the interval: %d probes, %+v", b.pingCount(), st)
		}
		downAt := *p.Status().CheckedAt

		b.setPing(nil, false)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if st := p.Status(); b.pingCount() != 3 || !st.Reachable || !st.CheckedAt.Equal(downAt.Add(30*time.Second)) {
			t.Fatalf("EHR back: %d probes, %+v", b.pingCount(), st)
		}

		// A probe in flight is cut short by Stop and not recorded.
		b.setPing(nil, true)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if b.pingCount() != 4 {
			t.Fatalf("%d probes, want the 4th in flight", b.pingCount())
		}
		if err := p.Stop(t.Context()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if st := p.Status(); !st.Reachable {
			t.Errorf("a probe cut short by Stop was recorded: %+v", st)
		}
		if err := p.Stop(t.Context()); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if b.pingCount() != 4 {
			t.Errorf("%d probes after Stop, want 4", b.pingCount())
		}
	})
}

// TestEHRProberStopsWithItsContext: the goroutine also ends when the
// context given to Start ends.
func TestEHRProberStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBackend()
		p := api.NewEHRProber(b.PingEHR, api.ProberOptions{Interval: time.Second, Logger: testutil.JSONLogger(&testutil.Buffer{})})
		ctx, cancel := context.WithCancel(t.Context())
		p.Start(ctx)
		time.Sleep(3500 * time.Millisecond)
		cancel()
		synctest.Wait() // the goroutine has returned, or the bubble would not be idle
		n := b.pingCount()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n != 4 || b.pingCount() != n {
			t.Errorf("%d probes in 3.5s, %d after the cancel; want 4 and no more", n, b.pingCount()-n)
		}
		if err := p.Stop(t.Context()); err != nil {
			t.Errorf("Stop after the context ended: %v", err)
		}
	})
}
