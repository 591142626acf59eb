// Package postgres is the PostgreSQL backend of the event store.
//
// Appends are group-committed: concurrent Append calls are queued and a
// single writer goroutine commits whatever has queued up in one transaction.
// Under load one commit (one WAL flush) carries many appends, which is how
// the store beats one-transaction-per-event throughput. Each append in a
// batch is still checked against its own expected version and fails or
// succeeds on its own.
//
// Gap safety: the writer takes a transaction-scoped advisory lock before it
// reads the current head and assigns positions, and PostgreSQL releases that
// lock only after the commit is visible. So positions are assigned in commit
// order across every process writing to the database, and a subscriber that
// reads "position > checkpoint" can never miss an event that commits later
// with a lower position.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/eventstore"
)

// notifyChannel carries "new events" wake-ups between processes. The payload
// is the schema name, so stores in different schemas of one database (tests,
// staging copies) do not wake each other.
const notifyChannel = "salesos_events"

// Options tune the store. Zero values mean the documented defaults.
type Options struct {
	// MaxBatch caps how many appends share one transaction. Default 512.
	MaxBatch int
	// PollInterval is the subscriptions' safety-net poll when no wake-up
	// arrives. Default 1s.
	PollInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// ResolveTimeout bounds how long an append whose commit was cut off
	// (connection lost around COMMIT) waits while the store looks its
	// events up to learn whether it committed. Default 30s.
	ResolveTimeout time.Duration
}

// Store is the PostgreSQL event store.
type Store struct {
	db      *sqlx.DB
	opts    Options
	appends *eventstore.GroupCommitter
	signal  eventstore.Signal

	stop    chan struct{} // stops the listener
	done    sync.WaitGroup
	closeMu sync.Once
	schema  string

	// commitFault, set by tests only, runs just before the insert and
	// COMMIT are sent. An error makes the commit ambiguous: with commit
	// true the batch is committed first, then the connection is closed.
	commitFault func() (commit bool, err error)
}

var _ eventstore.Store = (*Store)(nil)

// New returns a store on db, whose schema must be migrated. It starts the
// writer goroutine and a LISTEN connection for wake-ups from other
// processes; Close stops both.
func New(ctx context.Context, db *sqlx.DB, opts Options) (*Store, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{db: db, opts: opts, stop: make(chan struct{})}
	if err := db.GetContext(ctx, &s.schema, `SELECT current_schema()`); err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	s.appends = eventstore.StartGroupCommitter(eventstore.GroupCommitOptions{
		MaxBatch: opts.MaxBatch, Commit: s.tryCommit, Committed: s.signal.Notify,
		Resolve: s.resolve, ResolveTimeout: opts.ResolveTimeout,
	})
	s.done.Add(1)
	go s.listen()
	return s, nil
}

// Close stops the writer and the listener. Appends still queued fail.
func (s *Store) Close() error {
	s.closeMu.Do(func() {
		s.appends.Close()
		close(s.stop)
		s.done.Wait()
	})
	return nil
}

// Ping implements eventstore.Store.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	return s.appends.Append(ctx, stream, expected, events)
}

func (s *Store) tryCommit(batch []eventstore.PendingAppend) ([]eventstore.AppendOutcome, error) {
	// The batch's own deadline: long enough for a slow disk, short enough
	// that a wedged connection does not stall every writer forever.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("event store: connect: %w", err)
	}
	defer conn.Close()
	var results []eventstore.AppendOutcome
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		var err error
		results, err = commitOn(ctx, pc, batch, s.commitFault)
		if err != nil && !pc.PgConn().IsClosed() && pc.PgConn().TxStatus() != 'I' {
			// Leave the connection idle for the next user of the pool.
			if _, rerr := pc.Exec(ctx, "ROLLBACK"); rerr != nil {
				return errors.Join(err, driver.ErrBadConn)
			}
		}
		return err
	})
	return results, err
}

