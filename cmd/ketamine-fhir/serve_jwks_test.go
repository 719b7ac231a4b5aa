package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// TestServePublishesJWKS: serve publishes the public keys at
// api.jwks_path, the EHR registers the adapter by that URL (as Epic
// does), and the records serve accepts reach the EHR with SMART tokens.
func TestServePublishesJWKS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runCLI(t, "", "keys", "generate", "--alg", "ES384", "--out", filepath.Join(dir, "keys")).want(t, exitOK, "keys generate")
	ehr := fhirtest.NewServer(fhirtest.WithSMART(fhirtest.SMARTConfig{}))
	defer ehr.Close()
	cfgPath := serveConfig(t, dir, ehr.URL, "", "  token: "+serveTestToken+"\n  jwks_path: /.well-known/jwks.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	withAuth := strings.Replace(string(raw), "  retry_wait_max: 1s\n", `  retry_wait_max: 1s
  auth:
    mode: smart-backend
    client_id: clinic-adapter
    private_key: file:`+filepath.Join(dir, "keys", "private.pem")+`
    scopes: system/*.cruds
`, 1)
	if err := os.WriteFile(cfgPath, []byte(withAuth), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, cfgPath, "http")
	c := &http.Client{Timeout: 30 * time.Second}

	resp, err := c.Get(s.base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	published, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	file, _ := os.ReadFile(filepath.Join(dir, "keys", "jwks.json"))
	var got, want struct {
		Keys []map[string]any `json:"keys"`
	}
	if json.Unmarshal(published, &got) != nil || json.Unmarshal(file, &want) != nil || len(got.Keys) != 1 ||
		got.Keys[0]["kid"] != want.Keys[0]["kid"] || got.Keys[0]["d"] != nil || resp.StatusCode != 200 {
		t.Fatalf("published JWKS %d %s, want the keys of %s", resp.StatusCode, published, file)
	}

	ehr.SMART().Register(fhirtest.SMARTClient{ID: "clinic-adapter", JWKSURL: s.base + "/.well-known/jwks.json", Scopes: []string{"system/*.cruds"}})
	recs, body := serveClinic(t, 1)
	if resp, b := servePost(t, c, s.base, "Bearer "+serveTestToken, "application/x-ndjson", body); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	testutil.WaitFor(t, 60*time.Second, "every record synced", func() bool {
		return serveStatus(t, c, s.base).Totals["synced"] == len(recs)
	})
	if reqs, issued := ehr.SMART().TokenRequests(); issued < 1 {
		t.Errorf("%d token requests, %d issued", reqs, issued)
	}
	if strings.Contains(s.log.String(), "eyJ") {
		t.Error("serve logged an assertion or a JWT")
	}
}
