package adapter

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
)

// env is a getenv over a map.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// writeConfig writes a YAML file into a temporary folder.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// configProblems loads a config that must fail and returns its problems.
func configProblems(t *testing.T, path string, getenv func(string) string) []string {
	t.Helper()
	cfg, err := LoadConfig(path, getenv)
	if err == nil {
		t.Fatalf("LoadConfig succeeded: %+v", cfg)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("LoadConfig error %T %v, want *ConfigError", err, err)
	}
	if len(ce.Problems) == 0 || err.Error() == "" {
		t.Fatalf("ConfigError without problems: %q", err)
	}
	return ce.Problems
}

// requireProblem fails unless one problem holds every part.
func requireProblem(t *testing.T, problems []string, parts ...string) {
	t.Helper()
	for _, p := range problems {
		ok := true
		for _, part := range parts {
			ok = ok && strings.Contains(p, part)
		}
		if ok {
			return
		}
	}
	t.Errorf("no problem mentions %q in %q", parts, problems)
}

// TestDefaultYAMLIsDefaultConfig keeps the documented file and the code
// from drifting apart.
func TestDefaultYAMLIsDefaultConfig(t *testing.T) {
	cfg, err := LoadConfig("../configs/default.yaml", env(nil))
	if err != nil {
		t.Fatalf("LoadConfig(configs/default.yaml): %v", err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("configs/default.yaml and DefaultConfig differ:\nfile: %+v\ncode: %+v", *cfg, *want)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig does not validate: %v", err)
	}
	empty, err := LoadConfig("", env(nil))
	if err != nil || !reflect.DeepEqual(empty, DefaultConfig()) {
		t.Errorf("LoadConfig(\"\") = %+v, %v; want the defaults", empty, err)
	}
}

func TestLoadConfigUnknownKey(t *testing.T) {
	for _, tc := range []struct{ name, yaml, key string }{
		{"nested", "ehr:\n  base_ur: http://ehr.example.org/fhir\n", "base_ur"},
		{"top level", "stores: sqlite:x.db\n", "stores"},
		{"mapping", "limits:\n  max_dose: 10\n", "max_dose"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems := configProblems(t, writeConfig(t, tc.yaml), env(nil))
			requireProblem(t, problems, tc.key)
		})
	}
	// Every unknown key of a file at once.
	problems := configProblems(t, writeConfig(t, "ehr:\n  base_ur: x\nsync:\n  bogus: 1\n"), env(nil))
	requireProblem(t, problems, "base_ur")
	requireProblem(t, problems, "bogus")
}

// TestLoadConfigRenamedKey: sync.retry_max (a duration) shared its name
// with ehr.retry_max (a count); it is now sync.retry_backoff_max, and the
// old key is an error that names the new one, in a file and in the
// environment, while ehr.retry_max stays valid.
func TestLoadConfigRenamedKey(t *testing.T) {
	const want = "sync.retry_max was renamed to sync.retry_backoff_max"
	path := writeConfig(t, "ehr:\n  retry_max: 2\nsync:\n  retry_min: 1s\n  retry_max: 2m\n")
	problems := configProblems(t, path, env(nil))
	if len(problems) != 1 {
		t.Fatalf("problems = %q, want the renamed key only", problems)
	}
	requireProblem(t, problems, path, "line 5", want)
	if strings.Contains(problems[0], "unknown key") {
		t.Errorf("the renamed key is reported as unknown: %q", problems[0])
	}
	// Among other problems, each is still reported.
	problems = configProblems(t, writeConfig(t, "sync:\n  retry_max: 2m\n  bogus: 1\n"), env(nil))
	requireProblem(t, problems, want)
	requireProblem(t, problems, "unknown key bogus")
	// A key of that name elsewhere is only unknown.
	problems = configProblems(t, writeConfig(t, "api:\n  retry_max: 2m\n"), env(nil))
	requireProblem(t, problems, "unknown key retry_max")

	// The environment variable of the old key.
	problems = configProblems(t, "", env(map[string]string{"KETAMINE_FHIR_SYNC_RETRY_MAX": "2m"}))
	requireProblem(t, problems, "KETAMINE_FHIR_SYNC_RETRY_MAX", want, "KETAMINE_FHIR_SYNC_RETRY_BACKOFF_MAX")

	// The new key, in the file and in the environment.
	cfg, err := LoadConfig(writeConfig(t, "sync:\n  retry_backoff_max: 2m\n"), env(nil))
	if err != nil || cfg.Sync.RetryBackoffMax != Duration(2*time.Minute) {
		t.Fatalf("retry_backoff_max in the file: %v, %v", cfg, err)
	}
	cfg, err = LoadConfig("", env(map[string]string{"KETAMINE_FHIR_SYNC_RETRY_BACKOFF_MAX": "3m"}))
	if err != nil || cfg.Sync.RetryBackoffMax != Duration(3*time.Minute) {
		t.Fatalf("KETAMINE_FHIR_SYNC_RETRY_BACKOFF_MAX: %v, %v", cfg, err)
	}
	problems = configProblems(t, writeConfig(t, "sync:\n  retry_min: 10s\n  retry_backoff_max: 1s\n"), env(nil))
	requireProblem(t, problems, "sync.retry_backoff_max", "retry_min <= retry_backoff_max")
}