// commitOn writes a batch in one transaction, in two round trips: the
// statements of each phase are pipelined (sent together, answered
// together). The writer is the only appender in this process, so the
// round trips, not the SQL, bound how many batches it commits a second.
func commitOn(ctx context.Context, pc *pgx.Conn, batch []eventstore.PendingAppend, fault func() (bool, error)) ([]eventstore.AppendOutcome, error) {
	streams := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, r := range batch {
		if !seen[r.Stream] {
			seen[r.Stream] = true
			streams = append(streams, r.Stream)
		}
	}

	// Phase 1: begin, take the lock, read each stream's version and the
	// global head. Custom plans for this transaction: pgx caches prepared
	// statements, and a generic plan made while the table was small would
	// scan it. Each stream is one backward probe of the (stream_id,
	// version) index; "= ANY(array) GROUP BY" would be planned as a scan.
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(`SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
		pg_advisory_xact_lock(hashtext(current_schema() || ':salesos:events'))`)
	b.Queue(`
		SELECT s, COALESCE((SELECT e.version FROM events e WHERE e.stream_id = s ORDER BY e.version DESC LIMIT 1), 0)
		FROM unnest($1::text[]) AS s
		UNION ALL
		SELECT NULL, COALESCE((SELECT max(position) FROM events), 0)`, streams)
	// Event ids already stored (a writer re-sending what it wrote, see
	// eventstore.ReplayOrDuplicate); one index probe each.
	b.Queue(`SELECT event_id::text, stream_id, version, position FROM events WHERE event_id = ANY($1::uuid[])`, allIDs(batch))
	versions := make(map[string]int64, len(streams))
	var head int64
	br := pc.SendBatch(ctx, &b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("event store: begin: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("event store: lock: %w", err)
	}
	rows, err := br.Query()
	if err == nil {
		for rows.Next() {
			var id *string
			var v int64
			if err = rows.Scan(&id, &v); err != nil {
				break
			}
			if id != nil {
				versions[*id] = v
			} else {
				head = v
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		br.Close()
		return nil, fmt.Errorf("event store: read versions: %w", err)
	}
	found, err := scanStored(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("event store: look up event ids: %w", err)
	}

	results := make([]eventstore.AppendOutcome, len(batch))
	var (
		positions []int64
		ids       []string
		streamIDs []string
		vers      []int64
		types     []string
		data      []string
		meta      []string
	)
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
			// this one in the batch: a writer's retry that lands in the
			// same batch as its first try is a replay, not a conflict.
			found[r.IDs[j]] = eventstore.StoredEvent{Stream: r.Stream, Version: current, Position: uint64(head)}
			positions = append(positions, head)
			ids = append(ids, e.ID)
			streamIDs = append(streamIDs, r.Stream)
			vers = append(vers, current)
			types = append(types, e.Type)
			data = append(data, string(e.Data))
			m := string(e.Metadata)
			if m == "" {
				m = "{}"
			}
			meta = append(meta, m)
		}
		versions[r.Stream] = current
		results[i] = eventstore.AppendOutcome{Result: eventstore.AppendResult{Version: current, Position: uint64(head)}}
	}

	// Phase 2: insert and commit. The NOTIFY rides in the insert
	// statement; PostgreSQL delivers it at commit.
	b = pgx.Batch{}
	if len(positions) > 0 {
		b.Queue(`
			WITH ins AS (
				INSERT INTO events (position, event_id, stream_id, version, type, data, metadata)
				SELECT p, e::uuid, s, v, t, d::json, m::json
				FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[]) AS x(p, e, s, v, t, d, m)
				RETURNING 1
			)
			SELECT pg_notify($8, current_schema()) WHERE EXISTS (SELECT 1 FROM ins)`,
			positions, ids, streamIDs, vers, types, data, meta, notifyChannel)
	}
	b.Queue("COMMIT")
	if fault != nil {
		if commit, err := fault(); err != nil {
			if !commit {
				return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: err}
			}
			// Commit for real and read both answers, then drop the
			// connection as if the answer had been lost on the way.
			fb := pc.SendBatch(ctx, &b)
			for range b.Len() {
				if _, cerr := fb.Exec(); cerr != nil {
					break
				}
			}
			fb.Close()
			pc.PgConn().Close(ctx)
			return nil, &eventstore.AmbiguousCommitError{Planned: results, Err: err}
		}
	}
	br = pc.SendBatch(ctx, &b)
	if len(positions) > 0 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, phase2Error(err, results, classify)
		}
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, phase2Error(err, results, func(err error) error { return fmt.Errorf("event store: commit: %w", err) })
	}
	if err := br.Close(); err != nil {
		return nil, phase2Error(err, results, func(err error) error { return fmt.Errorf("event store: commit: %w", err) })
	}
	return results, nil
}

