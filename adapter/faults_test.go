package adapter_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
)

// TestSyncUnderFaults is DESIGN.md section 6's reliability bar against a
// faulty EHR: 30% of requests answered 429 or 503, 5% of connections
// dropped before processing and 5% of writes committed but their answer
// lost. Every record ends synced, every identifier is held exactly once,
// under every write strategy and every way of losing an answer (the
// connection closed, a 503, no answer at all).
func TestSyncUnderFaults(t *testing.T) {
	t.Parallel()
	recs := clinic(t, 3, 2)
	want := expectedResources(t, adapter.DefaultConfig(), recs)
	for _, strategy := range []string{"conditional-update", "conditional-create", "transaction"} {
		for _, mode := range []fhirtest.LoseMode{fhirtest.LoseDrop, fhirtest.Lose503, fhirtest.LoseHang} {
			t.Run(fmt.Sprintf("%s/lose-%s", strategy, mode), func(t *testing.T) {
				t.Parallel()
				h := syncSetup(t, func(c *adapter.Config) {
					c.EHR.WriteStrategy = map[string]string{"default": strategy}
					// Shorter waits than syncSetup's: about a third of
					// the requests fail, and the 429s keep the adaptive
					// limit near one request at a time.
					c.EHR.RetryWaitMax = adapter.Duration(20 * time.Millisecond)
					c.Sync.RetryMin = adapter.Duration(5 * time.Millisecond)
					c.Sync.RetryBackoffMax = adapter.Duration(100 * time.Millisecond)
					// An answer that never comes (LoseHang) is taken for
					// lost after 20ms once answers are timed, not after
					// ehr.timeout.
					c.EHR.AnswerTimeoutMin = adapter.Duration(20 * time.Millisecond)
				}, fhirtest.WithSeed(42))
				h.ehr.SetFailureRate(0.3, http.StatusTooManyRequests, http.StatusServiceUnavailable)
				h.ehr.SetDropRate(0.05)
				h.ehr.SetLoseRate(0.05, mode)

				h.ingest(recs...)
				stats := h.sync()
				if stats.Dead != 0 {
					t.Errorf("Sync under transient faults: %+v, want none dead", stats)
					for _, r := range h.rows(store.StateDead) {
						t.Logf("  dead %s row %d: %s", r.Kind, r.ID, r.ErrorClass)
					}
				}
				h.requireAllSynced(len(recs))
				h.requireCounts(want)
				h.requireNoDuplicates()

				// The faults did happen, lost answers of committed writes
				// included.
				faults := map[fhirtest.Fault]int{}
				for _, r := range h.ehr.Requests() {
					faults[r.Fault]++
				}
				lost := map[fhirtest.LoseMode]fhirtest.Fault{
					fhirtest.LoseDrop: fhirtest.FaultLoseDrop,
					fhirtest.Lose503:  fhirtest.FaultLose503,
					fhirtest.LoseHang: fhirtest.FaultLoseHang,
				}[mode]
				for _, f := range []fhirtest.Fault{fhirtest.FaultStatus, fhirtest.FaultDrop, lost} {
					if faults[f] == 0 {
						t.Errorf("no request had fault %q: %v", f, faults)
					}
				}
				t.Logf("%d requests, faults %v", len(h.ehr.Requests()), faults)

				// Once the faults are gone a new sync has nothing to do.
				h.ehr.ClearFaults()
				before := len(h.ehr.Requests())
				h.sync()
				if n := len(h.ehr.Requests()) - before; n != 0 {
					t.Errorf("a sync after everything was delivered sent %d requests", n)
				}
			})
		}
	}
}

