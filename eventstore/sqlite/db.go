package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	sqlitedriver "modernc.org/sqlite" // registers the database/sql driver "sqlite"
)

// DriverName is the database/sql driver name of modernc.org/sqlite.
const DriverName = "sqlite"

// ErrLocked means another program kept the database file locked for longer
// than the busy timeout.
var ErrLocked = errors.New("database is locked by another program")

// ErrNotWritable means the database file or its directory cannot be written.
var ErrNotWritable = errors.New("not writable")

// SQLite result codes this package tells apart (see sqlite.org/rescode.html;
// they are part of SQLite's stable API).
const (
	codeBusy             = 5
	codeLocked           = 6
	codeReadOnly         = 8
	codeCantOpen         = 14
	codeNotADB           = 26
	codeConstraintCheck  = 275
	codeConstraintUnique = 2067
)

// DBOptions tune how OpenDB opens a database file. Zero values mean the
// documented defaults.
type DBOptions struct {
	// BusyTimeout is how long a connection waits for a lock held by another
	// process before it fails with ErrLocked. Default 5s.
	BusyTimeout time.Duration
	// Synchronous is PRAGMA synchronous: "FULL" (default) or "NORMAL".
	//
	// FULL fsyncs the write-ahead log on every commit, so an append that
	// returned is on disk even if the machine loses power the next moment.
	// NORMAL fsyncs only at checkpoints: the database is never corrupted,
	// but the last commits before a power cut (not a process crash) can be
	// lost. The event store is the source of truth and an acknowledged
	// event may already have been sent out by a webhook, so FULL is the
	// default; group commit makes one fsync cover a whole batch of appends,
	// which keeps its cost low under load.
	Synchronous string
	// MaxReaders caps the read pool. Default max(4, NumCPU).
	MaxReaders int
}

func (o *DBOptions) defaults() error {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	switch strings.ToUpper(o.Synchronous) {
	case "":
		o.Synchronous = "FULL"
	case "FULL", "NORMAL", "EXTRA":
		o.Synchronous = strings.ToUpper(o.Synchronous)
	default:
		return fmt.Errorf("sqlite: synchronous %q: want FULL, NORMAL or EXTRA", o.Synchronous)
	}
	if o.MaxReaders <= 0 {
		o.MaxReaders = max(4, runtime.NumCPU())
	}
	return nil
}

// FoldFunc is the name of a SQL function every connection opened through
// this package's driver has: it lower-cases text with Go's Unicode tables.
// SQLite's own lower() and LIKE fold ASCII letters only, so a search for
// "émile" would miss "Émile"; PostgreSQL's ILIKE does not.
const FoldFunc = "salesos_fold"

func init() {
	sqlitedriver.MustRegisterDeterministicScalarFunction(FoldFunc, 1, func(_ *sqlitedriver.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return strings.ToLower(v), nil
		case []byte:
			return strings.ToLower(string(v)), nil
		}
		return args[0], nil
	})
}

// DB is a SQLite database file opened the way SalesOS uses it: one writer
// connection through which every write to the file goes (SQLite allows one
// writer at a time, and queuing in database/sql is cheaper than lock
// retries) and a pool of read-only connections, which in WAL mode read
// concurrently with the writer.
//
// The whole product can share one DB: the event store, the query tables and
// the webhook state all live in the same file. Anything that writes must use
// Write; its transactions begin IMMEDIATE (they take the write lock up front,
// so a transaction never fails half-way on a lock another process holds).
type DB struct {
	Path string
	// Write holds exactly one connection.
	Write *sqlx.DB
	// Read is a pool of query_only connections.
	Read *sqlx.DB
}

// Close closes both handles.
func (d *DB) Close() error {
	return errors.Join(d.Read.Close(), d.Write.Close())
}

