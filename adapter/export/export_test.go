package export_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/export"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

// fixture is an EHR with data, a client and a store.
type fixture struct {
	srv    *fhirtest.Server
	client *ehr.Client
	store  store.Store
	out    string
}

const (
	nPatients     = 4
	nObservations = 23
)

func patient(i int) string {
	return fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"system":"urn:mrn","value":"MRN-%d"}],"gender":"female","birthDate":"1980-02-03"}`, i, i)
}

func observation(i int) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final",`+
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p%d"},`+
		`"valueQuantity":{"value":%d,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`, i, i%nPatients, 60+i)
}

func setup(t *testing.T) *fixture {
	t.Helper()
	srv := fhirtest.NewServer()
	t.Cleanup(srv.Close)
	for i := range nPatients {
		add(t, srv, patient(i))
	}
	for i := range nObservations {
		add(t, srv, observation(i))
	}
	return newFixture(t, srv, srv.URL)
}

func add(t *testing.T, srv *fhirtest.Server, res string) {
	t.Helper()
	if _, err := srv.Add([]byte(res)); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T, srv *fhirtest.Server, base string) *fixture {
	t.Helper()
	c, err := ehr.New(ehr.Config{BaseURL: base, HTTPClient: srv.Client(), RetryMax: -1,
		Auth: ehr.AuthConfig{Mode: ehr.AuthBearer, Token: "secret-token"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "o.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fixture{srv: srv, client: c, store: st, out: filepath.Join(dir, "out")}
}

func (f *fixture) exporter(t *testing.T, opts export.Options) *export.Exporter {
	t.Helper()
	opts.OutDir = f.out
	if opts.PollWait == 0 {
		opts.PollWait = 5 * time.Millisecond
	}
	if opts.MaxPollWait == 0 {
		opts.MaxPollWait = 10 * time.Millisecond
	}
	x, err := export.New(f.client, f.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// checkOutput checks that every resource of the server is in the output
// exactly once, with its own type.
func (f *fixture) checkOutput(t *testing.T, res *export.Result) {
	t.Helper()
	want := f.srv.Counts()
	for typ, n := range want {
		ids := readIDs(t, filepath.Join(f.out, typ+".ndjson"), typ)
		if len(ids) != n {
			t.Errorf("%s.ndjson has %d lines, the server holds %d", typ, len(ids), n)
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("%s/%s is in the output twice", typ, id)
			}
			seen[id] = true
		}
		if res.Counts[typ] != n {
			t.Errorf("Result.Counts[%s] = %d, want %d", typ, res.Counts[typ], n)
		}
	}
	var m struct {
		TransactionTime string `json:"transactionTime"`
		Output          []struct {
			Type  string `json:"type"`
			URL   string `json:"url"`
			Count int    `json:"count"`
		} `json:"output"`
	}
	b, err := os.ReadFile(filepath.Join(f.out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Output) != len(want) || m.TransactionTime == "" {
		t.Errorf("manifest.json: %s", b)
	}
	for _, o := range m.Output {
		if o.URL != o.Type+".ndjson" || o.Count != want[o.Type] {
			t.Errorf("manifest.json entry %+v", o)
		}
	}
	if _, err := os.Stat(filepath.Join(f.out, ".export-parts")); !os.IsNotExist(err) {
		t.Errorf("the parts directory is left: %v", err)
	}
}

func readIDs(t *testing.T, name, typ string) []string {
	t.Helper()
	fh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var ids []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct{ ResourceType, ID string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.ResourceType != typ {
			t.Errorf("%s holds a %s", name, r.ResourceType)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

func faults(srv *fhirtest.Server) map[fhirtest.Fault]int {
	out := map[fhirtest.Fault]int{}
	for _, r := range srv.Requests() {
		out[r.Fault]++
	}
	return out
}

// TestExportWithFaults: a slow job polled too fast (429 with
// Retry-After), files split in parts, each cut once in the middle of a
// line, and links that expire.
func TestExportWithFaults(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.srv.SetExportDelay(3, 0)
	f.srv.SetExportPollInterval(30 * time.Millisecond)
	f.srv.SetExportFileLines(5)
	f.srv.TruncateExportFiles(true)
	f.srv.SetExportLinkExpiry(60 * time.Millisecond)
	f.srv.SetLatency(10*time.Millisecond, 10*time.Millisecond)

	var mu sync.Mutex
	var progress []string
	x := f.exporter(t, export.Options{Workers: 2, Progress: func(p export.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Server != "" {
			progress = append(progress, p.Server)
		}
	}})
	res, err := x.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.checkOutput(t, res)
	fl := faults(f.srv)
	if fl[fhirtest.FaultExportPollTooFast] == 0 || fl[fhirtest.FaultExportTruncated] == 0 || fl[fhirtest.FaultExportLinkExpired] == 0 {
		t.Errorf("faults seen: %v", fl)
	}
	if len(progress) == 0 || !strings.Contains(progress[0], "%") {
		t.Errorf("X-Progress not reported: %q", progress)
	}
	jobs := f.srv.ExportJobs()
	if len(jobs) != 1 || jobs[0].State != fhirtest.ExportCancelled {
		t.Errorf("jobs: %+v (want one, deleted after the download)", jobs)
	}
	// Range requests resumed the cut files.
	ranged := 0
	for _, r := range f.srv.Requests() {
		if r.Status == http.StatusPartialContent {
			ranged++
		}
	}
	if ranged == 0 {
		t.Error("no Range request resumed a truncated file")
	}
}

// TestResumeAfterKill: the context is canceled after the first file (as
// a kill would stop it, leaving the job); a second run resumes the same
// job and writes every resource once.
func TestResumeAfterKill(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.srv.SetExportFileLines(4)
	f.srv.TruncateExportFiles(true)

	ctx, cancel := context.WithCancel(t.Context())
	x := f.exporter(t, export.Options{Workers: 1, KeepJobOnCancel: true, Progress: func(p export.Progress) {
		if p.FilesDone >= 1 {
			cancel()
		}
	}})
	if _, err := x.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want canceled", err)
	}
	if _, err := os.Stat(filepath.Join(f.out, "Observation.ndjson")); !os.IsNotExist(err) {
		t.Errorf("output written before every part was complete: %v", err)
	}
	v, err := f.store.Meta(t.Context(), "export:job")
	if err != nil || !strings.Contains(v, `"done":true`) {
		t.Fatalf("resume state: %q, %v", v, err)
	}

	res, err := f.exporter(t, export.Options{Workers: 3}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Error("second run did not resume")
	}
	f.checkOutput(t, res)
	if jobs := f.srv.ExportJobs(); len(jobs) != 1 {
		t.Errorf("%d jobs kicked off, want 1", len(jobs))
	}
	if v, _ := f.store.Meta(t.Context(), "export:job"); v != "" {
		t.Errorf("resume state left after completion: %q", v)
	}
}

// TestCancelDeletesJob: Ctrl-C while polling DELETEs the job.
func TestCancelDeletesJob(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.srv.SetExportDelay(1000, 0)
	ctx, cancel := context.WithCancel(t.Context())
	x := f.exporter(t, export.Options{Progress: func(p export.Progress) {
		if p.Phase == "polling" {
			cancel()
		}
	}})
	if _, err := x.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want canceled", err)
	}
	jobs := f.srv.ExportJobs()
	if len(jobs) != 1 || jobs[0].State != fhirtest.ExportCancelled {
		t.Errorf("jobs: %+v, want one cancelled", jobs)
	}
	if v, _ := f.store.Meta(t.Context(), "export:job"); v != "" {
		t.Errorf("resume state left: %q", v)
	}
}

// TestCancelMidDownload: Ctrl-C while downloading DELETEs the job and
// leaves no parts and no resume state behind.
func TestCancelMidDownload(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.srv.SetExportFileLines(3)
	ctx, cancel := context.WithCancel(t.Context())
	x := f.exporter(t, export.Options{Workers: 1, Progress: func(p export.Progress) {
		if p.FilesDone >= 1 {
			cancel()
		}
	}})
	if _, err := x.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want canceled", err)
	}
	if jobs := f.srv.ExportJobs(); len(jobs) != 1 || jobs[0].State != fhirtest.ExportCancelled {
		t.Errorf("jobs: %+v, want one cancelled", jobs)
	}
	if _, err := os.Stat(filepath.Join(f.out, ".export-parts")); !os.IsNotExist(err) {
		t.Errorf("parts left: %v", err)
	}
	if v, _ := f.store.Meta(t.Context(), "export:job"); v != "" {
		t.Errorf("resume state left: %q", v)
	}
}

// TestFailedJob: a job the server fails is reported by its id, and the
// error holds no URL.
func TestFailedJob(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.srv.FailNextExport(1)
	_, err := f.exporter(t, export.Options{}).Run(t.Context())
	if !errors.Is(err, export.ErrJobFailed) {
		t.Fatalf("Run: %v, want ErrJobFailed", err)
	}
	if !strings.Contains(err.Error(), "export job 1") || strings.Contains(err.Error(), "http") && strings.Contains(err.Error(), "://") {
		t.Errorf("error text: %v", err)
	}
}

// TestIncremental: a second export with Incremental gets only what
// changed since the first one's transactionTime, with the kick-off's
// parameters as asked.
func TestIncremental(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if _, err := f.exporter(t, export.Options{Types: []string{"Observation"}}).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	add(t, f.srv, observation(100))
	res, err := f.exporter(t, export.Options{Types: []string{"Observation"}, Incremental: true,
		TypeFilters: []string{"Observation?status=final"}}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts["Observation"] != 1 || res.Since.IsZero() {
		t.Errorf("incremental: %+v", res)
	}
	ids := readIDs(t, filepath.Join(f.out, "Observation.ndjson"), "Observation")
	if len(ids) != 1 || ids[0] != "o100" {
		t.Errorf("incremental output: %v", ids)
	}
	jobs := f.srv.ExportJobs()
	last := jobs[len(jobs)-1]
	if last.Since.IsZero() || len(last.Types) != 1 || !strings.Contains(last.Request, "_typeFilter") {
		t.Errorf("kick-off: %+v", last)
	}
}

// TestGroupLevel: a Group export holds its members' compartments.
func TestGroupLevel(t *testing.T) {
	t.Parallel()
	f := setup(t)
	add(t, f.srv, `{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}}]}`)
	res, err := f.exporter(t, export.Options{Level: export.LevelGroup, Group: "g1"}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts["Patient"] != 1 || res.Counts["Observation"] == 0 || res.Counts["Observation"] >= nObservations {
		t.Errorf("group export counts: %v", res.Counts)
	}
}

// TestFallback: without $export in the CapabilityStatement, paged
// searches by type.
func TestFallback(t *testing.T) {
	t.Parallel()
	srv := fhirtest.NewServer(fhirtest.WithPageSize(5, 5))
	t.Cleanup(srv.Close)
	for i := range nPatients {
		add(t, srv, patient(i))
	}
	for i := range nObservations {
		add(t, srv, observation(i))
	}
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	proxy.Transport = srv.Client().Transport
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/metadata") {
			w.Header().Set("Content-Type", "application/fhir+json")
			fmt.Fprint(w, `{"resourceType":"CapabilityStatement","rest":[{"resource":[`+
				`{"type":"Patient","interaction":[{"code":"search-type"}]},`+
				`{"type":"Observation","interaction":[{"code":"search-type"}]}]}]}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	base := front.URL + target.Path
	c, err := ehr.New(ehr.Config{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, srv, base)
	f.client = c
	res, err := f.exporter(t, export.Options{}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Fallback {
		t.Error("not the fallback")
	}
	f.checkOutput(t, res)
}

// TestFileToken: files get the token only when the manifest says
// requiresAccessToken.
func TestFileToken(t *testing.T) {
	t.Parallel()
	for _, requires := range []bool{false, true} {
		t.Run(fmt.Sprint(requires), func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			f.srv.SetExportRequiresAccessToken(requires)
			target, _ := url.Parse(f.srv.URL)
			proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
			var mu sync.Mutex
			auth := map[string]int{}
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, file, ok := strings.Cut(r.URL.Path, "/_export/"); ok && strings.Count(file, "/") == 2 {
					mu.Lock()
					auth[r.Header.Get("Authorization")]++
					mu.Unlock()
				}
				proxy.ServeHTTP(w, r)
			}))
			t.Cleanup(front.Close)
			base := front.URL + target.Path
			c, err := ehr.New(ehr.Config{BaseURL: base, RetryMax: -1, Auth: ehr.AuthConfig{Mode: ehr.AuthBearer, Token: "secret-token"}})
			if err != nil {
				t.Fatal(err)
			}
			f.client = c
			res, err := f.exporter(t, export.Options{}).Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			f.checkOutput(t, res)
			want := ""
			if requires {
				want = "Bearer secret-token"
			}
			if len(auth) != 1 || auth[want] == 0 {
				t.Errorf("Authorization on file requests: %v, want only %q", auth, want)
			}
		})
	}
}
