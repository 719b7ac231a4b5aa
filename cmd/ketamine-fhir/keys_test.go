package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysGenerate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	r := runCLI(t, "", "keys", "generate", "--alg", "ES384", "--out", dir)
	r.want(t, exitOK, "keys generate")
	priv, err := os.ReadFile(filepath.Join(dir, "private.pem"))
	if err != nil || !strings.Contains(string(priv), "PRIVATE KEY") {
		t.Fatalf("private.pem: %v", err)
	}
	if strings.Contains(r.stdout+r.stderr, string(priv[40:80])) {
		t.Error("the private key was printed")
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "jwks.json"))
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks.json: %v %s", err, raw)
	}
	k := set.Keys[0]
	if k["alg"] != "ES384" || k["use"] != "sig" || k["crv"] != "P-384" || k["d"] != nil || !strings.Contains(r.stdout, k["kid"].(string)) {
		t.Errorf("JWK %v; stdout %q", k, r.stdout)
	}
	// Never overwrite a key.
	again := runCLI(t, "", "keys", "generate", "--alg", "ES384", "--out", dir)
	again.want(t, exitUsage, "keys generate over an existing key")
	if now, _ := os.ReadFile(filepath.Join(dir, "private.pem")); string(now) != string(priv) {
		t.Error("the existing key was overwritten")
	}
	runCLI(t, "", "keys", "generate", "--alg", "HS256", "--out", t.TempDir()).want(t, exitUsage, "keys generate --alg HS256")
}

// TestConfigCheckHidesSecrets: config check reports problems of auth
// settings without printing a secret, a token or a key.
func TestConfigCheckHidesSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const secret, token = "s3cret-VALUE-42", "tok-VALUE-43"
	weak := writeFile(t, dir, "weak.pem", []byte("-----BEGIN PRIVATE KEY-----\nTUlJQ2VBSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NBbUl3Z2dKZUFnRUFBb0dCQU\n-----END PRIVATE KEY-----\n"))
	for name, body := range map[string]string{
		"secret": "ehr:\n  base_url: http://127.0.0.1:1/fhir\n  auth:\n    mode: client-secret\n    client_secret: " + secret + "\n",
		"token":  "ehr:\n  base_url: nope\n  auth:\n    mode: bearer\n    token: " + token + "\n",
		"key":    "ehr:\n  base_url: http://127.0.0.1:1/fhir\n  auth:\n    mode: smart-backend\n    client_id: c\n    private_key: file:" + weak + "\napi:\n  jwks_path: jwks\n",
	} {
		r := runCLI(t, "", "config", "check", "--config", writeFile(t, dir, name+".yaml", []byte(body)))
		r.want(t, exitUsage, "config check "+name)
		out := r.stdout + r.stderr
		for _, leak := range []string{secret, token, "TUlJQ2VB", "PRIVATE KEY"} {
			if strings.Contains(out, leak) {
				t.Errorf("%s: config check printed a secret (%.6s…):\n%s", name, leak, out)
			}
		}
		if name == "key" && (!strings.Contains(out, "ehr.auth.private_key: ") || !strings.Contains(out, "api.jwks_path: ")) {
			t.Errorf("key: problems not named:\n%s", out)
		}
	}
}
