// Package testdb gives each test its own freshly migrated PostgreSQL schema,
// so every test can run in parallel against the real database.
//
// The server comes from SALESOS_TEST_DATABASE_URL (default: the local
// PostgreSQL on 127.0.0.1:5432, database "test"). Database tests are never
// skipped: an unreachable server fails the test, so CI can not go green
// without having run them.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/migrations"
)

// DefaultURL is used when SALESOS_TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseURL is the server tests run against.
func BaseURL() string {
	if u := os.Getenv("SALESOS_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Schema is one test's private schema.
type Schema struct {
	Name string
	URL  string // BaseURL with search_path set to the schema
	DB   *sqlx.DB
}

// New creates an empty schema, applies every migration to it and drops it
// when the test ends.
func New(t testing.TB) *Schema {
	t.Helper()
	s := NewEmpty(t)
	if _, err := migrations.Apply(context.Background(), s.DB); err != nil {
		t.Fatalf("testdb: migrate %s: %v", s.Name, err)
	}
	return s
}

// NewEmpty creates a schema without applying migrations.
func NewEmpty(t testing.TB) *Schema {
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
	return &Schema{Name: name, URL: u, DB: db}
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