func TestLoadConfigEnvOverrides(t *testing.T) {
	path := writeConfig(t, "ehr:\n  base_url: http://file.example.org/fhir\n")
	cfg, err := LoadConfig(path, env(map[string]string{
		"KETAMINE_FHIR_EHR_BASE_URL":       "https://ehr.example.org/api/FHIR/R4",
		"KETAMINE_FHIR_PATIENTS_CREATE":    "false",
		"KETAMINE_FHIR_SYNC_LEASE":         "3m",
		"KETAMINE_FHIR_SYNC_CONCURRENCY":   "3",
		"KETAMINE_FHIR_IDENTIFIERS_BASE":   "https://other.example.org/sid",
		"KETAMINE_FHIR_LIMITS_MAX_DOSE_MG": "250.5",
		"KETAMINE_FHIR_STORE":              "sqlite:/var/lib/k/outbox.db",
	}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := DefaultConfig()
	want.EHR.BaseURL = "https://ehr.example.org/api/FHIR/R4"
	want.Patients.Create = false
	want.Sync.Lease = Duration(3 * time.Minute)
	want.Sync.Concurrency = 3
	want.Mapping.Identifiers.Base = "https://other.example.org/sid"
	want.Mapping.Limits.MaxDoseMg = 250.5
	want.Store = "sqlite:/var/lib/k/outbox.db"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("with overrides:\n got %+v\nwant %+v", *cfg, *want)
	}

	for _, tc := range []struct{ name, value, key string }{
		{"KETAMINE_FHIR_SYNC_LEASE", "soon", "sync.lease"},
		{"KETAMINE_FHIR_PATIENTS_CREATE", "maybe", "patients.create"},
		{"KETAMINE_FHIR_SYNC_BATCH_SIZE", "lots", "sync.batch_size"},
	} {
		problems := configProblems(t, "", env(map[string]string{tc.name: tc.value}))
		requireProblem(t, problems, tc.key, tc.name)
	}
	// An override that parses but is invalid is named by its key.
	problems := configProblems(t, "", env(map[string]string{"KETAMINE_FHIR_SYNC_LEASE": "10ms"}))
	requireProblem(t, problems, "sync.lease")
}

func TestLoadConfigReferences(t *testing.T) {
	yaml := `
ehr:
  base_url: ${EHR_URL:http://127.0.0.1:9/fhir/R4}
  auth:
    mode: bearer
    token: ${EHR_TOKEN}
api:
  addr: ${API_HOST:127.0.0.1}:${API_PORT:8080}
`
	path := writeConfig(t, yaml)
	cfg, err := LoadConfig(path, env(map[string]string{"EHR_TOKEN": "tok-123", "API_PORT": "9443"}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.EHR.Auth.Token != "tok-123" || cfg.EHR.BaseURL != "http://127.0.0.1:9/fhir/R4" || cfg.API.Addr != "127.0.0.1:9443" {
		t.Errorf("references: token %q base %q addr %q", cfg.EHR.Auth.Token, cfg.EHR.BaseURL, cfg.API.Addr)
	}
	cfg, err = LoadConfig(path, env(map[string]string{"EHR_TOKEN": "t", "EHR_URL": "https://ehr.example.org/fhir"}))
	if err != nil || cfg.EHR.BaseURL != "https://ehr.example.org/fhir" {
		t.Errorf("a set variable wins over the default: %q, %v", cfg.EHR.BaseURL, err)
	}

	// A missing variable is named, with the key that needs it.
	problems := configProblems(t, path, env(nil))
	requireProblem(t, problems, "ehr.auth.token", "EHR_TOKEN")
}

func TestLoadConfigFileSecret(t *testing.T) {
	const secret = "s3cr3t-value-never-printed"
	dir := t.TempDir()
	secretPath := filepath.Join(dir, "token")
	if err := os.WriteFile(secretPath, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, "ehr:\n  auth:\n    mode: bearer\n    token: file:"+secretPath+"\napi:\n  token: file:${SECRETS}/token\n")
	cfg, err := LoadConfig(path, env(map[string]string{"SECRETS": dir}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.EHR.Auth.Token != secret || cfg.API.Token != secret {
		t.Errorf("file: secrets read as %q and %q, want the file's content without its newline", cfg.EHR.Auth.Token, cfg.API.Token)
	}

	// With other problems in the file, the secret is not in the error.
	bad := writeConfig(t, "ehr:\n  auth:\n    mode: bearer\n    token: file:"+secretPath+"\nlog:\n  level: loud\nsync:\n  concurrency: 0\n")
	_, err = LoadConfig(bad, env(nil))
	if err == nil {
		t.Fatal("LoadConfig of a bad file succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error holds the secret: %q", err)
	}
	// A secret file that cannot be read is named by its key.
	problems := configProblems(t, writeConfig(t, "api:\n  token: file:"+filepath.Join(dir, "missing")+"\n"), env(nil))
	requireProblem(t, problems, "api.token", "missing")
	// file: is a secret's reference only: elsewhere it is a plain value.
	cfg, err = LoadConfig(writeConfig(t, "api:\n  tls_cert: file:x\n  tls_key: file:y\n"), env(nil))
	if err != nil || cfg.API.TLSCert != "file:x" {
		t.Errorf("file: in a non-secret key: %q, %v", cfg.API.TLSCert, err)
	}
}

// TestTokenURL holds what the TokenURL doc says: optional with
// client-secret and smart-backend (the EHR client discovers it). A
// smart-backend key is checked (parsed, key policy) by Validate.
func TestTokenURL(t *testing.T) {
	key, _, _, err := ehr.GenerateKey(ehr.AlgES384)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, mode, tokenURL, key string
		problem                   string // "" for none
	}{
		{"smart-backend discovers", "smart-backend", "", string(key), ""},
		{"smart-backend configured", "smart-backend", "https://auth.example.org/token", string(key), ""},
		{"client-secret configured", "client-secret", "https://auth.example.org/token", "", ""},
		{"client-secret discovers", "client-secret", "", "", ""},
		{"smart-backend bad key", "smart-backend", "", "-----BEGIN PRIVATE KEY-----", "ehr.auth.private_key: ehr: auth private key: no PEM private key found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.EHR.Auth = AuthConfig{Mode: tc.mode, ClientID: "c", ClientSecret: "s", PrivateKey: tc.key, TokenURL: tc.tokenURL}
			err := cfg.Validate()
			if tc.problem == "" && err != nil {
				t.Errorf("Validate: %v", err)
			}
			if tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)) {
				t.Errorf("Validate = %v, want a problem %q", err, tc.problem)
			}
		})
	}
}

func TestLoadConfigEveryProblem(t *testing.T) {
	yaml := `
store: mysql:x
ehr:
  base_url: not-a-url
  auth:
    mode: kerberos
  write_strategy:
    default: fire-and-forget
    Condition: transaction
  transaction_size: 0
  max_rate: -1
  timeout: 5m
sync:
  concurrency: 0
  retry_min: 10s
  retry_backoff_max: 1s
  stale_derived: forget
  auth_probe: 0s
api:
  tls_cert: cert.pem
log:
  level: loud
`
	problems := configProblems(t, writeConfig(t, yaml), env(nil))
	for _, key := range []string{"store: ", "ehr.base_url: ", "ehr.auth.mode: ", "ehr.write_strategy.default: ",
		"ehr.write_strategy.Condition: ", "sync.concurrency: ", "sync.retry_min", "api.tls_cert", "log.level: ",
		"ehr.transaction_size: ", "ehr.max_rate: ", "sync.stale_derived: ", "sync.auth_probe: ",
		"sync.lease: must be at least 1s and longer than ehr.timeout (5m0s)"} {
		found := false
		for _, p := range problems {
			found = found || strings.HasPrefix(p, key)
		}
		if !found {
			t.Errorf("no problem names %q: %q", key, problems)
		}
	}
	// Bad durations in the file are all reported too.
	problems = configProblems(t, writeConfig(t, "sync:\n  lease: soon\n  retry_min: never\n"), env(nil))
	requireProblem(t, problems, "soon")
	requireProblem(t, problems, "never")
}

func TestRetryPolicySchedule(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := func() time.Time { return t0 }
	noJitter := func() float64 { return 0 }
	for _, tc := range []struct {
		name       string
		p          RetryPolicy
		attempts   int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first failure", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 1, 0, time.Second},
		{"second", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 2, 0, 2 * time.Second},
		{"third", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 3, 0, 4 * time.Second},
		{"ninth", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 9, 0, 256 * time.Second},
		{"capped", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 10, 0, 5 * time.Minute},
		{"far beyond the cap", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 1000, 0, 5 * time.Minute},
		{"no attempt yet", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 0, 0, time.Second},
		{"defaults", RetryPolicy{}, 3, 0, 4 * time.Second},
		{"default cap", RetryPolicy{}, 40, 0, 5 * time.Minute},
		{"Retry-After wins", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 1, 30 * time.Second, 30 * time.Second},
		{"shorter Retry-After loses", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 3, time.Second, 4 * time.Second},
		{"Retry-After capped", RetryPolicy{Min: time.Second, Max: 5 * time.Minute}, 1, time.Hour, 5 * time.Minute},
		{"jitter subtracts up to 20%", RetryPolicy{Min: time.Second, Max: 5 * time.Minute, Jitter: func() float64 { return 0.5 }}, 2, 0, 1800 * time.Millisecond},
		{"jitter does not shorten Retry-After", RetryPolicy{Min: time.Second, Max: 5 * time.Minute, Jitter: func() float64 { return 0.99 }}, 1, 10 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.Now = now
			if p.Jitter == nil {
				p.Jitter = noJitter
			}
			if got := p.Next(tc.attempts, tc.retryAfter).Sub(t0); got != tc.want {
				t.Errorf("Next(%d, %v) = now+%v, want now+%v", tc.attempts, tc.retryAfter, got, tc.want)
			}
		})
	}
	// Without an injected jitter the delay stays within [80%, 100%].
	p := RetryPolicy{Min: time.Second, Max: time.Minute, Now: now}
	for i := 0; i < 100; i++ {
		if d := p.Next(3, 0).Sub(t0); d < 3200*time.Millisecond || d > 4*time.Second {
			t.Fatalf("Next(3) with random jitter = now+%v, want within [3.2s, 4s]", d)
		}
	}
}
