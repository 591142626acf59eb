package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/pgdriver"
	"github.com/salesos/salesos/driver/sqlitedriver"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/migrations"
)

// DefaultSQLiteFile is the database file inside the data directory when
// SALESOS_DATABASE_URL is not set.
const DefaultSQLiteFile = "salesos.db"

// Database is where the query side (and, unless EventStoreDB is
// configured, the event store) lives: a PostgreSQL database, or one SQLite
// file.
type Database struct {
	// Write takes every write. On SQLite it holds the file's single writer
	// connection, so a transaction on it is exclusive.
	Write *sqlx.DB
	// Read serves queries: Write itself on PostgreSQL, a read-only pool on
	// SQLite (in WAL mode readers never wait for the writer).
	Read *sqlx.DB
	// SQLitePath is the file's path, empty on PostgreSQL.
	SQLitePath string
	// Driver is the query side's driver for this database: the one place
	// the application chooses by database.
	Driver driver.Driver
}

// SQLite reports whether the database is a SQLite file.
func (d *Database) SQLite() bool { return d.SQLitePath != "" }

// OpenDatabase opens a postgres:// or sqlite:// URL. Errors are one line
// that says what to fix (an unreachable server, an unwritable directory, a
// file locked by another program).
func OpenDatabase(ctx context.Context, url string) (*Database, error) {
	if isSQLiteURL(url) {
		path, err := sqlite.ParseURL(url)
		if err != nil {
			return nil, err
		}
		db, err := sqlite.OpenDB(ctx, path, sqlite.DBOptions{})
		if err != nil {
			return nil, err
		}
		return &Database{Write: db.Write, Read: db.Read, SQLitePath: path, Driver: sqlitedriver.New()}, nil
	}
	db, err := OpenDB(ctx, url)
	if err != nil {
		return nil, err
	}
	return &Database{Write: db, Read: db, Driver: pgdriver.New()}, nil
}

// Migrate applies the migrations of the database's dialect.
func (d *Database) Migrate(ctx context.Context) (migrations.Result, error) {
	if !d.SQLite() {
		return migrations.Apply(ctx, d.Write)
	}
	res, err := migrations.ApplySQLite(ctx, d.Write)
	if err != nil && !errors.Is(err, migrations.ErrNewerSchema) {
		err = sqlite.Describe(d.SQLitePath, err)
	}
	return res, err
}

// Close closes the handles.
func (d *Database) Close() error {
	if d.Read != d.Write {
		return errors.Join(d.Read.Close(), d.Write.Close())
	}
	return d.Write.Close()
}

// OpenDB opens and pings a PostgreSQL database.
func OpenDB(ctx context.Context, url string) (*sqlx.DB, error) {
	db, err := sqlx.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	// The default pool size; Open applies the configured one.
	n := DefaultConfig().DBMaxConns
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database unreachable: %w", err)
	}
	return db, nil
}

// defaultDatabaseURL is the embedded default: one SQLite file in the data
// directory.
func defaultDatabaseURL(dataDir string) string {
	return "sqlite://" + filepath.Join(dataDir, DefaultSQLiteFile)
}

func isSQLiteURL(u string) bool { return strings.HasPrefix(strings.ToLower(u), "sqlite://") }