// TestSyncRejectedByRule: the EHR's business rules (fhirtest.RejectWrites)
// refuse a score and one vital sign of an administration. Under either
// strategy those two rows end dead with the EHR's reason, every other row
// is synced, nothing is written twice; with transactions the Bundles that
// held them fail as a whole and their other rows are delivered on their
// own.
func TestSyncRejectedByRule(t *testing.T) {
	t.Parallel()
	recs := clinic(t, 3, 5)
	var score, admin *mapping.Record
	for _, r := range recs {
		switch {
		case score == nil && r.Kind == mapping.KindScore:
			score = r
		case admin == nil && r.Kind == mapping.KindAdministration && len(r.Administration.Vitals) > 0:
			admin = r
		}
	}
	if score == nil || admin == nil {
		t.Fatal("the clinic has no score or no administration with vital signs")
	}
	refused := []string{`"` + score.ID() + `"`, `"` + admin.ID() + `/vitals/1/hr"`}
	for _, strategy := range []string{"conditional-update", "transaction"} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			h := syncSetup(t, func(c *adapter.Config) {
				c.EHR.WriteStrategy = map[string]string{"default": strategy}
			})
			h.ehr.RejectWrites(func(_ string, resource []byte) string {
				for _, v := range refused {
					if bytes.Contains(resource, []byte(v)) {
						return "not accepted by the clinic's EHR rules"
					}
				}
				return ""
			})
			h.ingest(recs...)
			stats := h.sync()
			if stats.Dead != 2 || stats.Synced != len(recs)-2 {
				t.Errorf("Sync: %+v, want 2 dead and %d synced", stats, len(recs)-2)
			}
			for _, r := range []*mapping.Record{score, admin} {
				row := h.row(r.Kind, r.ID())
				if row.State != store.StateDead || row.ErrorClass != "http_422" ||
					!strings.Contains(row.ErrorDetail, "business-rule") || !strings.Contains(row.ErrorDetail, "not accepted by the clinic") {
					t.Errorf("%s row: %s class %q detail %q, want dead http_422 with the EHR's reason", r.Kind, row.State, row.ErrorClass, row.ErrorDetail)
				}
			}
			if n := total(h.counts(), store.StateSynced); n != len(recs)-2 {
				t.Errorf("%d rows synced, want %d", n, len(recs)-2)
			}
			h.requireNoDuplicates()
			sys := h.cfg.Mapping.Identifiers.Base
			if holders := h.ehr.IdentifierHolders(sys+"/score", score.ID()); len(holders) != 0 {
				t.Errorf("the refused score is in the EHR: %v", holders)
			}
			rejected := 0
			for _, q := range h.ehr.Requests() {
				if q.Fault == fhirtest.FaultRejected {
					rejected++
				}
			}
			if rejected == 0 {
				t.Error("the EHR refused nothing")
			}
		})
	}
}

