package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/api"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
	"github.com/ketamine-fhir/ketamine-fhir/mapping"
	"github.com/ketamine-fhir/ketamine-fhir/mapping/synth"
)

const serveTestToken = "serve-test-token-0123456789"

// serveConfig writes a config for serve and sync against the EHR at
// ehrURL, with a SQLite outbox in dir, the API on addr ("" for
// 127.0.0.1:0) and apiExtra appended to the api section (token, TLS).
func serveConfig(t *testing.T, dir, ehrURL, addr, apiExtra string) string {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cfg := fmt.Sprintf(`store: sqlite:%s
ehr:
  base_url: %s
  timeout: 4s
  retry_max: 1
  retry_wait_max: 1s
sync:
  concurrency: 4
  batch_size: 16
  lease: 5s
  retry_min: 50ms
  retry_backoff_max: 500ms
  poll_interval: 50ms
  shutdown_timeout: 2s
api:
  addr: %s
  max_body_bytes: 65536
  ready_timeout: 2s
%s
log:
  format: json
  level: info
`, filepath.Join(dir, "outbox.db"), ehrURL, addr, apiExtra)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// served is a running `ketamine-fhir serve`.
type served struct {
	base   string // http://127.0.0.1:PORT
	cancel context.CancelFunc
	exited chan struct{} // closed when run returns
	code   int           // run's exit code, once exited is closed
	log    *testutil.Buffer
}

// startServe runs `serve --config cfg` in a goroutine and waits for its
// "listening" log line. The test's cleanup stops it.
func startServe(t *testing.T, cfg, scheme string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{cancel: cancel, exited: make(chan struct{}), log: &testutil.Buffer{}}
	go func() {
		defer close(s.exited)
		s.code = run(ctx, []string{"serve", "--config", cfg}, nil, io.Discard, s.log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s of its context ending")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(s.log.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" && l.Addr != "" {
				s.base = scheme + "://" + l.Addr
				return s
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("serve exited with %d before listening:\n%s", s.code, s.log)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not log its address within 30s:\n%s", s.log)
	return nil
}

// stop cancels serve's context (what SIGTERM does in main) and returns its
// exit code and how long it took.
func (s *served) stop(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	s.cancel()
	select {
	case <-s.exited:
		return s.code, time.Since(start)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not return within 30s of SIGTERM:\n%s", s.log)
	}
	return 0, 0
}

// servePost sends body to /v1/records with the given Authorization header
// ("" for none).
func servePost(t *testing.T, c *http.Client, base, auth, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/records", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/records: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func serveStatus(t *testing.T, c *http.Client, base string) api.Status {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+serveTestToken)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	defer resp.Body.Close()
	var st api.Status
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func serveTotalRows(st api.Status) int {
	n := 0
	for _, v := range st.Totals {
		n += v
	}
	return n
}

// serveClinic returns a synthetic clinic dated well in the past (so no
// record is "in the future") as records and as NDJSON.
func serveClinic(t *testing.T, patients int) ([]*mapping.Record, []byte) {
	t.Helper()
	opts := synth.Options{Patients: patients, Seed: 11, Start: time.Now().Add(-synth.Span - 30*24*time.Hour)}
	var recs []*mapping.Record
	if err := synth.Generate(opts, func(r *mapping.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := synth.WriteNDJSON(&buf, opts); err != nil {
		t.Fatal(err)
	}
	return recs, buf.Bytes()
}

// serveAssertExactlyOnce checks that every record is held by exactly one
// resource in the EHR and that no identifier is held twice.
func serveAssertExactlyOnce(t *testing.T, ehr *fhirtest.Server, recs []*mapping.Record) {
	t.Helper()
	m, err := mapping.NewMapper(mapping.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[mapping.Kind]int{}
	for _, r := range recs {
		kinds[r.Kind]++
		id := m.Identifier(r.Kind, r.ID())
		if got := ehr.IdentifierHolders(id.System, id.Value); len(got) != 1 {
			t.Errorf("%s record #%d is held by %d resources, want 1", r.Kind, kinds[r.Kind], len(got))
		}
	}
	for typ, kind := range map[string]mapping.Kind{
		"Patient": mapping.KindPatient, "MedicationRequest": mapping.KindOrder,
		"MedicationAdministration": mapping.KindAdministration,
	} {
		if got := ehr.Count(typ); got != kinds[kind] {
			t.Errorf("EHR holds %d %s, want %d", got, typ, kinds[kind])
		}
	}
	if dups := ehr.DuplicateIdentifiers(); len(dups) > 0 {
		t.Errorf("duplicate identifiers in the EHR: %v", dups)
	}
}

func TestServeEndToEnd(t *testing.T) {
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	dir := t.TempDir()
	cfg := serveConfig(t, dir, ehr.URL, "", "  token: "+serveTestToken)
	s := startServe(t, cfg, "http")
	c := &http.Client{Timeout: 30 * time.Second}
	recs, body := serveClinic(t, 2)

	// Refused before anything is read: nothing stored.
	for _, tc := range []struct {
		name, auth, contentType string
		body                    []byte
		status                  int
	}{
		{"no token", "", "application/x-ndjson", body, http.StatusUnauthorized},
		{"malformed", "Token " + serveTestToken, "application/x-ndjson", body, http.StatusUnauthorized},
		{"wrong token", "Bearer nope", "application/x-ndjson", body, http.StatusForbidden},
		{"oversized", "Bearer " + serveTestToken, "application/x-ndjson", bytes.Repeat(body, 65536/len(body)+1), http.StatusRequestEntityTooLarge},
		{"wrong type", "Bearer " + serveTestToken, "text/csv", body, http.StatusUnsupportedMediaType},
	} {
		resp, b := servePost(t, c, s.base, tc.auth, tc.contentType, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.status, b)
		}
	}
	if st := serveStatus(t, c, s.base); serveTotalRows(st) != 0 {
		t.Fatalf("refused requests stored records: %v", st.Totals)
	}

	resp, b := servePost(t, c, s.base, "Bearer "+serveTestToken, "application/x-ndjson", body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	var results []api.RecordResult
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(recs) {
		t.Fatalf("%d results for %d records", len(results), len(recs))
	}
	for _, r := range results {
		if r.Status != api.StatusAccepted {
			t.Errorf("record %d: %+v", r.Index, r)
		}
	}
	testutil.WaitFor(t, 60*time.Second, "every record synced", func() bool {
		st := serveStatus(t, c, s.base)
		return st.Totals["synced"] == len(recs)
	})
	serveAssertExactlyOnce(t, ehr, recs)
	st := serveStatus(t, c, s.base)
	if st.LastSync == nil || !st.EHR.Reachable || st.OldestPendingAgeSeconds != 0 {
		t.Errorf("status after sync = %+v", st)
	}

	for path, want := range map[string]string{
		"/healthz": `"ok"`,
		"/readyz":  `"status":"ok"`,
		"/metrics": `ketamine_fhir_records_synced_total{kind="patient"} 2`,
	} {
		resp, err := c.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, want 200 with %s; body:\n%.2000s", path, resp.StatusCode, want, b)
		}
	}

	code, _ := s.stop(t)
	if code != exitOK {
		t.Errorf("serve exited %d, want 0:\n%s", code, s.log)
	}
	for _, r := range recs {
		if p := r.Patient; p != nil && strings.Contains(s.log.String(), p.MRN) {
			t.Error("the log holds an MRN")
		}
	}
}

// TestServeReadyWhileEHRDown: with the EHR down, serve is ready (/readyz
// 200) and accepts records; /v1/status and ketamine_fhir_ehr_up show the
// EHR down, then up once it answers, and the stored records go out.
func TestServeReadyWhileEHRDown(t *testing.T) {
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	ehr.SetFailureRate(1, http.StatusServiceUnavailable)
	dir := t.TempDir()
	cfg := serveConfig(t, dir, ehr.URL, "", "  token: "+serveTestToken+"\n  ehr_probe_interval: 100ms")
	s := startServe(t, cfg, "http")
	c := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	testutil.WaitFor(t, 60*time.Second, "a failed EHR probe", func() bool {
		return serveStatus(t, c, s.base).EHR.CheckedAt != nil
	})
	st := serveStatus(t, c, s.base).EHR
	if st.Reachable || st.ErrorClass != "http_503" {
		t.Errorf("EHR down: status %+v, want unreachable with class http_503", st)
	}
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("EHR down: /readyz = %d %s, want 200", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "\nketamine_fhir_ehr_up 0\n") {
		t.Errorf("EHR down: /metrics lacks ketamine_fhir_ehr_up 0")
	}
	recs, body := serveClinic(t, 2)
	if resp, b := servePost(t, c, s.base, "Bearer "+serveTestToken, "application/x-ndjson", body); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("EHR down: POST /v1/records = %d %s, want 202", resp.StatusCode, b)
	}

	ehr.ClearFaults()
	testutil.WaitFor(t, 60*time.Second, "the EHR up in /v1/status", func() bool {
		return serveStatus(t, c, s.base).EHR.Reachable
	})
	if st := serveStatus(t, c, s.base).EHR; st.ErrorClass != "" || st.CheckedAt == nil {
		t.Errorf("EHR up: status %+v", st)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "\nketamine_fhir_ehr_up 1\n") {
		t.Errorf("EHR up: /metrics lacks ketamine_fhir_ehr_up 1")
	}
	testutil.WaitFor(t, 60*time.Second, "the records stored during the outage synced", func() bool {
		return serveStatus(t, c, s.base).Totals["synced"] == len(recs)
	})
	serveAssertExactlyOnce(t, ehr, recs)
	if code, _ := s.stop(t); code != exitOK {
		t.Errorf("serve exited %d:\n%s", code, s.log)
	}
}

// TestServeShutdownDuringSync cancels serve (SIGTERM) while deliveries are
// in flight and cannot finish: serve returns within sync.shutdown_timeout,
// having aborted them, nothing is lost, and the next sync delivers exactly
// the records the outbox had not recorded as synced, every resource ending
// in the EHR exactly once.
func TestServeShutdownDuringSync(t *testing.T) {
	// The EHR behind a front that counts the requests of the sync (not the
	// EHR probe's GET metadata) as they arrive: fhirtest logs a request
	// only once it is answered.
	ehr := fhirtest.NewUnstartedServer()
	var arrived atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/metadata") {
			arrived.Add(1)
		}
		ehr.Handler().ServeHTTP(w, r)
	}))
	defer front.Close()
	defer ehr.Close() // first: ends the requests waiting out the latency
	ehr.SetLatency(50*time.Millisecond, 50*time.Millisecond)
	dir := t.TempDir()
	cfg := serveConfig(t, dir, front.URL+ehr.BasePath(), "", "  token: "+serveTestToken)
	const shutdownTimeout = 2 * time.Second // sync.shutdown_timeout in serveConfig
	s := startServe(t, cfg, "http")
	c := &http.Client{Timeout: 30 * time.Second}
	recs, body := serveClinic(t, 4)

	resp, b := servePost(t, c, s.base, "Bearer "+serveTestToken, "application/x-ndjson", body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	testutil.WaitFor(t, 60*time.Second, "the first delivery", func() bool { return ehr.Count("Patient") > 0 })
	// From now on the EHR takes an hour to answer; once a request of the
	// sync has arrived after this, a delivery is in flight for certain.
	ehr.SetLatency(time.Hour, time.Hour)
	seen := arrived.Load()
	testutil.WaitFor(t, 60*time.Second, "a delivery in flight", func() bool { return arrived.Load() > seen })

	code, took := s.stop(t)
	if code != exitOK {
		t.Errorf("serve exited %d, want 0:\n%s", code, s.log)
	}
	// Serve waits up to the deadline for the deliveries, which cannot
	// finish, then aborts them. Allow slack for a loaded machine, far
	// below the hour the EHR would take.
	if took < shutdownTimeout-100*time.Millisecond || took > shutdownTimeout+8*time.Second {
		t.Errorf("serve took %v to stop, want about sync.shutdown_timeout (%v)", took, shutdownTimeout)
	}
	if !strings.Contains(s.log.String(), "deliveries still running at the shutdown deadline were aborted") {
		t.Errorf("serve did not report aborting deliveries in flight:\n%s", s.log)
	}

	// Nothing is lost: every record is in the outbox, none dead, and not
	// all of them synced.
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	counts, err := st.Counts(t.Context())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	rows, synced := 0, 0
	for _, states := range counts {
		for state, n := range states {
			rows += n
			if state == store.StateSynced {
				synced += n
			}
		}
	}
	if rows != len(recs) || totalIn(counts, store.StateDead) != 0 {
		t.Fatalf("after the shutdown the outbox holds %d rows (%d dead), want %d, none dead: %v", rows, totalIn(counts, store.StateDead), len(recs), counts)
	}
	if synced == 0 || synced == len(recs) {
		t.Fatalf("%d of %d records synced at the shutdown: the sync was not interrupted mid-way", synced, len(recs))
	}

	// The next sync delivers the rest, each once.
	ehr.ClearFaults()
	var out, errOut testutil.Buffer
	if code := run(context.Background(), []string{"sync", "--config", cfg, "--deadline", "60s"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("sync after shutdown exited %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	m := syncLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no summary line in the sync output:\n%s", out.String())
	}
	if want := strconv.Itoa(len(recs) - synced); m[1] != want || m[5] != "0" {
		t.Errorf("sync: %s synced, %s dead; want %s (the records not synced at the shutdown), 0", m[1], m[5], want)
	}
	assertAllSynced(t, parseCountsTable(t, out.String()), kindsOf(recs))
	assertEHRExactlyOnce(t, ehr, recs)
}

// kindsOf counts records per kind.
func kindsOf(recs []*mapping.Record) map[string]int {
	kinds := map[string]int{}
	for _, r := range recs {
		kinds[string(r.Kind)]++
	}
	return kinds
}

func TestServeTLS(t *testing.T) {
	ehr := fhirtest.NewServer()
	defer ehr.Close()
	dir := t.TempDir()
	certPEM := serveTestCert(t, dir)
	cfg := serveConfig(t, dir, ehr.URL, "", fmt.Sprintf("  token: %s\n  tls_cert: %s\n  tls_key: %s",
		serveTestToken, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")))
	s := startServe(t, cfg, "https")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	testutil.WaitFor(t, 60*time.Second, "the EHR probe over TLS", func() bool {
		return serveStatus(t, c, s.base).EHR.Reachable
	})
	// Plain HTTP to the TLS port is refused.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http" + strings.TrimPrefix(s.base, "https") + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
	}
}

// serveTestCert writes a self-signed certificate for 127.0.0.1 and its key
// to dir/cert.pem and dir/key.pem, and returns the certificate PEM.
func serveTestCert(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ketamine-fhir test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM
}

func TestServeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	ehrURL := "http://127.0.0.1:1/fhir/R4" // never contacted
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name, addr, apiExtra string
		args                 []string
		want                 string // in stderr
	}{
		{"no token", "", "", nil, "api.token"},
		{"empty token", "", `  token: ""`, nil, "api.token"},
		{"token from unset env", "", "  token: ${KETAMINE_FHIR_SERVE_TEST_UNSET}", nil, "KETAMINE_FHIR_SERVE_TEST_UNSET"},
		{"missing TLS files", "", "  token: x\n  tls_cert: /nonexistent/c.pem\n  tls_key: /nonexistent/k.pem", nil, "api.tls_cert"},
		{"address in use", busy.Addr().String(), "  token: x", nil, "api.addr"},
		{"extra argument", "", "  token: x", []string{"extra"}, "Usage"},
		{"bad flag", "", "  token: x", []string{"--nope"}, "Usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.MkdirAll(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			cfg := serveConfig(t, sub, ehrURL, tc.addr, tc.apiExtra)
			var stderr testutil.Buffer
			args := append([]string{"serve", "--config", cfg}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if code := run(ctx, args, nil, io.Discard, &stderr); code != exitUsage {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not name %q:\n%s", tc.want, stderr.String())
			}
		})
	}
}
