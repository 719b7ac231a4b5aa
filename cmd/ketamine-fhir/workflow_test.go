package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

// writeConfig writes a configuration for import, sync and deadletters:
// a SQLite outbox o.db in dir, the EHR at ehrURL, short retries and the
// given sync.lease. It returns the file's path.
func writeConfig(t *testing.T, dir, ehrURL, lease string) string {
	t.Helper()
	if lease == "" {
		lease = "5s"
	}
	d, err := time.ParseDuration(lease)
	if err != nil {
		t.Fatal(err)
	}
	// sync.lease must be longer than ehr.timeout.
	timeout := min(4*time.Second, d/2)
	cfg := fmt.Sprintf(`store: %q
ehr:
  base_url: %q
  timeout: %s
  retry_max: 2
  retry_wait_max: 50ms
sync:
  concurrency: 4
  batch_size: 32
  lease: %s
  retry_min: 20ms
  retry_backoff_max: 200ms
  poll_interval: 20ms
  deadline: 90s
log:
  format: json
  level: info
`, "sqlite:"+filepath.Join(dir, "o.db"), ehrURL, timeout, lease)
	return writeFile(t, dir, "config.yaml", []byte(cfg))
}

// clinic is a generated clinic: its records, as NDJSON in a file too.
type clinic struct {
	recs []*mapping.Record
	path string
	phi  *testutil.PHI
}

// newClinic writes `generate --patients n --seed seed` to dir.
func newClinic(t *testing.T, dir string, patients int, seed int64) *clinic {
	t.Helper()
	g := runCLI(t, "", "generate", "--patients", strconv.Itoa(patients), "--seed", strconv.FormatInt(seed, 10))
	g.want(t, exitOK, "generate")
	recs := readRecords(t, []byte(g.stdout))
	return &clinic{
		recs: recs,
		path: writeFile(t, dir, "records.ndjson", []byte(g.stdout)),
		phi:  newPHIChecker(t, recs),
	}
}

// kinds counts the records per kind.
func (c *clinic) kinds() map[string]int {
	n := map[string]int{}
	for _, r := range c.recs {
		n[string(r.Kind)]++
	}
	return n
}

// expectedResources maps every record as a Bundle would and returns the
// identifiers of all resources and their count per FHIR type.
func expectedResources(t *testing.T, recs []*mapping.Record) ([]mapping.Identifier, map[string]int) {
	t.Helper()
	m, err := mapping.NewMapper(mapping.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	lk := mapping.NewBundleLookup(m, recs)
	var ids []mapping.Identifier
	types := map[string]int{}
	for i, r := range recs {
		res, err := m.Map(r, lk)
		if err != nil {
			t.Fatalf("record %d (%s): %v", i, r.Kind, err)
		}
		for _, x := range res {
			ids = append(ids, x.Identifier)
			types[x.Type]++
		}
	}
	return ids, types
}

// assertEHRExactlyOnce checks that the EHR holds every resource of recs
// exactly once and nothing else.
func assertEHRExactlyOnce(t *testing.T, ehr *fhirtest.Server, recs []*mapping.Record) {
	t.Helper()
	ids, types := expectedResources(t, recs)
	missing, twice := 0, 0
	for _, id := range ids {
		switch n := len(ehr.IdentifierHolders(id.System, id.Value)); {
		case n == 0:
			missing++
		case n > 1:
			twice++
		}
	}
	if missing > 0 || twice > 0 {
		t.Errorf("of %d resources, %d are missing from the EHR and %d are held more than once", len(ids), missing, twice)
	}
	if got := ehr.Counts(); fmt.Sprint(got) != fmt.Sprint(types) {
		t.Errorf("EHR holds %v, want %v", got, types)
	}
	if dups := ehr.DuplicateIdentifiers(); len(dups) > 0 {
		t.Errorf("%d identifiers are held twice in the EHR", len(dups))
	}
}

// parseCountsTable reads the kinds-by-states table that sync and demo
// print.
func parseCountsTable(t *testing.T, out string) map[string]map[string]int {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		header := strings.Fields(l)
		if len(header) != len(store.States)+1 || header[0] != "kind" {
			continue
		}
		for j, s := range store.States {
			if header[j+1] != string(s) {
				t.Fatalf("table header %q, want the states in order %v", l, store.States)
			}
		}
		table := map[string]map[string]int{}
		for _, row := range lines[i+1:] {
			f := strings.Fields(row)
			if len(f) != len(header) || strings.HasSuffix(row, ":") || strings.Contains(row, ":") {
				break // the end of the table, or the reasons lines after it
			}
			table[f[0]] = map[string]int{}
			for j, s := range store.States {
				n, err := strconv.Atoi(f[j+1])
				if err != nil {
					t.Fatalf("table row %q: %v", row, err)
				}
				table[f[0]][string(s)] = n
			}
		}
		return table
	}
	t.Fatalf("no kinds-by-states table in:\n%s", clip(out))
	return nil
}

