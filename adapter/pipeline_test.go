package adapter_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// TestSyncUnderCombinedFaults runs the pipeline against an EHR that rate
// limits, answers 30% of requests 429/503 and loses 5% of its answers
// after committing, all at once: every record ends in the EHR exactly once.
func TestSyncUnderCombinedFaults(t *testing.T) {
	t.Parallel()
	recs := clinic(t, 2, 7)
	want := expectedResources(t, adapter.DefaultConfig(), recs)
	h := syncSetup(t, func(c *adapter.Config) {
		c.EHR.RetryWaitMin = adapter.Duration(2 * time.Millisecond)
		c.EHR.RetryWaitMax = adapter.Duration(50 * time.Millisecond)
		c.Sync.Concurrency = 16
	}, fhirtest.WithSeed(11))
	// Below what the adapter sends even on a loaded machine (its slow
	// start begins at 64 requests/s), so the limit is hit.
	h.ehr.SetRateLimit(60, 3)
	h.ehr.SetRetryAfter(0)
	h.ehr.SetFailureRate(0.3, http.StatusTooManyRequests, http.StatusServiceUnavailable)
	h.ehr.SetLoseRate(0.05, fhirtest.LoseDrop)

	h.ingest(recs...)
	stats := h.sync()
	if stats.Dead != 0 || stats.Synced != len(recs) {
		t.Errorf("stats %+v, want %d synced and none dead", stats, len(recs))
	}
	h.requireAllSynced(len(recs))
	h.requireCounts(want)
	h.requireNoDuplicates()
	faults := map[fhirtest.Fault]int{}
	for _, r := range h.ehr.Requests() {
		faults[r.Fault]++
	}
	for _, f := range []fhirtest.Fault{fhirtest.FaultStatus, fhirtest.FaultLoseDrop, fhirtest.FaultRateLimit} {
		if faults[f] == 0 {
			t.Errorf("no request had fault %q: %v", f, faults)
		}
	}
}

// TestSyncStatsCountEveryOutcome: Stats counts waiting, retrying and dead
// outcomes with their reasons, not only synced ones.
func TestSyncStatsCountEveryOutcome(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, func(c *adapter.Config) {
		c.EHR.RetryMax = 0 // every 503 goes back to the outbox at once
	})
	recs := clinic(t, 1, 3)
	patient, order, admin, _ := oneSeries(t, recs)
	// The administration comes before its order: it waits for it.
	h.ingest(patient, admin)
	st, err := h.eng.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Synced != 1 || st.Waiting != 1 || st.Reasons[adapter.ClassDependencyMissing] != 1 {
		t.Errorf("stats %+v, want 1 synced and 1 waiting (dependency_missing)", st)
	}
	h.ehr.FailNext(1, http.StatusServiceUnavailable)
	h.ingest(order)
	st, err = h.eng.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Retrying != 1 || st.Reasons["http_503"] != 1 {
		t.Errorf("stats %+v, want the order retrying once for http_503", st)
	}
	st = h.sync()
	if st.Synced != 2 || st.Dead != 0 {
		t.Errorf("stats %+v, want the order and the administration synced", st)
	}
}

