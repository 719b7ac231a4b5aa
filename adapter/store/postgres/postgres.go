package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
)

// Option configures Open.
type Option func(*config)

type config struct {
	log      *slog.Logger
	password string
	poolSize int32
}

// WithLogger sets the logger for the few events the store reports (schema
// migrations applied, the listener reconnecting). It never logs payloads,
// local ids, error details or the DSN. nil means a logger that discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithPassword sets the password, overriding any in the DSN, so that the
// DSN in a config file need not hold the secret.
func WithPassword(pw string) Option {
	return func(c *config) { c.password = pw }
}

// WithPoolSize sets the most connections the pool opens. Zero or negative
// keeps the default (8, or pool_max_conns in the DSN).
func WithPoolSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.poolSize = int32(n)
		}
	}
}

// Store is the PostgreSQL outbox. It is safe for concurrent use by any
// number of goroutines and processes. Create it with Open.
type Store struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	channel string // the NOTIFY channel of this outbox's schema
	applied []int  // the migrations Open applied

	notifyOnce sync.Once
	notify     chan struct{}
	stopListen context.CancelFunc
	listenDone chan struct{}

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database of dsn (a postgres:// URL or key=value
// string), brings the schema up to date and returns the store. Errors never
// include the DSN (it may carry a password). It returns an error wrapping
// ErrSchemaTooNew when a newer binary migrated the database.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors may quote the DSN: drop the detail.
		return nil, errors.New("postgres: open: the DSN is not a valid postgres:// URL or key=value string")
	}
	if cfg.password != "" {
		pc.ConnConfig.Password = cfg.password
	}
	if cfg.poolSize > 0 {
		pc.MaxConns = cfg.poolSize
	} else if pc.MaxConns < 8 {
		pc.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", redact(err))
	}
	s := &Store{pool: pool, log: cfg.log}
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", redact(err))
	}
	if schema == nil || *schema == "" {
		pool.Close()
		return nil, errors.New("postgres: open: the search_path names no existing schema")
	}
	s.channel = channelName(*schema)
	if s.applied, err = migrate(ctx, pool, cfg.log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return s, nil
}

// Migrate opens the outbox of dsn, applies any pending migrations and
// reports the versions applied (none when the schema was up to date).
func Migrate(ctx context.Context, dsn string, opts ...Option) ([]int, error) {
	s, err := Open(ctx, dsn, opts...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.applied, nil
}

// redact keeps the class of a connection error but not its text, which
// pgconn builds from the host, user and database (not PHI, but a DSN may
// be pasted with its password in odd places). PostgreSQL's own errors
// (*pgconn.PgError) are kept: they name SQLSTATEs and objects, never
// values, in the statements this driver runs.
func redact(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return err
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return fmt.Errorf("cannot connect to the database: %w", errors.Unwrap(ce))
	}
	return err
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("postgres: ping: %w", redact(err))
	}
	return nil
}

// Close stops the listener, if any, and closes the pool after the queries
// in progress finish. Calling Close again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopListen != nil {
			s.stopListen()
			<-s.listenDone
		}
		s.pool.Close()
	})
	return nil
}

// retryable reports whether a transaction failed only because it lost a
// race PostgreSQL resolved by aborting it: a deadlock between two
// instances' transactions, or a serialization failure.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// inTx runs fn in a transaction and commits it if fn returns nil. A
// transaction aborted by a deadlock or a serialization failure is run
// again, a few times, from the start.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for try := 0; try < 5; try++ {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(try+1) * 5 * time.Millisecond)
	}
	return redact(err)
}
