// Package migrations holds the numbered SQL files that create every table of
// SalesOS, embedded in the binary, and the runner that applies them. No
// table is created anywhere else.
//
// Files are named NNNN_description.sql and applied in order, each in its own
// transaction together with its row in schema_migrations. A database that
// has migrations this binary does not know (made by a newer salesos) is
// refused rather than silently used.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// ErrNewerSchema means the database was migrated by a newer salesos.
var ErrNewerSchema = errors.New("database schema is newer than this salesos binary")

// List returns the migrations of a dialect ("postgres" or "sqlite") in order.
func List(dialect string) ([]Migration, error) {
	entries, err := fs.ReadDir(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations for %q: %w", dialect, err)
	}
	var out []Migration
	for _, e := range entries {
		num, rest, ok := strings.Cut(e.Name(), "_")
		if !ok || !strings.HasSuffix(rest, ".sql") {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration file %q: %w", e.Name(), err)
		}
		body, err := fs.ReadFile(files, path.Join(dialect, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(rest, ".sql"), SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := range out {
		if out[i].Version != i+1 {
			return nil, fmt.Errorf("migrations of %q are not numbered 1..n without gaps (found %d at index %d)", dialect, out[i].Version, i)
		}
	}
	return out, nil
}

// Result reports what Apply did.
type Result struct {
	Applied []Migration
	Current int
}

// Apply brings a PostgreSQL database (the schema in its search_path) up to
// date. Concurrent callers (several instances starting at once) serialize on
// an advisory lock, so each migration runs exactly once.
func Apply(ctx context.Context, db *sqlx.DB) (Result, error) {
	all, err := List("postgres")
	if err != nil {
		return Result{}, err
	}
	conn, err := db.Connx(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(hashtext(current_schema() || ':salesos:migrations'))`); err != nil {
		return Result{}, fmt.Errorf("lock migrations: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext(current_schema() || ':salesos:migrations'))`)

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER     PRIMARY KEY,
		name       TEXT        NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
	)`); err != nil {
		return Result{}, fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	if err := conn.GetContext(ctx, &current, `SELECT COALESCE(max(version), 0) FROM schema_migrations`); err != nil {
		return Result{}, err
	}
	if current > len(all) {
		return Result{Current: current}, fmt.Errorf("%w (database at migration %d, this binary knows %d)", ErrNewerSchema, current, len(all))
	}
	res := Result{Current: current}
	for _, m := range all[current:] {
		tx, err := conn.BeginTxx(ctx, nil)
		if err != nil {
			return res, err
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return res, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			tx.Rollback()
			return res, err
		}
		if err := tx.Commit(); err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, m)
		res.Current = m.Version
	}
	return res, nil
}

// ApplySQLite brings a SQLite database up to date with the migrations in
// sqlite/. It keeps the same bookkeeping as Apply (schema_migrations) and
// refuses a database migrated by a newer salesos with ErrNewerSchema.
//
// SQLite has one writer per file, so no advisory lock is needed: each
// migration runs in its own BEGIN IMMEDIATE transaction, which takes the
// write lock up front, and the current version is read again under that
// lock. Several processes starting on one file at once therefore apply each
// migration exactly once (the losers wait on the busy timeout, then find the
// work done). db should carry a busy_timeout for that; the event store's
// sqlite.OpenDB sets one.
func ApplySQLite(ctx context.Context, db *sqlx.DB) (Result, error) {
	all, err := List("sqlite")
	if err != nil {
		return Result{}, err
	}
	// One connection for the whole run: BEGIN and COMMIT are plain
	// statements here and must reach the same connection.
	conn, err := db.Connx(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
	)`); err != nil {
		return Result{}, fmt.Errorf("create schema_migrations: %w", err)
	}
	var res Result
	for {
		applied, done, err := applyNextSQLite(ctx, conn, all, &res)
		if err != nil {
			return res, err
		}
		if done {
			return res, nil
		}
		res.Applied = append(res.Applied, applied)
		res.Current = applied.Version
	}
}

// applyNextSQLite applies the first migration the database lacks, in one
// write transaction; done reports that there was none.
func applyNextSQLite(ctx context.Context, conn *sqlx.Conn, all []Migration, res *Result) (applied Migration, done bool, err error) {
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return Migration{}, false, fmt.Errorf("begin migration: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Without ctx: a cancelled run must still end its transaction.
			conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		}
	}()
	var current int
	if err := conn.GetContext(ctx, &current, `SELECT COALESCE(max(version), 0) FROM schema_migrations`); err != nil {
		return Migration{}, false, err
	}
	res.Current = current
	if current > len(all) {
		return Migration{}, false, fmt.Errorf("%w (database at migration %d, this binary knows %d)", ErrNewerSchema, current, len(all))
	}
	if current == len(all) {
		return Migration{}, true, nil
	}
	m := all[current]
	if _, err := conn.ExecContext(ctx, m.SQL); err != nil {
		return Migration{}, false, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.Version, m.Name); err != nil {
		return Migration{}, false, err
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return Migration{}, false, fmt.Errorf("commit migration %04d_%s: %w", m.Version, m.Name, err)
	}
	committed = true
	return m, false, nil
}
