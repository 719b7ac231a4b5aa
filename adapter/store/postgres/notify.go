package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store"
	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/column"
)

var (
	_ store.Notifier  = (*Store)(nil)
	_ store.Instances = (*Store)(nil)
)

// channelName is the NOTIFY channel of the outbox in schema: channels are
// per database, so each schema's outbox gets its own (a short hash keeps
// the name within PostgreSQL's 63-byte identifiers).
func channelName(schema string) string {
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("ketamine_fhir_outbox_%016x", h.Sum64())
}

// notifyTx sends the outbox's notification in tx; PostgreSQL delivers it
// to the listeners when tx commits, once however often it was sent.
func (s *Store) notifyTx(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, s.channel)
	return err
}

// Notify returns the channel that fires when rows became claimable; see
// store.Notifier. The first call starts a listener on its own connection
// (outside the pool), which reconnects after a lost connection; Close
// stops it.
func (s *Store) Notify() <-chan struct{} {
	s.notifyOnce.Do(func() {
		s.notify = make(chan struct{}, 1)
		ctx, cancel := context.WithCancel(context.Background())
		s.stopListen, s.listenDone = cancel, make(chan struct{})
		go s.listen(ctx)
	})
	return s.notify
}

// listen keeps a LISTEN connection until ctx ends. After a failure it
// reconnects after a pause and fires once, since notifications sent while
// it was away are lost.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres: listening for outbox notifications failed; reconnecting", "err", redact(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		s.fire()
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.fire()
	}
}

func (s *Store) fire() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Heartbeat records owner as live until now+ttl in the instances table,
// deletes expired instances and returns the number of live ones; see
// store.Instances.
func (s *Store) Heartbeat(ctx context.Context, owner string, now time.Time, ttl time.Duration) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO instances (owner, expires_at) VALUES ($1, $2)
			ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at`, owner, column.ToNanos(now.Add(ttl))); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM instances WHERE expires_at < $1`, column.ToNanos(now)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT COUNT(*) FROM instances`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: heartbeat: %w", err)
	}
	return max(n, 1), nil
}

// Leave deletes owner from the instances table.
func (s *Store) Leave(ctx context.Context, owner string) error {
	if _, err := s.exec(ctx, false, `DELETE FROM instances WHERE owner = $1`, owner); err != nil {
		return fmt.Errorf("postgres: leave: %w", err)
	}
	return nil
}
