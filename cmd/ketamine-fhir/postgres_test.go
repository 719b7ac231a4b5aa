package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/postgres"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/pgtest"
)

// writePostgresConfig writes writeConfig's config with the outbox in the
// PostgreSQL schema of dsn.
func writePostgresConfig(t *testing.T, dir, dsn, ehrURL, lease string) string {
	t.Helper()
	path := writeConfig(t, dir, ehrURL, lease)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), fmt.Sprintf("store: %q", "sqlite:"+filepath.Join(dir, "o.db")), fmt.Sprintf("store: %q", dsn), 1)
	if cfg == string(b) {
		t.Fatal("writeConfig's store line changed; update writePostgresConfig")
	}
	return writeFile(t, dir, "config-pg.yaml", []byte(cfg))
}

// assertNoOverlappingWrites fails when two writes of one resource URL
// (a conditional update names the identifier in its query) were in the
// EHR at the same time: one write in flight per identifier, whichever
// instance sends it (DESIGN.md section 4).
func assertNoOverlappingWrites(t *testing.T, ehr *fhirtest.Server) {
	t.Helper()
	byTarget := map[string][]fhirtest.RequestLog{}
	for _, r := range ehr.Requests() {
		if r.Method == http.MethodGet || strings.HasSuffix(r.Path, "/_search") {
			continue
		}
		if r.End.IsZero() {
			t.Fatalf("request log entry without End: %+v", r)
		}
		k := r.Method + " " + r.Path + "?" + r.Query + " " + r.IfNoneExist
		if r.Method == http.MethodPost && r.IfNoneExist == "" {
			continue // a Bundle or a plain create: names no identifier
		}
		byTarget[k] = append(byTarget[k], r)
	}
	overlaps, repeated := 0, 0
	for k, rs := range byTarget {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Time.Before(rs[j].Time) })
		if len(rs) > 1 {
			repeated++
		}
		for i := 1; i < len(rs); i++ {
			if rs[i].Time.Before(rs[i-1].End) {
				overlaps++
				// The target names a resource type and an identifier
				// system, never the value (it may be an MRN).
				typ, _, _ := strings.Cut(k, "?")
				t.Logf("overlap on %s: %v..%v (status %d, fault %v) and %v..%v (status %d, fault %v)", typ,
					rs[i-1].Time.Format("15:04:05.000000"), rs[i-1].End.Format("15:04:05.000000"), rs[i-1].Status, rs[i-1].Fault,
					rs[i].Time.Format("15:04:05.000000"), rs[i].End.Format("15:04:05.000000"), rs[i].Status, rs[i].Fault)
			}
		}
	}
	t.Logf("%d write targets, %d of them written more than once (retries), %d overlapping writes", len(byTarget), repeated, overlaps)
	if overlaps > 0 {
		t.Errorf("%d writes overlapped another write of the same identifier", overlaps)
	}
	if repeated == 0 {
		t.Error("no identifier was written twice: the faults did not make anything retry, so the test shows little")
	}
}