// OpenDB opens (creating it and its directory if needed) the database file
// at path: WAL journal, foreign keys on, a busy timeout, synchronous as
// configured. It does not apply migrations (see migrations.ApplySQLite).
// Errors name the problem in one line: an unwritable directory or file
// (ErrNotWritable), a file that is not a SQLite database, a lock held by
// another program (ErrLocked).
func OpenDB(ctx context.Context, path string, opts DBOptions) (*DB, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: %q: want the path of a database file", path)
	}
	if err := checkWritable(path); err != nil {
		return nil, err
	}
	write, err := sqlx.Open(DriverName, dsn(path, opts, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	var mode string
	if err := write.GetContext(ctx, &mode, `PRAGMA journal_mode`); err != nil {
		write.Close()
		return nil, Describe(path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		write.Close()
		return nil, fmt.Errorf("sqlite: %s: the file system does not support WAL mode (journal mode is %s)", path, mode)
	}
	read, err := sqlx.Open(DriverName, dsn(path, opts, true))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	read.SetMaxOpenConns(opts.MaxReaders)
	read.SetMaxIdleConns(opts.MaxReaders)
	read.SetConnMaxLifetime(0)
	read.SetConnMaxIdleTime(0)
	if err := read.PingContext(ctx); err != nil {
		read.Close()
		write.Close()
		return nil, Describe(path, err)
	}
	return &DB{Path: path, Write: write, Read: read}, nil
}

// dsn builds the modernc.org/sqlite data source name. The path goes in a
// file: URI, escaped, so names with '?', '#' or '%' work; the underscore
// parameters are the driver's and apply to every connection it opens.
func dsn(path string, opts DBOptions, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "1")
	q.Set("_synchronous", opts.Synchronous)
	// time.Time values are stored as integer microseconds since the epoch
	// (UTC) and read back from TIMESTAMP columns as time.Time: integers
	// compare and sort chronologically whatever the process's time zone.
	// The query tables rely on it (migrations/sqlite/0002_read_models.sql);
	// the events table keeps its own fixed-width text form.
	q.Set("_time_integer_format", "unix_micro")
	q.Set("_inttotime", "1")
	if readOnly {
		q.Set("_query_only", "1")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// checkWritable creates the directory of path if needed and checks that
// SQLite will be able to write there: in WAL mode it creates path-wal and
// path-shm next to the database, so the directory itself must be writable,
// not only the file.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("sqlite: the data directory %s is %w: cannot create it: %w", dir, ErrNotWritable, unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".salesos-write-check-*")
	if err != nil {
		return fmt.Errorf("sqlite: the data directory %s is %w: %w", dir, ErrNotWritable, unwrapPath(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("sqlite: %s is a directory, not a database file", path)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("sqlite: the database file %s is %w: %w", path, ErrNotWritable, unwrapPath(err))
		}
		f.Close()
	}
	return nil
}

// unwrapPath drops the *os.PathError wrapper, whose text repeats the path
// the message already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Describe turns a driver error met while opening or migrating the file at
// path into a one-line reason (wrapping ErrLocked or ErrNotWritable where it
// applies). Other errors are returned wrapped with the path.
func Describe(path string, err error) error {
	var se *sqlitedriver.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("sqlite: %s: %w", path, err)
	}
	switch se.Code() & 0xff {
	case codeBusy, codeLocked:
		return fmt.Errorf("sqlite: %s: %w (another salesos or a sqlite3 shell holds it; gave up waiting): %w", path, ErrLocked, err)
	case codeReadOnly, codeCantOpen:
		return fmt.Errorf("sqlite: %s: the file or its directory is %w: %w", path, ErrNotWritable, err)
	case codeNotADB:
		return fmt.Errorf("sqlite: %s is not a SQLite database: %w", path, err)
	}
	return fmt.Errorf("sqlite: %s: %w", path, err)
}

// ParseURL returns the file path of a sqlite:// URL. Everything after
// "sqlite://" is the path as written: sqlite://data/salesos.db is relative
// to the working directory, sqlite:///var/lib/salesos/salesos.db absolute.
// Query parameters are refused: the connection settings are the store's.
func ParseURL(raw string) (string, error) {
	const scheme = "sqlite://"
	if len(raw) < len(scheme) || !strings.EqualFold(raw[:len(scheme)], scheme) {
		return "", fmt.Errorf("sqlite URL %q: want sqlite://path/to/file.db", raw)
	}
	path := raw[len(scheme):]
	if strings.ContainsAny(path, "?#") {
		return "", fmt.Errorf("sqlite URL %q: query parameters are not supported (the store sets WAL, busy timeout and synchronous itself)", raw)
	}
	if path == "" || path == ":memory:" {
		return "", fmt.Errorf("sqlite URL %q: want the path of a database file", raw)
	}
	return path, nil
}
