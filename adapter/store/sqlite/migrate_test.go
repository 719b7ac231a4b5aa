package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/column"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/schema"
)

func TestEmbeddedMigrations(t *testing.T) {
	t.Parallel()
	ms, err := schema.Load(migrationFiles)
	if err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
	if ms[0].Version != 1 || ms[0].Name != "0001_outbox.sql" {
		t.Errorf("first migration = %d %s, want 1 0001_outbox.sql", ms[0].Version, ms[0].Name)
	}
}

// openV1 makes a database at path as a binary that knew only migration 1
// left it, holding one row per state, and returns the rows as the store
// should read them back.
func openV1(t *testing.T, path string) map[string]store.Record {
	t.Helper()
	ctx := context.Background()
	ms, err := schema.Load(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrate(ctx, db, ms[:1], slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate to version 1: %v", err)
	}
	at := func(h int) time.Time { return time.Date(2029, 5, 6, h, 0, 0, 0, time.UTC) }
	want := map[string]store.Record{
		"synced": {Kind: "patient", LocalID: "synced", Hash: "h1", State: store.StateSynced, Attempts: 2,
			EHRID: "Patient/9", EHRVersion: "3", SyncedHash: "h1", SyncedAt: at(3), Payload: []byte(`{"p":1}`)},
		"pending": {Kind: "order", LocalID: "pending", Hash: "h2", State: store.StatePending,
			EHRID: "MedicationRequest/4", EHRVersion: "1", SyncedHash: "h1", SyncedAt: at(2), Payload: []byte(`{"o":1}`)},
		"waiting": {Kind: "score", LocalID: "waiting", Hash: "h", State: store.StateWaiting, Attempts: 1,
			WaitKind: "administration", WaitID: "A1", ErrorClass: "dependency_pending", Payload: []byte(`{}`)},
		"retrying": {Kind: "order", LocalID: "retrying", Hash: "h", State: store.StateRetrying, Attempts: 3,
			NextAttemptAt: at(9), ErrorClass: "http_503", ErrorDetail: "busy", Payload: []byte(`{}`)},
		"in_flight": {Kind: "administration", LocalID: "in_flight", Hash: "h", State: store.StateInFlight, Attempts: 1,
			LeaseOwner: "w1", LeaseExpires: at(10), Payload: []byte(`{}`)},
		"dead": {Kind: "administration", LocalID: "dead", Hash: "h", State: store.StateDead, Attempts: 1,
			ErrorClass: "rejected_422", ErrorDetail: `[{"severity":"error"}]`, Payload: []byte(`{}`)},
	}
	for _, name := range []string{"synced", "pending", "waiting", "retrying", "in_flight", "dead"} {
		r := want[name]
		r.CreatedAt, r.UpdatedAt = at(1), at(4)
		res, err := db.ExecContext(ctx, `INSERT INTO outbox (kind, local_id, kind_rank, hash, state, attempts,
				next_attempt_at, lease_owner, lease_expires, wait_kind, wait_id, error_class, error_detail,
				ehr_id, ehr_version, synced_hash, created_at, updated_at, synced_at, payload)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Kind, r.LocalID, store.KindRank(r.Kind), r.Hash, r.State, r.Attempts,
			column.ToNanos(r.NextAttemptAt), r.LeaseOwner, column.ToNanos(r.LeaseExpires), r.WaitKind, r.WaitID, r.ErrorClass, r.ErrorDetail,
			r.EHRID, r.EHRVersion, r.SyncedHash, column.ToNanos(r.CreatedAt), column.ToNanos(r.UpdatedAt), column.ToNanos(r.SyncedAt), r.Payload)
		if err != nil {
			t.Fatalf("insert v1 row %s: %v", name, err)
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			t.Fatal(err)
		}
		want[name] = r
	}
	return want
}

// TestMigrateFromV1 opens a database a version-1 binary wrote: Open adds
// the version-2 columns and table, and every row reads back as it was.
func TestMigrateFromV1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	want := openV1(t, path)

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open of a version-1 database: %v", err)
	}
	defer s.Close()
	for name, w := range want {
		got, err := s.Get(ctx, w.Kind, w.LocalID)
		if err != nil {
			t.Fatalf("Get(%s): %v", name, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s after migration:\n got %+v\nwant %+v", name, got, w)
		}
	}
	var versions []int
	rows, err := s.read.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(versions) != "[1 2 3]" {
		t.Errorf("schema_migrations versions = %v, want [1 2 3]", versions)
	}
	// The new columns work on an old row: the lease of the version-1 run
	// is still w1's.
	fl := want["in_flight"]
	out := store.Outcome{State: store.StateSynced, Hash: fl.Hash, EHRID: "MedicationAdministration/1",
		SentHash: "f1", SetDerived: true, Derived: []string{"Observation|s|v"}}
	if err := s.Finish(ctx, fl.ID, "w1", out, time.Date(2029, 5, 6, 11, 0, 0, 0, time.UTC)); err != nil {
		t.Fatalf("Finish of a version-1 row: %v", err)
	}
	if got, err := s.GetByID(ctx, fl.ID); err != nil || got.State != store.StateSynced ||
		got.SentHash != "f1" || fmt.Sprint(got.Derived) != "[Observation|s|v]" {
		t.Errorf("after Finish: %+v, %v; want synced with SentHash f1 and one derived key", got, err)
	}
	if err := s.SetMeta(ctx, "k", "v"); err != nil {
		t.Errorf("SetMeta after migration: %v", err)
	} else if v, err := s.Meta(ctx, "k"); err != nil || v != "v" {
		t.Errorf("Meta after migration = %q, %v; want v, nil", v, err)
	}
	var sent, derived string
	if err := s.read.QueryRowContext(ctx, `SELECT sent_hash, derived FROM outbox WHERE id = ?`, want["synced"].ID).
		Scan(&sent, &derived); err != nil || sent != "" || derived != "" {
		t.Errorf("new columns of an old row = %q, %q, %v; want empty", sent, derived, err)
	}
}