// TestPostgresThreeInstancesKill9 runs three `sync` processes on one
// PostgreSQL outbox against one fhirtest EHR that fails 20% of requests
// and loses some responses after committing, and kills one of them with
// SIGKILL mid-run. The two others deliver everything (the killed one's
// rows once its leases expire): every resource in the EHR exactly once,
// and no identifier ever written by two instances at once (issue #11).
func TestPostgresThreeInstancesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills subprocesses")
	}
	dsn, _ := pgtest.Schema(t)
	t.Parallel()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9f))

	dir := t.TempDir()
	c := newClinic(t, dir, 8, 47)
	ehr := fhirtest.NewServer(fhirtest.WithSeed(seed))
	defer ehr.Close()
	ehr.SetFailureRate(0.2, http.StatusTooManyRequests, http.StatusServiceUnavailable)
	ehr.SetLoseRate(0.05, fhirtest.LoseDrop)
	ehr.SetLatency(2*time.Millisecond, 10*time.Millisecond)
	cfg := writePostgresConfig(t, dir, dsn, ehr.URL, "3s")

	runCLI(t, "", "store", "migrate", "--config", cfg).want(t, exitOK, "store migrate")
	imp := runCLI(t, "", "import", "--quiet", "--config", cfg, c.path)
	imp.want(t, exitOK, "import")

	children := make([]*child, 3)
	for i := range children {
		children[i] = startChild(t, "sync", "--config", cfg)
	}
	waitForRequest(ehr, 0, children[0].done)
	delay := time.Duration(100+rng.IntN(300)) * time.Millisecond
	select {
	case <-children[0].done:
	case <-time.After(delay):
		children[0].cmd.Process.Signal(syscall.SIGKILL)
	}
	<-children[0].done
	if ws, ok := children[0].cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Errorf("instance 1 finished before its kill at %v (exit %d): the test killed nothing", delay, children[0].cmd.ProcessState.ExitCode())
	} else {
		t.Logf("instance 1 killed after %v, %d resources in the EHR so far", delay, total(ehr.Counts()))
	}
	var outputs []string
	for i, ch := range children[1:] {
		code := ch.exitCode(t, 60*time.Second)
		outputs = append(outputs, ch.stdout.String(), ch.stderr.String())
		if code != exitOK {
			t.Fatalf("instance %d exited %d\nstdout:\n%s\nstderr:\n%s", i+2, code, clip(ch.stdout.String()), clip(ch.stderr.String()))
		}
	}
	outputs = append(outputs, children[0].stdout.String(), children[0].stderr.String())

	assertEHRExactlyOnce(t, ehr, c.recs)
	assertNoOverlappingWrites(t, ehr)

	st, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counts, err := st.Counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for kind, n := range c.kinds() {
		if got := counts[kind][store.StateSynced]; got != n {
			t.Errorf("outbox: %d of %d %s rows synced (%v)", got, n, kind, counts[kind])
		}
	}
	for i, out := range outputs {
		c.phi.Check(t, fmt.Sprintf("output %d of the instances", i+1), out)
		if strings.Contains(out, "s3cret") || strings.Contains(out, "panic:") || strings.Contains(out, "DATA RACE") {
			t.Errorf("output %d shows a secret, a panic or a race:\n%s", i+1, clip(out))
		}
	}
}