// TestSyncAuthorizationFailure: a 403 (a scope the EHR did not grant)
// pauses delivery instead of dead-lettering every record; the records
// stay queued with reason auth, Sync says so, and they go out once the
// EHR accepts the adapter again.
func TestSyncAuthorizationFailure(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 3, 5)
	h.ingest(recs...)
	h.ehr.SetFailureRate(1, http.StatusForbidden)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := h.eng.Sync(ctx, time.Time{})
	if !errors.Is(err, adapter.ErrAuthorization) {
		t.Fatalf("Sync error %v, want ErrAuthorization", err)
	}
	if st.Dead != 0 || total(h.counts(), store.StateDead) != 0 {
		t.Fatalf("%d dead letters after a 403: an authorization failure is not the records' fault", total(h.counts(), store.StateDead))
	}
	if st.Reasons[adapter.ClassAuth] == 0 {
		t.Errorf("stats %+v: no outcome with reason auth", st)
	}
	if got := h.eng.AuthPaused(); got == nil || !strings.Contains(got.Error(), "scopes") {
		t.Errorf("AuthPaused() = %v, want the 403 with what to check", got)
	}
	if d := h.eng.Delivery(); d.Paused != adapter.ClassAuth || !strings.Contains(d.PausedError, "scopes") {
		t.Errorf("Delivery() = %+v, want paused for auth", d)
	}
	queued := total(h.counts(), store.StatePending) + total(h.counts(), store.StateRetrying)
	if queued != len(recs) {
		t.Errorf("%d records queued after the 403, want all %d", queued, len(recs))
	}
	for _, r := range h.rows(store.StateRetrying) {
		if r.ErrorClass != adapter.ClassAuth {
			t.Errorf("retrying %s row: class %q, want auth", r.Kind, r.ErrorClass)
		}
	}
	// Only a few requests were spent finding out.
	if n := len(h.ehr.Requests()); n > 2*h.cfg.Sync.Concurrency {
		t.Errorf("%d requests to an EHR that answers 403, want at most %d", n, 2*h.cfg.Sync.Concurrency)
	}
	if strings.Count(h.logs.String(), "delivery paused") != 1 {
		t.Errorf("want exactly one 'delivery paused' log line; logs:\n%s", h.logs.String())
	}

	h.ehr.ClearFaults()
	st = h.sync()
	if st.Synced != len(recs) {
		t.Errorf("after the fix: %+v, want all %d synced", st, len(recs))
	}
	if h.eng.AuthPaused() != nil {
		t.Error("still paused after a successful sync")
	}
	h.requireAllSynced(len(recs))
}

// TestServeResumesAfterAuthorizationFailure: under Start, delivery pauses
// on a 403 and resumes by itself, probing one record at a time, once the
// EHR accepts the adapter again.
func TestServeResumesAfterAuthorizationFailure(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, func(c *adapter.Config) { c.Sync.AuthProbe = adapter.Duration(20 * time.Millisecond) })
	recs := clinic(t, 2, 9)
	h.ehr.SetFailureRate(1, http.StatusForbidden)
	h.ingest(recs...)
	h.eng.Start(context.Background())
	t.Cleanup(func() { h.eng.Stop(context.Background()) })
	waitFor(t, "the pause", func() bool { return h.eng.AuthPaused() != nil })
	time.Sleep(100 * time.Millisecond) // a few probes
	if n := total(h.counts(), store.StateDead); n != 0 {
		t.Fatalf("%d dead letters during an authorization pause", n)
	}
	h.ehr.ClearFaults()
	waitFor(t, "every record synced", func() bool { return total(h.counts(), store.StateSynced) == len(recs) })
	if h.eng.AuthPaused() != nil {
		t.Error("still paused after delivery resumed")
	}
	if err := h.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.requireNoDuplicates()
}

// observationStatus returns the status of the Observation holding an
// identifier value in the EHR.
func observationStatus(t *testing.T, h *syncHarness, value string) (string, bool) {
	t.Helper()
	holders := h.ehr.IdentifierHolders(h.cfg.Mapping.Identifiers.Base+"/administration-observation", value)
	if len(holders) == 0 {
		return "", false
	}
	id := strings.TrimPrefix(holders[0], "Observation/")
	body, ok := h.ehr.Get("Observation", id)
	if !ok {
		return "", false
	}
	var o struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatal(err)
	}
	return o.Status, true
}