// TestSyncRejected: a record the EHR rejects (422: its patient is gone
// from the EHR) goes to the dead letters with the EHR's diagnostics, the
// rest of the clinic is delivered, and once the cause is fixed a requeue
// delivers it exactly once.
func TestSyncRejected(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{"conditional-update", "transaction"} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			h := syncSetup(t, func(c *adapter.Config) {
				c.EHR.WriteStrategy = map[string]string{"default": strategy}
			})
			recs := clinic(t, 2, 4)
			// One more patient, who has no records yet.
			extra := clone(t, byKind(recs, mapping.KindPatient)[0])
			extra.Patient.MRN = "MRN9000001"
			extra.Patient.Family = "Abernathy"
			extra.Patient.Given = []string{"Wilhelmina"}
			extra.Patient.BirthDate = "1971-07-23"
			extra.Patient.Phone = "+1-617-555-0188"
			recs = append(recs, extra)
			h.ingest(recs...)
			h.sync()
			h.requireAllSynced(len(recs))

			// The EHR loses the extra patient (merged into another, say);
			// a score for that patient arrives.
			pRow := h.row(mapping.KindPatient, extra.ID())
			patientBody, _ := h.ehr.Get("Patient", pRow.EHRID)
			h.deleteInEHR("Patient", pRow.EHRID)
			var score *mapping.Record
			for _, s := range byKind(recs, mapping.KindScore) {
				if s.Score.AdminID == "" {
					score = clone(t, s)
					break
				}
			}
			score.Score.MRN = extra.Patient.MRN
			score.Score.ScoreID = "scr-extra-01"
			h.ingest(score)
			stats := h.sync()
			if stats.Dead != 1 || stats.Synced != 0 {
				t.Errorf("Sync of the rejected score: %+v, want 1 dead", stats)
			}
			row := h.row(mapping.KindScore, score.ID())
			if row.State != store.StateDead || row.ErrorClass != "http_422" {
				t.Fatalf("score for a patient gone from the EHR: %s class %q, want dead http_422", row.State, row.ErrorClass)
			}
			// The dead letter keeps the EHR's OperationOutcome, diagnostics
			// included.
			if !strings.Contains(row.ErrorDetail, `"status":422`) || !strings.Contains(row.ErrorDetail, "does not resolve") ||
				!strings.Contains(row.ErrorDetail, "Patient/"+pRow.EHRID) {
				t.Errorf("dead letter detail %q: want the status and the EHR's diagnostics", row.ErrorDetail)
			}
			if dead := h.rows(store.StateDead); len(dead) != 1 {
				t.Errorf("%d dead letters, want 1", len(dead))
			}
			c := h.counts()
			if n := total(c, store.StateSynced); n != len(recs) {
				t.Errorf("%d rows synced besides the rejected one, want %d", n, len(recs))
			}
			base := h.cfg.Mapping.Identifiers.Base + "/score"
			if holders := h.ehr.IdentifierHolders(base, score.ID()); len(holders) != 0 {
				t.Errorf("the rejected score is in the EHR: %v", holders)
			}

			// Requeueing without fixing the cause rejects it again.
			if n, err := h.st.RequeueAll(context.Background(), time.Now()); err != nil || n != 1 {
				t.Fatalf("RequeueAll: %d, %v", n, err)
			}
			if stats := h.sync(); stats.Dead != 1 {
				t.Errorf("Sync of the requeued, still rejected score: %+v, want 1 dead", stats)
			}

			// Fix: the EHR has the patient again. Requeue and sync.
			if _, err := h.ehr.Add(patientBody); err != nil {
				t.Fatalf("restoring the patient: %v", err)
			}
			if err := h.st.Requeue(context.Background(), row.ID, time.Now()); err != nil {
				t.Fatalf("Requeue: %v", err)
			}
			if stats := h.sync(); stats.Synced != 1 || stats.Dead != 0 {
				t.Errorf("Sync after the fix: %+v, want 1 synced", stats)
			}
			h.requireAllSynced(len(recs) + 1)
			if holders := h.ehr.IdentifierHolders(base, score.ID()); len(holders) != 1 {
				t.Errorf("the score is held by %v, want exactly one resource", holders)
			}
			h.requireCounts(expectedResources(t, h.cfg, append(recs, score)))
			h.requireNoDuplicates()
		})
	}
}

