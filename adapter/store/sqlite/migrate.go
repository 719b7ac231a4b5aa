package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/store/internal/schema"
)

// ErrSchemaTooNew is returned by Open when the database was migrated by a
// newer version of the adapter than this one: its schema may not mean what
// this code expects, so the database is not used.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this binary")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate brings the schema of db up to the last of ms, in one write
// transaction, and returns the versions it applied. It refuses a database
// whose recorded version is beyond the last of ms.
func migrate(ctx context.Context, db *sql.DB, ms []schema.Migration, log *slog.Logger) ([]int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrate: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("sqlite: migrate: create schema_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return nil, fmt.Errorf("sqlite: migrate: read version: %w", err)
	}
	latest := ms[len(ms)-1].Version
	if current > latest {
		return nil, fmt.Errorf("%w: the database is at version %d, this binary knows versions up to %d", ErrSchemaTooNew, current, latest)
	}
	var applied []int
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, time.Now().UnixNano()); err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: record: %w", m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: migrate: commit: %w", err)
	}
	for _, v := range applied {
		log.Info("sqlite: applied schema migration", "version", v)
	}
	return applied, nil
}
