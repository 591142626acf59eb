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
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	sqlitedriver "modernc.org/sqlite"

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

// insertChunk is how many events one multi-row INSERT carries (8 bound
// values each, far under SQLite's limit of 32766 variables). Larger batches
// use it repeatedly and finish with the one-row statement.
const insertChunk = 32

const insertPrefix = `INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, recorded_at) VALUES `

func insertSQL(rows int) string {
	var b strings.Builder
	b.Grow(len(insertPrefix) + rows*18)
	b.WriteString(insertPrefix)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// The writer's statements. Prepared once on the write handle: parsing SQL
// costs more than running these on SQLite.
const (
	// One correlated max() per stream: SQLite answers each from the
	// (stream_id, version) index in O(log n). (A GROUP BY over the streams
	// would walk every version of every stream in the batch.)
	sqlVersions = `SELECT s.value, (SELECT max(version) FROM events WHERE stream_id = s.value) FROM json_each(?) AS s`
	sqlHead     = `SELECT COALESCE(max(position), 0) FROM events`
	sqlLookup   = `SELECT event_id, stream_id, version, position FROM events WHERE event_id IN (SELECT value FROM json_each(?))`
)

type writeStmts struct {
	versions, head, lookup, insert1, insertN *sql.Stmt
}

// readStmts are prepared on the read handle (database/sql prepares each on
// every pooled connection as it is first used there).
type readStmts struct {
	readStream, streamExists, readAll, head, lookup *sql.Stmt
}

func prepareRead(ctx context.Context, db *sqlx.DB) (*readStmts, error) {
	var r readStmts
	var err error
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&r.readStream, selectEvents + ` WHERE stream_id = ? AND version >= ? ORDER BY version LIMIT ?`},
		{&r.streamExists, `SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = ?)`},
		{&r.readAll, selectEvents + ` WHERE position > ? ORDER BY position LIMIT ?`},
		{&r.head, sqlHead},
		{&r.lookup, sqlLookup},
	} {
		if *p.dst, err = db.PrepareContext(ctx, p.sql); err != nil {
			r.close()
			return nil, fmt.Errorf("sqlite event store: prepare: %w", err)
		}
	}
	return &r, nil
}

func (r *readStmts) close() {
	for _, st := range []*sql.Stmt{r.readStream, r.streamExists, r.readAll, r.head, r.lookup} {
		if st != nil {
			st.Close()
		}
	}
}

func prepareWrite(ctx context.Context, db *sqlx.DB) (*writeStmts, error) {
	var w writeStmts
	var err error
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.versions, sqlVersions},
		{&w.head, sqlHead},
		{&w.lookup, sqlLookup},
		{&w.insert1, insertSQL(1)},
		{&w.insertN, insertSQL(insertChunk)},
	} {
		if *p.dst, err = db.PrepareContext(ctx, p.sql); err != nil {
			w.close()
			return nil, fmt.Errorf("sqlite event store: prepare: %w", err)
		}
	}
	return &w, nil
}

func (w *writeStmts) close() {
	for _, st := range []*sql.Stmt{w.versions, w.head, w.lookup, w.insert1, w.insertN} {
		if st != nil {
			st.Close()
		}
	}
}

// timeLayout is recorded_at's text form: RFC 3339, UTC, six fractional
// digits (fixed width, so it sorts as text).
const timeLayout = "2006-01-02T15:04:05.000000Z"