// TestStaleDerivedObservations: an update that drops an administration's
// vitals and adverse events retires the Observations synced before, as
// sync.stale_derived says, and keeps the others current.
func TestStaleDerivedObservations(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"entered-in-error", "delete"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := syncSetup(t, func(c *adapter.Config) { c.Sync.StaleDerived = mode })
			var admin *mapping.Record
			recs := clinic(t, 3, 4)
			for _, r := range byKind(recs, mapping.KindAdministration) {
				if len(r.Administration.Vitals) > 0 && r.Administration.Status == "completed" {
					admin = r
					break
				}
			}
			if admin == nil {
				t.Fatal("no administration with vitals in the generated clinic")
			}
			h.ingest(recs...)
			h.sync()
			before := h.row(mapping.KindAdministration, admin.ID())
			if len(before.Derived) == 0 {
				t.Fatalf("the synced administration records no derived resources")
			}
			current := 0
			for _, k := range before.Derived {
				if st, ok := observationStatus(t, h, k[strings.LastIndex(k, "|")+1:]); ok && st != "entered-in-error" {
					current++
				}
			}
			if current != len(before.Derived) {
				t.Fatalf("%d of %d derived Observations current before the update", current, len(before.Derived))
			}

			upd := clone(t, admin)
			upd.Administration.Vitals = nil
			upd.Administration.AdverseEvents = nil
			upd.Administration.WeightKg = nil
			if upd.Administration.Dose.Unit == "mg/kg" {
				upd.Administration.Dose = mapping.Dose{Value: 35, Unit: "mg"}
			}
			h.ingest(upd)
			h.sync()
			after := h.row(mapping.KindAdministration, admin.ID())
			if len(after.Derived) != 0 {
				t.Errorf("after the update the row records derived %v, want none", after.Derived)
			}
			for _, k := range before.Derived {
				value := k[strings.LastIndex(k, "|")+1:]
				st, ok := observationStatus(t, h, value)
				switch mode {
				case "delete":
					if ok {
						t.Errorf("stale Observation %s still in the EHR (%s)", value, st)
					}
				default:
					if !ok || st != "entered-in-error" {
						t.Errorf("stale Observation %s: status %q (present %v), want entered-in-error", value, st, ok)
					}
				}
			}
			h.requireNoDuplicates()
		})
	}
}

// TestMappingConfigChangeResends: a corrected formulary display changes
// the FHIR of the orders and administrations of that product; the next
// sync sends exactly those, and a resync of unchanged FHIR sends nothing.
func TestMappingConfigChangeResends(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 4, 6)
	h.ingest(recs...)
	h.sync()

	// Resync with the same config: every row is compared, none sent.
	n, err := h.eng.Resync(context.Background(), "", time.Time{})
	if err != nil || n != len(recs) {
		t.Fatalf("Resync = %d, %v; want %d", n, err, len(recs))
	}
	before := len(h.ehr.Requests())
	st := h.sync()
	if st.Synced != len(recs) || st.Unchanged != len(recs) {
		t.Errorf("resync stats %+v, want all %d synced unchanged", st, len(recs))
	}
	if sent := len(h.ehr.Requests()) - before; sent != 0 {
		t.Errorf("a resync of unchanged FHIR sent %d requests", sent)
	}

	// A new engine on a corrected formulary.
	product := byKind(recs, mapping.KindOrder)[0].Order.Medication
	affected := 0
	for _, r := range recs {
		if r.Order != nil && r.Order.Medication == product {
			affected++
		}
	}
	cfg := *h.cfg
	cfg.Mapping.Formulary = map[string]mapping.Product{}
	for k, v := range h.cfg.Mapping.Formulary {
		cfg.Mapping.Formulary[k] = v
	}
	p := cfg.Mapping.Formulary[product]
	p.Display += " (corrected)"
	cfg.Mapping.Formulary[product] = p
	log := slog.New(slog.NewJSONHandler(h.logs, nil))
	eng, err := adapter.New(&cfg, h.outcomes, adapter.Options{Owner: "test-2", Logger: log, HTTPClient: h.ehr.Client()})
	if err != nil {
		t.Fatal(err)
	}
	before = len(h.ehr.Requests())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err = eng.Sync(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	resent := st.Synced - st.Unchanged
	if resent < affected || st.Synced != len(recs) {
		t.Errorf("after the formulary change: %+v; want all %d compared and at least the %d orders of the product sent", st, len(recs), affected)
	}
	var mr int
	for _, r := range h.ehr.Requests()[before:] {
		if strings.Contains(r.Path, "/MedicationRequest") && r.Method == http.MethodPut {
			mr++
		}
	}
	if mr != affected {
		t.Errorf("%d MedicationRequest writes after the change, want %d (the orders of the product)", mr, affected)
	}
	h.requireNoDuplicates()
}

