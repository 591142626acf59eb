// Package esdb is the EventStoreDB backend of the event store, on the
// official gRPC client (github.com/EventStore/EventStore-Client-Go/v4).
//
// # Versions
//
// Our stream versions are 1-based counts, EventStoreDB's revisions are
// 0-based event numbers: version N is revision N-1. Append's expected
// version maps to the client's expected revision: Any to Any{}, NoStream and
// 0 to NoStream{}, N > 0 to Revision(N-1). A wrong expected version becomes a
// *eventstore.VersionConflictError whose Actual is the stream's version as
// the server reported it (0 for no stream).
//
// # Positions
//
// An event's global position is the commit position of its $all position.
// It fits our uint64 (stored as BIGINT checkpoints) without loss: the server
// keeps positions as signed 64-bit byte offsets into its transaction log, so
// they are always below 2^63. It is unique per event and grows in commit
// order: every event written through the gRPC Append call is its own
// record in the append-only log, written by the server's single writer and
// committed in place, and the server reports that record's log position as
// both its commit and its prepare position. So a reader that has seen
// position p never later finds a newly committed event below p, which is
// the guarantee eventstore.Store asks for. (Only the legacy TCP API's
// explicit transactions could give several events one commit position;
// SalesOS never writes those, and a database it uses must not contain them.)
// Positions are not dense: they are byte offsets, so p+1 is in general not
// a position, and only positions this backend handed out (or 0) may be
// passed back to ReadAll and Subscribe: the server refuses positions that
// fall inside a record. Positions of another backend mean nothing here.
//
// AppendResult.Position is the commit position of the write, which is the
// position of its last event.
//
// # System events
//
// $all also carries the server's own events (stats, settings, projections'
// bookkeeping, link events). ReadAll, Head and subscriptions skip every
// event whose type or stream starts with "$" (subscriptions filter event
// types on the server and streams on our side). Append refuses such
// streams and types, since readers would never see them.
//
// # Connections
//
// The client library connects lazily, and when a discovery fails it closes
// itself for good: every later call answers "connection is closed". This
// store therefore owns the client's life: a new client first runs its
// discovery alone (calls wait for it), a client that closed itself or lost
// its node (Unavailable) is retired, and the next call makes a new one, at
// most one per backoff period (MinBackoff doubling up to MaxBackoff, reset
// once the server answers). So the server may start after us or go away
// for a while. A retired client is closed once no call is inside it (the
// library's Close is not safe against calls in flight). Calls run in their
// own goroutine, so a caller's context can always abandon them: the
// library's connection loop ignores contexts, and a call that hangs in a
// client whose loop died is given up after a liveness probe.
//
// Reads, Head and Append retry transient failures (unavailable, not
// leader, deadline, client closed) with backoff until their context ends.
// Retrying an append is safe: EventStoreDB acknowledges the same events
// (same ids, same expected revision) sent twice without writing them
// again. Ping makes a single attempt and never waits for a backoff, for
// readiness probes; it also triggers reconnection.
//
// Subscriptions are catch-up subscriptions to $all. A subscription that
// drops (server restart, network) is resubscribed from the position of the
// last event it handed out, so nothing is missed or repeated.
package esdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/salesos/salesos/eventstore"
)

// Options tune the store. Zero values mean the documented defaults.
type Options struct {
	// Logger defaults to slog.Default(). The client library's own lines
	// are logged at Debug (its errors at Info): during an outage it is
	// chatty, and the store logs the outage itself.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the waits between retries,
	// resubscriptions and client re-creations. Defaults 100ms and 5s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
}

// ErrClosed is returned by calls on a closed store or subscription.
var ErrClosed = errors.New("eventstore/esdb: closed")

// Store is the EventStoreDB event store.
type Store struct {
	cfg  esdbclient.Configuration
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	cur      *conn     // the client handed out to calls, nil: make one
	nextNew  time.Time // no new client before this
	newDelay time.Duration
	closed   bool

	down atomic.Bool // an outage is being reported

	base       context.Context // parent of subscriptions
	baseCancel context.CancelFunc
	stop       chan struct{}
	subs       sync.WaitGroup
	closeOnce  sync.Once
}

var _ eventstore.Store = (*Store)(nil)

// New returns a store for connString, any connection string the client
// accepts (esdb://host:2113?tls=false, TLS with certificates, several
// gossip seeds, esdb+discover://...). It does not wait for the server: the
// first call connects, and calls retry until the server is there.
func New(ctx context.Context, connString string, opts Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := esdbclient.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("eventstore/esdb: connection string: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	cfg.Logger = clientLogger(opts.Logger)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("eventstore/esdb: connection string: %w", err)
	}
	s := &Store{
		cfg:      *cfg,
		opts:     opts,
		log:      opts.Logger,
		newDelay: opts.MinBackoff,
		stop:     make(chan struct{}),
	}
	s.base, s.baseCancel = context.WithCancel(context.Background())
	return s, nil
}

func clientLogger(l *slog.Logger) esdbclient.LoggingFunc {
	return func(level esdbclient.LogLevel, format string, args ...interface{}) {
		lvl := slog.LevelDebug
		if level == esdbclient.LogError {
			lvl = slog.LevelInfo
		}
		if l.Enabled(context.Background(), lvl) {
			l.Log(context.Background(), lvl, "eventstoredb client: "+fmt.Sprintf(format, args...))
		}
	}
}

// Close ends subscriptions and the connection. Calls in flight fail.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		cn := s.cur
		s.mu.Unlock()
		close(s.stop)
		s.baseCancel()
		s.subs.Wait()
		if cn != nil {
			// Closed once the calls still inside it are done.
			s.retire(cn, ErrClosed)
		}
	})
	return nil
}
