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
	"fmt"
	"log/slog"
	"sync"
	"time"

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