// countingTransport counts the requests one process sends.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestLeaseRenewedWhileDelivering: a delivery that takes longer than
// sync.lease (a slow EHR, an administration with many Observations) keeps
// its rows: a second process syncing at the same time finds nothing to
// take over and sends nothing, and no lease expires.
func TestLeaseRenewedWhileDelivering(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, func(c *adapter.Config) {
		c.EHR.Timeout = adapter.Duration(time.Second)
		c.Sync.Lease = adapter.Duration(1500 * time.Millisecond)
	})
	recs := clinic(t, 1, 12)
	patient, order, admin, _ := oneSeries(t, recs)
	if len(admin.Administration.Vitals) == 0 {
		t.Fatal("the generated administration has no vitals")
	}
	series := []*mapping.Record{patient, order, admin}
	want := expectedResources(t, h.cfg, series)
	h.ingest(series...)
	// About 10 requests of 300 ms: the delivery outlasts the lease.
	h.ehr.SetLatency(300*time.Millisecond, 300*time.Millisecond)

	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	base := h.ehr.Client()
	counted := &countingTransport{next: base.Transport}
	hc := *base
	hc.Transport = counted
	other, err := adapter.New(h.cfg, h.outcomes, adapter.Options{Owner: "other-process", Logger: log, HTTPClient: &hc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := h.eng.Sync(ctx, time.Time{})
		done <- err
	}()
	// Once the first process's leases would have expired without renewal.
	time.Sleep(2 * time.Second)
	if _, err := other.Sync(ctx, time.Time{}); err != nil {
		t.Fatalf("second process: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("first process: %v", err)
	}
	h.requireAllSynced(len(series))
	h.requireCounts(want)
	h.requireNoDuplicates()
	if n := counted.n.Load(); n != 0 {
		t.Errorf("the second process sent %d requests: it took over rows whose delivery was under way", n)
	}
	for _, o := range h.outcomes.all() {
		if o.ErrorClass == "lease_expired" {
			t.Errorf("a row's lease expired while its delivery was under way")
		}
	}
	if strings.Contains(h.logs.String(), "lease lost") || strings.Contains(h.logs.String(), "rescued rows") {
		t.Errorf("logs show a lost or rescued lease")
	}
}

// flakyClaims is an outbox whose Claim fails a number of times first (a
// lost database connection).
type flakyClaims struct {
	store.Store
	fails atomic.Int32
}

func (f *flakyClaims) Claim(ctx context.Context, owner string, n int, now time.Time, lease time.Duration) ([]store.Record, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, errors.New("database is gone")
	}
	return f.Store.Claim(ctx, owner, n, now, lease)
}

// TestServeSurvivesStoreFailures: under Start, failing claims are logged
// and tried again; delivery goes on once the store answers.
func TestServeSurvivesStoreFailures(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 1, 13)
	h.ingest(recs...)
	flaky := &flakyClaims{Store: h.outcomes}
	flaky.fails.Store(3)
	log := slog.New(slog.NewJSONHandler(h.logs, nil))
	eng, err := adapter.New(h.cfg, flaky, adapter.Options{Owner: "flaky", Logger: log, HTTPClient: h.ehr.Client()})
	if err != nil {
		t.Fatal(err)
	}
	eng.Start(context.Background())
	t.Cleanup(func() { eng.Stop(context.Background()) })
	waitFor(t, "every record synced", func() bool { return total(h.counts(), store.StateSynced) == len(recs) })
	if n := strings.Count(h.logs.String(), "claiming work failed; trying again"); n != 3 {
		t.Errorf("%d logged claim failures, want 3", n)
	}
}