// assertAllSynced checks that the table shows every record of every
// kind synced and none in another state.
func assertAllSynced(t *testing.T, table map[string]map[string]int, kinds map[string]int) {
	t.Helper()
	for k, n := range kinds {
		for _, s := range store.States {
			want := 0
			if s == store.StateSynced {
				want = n
			}
			if got := table[k][string(s)]; got != want {
				t.Errorf("%s rows %s: %d, want %d", k, s, got, want)
			}
		}
	}
	if len(table) != len(kinds) {
		t.Errorf("table has kinds %v, want %v", table, kinds)
	}
}

// writes counts the write requests the EHR received.
func writes(ehr *fhirtest.Server) int {
	n := 0
	for _, r := range ehr.Requests() {
		if r.Method != http.MethodGet {
			n++
		}
	}
	return n
}

// syncLine matches sync's summary line; its groups are the synced,
// unchanged, retrying, waiting and dead counts.
var syncLine = regexp.MustCompile(`(?m)^sync: (\d+) synced \((\d+) unchanged, not sent\), (\d+) retrying, (\d+) waiting, (\d+) dead in `)

func TestImportSyncReimport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newClinic(t, dir, 4, 21)
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	cfg := writeConfig(t, dir, ehr.URL, "")
	check := func(what string, r cliResult) {
		t.Helper()
		c.phi.Check(t, what+" stdout", r.stdout)
		c.phi.Check(t, what+" stderr", r.stderr)
	}

	imp := runCLI(t, "", "import", "--config", cfg, c.path)
	check("import", imp)
	imp.want(t, exitOK, "import")
	if want := fmt.Sprintf("imported: %d read, %d inserted, 0 updated, 0 unchanged, 0 rejected\n", len(c.recs), len(c.recs)); imp.stdout != want {
		t.Errorf("import stdout = %q, want %q", imp.stdout, want)
	}
	if !strings.Contains(imp.stderr, `"msg":"import progress"`) || !strings.Contains(imp.stderr, `"percent":100,"unit":"bytes"`) {
		t.Errorf("import printed no final progress line on stderr:\n%s", clip(imp.stderr))
	}

	s := runCLI(t, "", "sync", "--config", cfg)
	check("sync", s)
	s.want(t, exitOK, "sync")
	m := syncLine.FindStringSubmatch(s.stdout)
	if m == nil || m[1] != strconv.Itoa(len(c.recs)) || m[5] != "0" {
		t.Errorf("sync summary line wrong, want %d delivered, 0 dead:\n%s", len(c.recs), s.stdout)
	}
	assertAllSynced(t, parseCountsTable(t, s.stdout), c.kinds())
	assertEHRExactlyOnce(t, ehr, c.recs)
	before := writes(ehr)

	again := runCLI(t, "", "import", "--quiet", "--config", cfg, c.path)
	check("second import", again)
	again.want(t, exitOK, "second import")
	if want := fmt.Sprintf("imported: %d read, 0 inserted, 0 updated, %d unchanged, 0 rejected\n", len(c.recs), len(c.recs)); again.stdout != want {
		t.Errorf("second import stdout = %q, want %q", again.stdout, want)
	}
	s2 := runCLI(t, "", "sync", "--config", cfg)
	check("second sync", s2)
	s2.want(t, exitOK, "second sync")
	if m := syncLine.FindStringSubmatch(s2.stdout); m == nil || m[1] != "0" || m[5] != "0" {
		t.Errorf("second sync delivered something:\n%s", s2.stdout)
	}
	if n := writes(ehr) - before; n != 0 {
		t.Errorf("re-import and sync of unchanged records sent %d writes", n)
	}
	assertAllSynced(t, parseCountsTable(t, s2.stdout), c.kinds())

	dl := runCLI(t, "", "deadletters", "list", "--config", cfg)
	check("deadletters list", dl)
	dl.want(t, exitOK, "deadletters list")
	if !strings.HasSuffix(dl.stdout, "\n0 dead letters\n") {
		t.Errorf("deadletters list = %q", dl.stdout)
	}

	// A changed record is an update: sent once more, in place.
	data, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(data), `"frequency":"2/week"`, `"frequency":"3/week"`, 1)
	if changed == string(data) {
		t.Fatal("no order with frequency 2/week to change")
	}
	changedPath := writeFile(t, dir, "changed.ndjson", []byte(changed))
	up := runCLI(t, "", "import", "--quiet", "--config", cfg, changedPath)
	up.want(t, exitOK, "import of a changed record")
	if want := fmt.Sprintf("imported: %d read, 0 inserted, 1 updated, %d unchanged, 0 rejected\n", len(c.recs), len(c.recs)-1); up.stdout != want {
		t.Errorf("import of a changed record: stdout = %q, want %q", up.stdout, want)
	}
	s3 := runCLI(t, "", "sync", "--config", cfg)
	s3.want(t, exitOK, "sync of a changed record")
	if m := syncLine.FindStringSubmatch(s3.stdout); m == nil || m[1] != "1" {
		t.Errorf("sync of one changed record:\n%s", s3.stdout)
	}
	assertEHRExactlyOnce(t, ehr, readRecords(t, []byte(changed)))
	if !strings.Contains(fmt.Sprint(ehr.Counts()), "MedicationRequest") {
		t.Fatal("no MedicationRequest in the EHR")
	}
}

