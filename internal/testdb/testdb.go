// Package testdb gives each test its own freshly migrated database, so every
// test can run in parallel: a PostgreSQL schema, or, when the test binary
// runs on the SQLite backend (BackendEnv=sqlite), a SQLite file of its own.
//
// The PostgreSQL server comes from SALESOS_TEST_DATABASE_URL (default: the
// local PostgreSQL on 127.0.0.1:5432, database "test"). Database tests are
// never skipped: an unreachable server fails the test, so CI can not go
// green without having run them.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/pgdriver"
	"github.com/salesos/salesos/driver/sqlitedriver"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/migrations"
)

// BackendEnv selects the backend a test binary runs on: "postgres"
// (default), "esdb" (EventStoreDB as the event store, PostgreSQL for the
// rest) or "sqlite" (everything in one SQLite file, the embedded default).
// testdb.RerunOn re-runs a suite with another backend.
const BackendEnv = "SALESOS_TEST_BACKEND"

// Backend is the backend this test binary runs on.
func Backend() string {
	if b := os.Getenv(BackendEnv); b != "" {
		return b
	}
	return "postgres"
}

// DefaultURL is used when SALESOS_TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseURL is the server tests run against.
func BaseURL() string {
	if u := os.Getenv("SALESOS_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Schema is one test's private database: a PostgreSQL schema or a SQLite
// file.
type Schema struct {
	Name string
	// URL is SALESOS_DATABASE_URL for a server on this database: BaseURL
	// with search_path set to the schema, or sqlite://<file>.
	URL string
	// DB is where writes go: the schema's pool, or the SQLite file's single
	// writer connection.
	DB *sqlx.DB
	// Read is where queries may go: DB itself on PostgreSQL, the read-only
	// pool on SQLite.
	Read *sqlx.DB
	// SQLite is set when the database is a SQLite file.
	SQLite bool
	// Driver is the query side's driver for this database.
	Driver driver.Driver
}

// New creates an empty database on the test binary's backend, applies every
// migration to it and removes it when the test ends.
func New(t testing.TB) *Schema {
	t.Helper()
	if Backend() == "sqlite" {
		return NewSQLite(t)
	}
	return NewPostgres(t)
}

// NewSQLite creates and migrates a SQLite file whatever the backend.
func NewSQLite(t testing.TB) *Schema {
	t.Helper()
	s := newEmptySQLite(t)
	if _, err := migrations.ApplySQLite(context.Background(), s.DB); err != nil {
		t.Fatalf("testdb: migrate %s: %v", s.Name, err)
	}
	return s
}

// NewPostgres creates and migrates a PostgreSQL schema whatever the
// backend (for tests of PostgreSQL-only code).
func NewPostgres(t testing.TB) *Schema {
	t.Helper()
	s := NewEmptyPostgres(t)
	if _, err := migrations.Apply(context.Background(), s.DB); err != nil {
		t.Fatalf("testdb: migrate %s: %v", s.Name, err)
	}
	return s
}

// NewEmpty creates a database on the test binary's backend without
// applying migrations (a server started on it migrates it itself).
func NewEmpty(t testing.TB) *Schema {
	t.Helper()
	if Backend() != "sqlite" {
		return NewEmptyPostgres(t)
	}
	return newEmptySQLite(t)
}

func newEmptySQLite(t testing.TB) *Schema {
	t.Helper()
	path := filepath.Join(t.TempDir(), "salesos.db")
	db, err := sqlite.OpenDB(context.Background(), path, sqlite.DBOptions{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return &Schema{Name: path, URL: "sqlite://" + path, DB: db.Write, Read: db.Read, SQLite: true, Driver: sqlitedriver.New()}
}

// NewEmptyPostgres creates a PostgreSQL schema without applying migrations.
func NewEmptyPostgres(t testing.TB) *Schema {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])

	admin, err := sqlx.Open("pgx", BaseURL())
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+name); err != nil {
		admin.Close()
		t.Fatalf("testdb: cannot create a schema on %s (is PostgreSQL running? set SALESOS_TEST_DATABASE_URL): %v", redact(BaseURL()), err)
	}
	u, err := WithSearchPath(BaseURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlx.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(12)
	t.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+name+` CASCADE`); err != nil {
			t.Logf("testdb: drop %s: %v", name, err)
		}
		admin.Close()
	})
	return &Schema{Name: name, URL: u, DB: db, Read: db, Driver: pgdriver.New()}
}

// WithSearchPath returns a connection URL whose sessions use the schema.
func WithSearchPath(base, schema string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the configured database"
	}
	return u.Redacted()
}