func (s *Store) tryCommit(batch []eventstore.PendingAppend) (results []eventstore.AppendOutcome, err error) {
	// The batch's own deadline: long enough for a slow disk or a lock held
	// by another process, short enough that a wedged write does not stall
	// every writer forever.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The write handle begins IMMEDIATE (OpenDB's _txlock): the write lock
	// is taken here, before the head is read, so no other process can
	// commit between that read and this commit.
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("event store: begin: %w", err)
	}
	defer tx.Rollback()

	streams := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, r := range batch {
		if !seen[r.Stream] {
			seen[r.Stream] = true
			streams = append(streams, r.Stream)
		}
	}
	streamsJSON, err := json.Marshal(streams)
	if err != nil {
		return nil, err
	}
	versions := make(map[string]int64, len(streams))
	rows, err := tx.StmtContext(ctx, s.stmts.versions).QueryContext(ctx, string(streamsJSON))
	if err != nil {
		return nil, fmt.Errorf("event store: read versions: %w", err)
	}
	for rows.Next() {
		var id string
		var v sql.NullInt64
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return nil, err
		}
		versions[id] = v.Int64
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("event store: read versions: %w", err)
	}
	var head int64
	if err := tx.StmtContext(ctx, s.stmts.head).QueryRowContext(ctx).Scan(&head); err != nil {
		return nil, fmt.Errorf("event store: read head: %w", err)
	}
	// Event ids already stored (a writer re-sending what it wrote, see
	// eventstore.ReplayOrDuplicate).
	found, err := lookupIDs(ctx, tx.StmtContext(ctx, s.stmts.lookup), batch)
	if err != nil {
		return nil, fmt.Errorf("event store: look up event ids: %w", err)
	}

	now := time.Now().UTC().Format(timeLayout)
	results = make([]eventstore.AppendOutcome, len(batch))
	args := make([]any, 0, 8*insertChunk)
	var insertN, insert1 *sql.Stmt
	inserted := 0
	for i, r := range batch {
		if out, ok := eventstore.ReplayOrDuplicate(r, found); ok {
			results[i] = out
			continue
		}
		current := versions[r.Stream]
		if !eventstore.ExpectationHolds(r.Expected, current) {
			results[i] = eventstore.AppendOutcome{Err: &eventstore.VersionConflictError{Stream: r.Stream, Expected: r.Expected, Actual: current}}
			continue
		}
		for j, e := range r.Events {
			head++
			current++
			// Planned events count as stored for the appends after
			// this one in the batch (see the PostgreSQL backend).
			found[r.IDs[j]] = eventstore.StoredEvent{Stream: r.Stream, Version: current, Position: uint64(head)}
			m := string(e.Metadata)
			if m == "" {
				m = "{}"
			}
			// Strings, not []byte: a []byte would be bound as a BLOB.
			args = append(args, head, r.IDs[j], r.Stream, current, e.Type, string(e.Data), m, now)
			inserted++
			if len(args) == 8*insertChunk {
				if insertN == nil {
					insertN = tx.StmtContext(ctx, s.stmts.insertN)
				}
				if _, err := insertN.ExecContext(ctx, args...); err != nil {
					return nil, classify(err)
				}
				args = args[:0]
			}
		}
		versions[r.Stream] = current
		results[i] = eventstore.AppendOutcome{Result: eventstore.AppendResult{Version: current, Position: uint64(head)}}
	}
	if inserted == 0 {
		return results, nil // every append was a version conflict
	}
	for k := 0; k < len(args); k += 8 {
		if insert1 == nil {
			insert1 = tx.StmtContext(ctx, s.stmts.insert1)
		}
		if _, err := insert1.ExecContext(ctx, args[k:k+8]...); err != nil {
			return nil, classify(err)
		}
	}
	if s.commitFault != nil {
		if commit, err := s.commitFault(); err != nil {
			if commit {
				tx.Commit()
			}
			return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: err}
		}
	}
	if err := tx.Commit(); err != nil {
		// A failed COMMIT of a local file can still have reached the disk
		// (an I/O error reported after the WAL write): let the committer
		// look the ids up rather than guess.
		return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: fmt.Errorf("event store: commit: %w", err)}
	}
	return results, nil
}

func lookupIDs(ctx context.Context, st *sql.Stmt, batch []eventstore.PendingAppend) (map[string]eventstore.StoredEvent, error) {
	var ids []string
	for _, p := range batch {
		ids = append(ids, p.IDs...)
	}
	js, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, string(js))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return eventstore.ScanStored(rows)
}

// resolve looks event ids up through the read pool, not the writer
// connection whose commit went wrong.
func (s *Store) resolve(ctx context.Context, ids []string) (map[string]eventstore.StoredEvent, error) {
	return lookupIDs(ctx, s.reads.lookup, []eventstore.PendingAppend{{IDs: ids}})
}

func classify(err error) error {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case codeConstraintUnique:
			if strings.Contains(err.Error(), "events.event_id") {
				return fmt.Errorf("%w (%v)", eventstore.ErrDuplicateEventID, err)
			}
		case codeConstraintCheck:
			return fmt.Errorf("%w: %v", eventstore.ErrInvalidAppend, err)
		}
	}
	return fmt.Errorf("event store: insert: %w", err)
}

const selectEvents = `SELECT event_id, stream_id, version, position, type, data, metadata, recorded_at FROM events`

func scanEvents(rows *sql.Rows, capHint int) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	out := make([]eventstore.RecordedEvent, 0, capHint)
	for rows.Next() {
		var e eventstore.RecordedEvent
		var pos int64
		var at string
		// data and metadata scan straight into []byte: one copy of the
		// driver's text, not a string and then a copy of it.
		if err := rows.Scan(&e.ID, &e.StreamID, &e.Version, &pos, &e.Type, &e.Data, &e.Metadata, &at); err != nil {
			return nil, err
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return nil, fmt.Errorf("event store: event at position %d: recorded_at %q: %w", pos, at, err)
		}
		e.Position = uint64(pos)
		e.RecordedAt = t.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, fromVersion int64, limit int) ([]eventstore.RecordedEvent, error) {
	if fromVersion < 1 {
		fromVersion = 1
	}
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.reads.readStream.QueryContext(ctx, stream, fromVersion, limit)
	if err != nil {
		return nil, err
	}
	evs, err := scanEvents(rows, min(limit, 64))
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		var exists bool
		if err := s.reads.streamExists.QueryRowContext(ctx, stream).Scan(&exists); err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("%w: %s", eventstore.ErrStreamNotFound, stream)
		}
	}
	return evs, nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	rows, err := s.reads.readAll.QueryContext(ctx, int64(after), limit)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows, min(limit, 1024))
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	var h int64
	err := s.reads.head.QueryRowContext(ctx).Scan(&h)
	return uint64(h), err
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
