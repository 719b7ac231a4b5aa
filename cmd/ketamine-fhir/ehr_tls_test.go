package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// TestEHRMutualTLSAndClientSecret: `ehr` with --tls-cert, --client-ca and
// a client-secret SMART client; `sync` reaches it with ehr.tls.* and
// ehr.auth.* from its config.
func TestEHRMutualTLSAndClientSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testutil.NewCA(t, "test CA")
	caFile := writeFile(t, dir, "ca.pem", ca.PEM)
	srvCert, srvKey := ca.Issue(t, "ehr", true, time.Now().Add(time.Hour)).WriteFiles(t, dir, "server")
	cliCert, cliKey := ca.Issue(t, "adapter", false, time.Now().Add(time.Hour)).WriteFiles(t, dir, "client")
	secretFile := writeFile(t, dir, "secret", []byte("s3cret-from-file\n"))
	base, _, stdout, _ := startEHR(t, "--tls-cert", srvCert, "--tls-key", srvKey, "--client-ca", caFile,
		"--smart-client", "clinic-adapter", "--smart-secret", "s3cret-from-file")
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s, want https", base)
	}
	if line := <-stdout.lines; !strings.Contains(line, "token endpoint https://") {
		t.Errorf("banner %q", line)
	}
	cfg := writeConfig(t, dir, base, "")
	raw, _ := os.ReadFile(cfg)
	withAuth := strings.Replace(string(raw), "  retry_wait_max: 50ms\n", `  retry_wait_max: 50ms
  auth:
    mode: client-secret
    client_id: clinic-adapter
    client_secret: file:`+secretFile+`
    scopes: system/*.cruds
  tls:
    client_cert: `+cliCert+`
    client_key: `+cliKey+`
    ca_bundle: `+caFile+`
`, 1)
	if withAuth == string(raw) {
		t.Fatal("config template changed")
	}
	if err := os.WriteFile(cfg, []byte(withAuth), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClinic(t, dir, 1, 5)
	runCLI(t, "", "import", "--quiet", "--config", cfg, c.path).want(t, exitOK, "import")
	s := runCLI(t, "", "sync", "--quiet", "--config", cfg)
	s.want(t, exitOK, "sync")
	assertAllSynced(t, parseCountsTable(t, s.stdout), c.kinds())
	if strings.Contains(s.stdout+s.stderr, "s3cret") {
		t.Error("sync printed the client secret")
	}

	// Without the client certificate the EHR refuses the connection.
	noCert := strings.Replace(withAuth, "    client_cert: "+cliCert+"\n    client_key: "+cliKey+"\n", "", 1)
	cfg2 := writeFile(t, filepath.Join(dir), "nocert.yaml", []byte(strings.Replace(noCert, filepath.Join(dir, "o.db"), filepath.Join(dir, "o2.db"), 1)))
	runCLI(t, "", "import", "--quiet", "--config", cfg2, c.path).want(t, exitOK, "import")
	if r := runCLI(t, "", "sync", "--quiet", "--config", cfg2); r.code == exitOK && strings.Contains(r.stdout, " 0 retrying") {
		t.Errorf("sync without a client certificate delivered:\n%s", r.stdout)
	}
}
