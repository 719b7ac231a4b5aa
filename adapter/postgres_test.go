package adapter_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-fhir/ketamine-fhir/adapter"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/postgres"
	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/pgtest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/testutil"
)

// servePostgres starts a serving engine and a second (ingesting)
// instance on one fresh PostgreSQL outbox, against one fhirtest EHR.
type pgServe struct {
	srv             *fhirtest.Server
	serving, ingest *postgres.Store
	eng, other      *adapter.Engine
	dsn, appName    string
}

func servePostgres(t *testing.T, poll time.Duration) *pgServe {
	t.Helper()
	dsn, schema := pgtest.Schema(t)
	dsn += "&application_name=" + schema // to find this test's connections
	ctx := context.Background()
	p := &pgServe{srv: fhirtest.NewServer(), dsn: dsn, appName: schema}
	t.Cleanup(p.srv.Close)
	cfg := adapter.DefaultConfig()
	cfg.EHR.BaseURL = p.srv.URL
	cfg.Store = dsn
	cfg.Sync.PollInterval = adapter.Duration(poll)
	cfg.Sync.HeldRecheck = adapter.Duration(time.Hour)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	open := func() *postgres.Store {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	p.serving, p.ingest = open(), open()
	var err error
	if p.eng, err = adapter.New(cfg, p.serving, adapter.Options{Logger: slog.New(slog.DiscardHandler), Owner: "serve"}); err != nil {
		t.Fatal(err)
	}
	if p.other, err = adapter.New(cfg, p.ingest, adapter.Options{Logger: slog.New(slog.DiscardHandler), Owner: "other"}); err != nil {
		t.Fatal(err)
	}
	p.eng.Start(ctx)
	t.Cleanup(func() { p.eng.Stop(context.Background()) })
	return p
}

// synced reports whether n rows are synced.
func (p *pgServe) synced(n int) func() bool {
	return func() bool {
		c, err := p.ingest.Counts(context.Background())
		if err != nil {
			return false
		}
		got := 0
		for _, states := range c {
			got += states[store.StateSynced]
		}
		return got == n
	}
}

// TestPostgresNotifyWakesOtherInstance: records ingested by one instance
// wake another that polls once an hour, through LISTEN/NOTIFY.
func TestPostgresNotifyWakesOtherInstance(t *testing.T) {
	t.Parallel()
	p := servePostgres(t, time.Hour)
	recs := benchFullClinic(t, 2)
	// One record through the serving instance itself (its Ingest wakes
	// it): once it is synced, the instance is idle, waiting to be woken.
	if _, err := p.eng.Ingest(context.Background(), recs[:1]); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the serving instance's own record synced", p.synced(1))
	if _, err := p.other.Ingest(context.Background(), recs[1:]); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "records ingested by the other instance synced", p.synced(len(recs)))
	if dups := p.srv.DuplicateIdentifiers(); len(dups) > 0 {
		t.Errorf("%d identifiers held twice", len(dups))
	}
}

// TestPostgresServeSurvivesLostConnections: under serve, the database
// closing every connection of the adapter (a restart, a failover) is
// retried, not fatal: records ingested afterwards are still delivered.
func TestPostgresServeSurvivesLostConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := servePostgres(t, 200*time.Millisecond)
	recs := benchFullClinic(t, 2)
	half := len(recs) / 2
	if _, err := p.other.Ingest(ctx, recs[:half]); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the first half synced", p.synced(half))

	// The database drops every connection of this test.
	admin, err := pgx.Connect(ctx, pgtest.BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1`, p.appName).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("terminated no connection: the test shows nothing")
	}
	t.Logf("terminated %d connections", killed)

	if _, err := p.other.Ingest(ctx, recs[half:]); err != nil {
		// The ingesting store lost its connections too: one retry.
		if _, err := p.other.Ingest(ctx, recs[half:]); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "every record synced after the connections were lost", p.synced(len(recs)))
	if dups := p.srv.DuplicateIdentifiers(); len(dups) > 0 {
		t.Errorf("%d identifiers held twice", len(dups))
	}
}