// listAll reads every row of st, by state and id.
func listAll(t *testing.T, ctx context.Context, st store.Store) []store.Record {
	t.Helper()
	var all []store.Record
	for _, s := range store.States {
		var after int64
		for {
			recs, err := st.List(ctx, s, after, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			all = append(all, recs...)
			after = recs[len(recs)-1].ID
		}
	}
	return all
}

// TestStoreCopyEveryStateThenSync copies a SQLite outbox holding rows in
// every state (synced, pending, in flight with a dead process's lease,
// retrying, waiting, dead), with histories and settings, to PostgreSQL;
// checks that every field came across, that a second copy is refused and
// a resumed one adds nothing; then syncs from PostgreSQL: the EHR ends up
// with every record exactly once.
func TestStoreCopyEveryStateThenSync(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a subprocess")
	}
	dsn, _ := pgtest.Schema(t)
	t.Parallel()
	ctx := t.Context()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	c := newClinic(t, dir, 4, 53)
	ehr := fhirtest.NewServer(fhirtest.WithSeed(seed))
	defer ehr.Close()
	ehr.SetFailureRate(0.2, http.StatusServiceUnavailable)
	ehr.SetLatency(2*time.Millisecond, 5*time.Millisecond)
	sqliteCfg := writeConfig(t, dir, ehr.URL, "2s")
	pgCfg := writePostgresConfig(t, dir, dsn, ehr.URL, "2s")
	runCLI(t, "", "import", "--quiet", "--config", sqliteCfg, c.path).want(t, exitOK, "import")

	// A sync killed mid-run leaves synced, pending and perhaps in-flight
	// and retrying rows.
	ch := startChild(t, "sync", "--config", sqliteCfg)
	deadline := time.Now().Add(30 * time.Second)
	for total(ehr.Counts()) < 5 && time.Now().Before(deadline) {
		select {
		case <-ch.done:
			t.Fatalf("sync finished before it was killed\nstderr:\n%s", clip(ch.stderr.String()))
		case <-time.After(5 * time.Millisecond):
		}
	}
	ch.cmd.Process.Signal(syscall.SIGKILL)
	<-ch.done

	// The other states by hand: dead, waiting, retrying, and in flight
	// under an expired lease.
	src, err := sqlite.Open(ctx, filepath.Join(dir, "o.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rows, err := src.Claim(ctx, "copy-test", 3, now, time.Minute)
	if err != nil || len(rows) != 3 {
		t.Fatalf("Claim: %d rows, %v", len(rows), err)
	}
	for i, out := range []store.Outcome{
		{State: store.StateDead, ErrorClass: "rejected_422", ErrorDetail: `{"status":422}`, RequestID: "req-1"},
		{State: store.StateWaiting, ErrorClass: "patient_unknown", ErrorDetail: "held"},
		{State: store.StateRetrying, ErrorClass: "http_503", NextAttemptAt: now},
	} {
		out.Hash = rows[i].Hash
		if err := src.Finish(ctx, rows[i].ID, "copy-test", out, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Claim(ctx, "ghost", 1, now.Add(-time.Hour), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := src.SetMeta(ctx, "copy-test", "v1"); err != nil {
		t.Fatal(err)
	}
	srcRows := listAll(t, ctx, src)
	states := map[store.State]int{}
	for _, r := range srcRows {
		states[r.State]++
	}
	t.Logf("source rows by state: %v", states)
	for _, s := range store.States {
		if states[s] == 0 {
			t.Errorf("the source has no %s row", s)
		}
	}
	srcMeta, err := src.MetaAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srcHist := map[int64][]store.Attempt{}
	for _, r := range srcRows {
		if srcHist[r.ID], err = src.History(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()

	from := "sqlite:" + filepath.Join(dir, "o.db")
	cp := runCLI(t, "", "store", "copy", "--from", from, "--to", dsn)
	cp.want(t, exitOK, "store copy")
	if want := fmt.Sprintf("copied %d rows (0 already in the target) and %d settings", len(srcRows), len(srcMeta)); !strings.Contains(cp.stdout, want) {
		t.Errorf("store copy said %q, want %q", cp.stdout, want)
	}
	again := runCLI(t, "", "store", "copy", "--from", from, "--to", dsn)
	again.want(t, exitUsage, "store copy into a non-empty target")
	if !strings.Contains(again.stderr, "--resume") {
		t.Errorf("the refusal does not mention --resume: %q", again.stderr)
	}
	resumed := runCLI(t, "", "store", "copy", "--resume", "--from", from, "--to", dsn)
	resumed.want(t, exitOK, "store copy --resume")
	if want := fmt.Sprintf("copied 0 rows (%d already in the target)", len(srcRows)); !strings.Contains(resumed.stdout, want) {
		t.Errorf("store copy --resume said %q, want %q", resumed.stdout, want)
	}

	dst, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	dstRows := listAll(t, ctx, dst)
	if len(dstRows) != len(srcRows) {
		t.Fatalf("target has %d rows, source %d", len(dstRows), len(srcRows))
	}
	for i := range srcRows {
		if !reflect.DeepEqual(srcRows[i], dstRows[i]) {
			t.Errorf("row %d differs after the copy:\nsource %+v\ntarget %+v", srcRows[i].ID, srcRows[i], dstRows[i])
		}
		h, err := dst.History(ctx, srcRows[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, srcHist[srcRows[i].ID]) {
			t.Errorf("row %d: history %+v, want %+v", srcRows[i].ID, h, srcHist[srcRows[i].ID])
		}
	}
	if m, err := dst.MetaAll(ctx); err != nil || !reflect.DeepEqual(m, srcMeta) {
		t.Errorf("target meta %v (%v), want %v", m, err, srcMeta)
	}

	// Release the dead and held rows, then deliver the rest from
	// PostgreSQL (the ghost's lease has expired: rescued at once).
	for _, r := range rows[:2] {
		if err := dst.Requeue(ctx, r.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	sync := runCLI(t, "", "sync", "--config", pgCfg)
	sync.want(t, exitOK, "sync from PostgreSQL")
	assertAllSynced(t, parseCountsTable(t, sync.stdout), c.kinds())
	assertEHRExactlyOnce(t, ehr, c.recs)
	for i, out := range []string{cp.stdout, cp.stderr, again.stderr, sync.stdout, sync.stderr, ch.stderr.String()} {
		c.phi.Check(t, fmt.Sprintf("output %d", i+1), out)
	}
}
