// Package sqlite is the SQLite backend of the event store, for the embedded
// mode in which all of SalesOS lives in one database file. It uses the
// pure-Go driver modernc.org/sqlite (no cgo) and passes the same conformance
// suite (eventstore/eventstoretest) as the PostgreSQL backend.
//
// # Connections
//
// OpenDB opens a file the way the whole product uses it: WAL journal (readers
// never block the writer nor each other), foreign keys on, a busy timeout,
// one writer connection and a pool of query_only readers. See DB and
// DBOptions. Open is the one-call form for the event store alone: it opens
// the file, applies the SQLite migrations and returns a Store that closes
// the file with itself. A composition root that keeps other tables in the
// same file opens the DB itself, migrates it and calls New with its two
// handles.
//
// # Durability
//
// synchronous=FULL by default: every commit fsyncs the WAL, so an append
// that returned survives a power cut. NORMAL is available (DBOptions) and
// never corrupts the file, but can lose the last commits on power loss.
//
// # Appends: group commit
//
// As in the PostgreSQL backend, concurrent Append calls are queued and a
// single writer goroutine commits whatever has queued up in one transaction
// (one fsync for the batch). Each append in a batch is still checked against
// its own expected version and fails or succeeds on its own; if the
// transaction fails as a whole (say, a duplicate event id) each append is
// retried alone.
//
// # Gap-safe positions
//
// position is the table's INTEGER PRIMARY KEY (the rowid). The writer begins
// each batch with BEGIN IMMEDIATE (the write handle's _txlock), which takes
// the database's write lock up front; SQLite admits one writer per file,
// across every process using it.
// Holding that lock, the writer reads max(position) and numbers the batch's
// events from there. Commits are therefore serialized and positions are
// assigned in commit order: once a reader has seen position p, every event
// committed later has a position above p. A rolled-back batch assigns
// nothing, so there are no holes, and events are never deleted, so no
// position is reused.
//
// # Subscriptions
//
// Subscribe returns an eventstore.PollingSubscription. Appends made through
// this Store wake subscribers at once through an in-process Signal; appends
// made by another process on the same file are found by the poll
// (Options.PollInterval, default 250ms — a poll is one indexed range read).
package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/migrations"
)

// Options tune the store. Zero values mean the documented defaults.
type Options struct {
	// MaxBatch caps how many appends share one transaction. Default 512.
	MaxBatch int
	// PollInterval is the subscriptions' poll for events written by other
	// processes. Default 250ms.
	PollInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// DB is used by Open only, to open the file.
	DB DBOptions
	// ResolveTimeout bounds how long an append whose COMMIT failed waits
	// while the store looks its events up to learn whether it committed.
	// Default 30s.
	ResolveTimeout time.Duration
}

// Store is the SQLite event store.
type Store struct {
	write   *sqlx.DB
	read    *sqlx.DB
	owned   *DB // closed by Close when Open opened it
	stmts   *writeStmts
	reads   *readStmts
	opts    Options
	appends *eventstore.GroupCommitter
	signal  eventstore.Signal

	closeMu  sync.Once
	closeErr error

	// commitFault, set by tests only, runs just before COMMIT. An error
	// makes the commit ambiguous; with commit true the batch is committed
	// first.
	commitFault func() (commit bool, err error)
}

var _ eventstore.Store = (*Store)(nil)

// Open opens (or creates) the database file at path with OpenDB, applies the
// SQLite migrations and returns a store on it; Close closes the file too.
// A file migrated by a newer salesos fails with migrations.ErrNewerSchema.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	db, err := OpenDB(ctx, path, opts.DB)
	if err != nil {
		return nil, err
	}
	if _, err := migrations.ApplySQLite(ctx, db.Write); err != nil {
		db.Close()
		if errors.Is(err, migrations.ErrNewerSchema) {
			return nil, fmt.Errorf("sqlite: %s: %w", path, err)
		}
		return nil, Describe(path, err)
	}
	s, err := New(ctx, db.Write, db.Read, opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.owned = db
	return s, nil
}

// New returns a store on an already opened and migrated database: write
// should be the file's single writer connection (OpenDB's DB.Write), read a
// pool on the same file (DB.Read; nil means write). It starts the writer
// goroutine; Close stops it and leaves the handles open.
//
// The write handle's transactions should begin IMMEDIATE, as OpenDB's do.
// Positions stay gap-safe without it (SQLite refuses to commit a write
// transaction whose snapshot another process has overtaken), but appends
// racing another process would then fail with SQLITE_BUSY instead of
// waiting for the lock.
func New(ctx context.Context, write, read *sqlx.DB, opts Options) (*Store, error) {
	if write == nil {
		return nil, errors.New("sqlite event store: no write handle")
	}
	if read == nil {
		read = write
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var n int
	if err := read.GetContext(ctx, &n, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'events'`); err != nil {
		return nil, fmt.Errorf("sqlite event store: %w", err)
	}
	if n == 0 {
		return nil, errors.New("sqlite event store: no events table (apply migrations.ApplySQLite first)")
	}
	stmts, err := prepareWrite(ctx, write)
	if err != nil {
		return nil, err
	}
	reads, err := prepareRead(ctx, read)
	if err != nil {
		stmts.close()
		return nil, err
	}
	s := &Store{write: write, read: read, stmts: stmts, reads: reads, opts: opts}
	s.appends = eventstore.StartGroupCommitter(eventstore.GroupCommitOptions{
		MaxBatch: opts.MaxBatch, Commit: s.tryCommit, Committed: s.signal.Notify,
		Resolve: s.resolve, ResolveTimeout: opts.ResolveTimeout,
	})
	return s, nil
}

// Close stops the writer; appends still queued fail. A store made by Open
// also closes its database.
func (s *Store) Close() error {
	s.closeMu.Do(func() {
		s.appends.Close()
		s.stmts.close()
		s.reads.close()
		if s.owned != nil {
			s.closeErr = s.owned.Close()
		}
	})
	return s.closeErr
}

// Ping implements eventstore.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.read.GetContext(ctx, &one, `SELECT 1`)
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	return s.appends.Append(ctx, stream, expected, events)
}

// Subscribe implements eventstore.Store.
func (s *Store) Subscribe(ctx context.Context, after uint64, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	return &eventstore.PollingSubscription{
		Read:         s.ReadAll,
		Signal:       &s.signal,
		PollInterval: s.opts.PollInterval,
		After:        after,
		BatchSize:    opts.BatchSize,
	}, nil
}