func TestSyncRejectedRecordAndDeadletters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newClinic(t, dir, 3, 22)
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	cfg := writeConfig(t, dir, ehr.URL, "")
	var outputs []cliResult
	cli := func(args ...string) cliResult {
		t.Helper()
		r := runCLI(t, "", args...)
		outputs = append(outputs, r)
		return r
	}

	cli("import", "--quiet", "--config", cfg, c.path).want(t, exitOK, "import")
	// The EHR rejects the first request of the sync, a write (patients
	// come first and are created with a conditional create), with 422
	// Unprocessable Entity: a permanent rejection.
	ehr.FailNext(1, http.StatusUnprocessableEntity)
	s := cli("sync", "--config", cfg)
	s.want(t, exitFailed, "sync with a rejected record")
	var rejected *fhirtest.RequestLog
	for _, r := range ehr.Requests() {
		if r.Status == http.StatusUnprocessableEntity {
			if rejected != nil {
				t.Fatal("more than one request was answered 422")
			}
			rejected = &r
		}
	}
	if rejected == nil || rejected.Method == http.MethodGet {
		t.Fatalf("the 422 did not answer a write: %+v", rejected)
	}
	wantKind := map[string]string{
		"Patient": "patient", "MedicationRequest": "order",
		"MedicationAdministration": "administration", "Observation": "score",
	}[strings.Split(strings.TrimPrefix(rejected.Path, "/fhir/R4/"), "/")[0]]
	t.Logf("the EHR rejected %s %s (a %s record)", rejected.Method, rejected.Path, wantKind)
	if m := syncLine.FindStringSubmatch(s.stdout); m == nil || m[5] != "1" {
		t.Errorf("sync summary does not show one dead record:\n%s", s.stdout)
	}
	table := parseCountsTable(t, s.stdout)
	if table[wantKind]["dead"] != 1 {
		t.Errorf("table shows %d dead %s rows, want 1:\n%s", table[wantKind]["dead"], wantKind, s.stdout)
	}

	// deadletters list shows it with its reason class, and a patient by
	// its kind, never its MRN.
	dl := cli("deadletters", "list", "--config", cfg)
	dl.want(t, exitOK, "deadletters list")
	rows := nonEmptyLines(dl.stdout)
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "ID") || rows[2] != "1 dead letters" {
		t.Fatalf("deadletters list:\n%s", dl.stdout)
	}
	f := strings.Fields(rows[1])
	if len(f) != 6 || f[1] != wantKind || f[3] != "http_422" || f[4] != "1" {
		t.Errorf("dead letter row %q, want kind %s, reason http_422, 1 attempt", rows[1], wantKind)
	}
	if wantKind == "patient" && f[2] != "(patient)" {
		t.Errorf("a patient dead letter shows local id %q, want (patient)", f[2])
	}
	deadID := f[0]

	details := runCLI(t, "", "deadletters", "list", "--details", "--config", cfg)
	details.want(t, exitOK, "deadletters list --details")
	if !strings.Contains(details.stdout, `"status":422`) {
		t.Errorf("--details does not show the EHR's answer:\n%s", details.stdout)
	}

	// Retrying ids that are not dead letters.
	bad := cli("deadletters", "retry", "--config", cfg, "not-a-number")
	bad.want(t, exitUsage, "deadletters retry with a bad id")
	none := cli("deadletters", "retry", "--config", cfg, "999999")
	none.want(t, exitFailed, "deadletters retry of an unknown id")
	if !strings.Contains(none.stderr, "no dead letter has id 999999") {
		t.Errorf("stderr = %q", none.stderr)
	}
	cli("deadletters", "retry", "--config", cfg).want(t, exitUsage, "deadletters retry without ids")
	cli("deadletters", "retry", "--all", "--config", cfg, deadID).want(t, exitUsage, "deadletters retry with ids and --all")

	rq := cli("deadletters", "retry", "--all", "--config", cfg)
	rq.want(t, exitOK, "deadletters retry --all")
	if rq.stdout != "re-queued 1 records; run sync to deliver them\n" {
		t.Errorf("deadletters retry --all: %q", rq.stdout)
	}
	s2 := cli("sync", "--config", cfg)
	s2.want(t, exitOK, "sync after retry")
	assertAllSynced(t, parseCountsTable(t, s2.stdout), c.kinds())
	assertEHRExactlyOnce(t, ehr, c.recs)
	empty := cli("deadletters", "list", "--config", cfg)
	empty.want(t, exitOK, "deadletters list after retry")
	if !strings.HasSuffix(empty.stdout, "\n0 dead letters\n") {
		t.Errorf("deadletters list after retry = %q", empty.stdout)
	}

	// A rejected update of an order: listed by its order id, re-queued by
	// its outbox id.
	data, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	orderID := ""
	for i, l := range lines {
		if m := regexp.MustCompile(`^\{"kind":"order","order_id":"([^"]+)",.*"status":"completed"`).FindStringSubmatch(l); m != nil {
			orderID = m[1]
			lines[i] = strings.Replace(l, `"status":"completed"`, `"status":"on-hold"`, 1)
			break
		}
	}
	if orderID == "" {
		t.Fatal("no completed order to change")
	}
	changed := strings.Join(lines, "")
	changedPath := writeFile(t, dir, "changed.ndjson", []byte(changed))
	cli("import", "--quiet", "--config", cfg, changedPath).want(t, exitOK, "import of a changed order")
	ehr.FailNext(1, http.StatusUnprocessableEntity)
	cli("sync", "--config", cfg).want(t, exitFailed, "sync with a rejected update")
	dl = cli("deadletters", "list", "--config", cfg)
	dl.want(t, exitOK, "deadletters list")
	rows = nonEmptyLines(dl.stdout)
	if len(rows) != 3 {
		t.Fatalf("deadletters list:\n%s", dl.stdout)
	}
	f = strings.Fields(rows[1])
	if len(f) != 6 || f[1] != "order" || f[2] != orderID || f[3] != "http_422" {
		t.Fatalf("dead letter row %q, want order %s with reason http_422", rows[1], orderID)
	}
	one := cli("deadletters", "retry", "--config", cfg, f[0])
	one.want(t, exitOK, "deadletters retry ID")
	if one.stdout != "re-queued "+f[0]+"\n" {
		t.Errorf("deadletters retry %s: %q", f[0], one.stdout)
	}
	cli("sync", "--config", cfg).want(t, exitOK, "sync after retrying the order")
	assertEHRExactlyOnce(t, ehr, readRecords(t, []byte(changed)))
	found := false
	for _, id := range ehr.IdentifierHolders("https://clinic.example.org/fhir/sid/order", orderID) {
		typ, rid, _ := strings.Cut(id, "/")
		if body, ok := ehr.Get(typ, rid); ok && strings.Contains(string(body), `"status":"on-hold"`) {
			found = true
		}
	}
	if !found {
		t.Error("the EHR does not hold the changed order")
	}

	for i, r := range outputs {
		c.phi.Check(t, fmt.Sprintf("command %d stdout", i+1), r.stdout)
		c.phi.Check(t, fmt.Sprintf("command %d stderr", i+1), r.stderr)
	}
}

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", []byte(`store: mysql://db/outbox
ehr:
  base_url: "not a url"
  timeout: -5s
  retry_max: -1
  auth:
    mode: kerberos
