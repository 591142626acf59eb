package migrations_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/salesos/salesos/migrations"
)

func openSQLite(t *testing.T, path string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("sqlite", path+"?_busy_timeout=10000&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestApplySQLiteIsIdempotentAndConcurrentSafe(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "salesos.db")
	all, err := migrations.List("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no sqlite migrations embedded")
	}
	// Several processes starting on one file at once (each its own handle):
	// each migration runs exactly once.
	var wg sync.WaitGroup
	applied := make([]int, 4)
	for i := range applied {
		db := openSQLite(t, path)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := migrations.ApplySQLite(context.Background(), db)
			if err != nil {
				t.Error(err)
				return
			}
			applied[i] = len(res.Applied)
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range applied {
		total += n
	}
	if total != len(all) {
		t.Fatalf("migrations applied %d times in all, want %d", total, len(all))
	}
	db := openSQLite(t, path)
	res, err := migrations.ApplySQLite(context.Background(), db)
	if err != nil || len(res.Applied) != 0 || res.Current != len(all) {
		t.Fatalf("second run: %+v %v", res, err)
	}
	var rows int
	if err := db.Get(&rows, `SELECT count(*) FROM schema_migrations`); err != nil || rows != len(all) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", rows, err, len(all))
	}
	if _, err := db.Exec(`INSERT INTO events (position, event_id, stream_id, version, type, data, metadata)
		VALUES (1, '6f1c1b9e-6a86-4f6e-9f3e-2b1b3a0c9d11', 's', 1, 't', '{"a":1}', '{}')`); err != nil {
		t.Fatalf("events table unusable: %v", err)
	}
	var at string
	if err := db.Get(&at, `SELECT recorded_at FROM events`); err != nil || len(at) != len("2006-01-02T15:04:05.000000Z") {
		t.Fatalf("default recorded_at %q (%v): want fixed-width RFC 3339 with microseconds", at, err)
	}
	if _, err := db.Exec(`INSERT INTO events (position, event_id, stream_id, version, type, data, metadata)
		VALUES (2, '6f1c1b9e-6a86-4f6e-9f3e-2b1b3a0c9d12', 's', 2, 't', '{nope', '{}')`); err == nil {
		t.Fatal("events accepted data that is not JSON")
	}
}

func TestApplySQLiteRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	db := openSQLite(t, filepath.Join(t.TempDir(), "salesos.db"))
	if _, err := migrations.ApplySQLite(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')`); err != nil {
		t.Fatal(err)
	}
	res, err := migrations.ApplySQLite(context.Background(), db)
	if !errors.Is(err, migrations.ErrNewerSchema) || res.Current != 9999 {
		t.Fatalf("err = %v (current %d), want ErrNewerSchema at 9999", err, res.Current)
	}
}
