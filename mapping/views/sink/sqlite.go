package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/ketamine-fhir/ketamine-fhir/mapping/views"
)

// SQLiteBatch is the number of rows, over all tables, inserted in one
// transaction.
const SQLiteBatch = 5000

var tableName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// DB is one SQLite database holding one table per view. Its tables share
// one transaction, committed every SQLiteBatch rows and on Close, so rows
// of several views may be written in any interleaving. A DB is not safe
// for concurrent use.
type DB struct {
	ctx    context.Context
	db     *sql.DB
	tx     *sql.Tx
	n      int // rows in tx
	tables []*Table
	closed bool
}

// OpenSQLite opens (creating it if needed) the SQLite database at path.
// ctx bounds every statement of the DB's life.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sink: opening %s: %w", path, err)
	}
	return &DB{ctx: ctx, db: db}, nil
}

// Table is the Writer of one view's rows into its table.
type Table struct {
	db     *DB
	name   string
	cols   []views.Column
	kinds  []kind
	insert string
	stmt   *sql.Stmt // prepared on db.tx; nil after a commit
	args   []any
}

// Table replaces the table name (dropped if it exists) with one typed for
// cols (INTEGER, REAL or TEXT, all nullable; see the package doc) and
// returns the writer of its rows. name must be a letter, then letters,
// digits or underscores.
func (d *DB) Table(name string, cols []views.Column) (*Table, error) {
	if !tableName.MatchString(name) {
		return nil, fmt.Errorf("sink: %q is not a table name (a letter, then letters, digits or underscores)", name)
	}
	t := &Table{db: d, name: name, cols: cols, kinds: make([]kind, len(cols)), args: make([]any, len(cols))}
	defs := make([]string, len(cols))
	marks := make([]string, len(cols))
	names := make([]string, len(cols))
	for i, c := range cols {
		t.kinds[i] = columnKind(c)
		typ := "TEXT"
		switch t.kinds[i] {
		case kindBool, kindInt:
			typ = "INTEGER"
		case kindFloat:
			typ = "REAL"
		}
		defs[i] = `"` + c.Name + `" ` + typ
		names[i] = `"` + c.Name + `"`
		marks[i] = "?"
	}
	t.insert = fmt.Sprintf(`INSERT INTO "%s" (%s) VALUES (%s)`, name, strings.Join(names, ", "), strings.Join(marks, ", "))
	tx, err := d.begin()
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(d.ctx, `DROP TABLE IF EXISTS "`+name+`"`); err != nil {
		return nil, fmt.Errorf("sink: dropping table %s: %w", name, err)
	}
	if _, err := tx.ExecContext(d.ctx, fmt.Sprintf(`CREATE TABLE "%s" (%s)`, name, strings.Join(defs, ", "))); err != nil {
		return nil, fmt.Errorf("sink: creating table %s: %w", name, err)
	}
	d.tables = append(d.tables, t)
	return t, nil
}

func (d *DB) begin() (*sql.Tx, error) {
	if d.closed {
		return nil, errors.New("sink: database closed")
	}
	if d.tx == nil {
		tx, err := d.db.BeginTx(d.ctx, nil)
		if err != nil {
			return nil, err
		}
		d.tx = tx
	}
	return d.tx, nil
}

// commit ends the current transaction; the next row begins another.
func (d *DB) commit() error {
	if d.tx == nil {
		return nil
	}
	for _, t := range d.tables {
		if t.stmt != nil {
			t.stmt.Close()
			t.stmt = nil
		}
	}
	err := d.tx.Commit()
	d.tx, d.n = nil, 0
	return err
}

// Write inserts one row.
func (t *Table) Write(r views.Row) error {
	if err := checkWidth(r, t.cols); err != nil {
		return err
	}
	for i, v := range r {
		if v == nil {
			t.args[i] = nil
			continue
		}
		x, err := convert(t.cols[i], t.kinds[i], v)
		if err != nil {
			return err
		}
		t.args[i] = x
	}
	tx, err := t.db.begin()
	if err != nil {
		return err
	}
	if t.stmt == nil {
		if t.stmt, err = tx.PrepareContext(t.db.ctx, t.insert); err != nil {
			return fmt.Errorf("sink: table %s: %w", t.name, err)
		}
	}
	if _, err := t.stmt.ExecContext(t.db.ctx, t.args...); err != nil {
		return fmt.Errorf("sink: inserting into %s: %w", t.name, err)
	}
	t.db.n++
	if t.db.n >= SQLiteBatch {
		return t.db.commit()
	}
	return nil
}

// Close commits the rows written so far. The table stays writable until
// the DB is closed: Close only marks the end of this view's rows.
func (t *Table) Close() error { return t.db.commit() }

// Close commits what is pending and closes the database.
func (d *DB) Close() error {
	if d.closed {
		return nil
	}
	err := d.commit()
	d.closed = true
	if cerr := d.db.Close(); err == nil {
		err = cerr
	}
	return err
}
