package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// exportEHR is a fhirtest server holding patients and observations.
func exportEHR(t *testing.T) *fhirtest.Server {
	t.Helper()
	srv := fhirtest.NewServer()
	t.Cleanup(srv.Close)
	for i := range 3 {
		mustAddResource(t, srv, fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","gender":"male","birthDate":"1970"}`, i))
	}
	for i := range 17 {
		mustAddResource(t, srv, exportObservation(i))
	}
	return srv
}

func exportObservation(i int) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},"subject":{"reference":"Patient/p%d"},"valueInteger":%d}`, i, i%3, i%27)
}

func mustAddResource(t *testing.T, srv *fhirtest.Server, res string) {
	t.Helper()
	if _, err := srv.Add([]byte(res)); err != nil {
		t.Fatal(err)
	}
}

// exportedIDs reads DIR/Type.ndjson and fails on a duplicate.
func exportedIDs(t *testing.T, dir, typ string) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, typ+".ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct{ ResourceType, ID string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ResourceType != typ {
			t.Fatalf("%s.ndjson: bad line (%v)", typ, err)
		}
		if ids[r.ID] {
			t.Errorf("%s/%s exported twice", typ, r.ID)
		}
		ids[r.ID] = true
	}
	return ids
}

func checkExported(t *testing.T, srv *fhirtest.Server, out string) {
	t.Helper()
	for typ, n := range srv.Counts() {
		if got := len(exportedIDs(t, out, typ)); got != n {
			t.Errorf("%s: %d exported, the EHR holds %d", typ, got, n)
		}
	}
}

func TestExportCommand(t *testing.T) {
	t.Parallel()
	srv := exportEHR(t)
	srv.SetExportDelay(2, 0)
	srv.SetExportPollInterval(20 * time.Millisecond)
	srv.SetExportFileLines(4)
	srv.TruncateExportFiles(true)
	srv.SetExportLinkExpiry(300 * time.Millisecond) // long enough for a loaded machine to fetch a file
	srv.SetLatency(5*time.Millisecond, 5*time.Millisecond)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, srv.URL, "")
	out := filepath.Join(dir, "out")

	r := runCLI(t, "", "export", "--config", cfg, "--out", out, "--max-poll-wait", "10ms", "--workers", "2")
	r.want(t, exitOK, "export")
	checkExported(t, srv, out)
	if !strings.Contains(r.stdout, "exported 20 resources") || !strings.Contains(r.stderr, "export: waiting for the EHR") {
		t.Errorf("output:\n%s\n%s", r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "manifest.json")); err != nil {
		t.Error(err)
	}

	// Incremental: only what changed since.
	mustAddResource(t, srv, exportObservation(99))
	out2 := filepath.Join(dir, "out2")
	r = runCLI(t, "", "export", "--config", cfg, "--out", out2, "--max-poll-wait", "10ms", "--incremental", "--type", "Observation,Patient")
	r.want(t, exitOK, "incremental export")
	if ids := exportedIDs(t, out2, "Observation"); len(ids) != 1 || !ids["o99"] {
		t.Errorf("incremental export: %v", ids)
	}

	r = runCLI(t, "", "export", "--config", cfg, "--out", out2, "--since", "2020-01-01", "--incremental")
	r.want(t, exitUsage, "--since with --incremental")
	r = runCLI(t, "", "export", "--config", cfg)
	r.want(t, exitUsage, "no --out")
}

// TestExportCommandResume: the first run is stopped (its context
// canceled, as a kill stops it) right after the first file; the second
// run resumes the job and exports every resource once.
func TestExportCommandResume(t *testing.T) {
	t.Parallel()
	srv := exportEHR(t)
	srv.SetExportFileLines(3)
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	var stop atomic.Pointer[context.CancelFunc]
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.ServeHTTP(w, r)
		_, file, isExport := strings.Cut(r.URL.Path, "/_export/")
		if isExport && strings.Count(file, "/") == 2 { // {job}/{gen}/{name}: a file
			if c := stop.Load(); c != nil {
				(*c)()
			}
		}
	}))
	t.Cleanup(front.Close)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, front.URL+target.Path, "")
	out := filepath.Join(dir, "out")
	args := []string{"export", "--config", cfg, "--out", out, "--max-poll-wait", "10ms", "--workers", "1", "--keep-job"}

	ctx, cancel := context.WithCancel(t.Context())
	stop.Store(&cancel)
	var stdout, stderr testutil.Buffer
	if code := run(ctx, args, strings.NewReader(""), &stdout, &stderr); code != exitFailed {
		t.Fatalf("interrupted run: exit %d\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "run the same command again") {
		t.Errorf("stderr: %s", stderr.String())
	}
	stop.Store(nil)

	r := runCLI(t, "", args...)
	r.want(t, exitOK, "resumed export")
	if !strings.Contains(r.stdout, "resumed") {
		t.Errorf("stdout: %s", r.stdout)
	}
	checkExported(t, srv, out)
	if jobs := srv.ExportJobs(); len(jobs) != 1 {
		t.Errorf("%d jobs, want 1", len(jobs))
	}
}
