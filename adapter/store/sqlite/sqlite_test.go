package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/sqlite"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/storetest"
)

func open(t *testing.T, path string, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceFile(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "outbox.db"))
	})
}

func TestConformanceMemory(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store {
		return open(t, sqlite.MemoryPath)
	})
}

// rawDB opens the file directly, to look under the store.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMigrationsApplyOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "outbox.db")
	for range 3 {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	db := rawDB(t, path)
	rows, err := db.Query(`SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(v, " ", name))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1 0001_outbox.sql", "2 0002_sent_hash_derived_meta.sql", "3 0003_attempts.sql"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upsert(ctx, []store.NewRecord{
		{Kind: "patient", LocalID: "P1", Hash: "h1", Payload: []byte(`{"a":1}`)},
		{Kind: "order", LocalID: "O1", Hash: "h1", Payload: []byte(`{"b":2}`)},
	}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Claim(ctx, "w", 1, now, time.Minute)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Claim = %v, %v", recs, err)
	}
	if err := s.Finish(ctx, recs[0].ID, "w", store.Outcome{State: store.StateSynced, Hash: "h1", EHRID: "Patient/9", EHRVersion: "2"}, now); err != nil {
		t.Fatal(err)
	}
	want, err := s.Get(ctx, "patient", "P1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s2 := open(t, path)
	got, err := s2.Get(ctx, "patient", "P1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("after reopen:\n got %+v\nwant %+v", got, want)
	}
	if r, err := s2.Get(ctx, "order", "O1"); err != nil || r.State != store.StatePending || string(r.Payload) != `{"b":2}` {
		t.Errorf("order after reopen = %+v, %v", r, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "outbox.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, path)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = sqlite.Open(context.Background(), path)
	if !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "99") {
		t.Errorf("error %q does not name the database's version", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, path := range []string{
		"",
		filepath.Join(dir, "missing-dir", "outbox.db"),
		"file:" + filepath.Join(dir, "x.db"),
		filepath.Join(dir, "x.db") + "?mode=ro",
		dir, // a directory
	} {
		if s, err := sqlite.Open(context.Background(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
	// Not a database at all.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not sqlite ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.Open(context.Background(), junk); err == nil {
		s.Close()
		t.Error("Open of a non-database file succeeded, want an error")
	}
}

func TestFileIsPrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "outbox.db")
	open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("database file mode = %v, want no group or other access", perm)
	}
}

func TestRescueErrorClass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, sqlite.MemoryPath)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.Upsert(ctx, []store.NewRecord{{Kind: "patient", LocalID: "P", Hash: "h"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "w", 1, now, time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Rescue(ctx, now.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("Rescue = %d, %v", n, err)
	}
	r, err := s.Get(ctx, "patient", "P")
	if err != nil {
		t.Fatal(err)
	}
	if r.ErrorClass != store.ErrorClassLeaseExpired || !r.NextAttemptAt.Equal(now.Add(time.Minute)) {
		t.Errorf("rescued: class %q next %v, want %q %v", r.ErrorClass, r.NextAttemptAt, store.ErrorClassLeaseExpired, now.Add(time.Minute))
	}
}

// TestTwoStoresOneFile is two processes on one file (serve plus a CLI
// command): writes wait for each other instead of failing, and claims stay
// exclusive.
func TestTwoStoresOneFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	a, b := open(t, path), open(t, path)
	var recs []store.NewRecord
	for i := range 100 {
		recs = append(recs, store.NewRecord{Kind: "score", LocalID: fmt.Sprint(i), Hash: "h"})
	}
	if _, err := a.Upsert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
		errs = make(chan error, 4)
	)
	for i, s := range []*sqlite.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprint("w", i)
			for {
				got, err := s.Claim(ctx, owner, 5, now, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, r := range got {
					seen[r.ID]++
				}
				mu.Unlock()
				for _, r := range got {
					if err := s.Finish(ctx, r.ID, owner, store.Outcome{State: store.StateSynced, Hash: r.Hash}, now); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != 100 {
		t.Errorf("claimed %d rows, want 100", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("row %d claimed %d times", id, n)
		}
	}
}

// The crash test: a child process (this test binary) upserts batches and
// reports each commit on stdout; the parent kills it with SIGKILL and checks
// that every reported batch is in the database.

const crashChildEnv = "KETAMINE_FHIR_SQLITE_CRASH_CHILD"

func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("helper process for TestKillNineLosesNothing")
	}
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for b := 0; ; b++ {
		batch := make([]store.NewRecord, 100)
		for i := range batch {
			batch[i] = store.NewRecord{Kind: "score", LocalID: fmt.Sprintf("%d-%d", b, i), Hash: "h",
				Payload: []byte(strings.Repeat("x", 1500))}
		}
		if _, err := s.Upsert(ctx, batch); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("committed", b) // after the commit returned
	}
}

func TestKillNineLosesNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	last := -1
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
		if n, ok := strings.CutPrefix(line, "committed "); ok {
			last, _ = strconv.Atoi(n)
			if last == 20 {
				// Kill it while it is writing later batches.
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	cmd.Wait() //nolint:errcheck // killed on purpose
	if last != 20 {
		t.Fatalf("child reported batch %d before it stopped, want 20", last)
	}

	ctx := context.Background()
	s := open(t, path)
	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := c["score"][store.StatePending]
	// Batches 0..20 were reported committed; the child may have committed a
	// few more before the signal landed, but never part of a batch.
	if got < 2100 || got%100 != 0 {
		t.Fatalf("after kill -9: %d rows, want at least 2100 in whole batches of 100", got)
	}
	for b := 0; b <= 20; b++ {
		for _, i := range []int{0, 99} {
			if _, err := s.Get(ctx, "score", fmt.Sprintf("%d-%d", b, i)); err != nil {
				t.Errorf("batch %d row %d: %v", b, i, err)
			}
		}
	}
}