sync:
  concurrency: 0
  lease: 0s
log:
  level: loud
`))
	unknown := writeFile(t, dir, "unknown.yaml", []byte("ehr:\n  base_urll: http://x\nsyncc:\n  lease: 1s\n"))
	renamed := writeFile(t, dir, "renamed.yaml", []byte("sync:\n  retry_min: 1s\n  retry_max: 2m\n"))
	tests := []struct {
		name   string
		file   string
		code   int
		stdout string
		stderr []string // each must appear on its own line
	}{
		{"default", filepath.Join("..", "..", "configs", "default.yaml"), exitOK, "default.yaml: ok\n", nil},
		{"bad values", bad, exitUsage, "", []string{
			"config: store: ", "config: ehr.base_url: ", "config: ehr.timeout: ", "config: ehr.retry_max: ",
			"config: ehr.auth.mode: ", "config: sync.concurrency: ", "config: sync.lease: ", "config: log.level: ",
		}},
		{"unknown keys", unknown, exitUsage, "", []string{"base_urll", "syncc"}},
		{"renamed key", renamed, exitUsage, "", []string{"config: " + renamed + ": line 3: sync.retry_max was renamed to sync.retry_backoff_max"}},
		{"missing file", filepath.Join(dir, "none.yaml"), exitUsage, "", []string{"config: reading "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, "", "config", "check", "--config", tt.file)
			r.want(t, tt.code, "config check "+tt.name)
			if !strings.HasSuffix(r.stdout, tt.stdout) || (tt.stdout == "" && r.stdout != "") {
				t.Errorf("stdout = %q, want %q", r.stdout, tt.stdout)
			}
			lines := nonEmptyLines(r.stderr)
			for _, want := range tt.stderr {
				n := 0
				for _, l := range lines {
					if strings.Contains(l, want) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d stderr lines contain %q, want 1:\n%s", n, want, r.stderr)
				}
			}
			if tt.code == exitOK && r.stderr != "" {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("the demo waits out injected 429/503 answers")
	}
	r := runCLI(t, "", "demo", "--patients", "5", "--fault-rate", "0.2")
	r.want(t, exitOK, "demo")
	var recs []*mapping.Record
	if err := synth.Generate(synth.Options{Patients: 5, Seed: 1}, func(rec *mapping.Record) error {
		recs = append(recs, rec)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	phi := newPHIChecker(t, recs)
	phi.Check(t, "demo stdout", r.stdout)
	phi.Check(t, "demo stderr", r.stderr)
	kinds := map[string]int{}
	for _, rec := range recs {
		kinds[string(rec.Kind)]++
	}
	for _, want := range []string{
		fmt.Sprintf("1. generated %d local records for 5 patients", len(recs)),
		"(20% of requests answered 429/503",
		fmt.Sprintf("3. imported them into the SQLite outbox: %d inserted, 0 rejected", len(recs)),
		fmt.Sprintf("sync: %d synced (0 unchanged, not sent), ", len(recs)),
		"no identifier is held twice: every record is in the EHR exactly once",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
	assertAllSynced(t, parseCountsTable(t, r.stdout), kinds)
	if strings.Contains(r.stdout, "DUPLICATES") {
		t.Errorf("demo found duplicates:\n%s", r.stdout)
	}
	// What the EHR holds, per type.
	_, types := expectedResources(t, recs)
	for typ, n := range types {
		if !regexp.MustCompile(`(?m)^\s+` + typ + `\s+` + strconv.Itoa(n) + `\s*$`).MatchString(r.stdout) {
			t.Errorf("demo does not report %d %s in the EHR:\n%s", n, typ, r.stdout)
		}
	}
	if m := regexp.MustCompile(`\((\d+) injected faults\)`).FindStringSubmatch(r.stdout); m == nil || m[1] == "0" {
		t.Errorf("demo injected no faults:\n%s", r.stdout)
	}
}

// TestSyncAuthorizationFailureCLI: an EHR that answers 403 makes sync
// exit 1 with the reason, leaving every record queued with reason auth
// and none dead; once the EHR accepts the adapter, sync delivers them.
func TestSyncAuthorizationFailureCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newClinic(t, dir, 2, 31)
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	cfg := writeConfig(t, dir, ehr.URL, "")
	runCLI(t, "", "import", "--quiet", "--config", cfg, c.path).want(t, exitOK, "import")
	ehr.SetFailureRate(1, http.StatusForbidden)
	s := runCLI(t, "", "sync", "--quiet", "--config", cfg)
	s.want(t, exitFailed, "sync against a 403")
	if !strings.Contains(s.stderr, "authorization") || !strings.Contains(s.stderr, "scopes") {
		t.Errorf("sync stderr does not say what failed and what to check:\n%s", clip(s.stderr))
	}
	if !strings.Contains(s.stdout, "retrying by reason: auth=") {
		t.Errorf("sync summary does not show the auth reason:\n%s", s.stdout)
	}
	table := parseCountsTable(t, s.stdout)
	for kind, states := range table {
		if states["dead"] != 0 {
			t.Errorf("%d %s records dead after a 403", states["dead"], kind)
		}
	}
	ehr.ClearFaults()
	s = runCLI(t, "", "sync", "--quiet", "--config", cfg)
	s.want(t, exitOK, "sync after the fix")
	assertAllSynced(t, parseCountsTable(t, s.stdout), c.kinds())
	assertEHRExactlyOnce(t, ehr, c.recs)
}

// TestResyncCLI: resync re-queues synced records, and sync sends none of
// them when their FHIR output is unchanged.
func TestResyncCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newClinic(t, dir, 2, 32)
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	cfg := writeConfig(t, dir, ehr.URL, "")
	runCLI(t, "", "import", "--quiet", "--config", cfg, c.path).want(t, exitOK, "import")
	runCLI(t, "", "sync", "--quiet", "--config", cfg).want(t, exitOK, "sync")
	orders := 0
	for _, r := range c.recs {
		if r.Kind == mapping.KindOrder {
			orders++
		}
	}
	r := runCLI(t, "", "resync", "--config", cfg, "--kind", "order", "--since", "2000-01-01")
	r.want(t, exitOK, "resync")
	if want := fmt.Sprintf("re-queued %d synced records", orders); !strings.Contains(r.stdout, want) {
		t.Errorf("resync stdout %q, want %q", r.stdout, want)
	}
	before := writes(ehr)
	s := runCLI(t, "", "sync", "--quiet", "--config", cfg)
	s.want(t, exitOK, "sync after resync")
	if m := syncLine.FindStringSubmatch(s.stdout); m == nil || m[1] != strconv.Itoa(orders) || m[2] != strconv.Itoa(orders) {
		t.Errorf("sync after resync: want %d synced, all unchanged:\n%s", orders, s.stdout)
	}
	if n := writes(ehr) - before; n != 0 {
		t.Errorf("sync after a resync of unchanged records wrote %d times", n)
	}
	runCLI(t, "", "resync", "--config", cfg, "--kind", "bogus").want(t, exitUsage, "resync with a bad kind")
	runCLI(t, "", "resync", "--config", cfg, "--since", "yesterday").want(t, exitUsage, "resync with a bad date")
}
