package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/migrations"
)

// embeddedConfig is the configuration `salesos serve` runs with when
// nothing is set, with dataDir as SALESOS_DATA_DIR.
func embeddedConfig(dataDir string) Config {
	return Config{
		Addr: "127.0.0.1:0", DataDir: dataDir, DatabaseURL: defaultDatabaseURL(dataDir), Env: "development",
		TenantClaim: "org_id", PlanClaim: "plan", AutoMigrate: true,
		ConsistencyWait: time.Second, ShutdownTimeout: time.Second, WebhookTimeout: time.Second,
	}
}

// oneLine fails unless err is a single line: what `serve` prints must be a
// reason, not a dump.
func oneLine(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Open succeeded, want an error mentioning %q", want)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Fatalf("error %q: want one line mentioning %q", msg, want)
	}
}

func TestOpenEmbeddedDefault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a, err := Open(context.Background(), embeddedConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := os.Stat(filepath.Join(dir, DefaultSQLiteFile)); err != nil {
		t.Fatalf("no database file in the data directory: %v", err)
	}
	if got := a.DatabaseName(); got != "sqlite "+filepath.Join(dir, DefaultSQLiteFile) {
		t.Fatalf("DatabaseName = %q", got)
	}
	if a.DB == a.ReadDB {
		t.Fatal("SQLite reads should use the read-only pool, not the writer")
	}
}

func TestOpenUnwritableDataDirectory(t *testing.T) {
	// A data directory below a regular file can never be created (this
	// holds for root too, unlike file permissions).
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), embeddedConfig(filepath.Join(file, "data")), nil)
	oneLine(t, err, "not writable")
	if !errors.Is(err, sqlite.ErrNotWritable) {
		t.Fatalf("error %v does not wrap sqlite.ErrNotWritable", err)
	}
}

func TestOpenDatabaseOfANewerVersion(t *testing.T) {
	dir := t.TempDir()
	cfg := embeddedConfig(dir)
	a, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	db := openRaw(t, filepath.Join(dir, DefaultSQLiteFile))
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')`); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), cfg, nil)
	oneLine(t, err, "newer")
	if !errors.Is(err, migrations.ErrNewerSchema) {
		t.Fatalf("error %v does not wrap migrations.ErrNewerSchema", err)
	}
}

func TestOpenLockedDatabase(t *testing.T) {
	t.Parallel() // waits out the 5s busy timeout
	dir := t.TempDir()
	// Another program holds the write lock of a fresh file (a sqlite3 shell
	// inside BEGIN EXCLUSIVE, say) for longer than the busy timeout.
	db := openRaw(t, filepath.Join(dir, DefaultSQLiteFile))
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `PRAGMA journal_mode=WAL`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), `BEGIN EXCLUSIVE`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), `ROLLBACK`)
	_, err = Open(context.Background(), embeddedConfig(dir), nil)
	oneLine(t, err, "locked")
	if !errors.Is(err, sqlite.ErrLocked) {
		t.Fatalf("error %v does not wrap sqlite.ErrLocked", err)
	}
}

func openRaw(t *testing.T, path string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}
