package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/eventstore/sqlite"
)

// target is the database a measurement runs on: the bench's PostgreSQL
// schema, or a fresh SQLite file (the embedded default) in a temporary
// directory. Measurements on SQLite carry the suffix "_sqlite" in their
// name and "sqlite" as their backend.
type target struct {
	backend string // "postgres" or "sqlite"
	suffix  string
	env     *env
	dir     string // SQLite files live here
	files   atomic.Int64
}

func postgresTarget(e *env) *target { return &target{backend: "postgres", env: e} }

func sqliteTarget() (*target, error) {
	dir, err := os.MkdirTemp("", "salesos-bench-sqlite-")
	if err != nil {
		return nil, err
	}
	return &target{backend: "sqlite", suffix: "_sqlite", dir: dir}, nil
}

// name is the measurement's name on this target.
func (t *target) name(bench string) string { return bench + t.suffix }

// freshURL returns the URL of an empty database: the PostgreSQL schema
// emptied (every table but schema_migrations), or a new SQLite file.
func (t *target) freshURL(ctx context.Context) (string, error) {
	if t.backend == "postgres" {
		return t.env.url, t.env.reset(ctx)
	}
	return "sqlite://" + filepath.Join(t.dir, fmt.Sprintf("bench-%d.db", t.files.Add(1))), nil
}

// close removes the SQLite files.
func (t *target) close() error {
	if t.dir == "" {
		return nil
	}
	return os.RemoveAll(t.dir)
}

// openSQLite opens and migrates a fresh SQLite file and its event store,
// the way `salesos serve` does. Close the store, then the database.
func (t *target) openSQLite(ctx context.Context) (*app.Database, *sqlite.Store, error) {
	url, err := t.freshURL(ctx)
	if err != nil {
		return nil, nil, err
	}
	db, err := app.OpenDatabase(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, nil, err
	}
	store, err := sqlite.New(ctx, db.Write, db.Read, sqlite.Options{Logger: quietLogger})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, store, nil
}
