package adapter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

// syncHarness is one engine wired to a fhirtest EHR and a SQLite outbox in
// a temporary file, with its logs captured.
type syncHarness struct {
	t    *testing.T
	ehr  *fhirtest.Server
	st   *sqlite.Store
	eng  *adapter.Engine
	cfg  *adapter.Config
	logs *testutil.Buffer
	sent *sentLog
	// outcomes are the outcomes the engine reported to the outbox.
	outcomes *outcomeRecorder

	mu  sync.Mutex
	phi testutil.PHI // names, MRNs, birth dates, phones and e-mails of ingested patients
}

// syncSetup starts a fhirtest EHR and an engine with short retry settings;
// tune adjusts the config before the engine is built. At cleanup it checks
// that neither the logs nor any error class or error text the engine
// reported to the outbox holds patient data (the PHI of every record given
// to ingest).
func syncSetup(t *testing.T, tune func(*adapter.Config), ehrOpts ...fhirtest.Option) *syncHarness {
	t.Helper()
	srv := fhirtest.NewServer(ehrOpts...)
	t.Cleanup(srv.Close)

	cfg := adapter.DefaultConfig()
	cfg.Store = "sqlite:" + filepath.Join(t.TempDir(), "outbox.db")
	cfg.EHR.BaseURL = srv.URL
	cfg.EHR.Timeout = adapter.Duration(5 * time.Second)
	// Answers are not taken for lost however slow (the race detector on
	// a busy machine makes some take seconds, and the tests that put a
	// proxy between the adapter and the EHR would see the abandoned
	// attempt as an error); TestSyncUnderFaults turns it on.
	cfg.EHR.AnswerTimeoutMin = 0
	cfg.EHR.RetryWaitMax = adapter.Duration(50 * time.Millisecond)
	cfg.Sync.RetryMin = adapter.Duration(10 * time.Millisecond)
	cfg.Sync.RetryBackoffMax = adapter.Duration(200 * time.Millisecond)
	cfg.Sync.PollInterval = adapter.Duration(10 * time.Millisecond)
	if tune != nil {
		tune(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	_, path, err := adapter.ParseStore(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("opening the outbox: %v", err)
	}
	t.Cleanup(func() { st.Close() })

	h := &syncHarness{t: t, ehr: srv, st: st, cfg: cfg, logs: &testutil.Buffer{}, sent: &sentLog{},
		outcomes: &outcomeRecorder{Store: st}}
	base := srv.Client()
	hc := *base
	hc.Transport = &recordingTransport{next: base.Transport, log: h.sent}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.eng, err = adapter.New(cfg, h.outcomes, adapter.Options{Logger: log, HTTPClient: &hc, Owner: "test"})
	if err != nil {
		t.Fatalf("adapter.New: %v", err)
	}
	t.Cleanup(h.checkNoPHI)
	return h
}

// clinic generates a synthetic clinic.
func clinic(t *testing.T, patients int, seed int64) []*mapping.Record {
	t.Helper()
	var recs []*mapping.Record
	err := synth.Generate(synth.Options{Patients: patients, Seed: seed}, func(r *mapping.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("synth.Generate: %v", err)
	}
	return recs
}

// ingest commits records through the engine and remembers their PHI.
func (h *syncHarness) ingest(recs ...*mapping.Record) []adapter.IngestResult {
	h.t.Helper()
	h.mu.Lock()
	for _, r := range recs {
		addPHI(&h.phi, r)
	}
	h.mu.Unlock()
	res, err := h.eng.Ingest(context.Background(), recs)
	if err != nil {
		h.t.Fatalf("Ingest: %v", err)
	}
	if len(res) != len(recs) {
		h.t.Fatalf("Ingest returned %d results for %d records", len(res), len(recs))
	}
	return res
}

// sync runs Sync to completion (bounded by a generous deadline).
func (h *syncHarness) sync() adapter.Stats {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stats, err := h.eng.Sync(ctx, time.Time{})
	if err != nil {
		h.t.Fatalf("Sync: %v", err)
	}
	if ctx.Err() != nil {
		for _, r := range h.rows(store.StateRetrying) {
			h.t.Logf("retrying %s row %d: attempts %d class %q: %s", r.Kind, r.ID, r.Attempts, r.ErrorClass, r.ErrorDetail)
		}
		h.t.Fatalf("Sync did not finish: %+v, outbox %v", stats, h.counts())
	}
	return stats
}

// syncAllOnce ingests recs, syncs them, and fails the test unless every
// one is synced and the EHR holds no identifier twice.
func (h *syncHarness) syncAllOnce(recs []*mapping.Record) {
	h.t.Helper()
	h.ingest(recs...)
	if stats := h.sync(); stats.Synced != len(recs) || stats.Dead != 0 {
		h.t.Fatalf("Sync stats %+v, want all %d synced", stats, len(recs))
	}
	h.requireNoDuplicates()
}

// row returns the outbox row of a record.
func (h *syncHarness) row(kind mapping.Kind, id string) store.Record {
	h.t.Helper()
	r, err := h.st.Get(context.Background(), string(kind), id)
	if err != nil {
		h.t.Fatalf("store.Get(%s): %v", kind, err)
	}
	return r
}

// counts returns the outbox rows per kind and state.
func (h *syncHarness) counts() store.Counts {
	h.t.Helper()
	c, err := h.st.Counts(context.Background())
	if err != nil {
		h.t.Fatalf("store.Counts: %v", err)
	}
	return c
}

// rows returns every outbox row in a state.
func (h *syncHarness) rows(state store.State) []store.Record {
	h.t.Helper()
	var out []store.Record
	var after int64
	for {
		page, err := h.st.List(context.Background(), state, after, 200)
		if err != nil {
			h.t.Fatalf("store.List: %v", err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].ID
	}
}

// requireAllSynced fails unless every one of n rows is synced.
func (h *syncHarness) requireAllSynced(n int) {
	h.t.Helper()
	synced := 0
	for kind, states := range h.counts() {
		for state, c := range states {
			if state != store.StateSynced && c > 0 {
				h.t.Errorf("%d %s rows are %s", c, kind, state)
				for _, r := range h.rows(state) {
					h.t.Logf("  row %d %s: class %q wait %s", r.ID, r.Kind, r.ErrorClass, r.WaitKind)
				}
			}
		}
		synced += states[store.StateSynced]
	}
	if synced != n {
		h.t.Errorf("%d rows synced, want %d", synced, n)
	}
}

// requireNoDuplicates fails if the EHR holds an identifier twice.
func (h *syncHarness) requireNoDuplicates() {
	h.t.Helper()
	for _, d := range h.ehr.DuplicateIdentifiers() {
		h.t.Errorf("duplicate: %v", d)
	}
}

// requireCounts fails unless the EHR holds exactly want resources per type.
func (h *syncHarness) requireCounts(want map[string]int) {
	h.t.Helper()
	got := h.ehr.Counts()
	for typ, n := range want {
		if got[typ] != n {
			h.t.Errorf("EHR holds %d %s, want %d", got[typ], typ, n)
		}
	}
	for typ, n := range got {
		if _, ok := want[typ]; !ok {
			h.t.Errorf("EHR holds %d unexpected %s", n, typ)
		}
	}
}

// writes returns the number of write requests the EHR received.
func writes(reqs []fhirtest.RequestLog) int {
	n := 0
	for _, r := range reqs {
		if r.Method != http.MethodGet {
			n++
		}
	}
	return n
}

// expectedResources maps records the way the engine will (with logical
// references, which do not change the count) and counts resources per type.
func expectedResources(t *testing.T, cfg *adapter.Config, recs []*mapping.Record) map[string]int {
	t.Helper()
	m, err := mapping.NewMapper(&cfg.Mapping)
	if err != nil {
		t.Fatal(err)
	}
	lk := ordersLookup{}
	for _, r := range recs {
		if r.Order != nil {
			lk[r.Order.OrderID] = r.Order
		}
	}
	out := map[string]int{}
	for _, r := range recs {
		res, err := m.Map(r, lk)
		if err != nil {
			t.Fatalf("mapping %s %s: %v", r.Kind, r.ID(), err)
		}
		for _, x := range res {
			out[x.Type]++
		}
	}
	return out
}

// ordersLookup is a Lookup that knows orders and refers to everything by
// identifier.
type ordersLookup map[string]*mapping.Order

func (ordersLookup) Reference(mapping.Kind, string) string { return "" }
func (l ordersLookup) Order(id string) *mapping.Order      { return l[id] }

// --- PHI checks --------------------------------------------------------

// addPHI adds the patient data of a record to p: MRN, birth date, phone
// and e-mail anywhere, names as whole words.
func addPHI(p *testutil.PHI, r *mapping.Record) {
	pt := r.Patient
	if pt == nil {
		return
	}
	p.Values(pt.MRN, pt.BirthDate, pt.Phone, pt.Email)
	p.Words(pt.Family)
	p.Words(pt.Given...)
}

// checkNoPHI scans the captured logs and every outbox row's error class.
func (h *syncHarness) checkNoPHI() {
	h.mu.Lock()
	defer h.mu.Unlock()
	phi := &h.phi
	if phi.Len() == 0 {
		return
	}
	if found := phi.Find(h.logs.String()); len(found) > 0 {
		h.t.Errorf("the logs hold patient data: %v", found)
	}
	// Every outcome the engine recorded: error classes always, and error
	// texts (Error() of the failures) unless they are the EHR's own
	// diagnostics of a rejection, which the dead-letter store keeps as
	// sent and never logs.
	for _, out := range h.outcomes.all() {
		if found := phi.Find(out.ErrorClass); len(found) > 0 {
			h.t.Errorf("error class %q holds patient data", out.ErrorClass)
		}
		if out.State == store.StateDead && strings.HasPrefix(out.ErrorDetail, `{"status":`) {
			continue
		}
		if found := phi.Find(out.ErrorDetail); len(found) > 0 {
			h.t.Errorf("a %s outcome's error text holds patient data (%d values): %s", out.State, len(found), out.ErrorClass)
		}
	}
}

// outcomeRecorder is the outbox as the engine sees it, keeping every
// outcome the engine reports.
type outcomeRecorder struct {
	store.Store
	mu       sync.Mutex
	outcomes []store.Outcome
}

func (r *outcomeRecorder) Finish(ctx context.Context, id int64, owner string, out store.Outcome, now time.Time) error {
	r.mu.Lock()
	r.outcomes = append(r.outcomes, out)
	r.mu.Unlock()
	return r.Store.Finish(ctx, id, owner, out, now)
}

func (r *outcomeRecorder) FinishMany(ctx context.Context, owner string, items []store.Completion, now time.Time) ([]error, error) {
	r.mu.Lock()
	for _, c := range items {
		r.outcomes = append(r.outcomes, c.Outcome)
	}
	r.mu.Unlock()
	return r.Store.FinishMany(ctx, owner, items, now)
}

func (r *outcomeRecorder) all() []store.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.outcomes)
}

// --- request capture ---------------------------------------------------

// sentRequest is a request the engine sent, as the client sent it.
type sentRequest struct {
	Method, Path, RawQuery, IfMatch, IfNoneExist string
	Status                                       int // 0 when no response
}

type sentLog struct {
	started atomic.Int64 // requests sent, answered or not
	mu      sync.Mutex
	reqs    []sentRequest // requests answered or failed
	// intercept, when set, may answer a request in the EHR's place (it
	// is then not sent); nil lets the request through.
	intercept func(*http.Request) *http.Response
}

func (l *sentLog) all() []sentRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// recordingTransport records the method, URL and conditional headers of
// every request (fhirtest's request log has no headers).
type recordingTransport struct {
	next http.RoundTripper
	log  *sentLog
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := rt.next
	if next == nil {
		next = http.DefaultTransport
	}
	rt.log.started.Add(1)
	rt.log.mu.Lock()
	intercept := rt.log.intercept
	rt.log.mu.Unlock()
	var resp *http.Response
	var err error
	if intercept != nil {
		resp = intercept(req)
	}
	if resp == nil {
		resp, err = next.RoundTrip(req)
	}
	s := sentRequest{Method: req.Method, Path: req.URL.Path, RawQuery: req.URL.RawQuery,
		IfMatch: req.Header.Get("If-Match"), IfNoneExist: req.Header.Get("If-None-Exist")}
	if err == nil {
		s.Status = resp.StatusCode
	}
	rt.log.mu.Lock()
	rt.log.reqs = append(rt.log.reqs, s)
	rt.log.mu.Unlock()
	return resp, err
}

// identifierValue returns the identifier value of a conditional request
// (PUT Type?identifier=sys|value or If-None-Exist), "" if none.
func identifierValue(rawQuery string) string {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return ""
	}
	tok := q.Get("identifier")
	if i := strings.LastIndex(tok, "|"); i >= 0 {
		return tok[i+1:]
	}
	return tok
}

// storedResource is the id, meta.versionId and a few elements of a
// resource the EHR holds.
type storedResource struct {
	ID   string `json:"id"`
	Meta struct {
		VersionID string `json:"versionId"`
	} `json:"meta"`
	Note []struct {
		Text string `json:"text"`
	} `json:"note"`
	ValueInteger *int `json:"valueInteger"`
}

func (h *syncHarness) stored(typ, id string) storedResource {
	h.t.Helper()
	body, ok := h.ehr.Get(typ, id)
	if !ok {
		h.t.Fatalf("the EHR has no %s/%s", typ, id)
	}
	var r storedResource
	if err := json.Unmarshal(body, &r); err != nil {
		h.t.Fatalf("reading %s/%s: %v", typ, id, err)
	}
	return r
}

func hasNote(r storedResource, text string) bool {
	for _, n := range r.Note {
		if n.Text == text {
			return true
		}
	}
	return false
}

// deleteInEHR deletes Type/id in the EHR behind the engine's back.
func (h *syncHarness) deleteInEHR(typ, id string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodDelete, h.ehr.URL+"/"+typ+"/"+id, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := h.ehr.Client().Do(req)
	if err != nil {
		h.t.Fatalf("DELETE %s: %v", typ, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		h.t.Fatalf("DELETE %s/%s: %d", typ, id, resp.StatusCode)
	}
}

// byKind returns the records of one kind.
func byKind(recs []*mapping.Record, kind mapping.Kind) []*mapping.Record {
	var out []*mapping.Record
	for _, r := range recs {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// clone copies a record through its canonical JSON, so that a test may
// change it without touching the original.
func clone(t *testing.T, r *mapping.Record) *mapping.Record {
	t.Helper()
	data, err := r.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	c, err := mapping.NewParser(nil, nil).Parse(data, 0)
	if err != nil {
		t.Fatalf("re-parsing a %s record: %v", r.Kind, err)
	}
	return c
}

// --- 1. a whole clinic -------------------------------------------------

func TestSyncClinic(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	const patients = 10
	recs := clinic(t, patients, 1)
	want := expectedResources(t, h.cfg, recs)

	for _, r := range h.ingest(recs...) {
		if r.Outcome != store.Inserted {
			t.Fatalf("first ingest of %s: %s, want inserted", r.Kind, r.Outcome)
		}
	}
	stats := h.sync()
	if stats.Synced != len(recs) || stats.Dead != 0 {
		t.Errorf("Sync stats %+v, want %d synced and none dead", stats, len(recs))
	}
	h.requireAllSynced(len(recs))
	h.requireCounts(want)
	h.requireNoDuplicates()
	if want["Patient"] != patients || want["Observation"] <= len(byKind(recs, mapping.KindScore)) {
		t.Errorf("expected resources %v: want %d patients and derived Observations", want, patients)
	}

	// Every row knows its EHR resource, and the resource holds the row's
	// identifier. Its history has the attempt, whose request id the EHR
	// received.
	received := map[string]int{}
	for _, q := range h.ehr.Requests() {
		received[q.RequestID]++
	}
	for _, r := range h.rows(store.StateSynced) {
		if r.EHRID == "" || r.EHRVersion == "" || r.SyncedHash != r.Hash {
			t.Errorf("synced %s row %d: EHRID %q version %q synced hash matches %v", r.Kind, r.ID, r.EHRID, r.EHRVersion, r.SyncedHash == r.Hash)
		}
		hist, err := h.st.History(context.Background(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 1 || hist[0].State != store.StateSynced || hist[0].EHRID != r.EHRID || hist[0].Attempt != 1 {
			t.Errorf("%s row %d: history %+v, want one synced attempt with EHR id %s", r.Kind, r.ID, hist, r.EHRID)
		} else if id := hist[0].RequestID; len(id) != 16 || received[id] == 0 {
			t.Errorf("%s row %d: request id %q, received by the EHR %d times; want 16 hex digits the EHR saw", r.Kind, r.ID, id, received[id])
		}
	}
	o := byKind(recs, mapping.KindOrder)[0]
	row := h.row(mapping.KindOrder, o.ID())
	holders := h.ehr.IdentifierHolders(h.cfg.Mapping.Identifiers.Base+"/order", o.ID())
	if len(holders) != 1 || holders[0] != "MedicationRequest/"+row.EHRID {
		t.Errorf("order identifier held by %v, want [MedicationRequest/%s]", holders, row.EHRID)
	}

	// Re-running sends nothing: unchanged records are not sent again.
	before := h.ehr.Requests()
	if stats := h.sync(); stats.Synced+stats.Retrying+stats.Waiting+stats.Dead != 0 {
		t.Errorf("second Sync stats %+v, want zero", stats)
	}
	after := h.ehr.Requests()
	if len(after) != len(before) {
		t.Errorf("a second Sync sent %d requests (%d writes), want none", len(after)-len(before), writes(after)-writes(before))
	}
	// Re-ingesting the same records changes nothing.
	for _, r := range h.ingest(recs...) {
		if r.Outcome != store.Unchanged {
			t.Fatalf("re-ingest of %s: %s, want unchanged", r.Kind, r.Outcome)
		}
	}
	h.sync()
	if n := len(h.ehr.Requests()); n != len(before) {
		t.Errorf("Sync after an unchanged re-ingest sent %d requests, want none", n-len(before))
	}
	if !h.eng.LastSync().After(time.Time{}) {
		t.Error("LastSync is zero after a sync")
	}
}

// TestSyncTransactionAnswers: a transaction asks for no resources back
// (Prefer: return=minimal) and takes each row's EHR id from its entry's
// response.location. An EHR whose answer has no location and no resource
// for an entry costs that row one more write of its primary resource, by
// its identifier, which gives the id: the row is still synced with it, and
// nothing is written twice.
func TestSyncTransactionAnswers(t *testing.T) {
	t.Parallel()
	recs := clinic(t, 3, 1)
	for _, stripped := range []bool{false, true} {
		t.Run(fmt.Sprintf("locations-stripped=%v", stripped), func(t *testing.T) {
			t.Parallel()
			h := syncSetup(t, func(c *adapter.Config) {
				c.EHR.WriteStrategy = map[string]string{"default": "transaction"}
			})
			want := expectedResources(t, h.cfg, recs)
			var bundles, echoed atomic.Int64
			next := h.ehr.Client().Transport
			h.sent.intercept = func(req *http.Request) *http.Response {
				if req.Method != http.MethodPost || strings.Trim(req.URL.Path, "/") != strings.Trim(h.ehr.BasePath(), "/") {
					return nil
				}
				bundles.Add(1)
				if req.Header.Get("Prefer") != "return=minimal" {
					t.Errorf("transaction sent with Prefer %q, want return=minimal", req.Header.Get("Prefer"))
				}
				resp, err := next.RoundTrip(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					return resp
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
				}
				var b map[string]any
				if err := json.Unmarshal(body, &b); err != nil {
					// This runs on the client's goroutine: no Fatal here.
					t.Errorf("transaction answer: %v", err)
					resp.Body = io.NopCloser(bytes.NewReader(body))
					return resp
				}
				entries, _ := b["entry"].([]any)
				for _, raw := range entries {
					e, _ := raw.(map[string]any)
					if _, ok := e["resource"]; ok {
						echoed.Add(1)
					}
					if stripped {
						delete(e, "resource")
						if r, ok := e["response"].(map[string]any); ok {
							delete(r, "location")
						}
					}
				}
				body, _ = json.Marshal(b)
				resp.Body = io.NopCloser(bytes.NewReader(body))
				resp.ContentLength = int64(len(body))
				resp.Header.Del("Content-Length")
				return resp
			}
			h.ingest(recs...)
			if stats := h.sync(); stats.Synced != len(recs) {
				t.Errorf("Sync stats %+v, want %d synced", stats, len(recs))
			}
			h.requireAllSynced(len(recs))
			h.requireCounts(want)
			h.requireNoDuplicates()
			for _, r := range h.rows(store.StateSynced) {
				if r.EHRID == "" {
					t.Errorf("synced %s row %d has no EHR id", r.Kind, r.ID)
				}
			}
			if bundles.Load() == 0 {
				t.Fatal("no transaction was sent")
			}
			if n := echoed.Load(); n != 0 {
				t.Errorf("the EHR echoed %d resources in transaction answers, want none", n)
			}
			// Requests other than the transactions: none when the answers
			// give every location; one write of the primary resource per
			// row otherwise.
			others := 0
			for _, q := range h.sent.all() {
				if q.Method != http.MethodPost || q.RawQuery != "" || q.IfNoneExist != "" {
					others++
				}
			}
			if !stripped && others != 0 {
				t.Errorf("%d requests beside the transactions, want none", others)
			}
			if stripped && others != len(recs) {
				t.Errorf("%d requests beside the transactions, want %d (one per row)", others, len(recs))
			}
		})
	}
}

// TestSyncTransactionPatientsGoAtOnce: with transactions, a patient's row
// can never share its Bundle (a patient is its own group and has one row),
// so it goes at once instead of after ehr.transaction_linger, which here is
// an hour: the sync of the patients alone ends long before it.
func TestSyncTransactionPatientsGoAtOnce(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, func(c *adapter.Config) {
		c.EHR.WriteStrategy = map[string]string{"default": "transaction"}
		c.EHR.TransactionLinger = adapter.Duration(time.Hour)
	})
	patients := byKind(clinic(t, 5, 1), mapping.KindPatient)
	h.ingest(patients...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stats, err := h.eng.Sync(ctx, time.Time{})
	if err != nil || ctx.Err() != nil || stats.Synced != len(patients) {
		t.Fatalf("Sync: %+v, %v (context: %v); want %d patients synced well within the hour of linger", stats, err, ctx.Err(), len(patients))
	}
	h.requireAllSynced(len(patients))
	h.requireNoDuplicates()
}

// --- 2. updates --------------------------------------------------------

func TestSyncUpdates(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 2, 3)
	h.ingest(recs...)
	h.sync()
	h.requireAllSynced(len(recs))

	order := clone(t, byKind(recs, mapping.KindOrder)[0])
	admin := clone(t, byKind(recs, mapping.KindAdministration)[0])
	var score *mapping.Record
	for _, r := range byKind(recs, mapping.KindScore) {
		if r.Score.Instrument == "PHQ-9" && len(r.Score.Items) == 9 {
			score = clone(t, r)
			break
		}
	}
	if score == nil {
		t.Fatal("no PHQ-9 score with items in the clinic")
	}
	order.Order.Note = "Reviewed: dose confirmed"
	admin.Administration.Note = "Tolerated well; observed 40 minutes"
	// Change one item and the total with it.
	if score.Score.Items[0] < 3 {
		score.Score.Items[0]++
		score.Score.Total++
	} else {
		score.Score.Items[0]--
		score.Score.Total--
	}

	type target struct {
		rec  *mapping.Record
		typ  string
		row  store.Record
		note string
	}
	targets := []*target{
		{rec: order, typ: "MedicationRequest", note: order.Order.Note},
		{rec: admin, typ: "MedicationAdministration", note: admin.Administration.Note},
		{rec: score, typ: "Observation"},
	}
	for _, tg := range targets {
		tg.row = h.row(tg.rec.Kind, tg.rec.ID())
		if tg.row.EHRVersion != "1" {
			t.Fatalf("%s synced at version %q, want 1", tg.typ, tg.row.EHRVersion)
		}
	}
	sentBefore := len(h.sent.all())
	for i, res := range h.ingest(order, admin, score) {
		if res.Outcome != store.Updated {
			t.Errorf("re-ingest of changed %s: %s, want updated", targets[i].typ, res.Outcome)
		}
	}
	stats := h.sync()
	if stats.Synced != 3 {
		t.Errorf("Sync after the changes: %+v, want 3 synced", stats)
	}
	sent := h.sent.all()[sentBefore:]
	for _, tg := range targets {
		row := h.row(tg.rec.Kind, tg.rec.ID())
		if row.State != store.StateSynced || row.EHRID != tg.row.EHRID || row.EHRVersion != "2" {
			t.Errorf("%s after update: state %s id %q version %q, want synced %q version 2", tg.typ, row.State, row.EHRID, row.EHRVersion, tg.row.EHRID)
		}
		res := h.stored(tg.typ, tg.row.EHRID)
		if res.Meta.VersionID != "2" {
			t.Errorf("%s/%s meta.versionId %q, want 2", tg.typ, tg.row.EHRID, res.Meta.VersionID)
		}
		if tg.note != "" && !hasNote(res, tg.note) {
			t.Errorf("%s/%s does not hold the new note", tg.typ, tg.row.EHRID)
		}
		if tg.rec.Score != nil && (res.ValueInteger == nil || *res.ValueInteger != tg.rec.Score.Total) {
			t.Errorf("Observation/%s value %v, want %d", tg.row.EHRID, res.ValueInteger, tg.rec.Score.Total)
		}
		// The update went by id, with If-Match on the synced version,
		// and no conditional write of the primary resource was needed.
		byID := 0
		for _, s := range sent {
			if s.Method == http.MethodPut && strings.HasSuffix(s.Path, "/"+tg.typ+"/"+tg.row.EHRID) {
				byID++
				if s.RawQuery != "" || s.IfMatch != `W/"1"` || s.Status != http.StatusOK {
					t.Errorf("PUT %s by id: query %q If-Match %q status %d, want no query, W/\"1\", 200", tg.typ, s.RawQuery, s.IfMatch, s.Status)
				}
			}
			if identifierValue(s.RawQuery) == tg.rec.ID() {
				t.Errorf("the update of %s also wrote conditionally (%s ?%s)", tg.typ, s.Method, s.RawQuery)
			}
		}
		if byID != 1 {
			t.Errorf("%d PUTs of %s/%s by id, want 1", byID, tg.typ, tg.row.EHRID)
		}
	}
	h.requireNoDuplicates()
	h.requireCounts(expectedResources(t, h.cfg, recs))

	// 412: someone else updates the order behind the engine's back; the
	// engine re-reads the version and delivers ours.
	orderID := targets[0].row.EHRID
	body, _ := h.ehr.Get("MedicationRequest", orderID)
	if _, err := h.ehr.Add(body); err != nil {
		t.Fatalf("updating the order in the EHR: %v", err)
	}
	if v := h.stored("MedicationRequest", orderID).Meta.VersionID; v != "3" {
		t.Fatalf("the EHR's own update made version %q, want 3", v)
	}
	order = clone(t, order)
	order.Order.Note = "Reviewed again: continue"
	sentBefore = len(h.sent.all())
	if res := h.ingest(order); res[0].Outcome != store.Updated {
		t.Fatalf("re-ingest: %s", res[0].Outcome)
	}
	if stats := h.sync(); stats.Synced != 1 || stats.Dead != 0 {
		t.Errorf("Sync after a concurrent update: %+v, want 1 synced", stats)
	}
	row := h.row(mapping.KindOrder, order.ID())
	res := h.stored("MedicationRequest", orderID)
	if row.State != store.StateSynced || row.EHRID != orderID || row.EHRVersion != "4" || res.Meta.VersionID != "4" || !hasNote(res, order.Order.Note) {
		t.Errorf("after the 412: row %s id %q version %q; EHR version %q, note delivered %v; want synced, same id, version 4",
			row.State, row.EHRID, row.EHRVersion, res.Meta.VersionID, hasNote(res, order.Order.Note))
	}
	var seq []string
	for _, s := range h.sent.all()[sentBefore:] {
		seq = append(seq, s.Method+" "+s.IfMatch+" "+http.StatusText(s.Status))
	}
	wantSeq := []string{`PUT W/"2" Precondition Failed`, `GET  OK`, `PUT W/"3" OK`}
	if !slices.Equal(seq, wantSeq) {
		t.Errorf("requests after the concurrent update:\n got %q\nwant %q", seq, wantSeq)
	}
	h.requireNoDuplicates()
}

// --- 3. dependency order -----------------------------------------------

// oneSeries returns a patient, an order of that patient, an administration
// of that order and a score that names that administration.
func oneSeries(t *testing.T, recs []*mapping.Record) (patient, order, admin, score *mapping.Record) {
	t.Helper()
	for _, s := range byKind(recs, mapping.KindScore) {
		if s.Score.AdminID == "" {
			continue
		}
		for _, a := range byKind(recs, mapping.KindAdministration) {
			if a.Administration.AdminID != s.Score.AdminID {
				continue
			}
			for _, o := range byKind(recs, mapping.KindOrder) {
				if o.Order.OrderID != a.Administration.OrderID {
					continue
				}
				for _, p := range byKind(recs, mapping.KindPatient) {
					if p.Patient.MRN == o.Order.MRN {
						return p, o, a, s
					}
				}
			}
		}
	}
	t.Fatal("no score with an administration in the clinic")
	return
}

func TestSyncDependencyOrder(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 1, 5)
	patient, order, admin, score := oneSeries(t, recs)

	// The administration and its score arrive first: they wait, they do
	// not fail.
	h.ingest(admin, score)
	stats := h.sync()
	if stats.Synced != 0 || stats.Dead != 0 {
		t.Errorf("Sync with nothing deliverable: %+v", stats)
	}
	for _, r := range []*mapping.Record{admin, score} {
		row := h.row(r.Kind, r.ID())
		if row.State != store.StateWaiting || row.ErrorClass != adapter.ClassPatientUnknown || row.WaitKind != "patient" {
			t.Errorf("%s without its patient: %s class %q waiting for %q, want waiting %s for patient",
				r.Kind, row.State, row.ErrorClass, row.WaitKind, adapter.ClassPatientUnknown)
		}
	}
	if w := writes(h.ehr.Requests()); w != 0 {
		t.Errorf("%d writes before any dependency was known", w)
	}

	// The patient arrives: the administration now waits for its order,
	// which the adapter has not received; the score for the administration.
	h.ingest(patient)
	h.sync()
	if row := h.row(mapping.KindPatient, patient.ID()); row.State != store.StateSynced {
		t.Fatalf("patient: %s (%s)", row.State, row.ErrorClass)
	}
	if row := h.row(mapping.KindAdministration, admin.ID()); row.State != store.StateWaiting ||
		row.ErrorClass != adapter.ClassDependencyMissing || row.WaitKind != "order" || row.WaitID != order.ID() {
		t.Errorf("administration without its order: %s class %q waiting for %s %q, want waiting %s for order %q",
			row.State, row.ErrorClass, row.WaitKind, row.WaitID, adapter.ClassDependencyMissing, order.ID())
	}
	if row := h.row(mapping.KindScore, score.ID()); row.State != store.StateWaiting ||
		row.ErrorClass != adapter.ClassDependencyPending || row.WaitKind != "administration" || row.WaitID != admin.ID() {
		t.Errorf("score before its administration: %s class %q waiting for %s %q, want waiting %s for administration %q",
			row.State, row.ErrorClass, row.WaitKind, row.WaitID, adapter.ClassDependencyPending, admin.ID())
	}

	// The order arrives: everything goes out, in dependency order.
	h.ingest(order)
	stats = h.sync()
	if stats.Synced != 3 {
		t.Errorf("Sync after the order: %+v, want 3 synced", stats)
	}
	h.requireAllSynced(4)
	h.requireNoDuplicates()
	h.requireCounts(expectedResources(t, h.cfg, []*mapping.Record{patient, order, admin, score}))
	// fhirtest's request log: the first committed write of each record
	// (the patient is a conditional create, its identifier in a header).
	first := map[string]int{}
	for i, r := range h.ehr.Requests() {
		if r.Method == http.MethodGet || r.HandlerStatus/100 != 2 {
			continue
		}
		v := identifierValue(r.Query)
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/Patient") {
			v = patient.ID()
		}
		if _, ok := first[v]; v != "" && !ok {
			first[v] = i
		}
	}
	for _, pair := range [][2]*mapping.Record{{patient, order}, {order, admin}, {admin, score}} {
		a, okA := first[pair[0].ID()]
		b, okB := first[pair[1].ID()]
		if !okA || !okB || a > b {
			t.Errorf("the %s was written (request %d, %v) after the %s that refers to it (request %d, %v)",
				pair[0].Kind, a, okA, pair[1].Kind, b, okB)
		}
	}
	// The references are the EHR's ids.
	adminRow := h.row(mapping.KindAdministration, admin.ID())
	orderRow := h.row(mapping.KindOrder, order.ID())
	body, _ := h.ehr.Get("MedicationAdministration", adminRow.EHRID)
	if !bytes.Contains(body, []byte(`"MedicationRequest/`+orderRow.EHRID+`"`)) {
		t.Errorf("the administration does not refer to MedicationRequest/%s: %s", orderRow.EHRID, body)
	}
}

// TestSyncDependencyDead: a record whose dependency is in the dead letters
// waits (dependency_dead); requeueing the dependency after fixing its
// cause delivers everything.
func TestSyncDependencyDead(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	recs := clinic(t, 1, 5)
	patient, order, admin, score := oneSeries(t, recs)

	h.ingest(patient)
	h.sync()
	pRow := h.row(mapping.KindPatient, patient.ID())
	patientBody, _ := h.ehr.Get("Patient", pRow.EHRID)
	// The EHR loses the patient (merged away, say): the order that points
	// to it is rejected 422 and goes to the dead letters.
	h.deleteInEHR("Patient", pRow.EHRID)
	h.ingest(order, admin, score)
	stats := h.sync()
	if stats.Dead != 1 {
		t.Errorf("Sync with the patient gone: %+v, want 1 dead", stats)
	}
	oRow := h.row(mapping.KindOrder, order.ID())
	if oRow.State != store.StateDead || oRow.ErrorClass != "http_422" {
		t.Fatalf("order pointing to a deleted patient: %s class %q, want dead http_422", oRow.State, oRow.ErrorClass)
	}
	aRow := h.row(mapping.KindAdministration, admin.ID())
	if aRow.State != store.StateWaiting || aRow.ErrorClass != adapter.ClassDependencyDead || aRow.WaitKind != "order" {
		t.Errorf("administration of a dead order: %s class %q waiting for %q, want waiting %s for order",
			aRow.State, aRow.ErrorClass, aRow.WaitKind, adapter.ClassDependencyDead)
	}
	if sRow := h.row(mapping.KindScore, score.ID()); sRow.State != store.StateWaiting {
		t.Errorf("score of a waiting administration: %s", sRow.State)
	}

	// Fix: the patient is back in the EHR under its id. Requeue the order.
	if _, err := h.ehr.Add(patientBody); err != nil {
		t.Fatalf("restoring the patient: %v", err)
	}
	if err := h.st.Requeue(context.Background(), oRow.ID, time.Now()); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	stats = h.sync()
	if stats.Synced != 3 || stats.Dead != 0 {
		t.Errorf("Sync after the fix: %+v, want 3 synced", stats)
	}
	h.requireAllSynced(4)
	h.requireNoDuplicates()
	h.requireCounts(expectedResources(t, h.cfg, []*mapping.Record{patient, order, admin, score}))
}

// --- 6. patients.create false ------------------------------------------

func TestSyncPatientsHeld(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, func(c *adapter.Config) { c.Patients.Create = false })
	recs := clinic(t, 1, 9)
	patient := byKind(recs, mapping.KindPatient)[0]
	h.ingest(recs...)
	stats := h.sync()
	if stats.Synced != 0 || stats.Dead != 0 {
		t.Errorf("Sync with the patient unknown to the EHR: %+v, want nothing synced", stats)
	}
	for _, state := range store.States {
		for _, r := range h.rows(state) {
			if r.State != store.StateWaiting {
				t.Errorf("%s row %d: %s, want waiting", r.Kind, r.ID, r.State)
				continue
			}
			// The patient is held by policy, and its records with it.
			if r.ErrorClass != adapter.ClassPatientUnknown {
				t.Errorf("%s row %d waits with class %q, want %s", r.Kind, r.ID, r.ErrorClass, adapter.ClassPatientUnknown)
			}
		}
	}
	if row := h.row(mapping.KindPatient, patient.ID()); row.ErrorClass != adapter.ClassPatientUnknown || row.ErrorDetail == "" {
		t.Errorf("held patient: class %q detail %q, want %s with a reason", row.ErrorClass, row.ErrorDetail, adapter.ClassPatientUnknown)
	}
	if w := writes(h.ehr.Requests()); w != 0 {
		t.Errorf("%d writes while the patient is unknown", w)
	}
	if n := h.ehr.Count("Patient"); n != 0 {
		t.Errorf("the adapter created %d patients with patients.create false", n)
	}

	// The EHR registers the patient; the held records go out against it.
	m, err := mapping.NewMapper(&h.cfg.Mapping)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Map(patient, nil)
	if err != nil {
		t.Fatal(err)
	}
	ehrID, err := h.ehr.Add(res[0].JSON)
	if err != nil {
		t.Fatalf("registering the patient in the EHR: %v", err)
	}
	n, err := h.eng.RequeueHeld(context.Background())
	if err != nil || n == 0 {
		t.Fatalf("RequeueHeld: %d, %v", n, err)
	}
	h.sync()
	h.requireAllSynced(len(recs))
	if row := h.row(mapping.KindPatient, patient.ID()); row.EHRID != ehrID {
		t.Errorf("patient row holds EHR id %q, want the EHR's %q", row.EHRID, ehrID)
	}
	if n := h.ehr.Count("Patient"); n != 1 {
		t.Errorf("the EHR holds %d patients, want the one it registered", n)
	}
	for _, r := range h.ehr.Requests() {
		if strings.Contains(r.Path, "/Patient") && r.Method != http.MethodGet {
			t.Errorf("the adapter wrote a patient: %s %s", r.Method, r.Path)
		}
	}
	want := expectedResources(t, h.cfg, recs)
	h.requireCounts(want)
	h.requireNoDuplicates()
	// Every record refers to the EHR's patient.
	for _, o := range byKind(recs, mapping.KindOrder) {
		row := h.row(mapping.KindOrder, o.ID())
		body, _ := h.ehr.Get("MedicationRequest", row.EHRID)
		if !bytes.Contains(body, []byte(`"Patient/`+ehrID+`"`)) {
			t.Errorf("order does not refer to Patient/%s", ehrID)
		}
	}
}

// --- 8. Start and Stop -------------------------------------------------

func TestStartStop(t *testing.T) {
	t.Parallel()
	h := syncSetup(t, nil)
	all := clinic(t, 4, 11)
	var recs, more []*mapping.Record // two patients, then two more
	for _, r := range all {
		if mrnOf(r) <= "MRN0000002" {
			recs = append(recs, r)
		} else {
			more = append(more, r)
		}
	}
	if len(recs) == 0 || len(more) == 0 {
		t.Fatalf("split of the clinic: %d and %d records", len(recs), len(more))
	}
	ctx := context.Background()

	h.eng.Start(ctx)
	h.eng.Start(ctx) // a second Start does nothing
	h.ingest(recs...)
	waitFor(t, "every record synced while running", func() bool {
		return total(h.counts(), store.StateSynced) == len(recs)
	})
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.eng.Stop(stopCtx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := h.eng.Stop(stopCtx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	h.requireCounts(expectedResources(t, h.cfg, recs))
	h.requireNoDuplicates()

	// Restart; a slow EHR; Stop with a short deadline aborts the
	// deliveries in flight instead of waiting them out.
	h.ehr.SetLatency(20*time.Second, 20*time.Second)
	startedBefore := h.sent.started.Load()
	h.eng.Start(ctx)
	h.ingest(more...)
	waitFor(t, "a request in flight", func() bool { return h.sent.started.Load() > startedBefore })
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	err := h.eng.Stop(short)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop with deliveries in flight: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Stop took %v: it waited out the EHR's latency", d)
	}
	if err := h.eng.Stop(ctx); err != nil {
		t.Errorf("Stop of a stopped engine: %v", err)
	}
	c := h.counts()
	if n := total(c, store.StateInFlight); n != 0 {
		t.Errorf("%d rows left in flight after Stop: they must be released for retry", n)
	}
	if n := total(c, store.StateRetrying) + total(c, store.StatePending); n == 0 {
		t.Errorf("no row left retrying or pending after a hard stop: %v", c)
	}
	for _, r := range h.rows(store.StateRetrying) {
		if r.ErrorClass != adapter.ClassCanceled {
			t.Errorf("row %d interrupted by Stop: class %q, want %s", r.ID, r.ErrorClass, adapter.ClassCanceled)
		}
	}

	// A later Sync delivers them, exactly once.
	h.ehr.ClearFaults()
	h.sync()
	h.requireAllSynced(len(all))
	h.requireCounts(expectedResources(t, h.cfg, all))
	h.requireNoDuplicates()
}

// mrnOf returns the MRN of the patient a record belongs to.
func mrnOf(r *mapping.Record) string {
	if r.Patient != nil {
		return r.Patient.MRN
	}
	return r.Dependencies()[0].ID
}

// total sums the rows in a state over every kind.
func total(c store.Counts, state store.State) int {
	n := 0
	for _, states := range c {
		n += states[state]
	}
	return n
}

// waitFor polls cond until it holds, failing the test after 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, what, cond)
}
