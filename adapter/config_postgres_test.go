package adapter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigPostgres(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("store: postgres://kf@db.example:5432/outbox\npostgres:\n  password: file:"+pwFile+"\n  pool_size: 16\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(file, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Postgres.Password != "from-file" || cfg.Postgres.PoolSize != 16 {
		t.Errorf("postgres = %+v", cfg.Postgres)
	}
	driver, arg, err := ParseStore(cfg.Store)
	if driver != "postgres" || arg != cfg.Store || err != nil {
		t.Errorf("ParseStore = %q, %q, %v", driver, arg, err)
	}

	// From the environment, and bad values named by key without the URL.
	_, err = LoadConfig("", env(map[string]string{
		"KETAMINE_FHIR_STORE":              "postgres://kf:s3cret@%zz/outbox",
		"KETAMINE_FHIR_POSTGRES_POOL_SIZE": "1",
		"KETAMINE_FHIR_POSTGRES_HEARTBEAT": "1ms",
	}))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("LoadConfig: %v, want a *ConfigError", err)
	}
	all := strings.Join(ce.Problems, "\n")
	for _, want := range []string{"store: not a valid postgres://", "postgres.pool_size", "postgres.heartbeat"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems %q lack %q", all, want)
		}
	}
	if strings.Contains(all, "s3cret") {
		t.Errorf("problems show the password: %q", all)
	}
}

func TestRedactStore(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:outbox.db":                           "sqlite:outbox.db",
		"postgres://kf:s3cret@db:5432/outbox":        "postgres://kf:xxxxx@db:5432/outbox",
		"postgres://kf@db/outbox?password=s3cret":    "postgres://kf@db/outbox?password=xxxxx",
		"host=db user=kf password=s3cret dbname=out": "host=db user=kf password=xxxxx dbname=out",
	} {
		if got := RedactStore(in); got != want {
			t.Errorf("RedactStore(%q) = %q, want %q", in, got, want)
		}
	}
}
