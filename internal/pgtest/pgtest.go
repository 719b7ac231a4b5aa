// Package pgtest gives tests a fresh PostgreSQL schema to work in.
//
// Schema connects to the database named by KETAMINE_FHIR_TEST_POSTGRES
// (default postgres://postgres@127.0.0.1:5432/test), creates a schema with
// a random name, drops it when the test ends, and returns a DSN whose
// search_path names that schema. When the database cannot be reached the
// test is skipped with a message saying how to run it; under CI (CI=true)
// it fails instead, so CI never passes by skipping. It is meant for
// _test.go files only.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN is the environment variable naming the test database.
const EnvDSN = "KETAMINE_FHIR_TEST_POSTGRES"

// DefaultDSN is the test database when EnvDSN is unset.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test"

// BaseDSN returns the test database's DSN (a postgres:// URL).
func BaseDSN() string {
	if s := os.Getenv(EnvDSN); s != "" {
		return s
	}
	return DefaultDSN
}

// Schema creates a fresh schema for t and returns a DSN (the base DSN with
// search_path set to the schema) and the schema's name. The schema and
// everything in it is dropped at the end of t.
func Schema(t testing.TB) (dsn, schema string) {
	t.Helper()
	base := BaseDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		unavailable(t, err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 6)
	rand.Read(b)
	schema = "kf_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return WithSearchPath(t, base, schema), schema
}

// WithSearchPath returns dsn (a postgres:// URL) with search_path set.
func WithSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: %s must be a postgres:// URL", EnvDSN)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	msg := "PostgreSQL is not reachable at " + redacted(BaseDSN()) + " (" + err.Error() + "); " +
		"start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or set " + EnvDSN
	if strings.EqualFold(os.Getenv("CI"), "true") {
		t.Fatalf("pgtest: %s; CI=true, so the PostgreSQL tests must run", msg)
	}
	t.Skipf("pgtest: %s; skipping (with CI=true this fails)", msg)
}

func redacted(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		return u.Redacted()
	}
	return "the configured DSN"
}
