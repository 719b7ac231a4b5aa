package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/schema"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// MemoryPath is the path of a private in-memory database: one connection,
// gone on Close. For tests and the demo.
const MemoryPath = ":memory:"

// readConns is the size of the read pool of a file database.
const readConns = 4

// Option configures Open.
type Option func(*config)

type config struct {
	log         *slog.Logger
	busyTimeout time.Duration
	syncFull    bool
}

// WithLogger sets the logger for the few events the store reports (schema
// migrations applied). It never logs payloads, local ids or error details.
// Defaults to a logger that discards everything; nil means the default.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithBusyTimeout sets how long a write waits for the database lock held by
// another process on the same file before failing. Writes of this process
// never contend: they queue on its one write connection. Defaults to 5s;
// zero or negative means the default.
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.busyTimeout = d
		}
	}
}

// WithSynchronousFull syncs the write-ahead log to disk at every commit
// (PRAGMA synchronous=FULL), so that committed transactions survive power
// loss and operating system crashes, not only the death of the process. It
// costs one fsync per write transaction. Defaults to synchronous=NORMAL; see
// the package documentation.
func WithSynchronousFull() Option {
	return func(c *config) { c.syncFull = true }
}

// Store is the SQLite outbox. It is safe for concurrent use. Create it with
// Open; the zero value is not usable.
type Store struct {
	write *sql.DB // one connection, transactions BEGIN IMMEDIATE
	read  *sql.DB // read-only pool; the same *sql.DB as write for MemoryPath
	st    *statements
	log   *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the outbox database at path and brings its
// schema up to date. path is a file system path or MemoryPath. It returns an
// error wrapping ErrSchemaTooNew when a newer binary migrated the database.
// A new database file is created readable by its owner only: it holds
// patient data.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := config{
		log:         slog.New(slog.DiscardHandler),
		busyTimeout: 5 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	if strings.ContainsRune(path, '?') || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open %q: path must be a file path or %q, not a URI", path, MemoryPath)
	}
	ms, err := schema.Load(migrationFiles)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	syncMode := "NORMAL"
	if cfg.syncFull {
		syncMode = "FULL"
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", cfg.busyTimeout.Milliseconds())

	s := &Store{log: cfg.log}
	if path == MemoryPath {
		db, err := sql.Open("sqlite", MemoryPath+"?_txlock=immediate&"+common)
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
		}
		// The database lives as long as its one connection: never let
		// database/sql close it or open a second (empty) one.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		s.write, s.read = db, db
	} else {
		if err := createPrivate(path); err != nil {
			return nil, err
		}
		w, err := sql.Open("sqlite", path+"?_txlock=immediate&"+common+
			"&_pragma=journal_mode(WAL)&_pragma=synchronous("+syncMode+")")
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		s.write = w
	}

	if _, err := migrate(ctx, s.write, ms, cfg.log); err != nil {
		s.write.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}

	if s.read == nil {
		r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
		if err != nil {
			s.write.Close()
			return nil, fmt.Errorf("sqlite: open %q: read pool: %w", path, err)
		}
		r.SetMaxOpenConns(readConns)
		r.SetMaxIdleConns(readConns)
		s.read = r
		if err := r.PingContext(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite: open %q: read pool: %w", path, err)
		}
	}
	if s.st, err = prepareStatements(ctx, s.write, s.read); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	return s, nil
}

// createPrivate creates the database file with mode 0600 if it does not
// exist, so that SQLite (which gives its -wal and -shm files the mode of the
// database) never makes patient data world-readable.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	return nil
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes the database after the queries in progress finish; callers
// stop using the store first. Calling Close again returns the first call's
// result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.st != nil {
			errs = append(errs, s.st.close())
		}
		if s.read != nil && s.read != s.write {
			errs = append(errs, s.read.Close())
		}
		errs = append(errs, s.write.Close())
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}
