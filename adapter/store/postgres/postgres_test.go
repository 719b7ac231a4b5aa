package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/postgres"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/storetest"
	"github.com/ketamine-fhir/ketamine-fhir/internal/pgtest"
)

func open(t *testing.T) *postgres.Store {
	t.Helper()
	dsn, _ := pgtest.Schema(t)
	s, err := postgres.Open(context.Background(), dsn, postgres.WithPoolSize(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Exercise(t, func(t *testing.T) store.Store { return open(t) })
}

// TestTwoInstances opens the same outbox twice, as two processes would,
// and checks that claims never overlap and that one instance's Upsert
// and synced Finish wake the other's Notify.
func TestTwoInstances(t *testing.T) {
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t)
	a, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(ctx, dsn) // migrations already applied: a no-op
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	notified := b.Notify()
	// The listener connects in the background; Ping through it is not
	// possible, so wait for the first notification of a loop of upserts.
	var recs []store.NewRecord
	for i := range 40 {
		recs = append(recs, store.NewRecord{Kind: "patient", LocalID: fmt.Sprint("p", i), Hash: "h", Payload: []byte("{}")})
	}
	if _, err := a.Upsert(ctx, recs[:1]); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case <-notified:
			got = true
		case <-time.After(50 * time.Millisecond):
			if _, err := a.Upsert(ctx, []store.NewRecord{{Kind: "patient", LocalID: "p0", Hash: time.Now().String(), Payload: []byte("{}")}}); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("no notification from the other instance's Upsert")
		}
	}
	if _, err := a.Upsert(ctx, recs[1:]); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var (
		mu   sync.Mutex
		seen = map[int64]string{}
		wg   sync.WaitGroup
	)
	for i, s := range []*postgres.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprint("w", i)
			for {
				rows, err := s.Claim(ctx, owner, 3, now, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rows {
					if o, dup := seen[r.ID]; dup {
						t.Errorf("row %d claimed by %s and %s", r.ID, o, owner)
					}
					seen[r.ID] = owner
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Fatalf("claimed %d rows, want 40", len(seen))
	}
	n, err := a.Heartbeat(ctx, "x", now, time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("Heartbeat = %d, %v; want 1", n, err)
	}
	if n, err = b.Heartbeat(ctx, "y", now, time.Minute); err != nil || n != 2 {
		t.Fatalf("Heartbeat = %d, %v; want 2", n, err)
	}
	if n, err = b.Heartbeat(ctx, "y", now.Add(2*time.Minute), time.Minute); err != nil || n != 1 {
		t.Fatalf("Heartbeat after x expired = %d, %v; want 1", n, err)
	}
	if err := b.Leave(ctx, "y"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrorsHideDSN(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://u:s3cret@127.0.0.1:1/db?connect_timeout=1")
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error shows the password: %v", err)
	}
	_, err = postgres.Open(context.Background(), "postgres://u:s3cret@[bad")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open of a bad DSN: %v", err)
	}
}