// TestDerivedFailureDoesNotHoldUpTheRest: when the EHR answers one of an
// administration's derived Observations with 503 and Retry-After, the
// attempt goes on to write the others, and the retry sends only the one
// that failed.
func TestDerivedFailureDoesNotHoldUpTheRest(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 1, 1)
	admin := adminWithVitals(t, recs, 2)
	derivedOf := func(rawQuery string) string {
		if v := identifierValue(rawQuery); strings.HasPrefix(v, admin.ID()+"/") {
			return v
		}
		return ""
	}
	var (
		mu     sync.Mutex
		failed string // the first derived write of the administration
	)
	h.sent.mu.Lock()
	h.sent.intercept = func(req *http.Request) *http.Response {
		v := derivedOf(req.URL.RawQuery)
		mu.Lock()
		defer mu.Unlock()
		if req.Method != http.MethodPut || v == "" || failed != "" {
			return nil
		}
		failed = v
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
			Header:  http.Header{"Retry-After": {"1"}, "Content-Type": {"application/fhir+json"}},
			Body:    io.NopCloser(strings.NewReader(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}`)),
			Request: req, ProtoMajor: 1, ProtoMinor: 1}
	}
	h.sent.mu.Unlock()

	h.syncAllOnce(recs)
	mu.Lock()
	defer mu.Unlock()
	if failed == "" {
		t.Fatal("no derived write of the administration was seen")
	}

	// The failed write, then at least one other derived write of the same
	// administration, then the retry of the failed one, once.
	var order []string
	for _, s := range h.sent.all() {
		if v := derivedOf(s.RawQuery); v != "" && s.Method == http.MethodPut {
			order = append(order, fmt.Sprintf("%s %d", v, s.Status))
		}
	}
	first, retry := -1, -1
	for i, o := range order {
		v, _, _ := strings.Cut(o, " ")
		if v != failed {
			continue
		}
		if first < 0 {
			first = i
		} else if retry < 0 {
			retry = i
		} else {
			t.Errorf("%s written a third time: %v", failed, order)
		}
	}
	if first < 0 || retry < 0 || !strings.HasSuffix(order[first], " 503") {
		t.Fatalf("want %s answered 503 then retried: %v", failed, order)
	}
	if retry-first < 2 {
		t.Errorf("the retry of %s came before any other derived write of the administration: %v", failed, order)
	}
	if retry != len(order)-1 {
		t.Errorf("derived writes after the retry of %s, want it last (the others were written already): %v", failed, order)
	}
}

// TestDerivedWritesAreConcurrent: an administration's derived resources
// are written at once, not one after the other. The first derived write of
// the administration is held until a second one arrives (at most 5 s):
// written one after the other, the second never comes while the first is
// held.
func TestDerivedWritesAreConcurrent(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 1, 1)
	admin := adminWithVitals(t, recs, 1)
	var (
		mu       sync.Mutex
		arrived  int
		second   = make(chan struct{})
		together bool
	)
	h.sent.mu.Lock()
	h.sent.intercept = func(req *http.Request) *http.Response {
		if req.Method != http.MethodPut || !strings.HasPrefix(identifierValue(req.URL.RawQuery), admin.ID()+"/") {
			return nil
		}
		mu.Lock()
		arrived++
		n := arrived
		mu.Unlock()
		switch n {
		case 1:
			select {
			case <-second:
				mu.Lock()
				together = true
				mu.Unlock()
			case <-time.After(5 * time.Second):
			}
		case 2:
			close(second)
		}
		return nil
	}
	h.sent.mu.Unlock()

	h.syncAllOnce(recs)
	mu.Lock()
	defer mu.Unlock()
	if arrived < 2 {
		t.Fatalf("%d derived writes of the administration, want at least 2", arrived)
	}
	if !together {
		t.Error("the second derived write came only after the first was answered: derived writes are sequential")
	}
}

// adminWithVitals returns the first administration of recs with at least n
// vital-sign sets.
func adminWithVitals(t *testing.T, recs []*mapping.Record, n int) *mapping.Record {
	t.Helper()
	for _, r := range byKind(recs, mapping.KindAdministration) {
		if len(r.Administration.Vitals) >= n {
			return r
		}
	}
	t.Fatalf("no administration with %d vital-sign sets in the clinic", n)
	return nil
}

// TestDependentsGoAfterPrimary checks that a score pointing at an
// administration is written once the MedicationAdministration is in the
// EHR, without waiting for the administration's vital signs: the first of
// them is held back here until the score arrives (or 5 s pass).
func TestDependentsGoAfterPrimary(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 1, 1)
	var admin, score *mapping.Record
	for _, s := range byKind(recs, mapping.KindScore) {
		for _, a := range byKind(recs, mapping.KindAdministration) {
			if a.ID() == s.Score.AdminID && len(a.Administration.Vitals) > 0 {
				admin, score = a, s
			}
		}
		if score != nil {
			break
		}
	}
	if score == nil {
		t.Fatal("no score of the clinic points at an administration with vital signs")
	}
	var (
		mu         sync.Mutex
		scoreSent  = make(chan struct{})
		held       bool // the first derived write was held
		scoreFirst bool // and the score came while it was
	)
	h.sent.mu.Lock()
	h.sent.intercept = func(req *http.Request) *http.Response {
		if req.Method != http.MethodPut {
			return nil
		}
		v := identifierValue(req.URL.RawQuery)
		switch {
		case v == score.ID():
			mu.Lock()
			select {
			case <-scoreSent:
			default:
				close(scoreSent)
			}
			mu.Unlock()
		case strings.HasPrefix(v, admin.ID()+"/"):
			mu.Lock()
			first := !held
			held = true
			mu.Unlock()
			if !first {
				return nil
			}
			select {
			case <-scoreSent:
				mu.Lock()
				scoreFirst = true
				mu.Unlock()
			case <-time.After(5 * time.Second):
			}
		}
		return nil
	}
	h.sent.mu.Unlock()

	h.syncAllOnce(recs)
	mu.Lock()
	defer mu.Unlock()
	if !held {
		t.Fatalf("no derived write of administration %s", admin.ID())
	}
	if !scoreFirst {
		t.Error("the score was sent only after the administration's vital signs were answered: it waited for more than the MedicationAdministration")
	}
}

// TestOutboxRetryResumes: an administration one of whose vital signs
// fails more often than ehr.retry_max allows goes back to the outbox;
// claimed again in the same run it writes only what was missing, not its
// MedicationAdministration and the other vital signs again.
func TestOutboxRetryResumes(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, func(c *adapter.Config) {
		c.EHR.RetryMax = 1
		c.EHR.RetryWaitMin = adapter.Duration(time.Millisecond)
	})
	recs := clinic(t, 1, 1)
	admin := adminWithVitals(t, recs, 2)
	var (
		mu     sync.Mutex
		puts   = map[string]int{} // identifier value -> PUTs that reached the EHR
		failed string             // the derived resource that fails
		fails  int
	)
	h.sent.mu.Lock()
	h.sent.intercept = func(req *http.Request) *http.Response {
		if req.Method != http.MethodPut {
			return nil
		}
		v := identifierValue(req.URL.RawQuery)
		if v == "" {
			v = req.URL.Path // an update by id
		}
		mu.Lock()
		defer mu.Unlock()
		if failed == "" && strings.HasPrefix(v, admin.ID()+"/") {
			failed = v
		}
		if v == failed && fails < 4 { // more than 1 + RetryMax tries: back to the outbox
			fails++
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
				Header:  http.Header{"Content-Type": {"application/fhir+json"}},
				Body:    io.NopCloser(strings.NewReader(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}`)),
				Request: req, ProtoMajor: 1, ProtoMinor: 1}
		}
		puts[v]++
		return nil
	}
	h.sent.mu.Unlock()

	h.syncAllOnce(recs)
	mu.Lock()
	defer mu.Unlock()
	if fails != 4 || puts[failed] != 1 {
		t.Fatalf("%s failed %d times and was written %d times, want 4 and 1", failed, fails, puts[failed])
	}
	if r := h.row(mapping.KindAdministration, admin.ID()); r.Attempts < 2 {
		t.Fatalf("the administration was claimed %d times, want at least 2 (it went back to the outbox)", r.Attempts)
	}
	for v, n := range puts {
		if n != 1 && (v == admin.ID() || strings.HasPrefix(v, admin.ID()+"/") || strings.Contains(v, "MedicationAdministration/")) {
			t.Errorf("%s was written %d times, want once: the retry from the outbox started over", v, n)
		}
	}
}