// phase2Error tells apart the failures of the insert-and-commit round trip.
// An answer from the server (a PgError: a constraint, bad data) means the
// transaction failed and nothing is stored. A request that never left
// (pgconn.SafeToRetry) stored nothing either. Anything else — the
// connection lost after INSERT and COMMIT were sent — leaves the outcome
// unknown: the committer looks the ids up before answering.
func phase2Error(err error, planned []eventstore.AppendOutcome, answered func(error) error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && !eventstore.IsUnavailable(err):
		return answered(err)
	case pgconn.SafeToRetry(err):
		return eventstore.Unavailable(fmt.Errorf("event store: commit not sent: %w", err))
	}
	return &eventstore.AmbiguousCommitError{Planned: planned, Err: err}
}

func allIDs(batch []eventstore.PendingAppend) []string {
	var ids []string
	for _, p := range batch {
		ids = append(ids, p.IDs...)
	}
	return ids
}

func scanStored(br pgx.BatchResults) (map[string]eventstore.StoredEvent, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return eventstore.ScanStored(rows)
}

// resolve looks event ids up on a pooled connection (never the one whose
// commit was lost: database/sql discards that one).
func (s *Store) resolve(ctx context.Context, ids []string) (map[string]eventstore.StoredEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT event_id::text, stream_id, version, position FROM events WHERE event_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return eventstore.ScanStored(rows)
}

func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation: an event id used twice
			return fmt.Errorf("%w (%s)", eventstore.ErrDuplicateEventID, pgErr.ConstraintName)
		case "22P02", "22P03": // invalid text representation: a malformed uuid
			return fmt.Errorf("%w: %s", eventstore.ErrInvalidAppend, pgErr.Message)
		}
	}
	return fmt.Errorf("event store: insert: %w", err)
}

const selectEvents = `SELECT event_id::text, stream_id, version, position, type, data::text, metadata::text, recorded_at FROM events`

func scanEvents(rows *sql.Rows, capHint int) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	out := make([]eventstore.RecordedEvent, 0, capHint)
	for rows.Next() {
		var e eventstore.RecordedEvent
		var pos int64
		var data, meta string
		if err := rows.Scan(&e.ID, &e.StreamID, &e.Version, &pos, &e.Type, &data, &meta, &e.RecordedAt); err != nil {
			return nil, err
		}
		e.Position = uint64(pos)
		e.Data = []byte(data)
		e.Metadata = []byte(meta)
		e.RecordedAt = e.RecordedAt.UTC()
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
	rows, err := s.db.QueryContext(ctx, selectEvents+` WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, stream, fromVersion, limit)
	if err != nil {
		return nil, err
	}
	evs, err := scanEvents(rows, 16)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		var exists bool
		if err := s.db.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = $1)`, stream); err != nil {
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
	rows, err := s.db.QueryContext(ctx, selectEvents+` WHERE position > $1 ORDER BY position LIMIT $2`, int64(after), limit)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows, limit)
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	var h int64
	err := s.db.GetContext(ctx, &h, `SELECT COALESCE(max(position), 0) FROM events`)
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

// listen relays NOTIFY wake-ups from other processes to local subscribers.
// It reconnects with backoff; meanwhile the subscriptions' poll covers.
func (s *Store) listen() {
	defer s.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-s.stop
		cancel()
	}()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.opts.Logger.Warn("event store: LISTEN connection lost; subscriptions fall back to polling until it is back", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// The connection carries LISTEN state: have database/sql discard it
		// instead of handing it to the next caller.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}()
	return conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
			return err
		}
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				return err
			}
			if n.Payload == s.schema {
				s.signal.Notify()
			}
		}
	})
}
