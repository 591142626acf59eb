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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// ---- client lifecycle --------------------------------------------------------

// conn is one client and its bookkeeping. A client is used only after its
// first discovery succeeded (warm-up, done by one goroutine alone), and it
// is closed only once it is retired and no call is inside it: the
// library's Close closes a channel that calls may be sending on.
type conn struct {
	c     *esdbclient.Client
	ready chan struct{} // closed when the warm-up is over
	err   error         // the warm-up's outcome, set before ready closes

	// guarded by Store.mu
	inflight int
	retired  bool
}

// acquire returns a warmed-up client for one call, creating one if there
// is none (at most one per backoff period). release must follow. With
// once, it fails instead of waiting for the backoff or making another
// client after a failed warm-up.
func (s *Store) acquire(ctx context.Context, once bool) (*conn, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		cn := s.cur
		if cn == nil {
			if wait := time.Until(s.nextNew); wait > 0 {
				s.mu.Unlock()
				if once {
					return nil, fmt.Errorf("%w: reconnecting", errClientGone)
				}
				if err := s.sleep(ctx, wait); err != nil {
					return nil, err
				}
				continue
			}
			cfg := s.cfg
			c, err := esdbclient.NewClient(&cfg)
			if err != nil {
				s.mu.Unlock()
				return nil, fmt.Errorf("eventstore/esdb: new client: %w", err)
			}
			cn = &conn{c: c, ready: make(chan struct{})}
			s.cur = cn
			s.nextNew = time.Now().Add(s.newDelay)
			s.newDelay = min(s.newDelay*2, s.opts.MaxBackoff)
			go s.warmUp(cn)
		}
		s.mu.Unlock()

		select {
		case <-cn.ready:
		case <-ctx.Done():
			return nil, noAnswer(ctx)
		case <-s.stop:
			return nil, ErrClosed
		}
		if cn.err != nil {
			// retired by warmUp; the next round makes a new client
			if once {
				return nil, fmt.Errorf("%w: %w", errClientGone, cn.err)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			continue
		}
		s.mu.Lock()
		if cn.retired {
			s.mu.Unlock()
			continue
		}
		cn.inflight++
		s.mu.Unlock()
		return cn, nil
	}
}

// warmUp runs the client's first discovery. If it fails, the client has
// closed itself for good (the library does that) and is retired.
func (s *Store) warmUp(cn *conn) {
	_, err := cn.c.GetServerVersion()
	cn.err = err
	if err != nil {
		s.unreachable("connect", err)
		s.retire(cn, err)
	}
	close(cn.ready)
}

func (s *Store) release(cn *conn) {
	s.mu.Lock()
	cn.inflight--
	closeNow := cn.retired && cn.inflight == 0
	s.mu.Unlock()
	if closeNow {
		_ = cn.c.Close()
	}
}

// retire stops handing cn out; it is closed when its last call is done.
func (s *Store) retire(cn *conn, why error) {
	s.mu.Lock()
	if cn.retired {
		s.mu.Unlock()
		return
	}
	cn.retired = true
	if s.cur == cn {
		s.cur = nil
	}
	closeNow := cn.inflight == 0
	s.mu.Unlock()
	s.log.Debug("eventstore/esdb: retiring EventStoreDB client; a new one will be created", "error", why)
	if closeNow {
		_ = cn.c.Close()
	}
}

func (s *Store) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrClosed
	case <-t.C:
		return nil
	}
}

// reached records that the server answered.
func (s *Store) reached() {
	s.mu.Lock()
	s.newDelay = s.opts.MinBackoff
	s.mu.Unlock()
	if s.down.CompareAndSwap(true, false) {
		s.log.Info("eventstore/esdb: EventStoreDB reachable again")
	}
}

func (s *Store) unreachable(op string, err error) {
	if s.down.CompareAndSwap(false, true) {
		s.log.Warn("eventstore/esdb: EventStoreDB unreachable; retrying with backoff", "op", op, "error", err)
	}
}

// errClientGone marks a call that ran into a client that closed itself.
var errClientGone = errors.New("eventstore/esdb: client closed")

const probeEvery = 2 * time.Second

// call runs fn once against a warmed-up client, in its own goroutine so
// that ctx can always abandon it.
func call[T any](s *Store, ctx context.Context, fn func(context.Context, *esdbclient.Client) (T, error)) (T, error) {
	return callOpts(s, ctx, false, fn)
}

// callOpts is call; with once, a failed connection attempt is not retried
// (see acquire).
func callOpts[T any](s *Store, ctx context.Context, once bool, fn func(context.Context, *esdbclient.Client) (T, error)) (T, error) {
	var zero T
	cn, err := s.acquire(ctx, once)
	if err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer s.release(cn)
		v, err := fn(ctx, cn.c)
		done <- result{v, err}
	}()
	// If the client's connection loop dies (a rediscovery that fails),
	// calls waiting on it hang for good; a slow call therefore checks now
	// and then whether its client is still alive, and gives up on it if
	// not (the stuck goroutine is left behind: the library offers no way
	// to release it).
	probe := time.NewTimer(probeEvery)
	defer probe.Stop()
	dead := make(chan error, 1)
	for {
		select {
		case r := <-done:
			switch {
			case r.err == nil || ctx.Err() != nil:
			case clientGone(r.err):
				s.retire(cn, r.err)
			case status.Code(r.err) == codes.Canceled && s.isRetired(cn):
				// The client was retired and closed under the call.
				r.err = fmt.Errorf("%w: %w", errClientGone, r.err)
			case unavailable(r.err):
				// The node went away. A fresh client reconnects at
				// once when it is back, where the old connection would
				// wait out gRPC's reconnect backoff (up to two minutes).
				s.retire(cn, r.err)
			}
			return r.v, r.err
		case <-ctx.Done():
			return zero, noAnswer(ctx)
		case <-s.stop:
			return zero, ErrClosed
		case err := <-dead:
			s.retire(cn, err)
			return zero, fmt.Errorf("%w: %w", errClientGone, err)
		case <-probe.C:
			go s.probe(cn, dead)
			probe.Reset(probeEvery)
		}
	}
}

// noAnswer is the error of a call whose context ended before EventStoreDB
// answered. A deadline that passes without an answer is an outage as far as
// the caller can tell (ErrUnavailable, so the API says 503 and when to
// retry); a cancellation is the caller's own decision and stays as it is.
func noAnswer(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("eventstore/esdb: no answer before the deadline: %w: %w", eventstore.ErrUnavailable, ctx.Err())
	}
	return ctx.Err()
}

func (s *Store) isRetired(cn *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cn.retired
}

func unavailable(err error) bool {
	var e *esdbclient.Error
	if errors.As(err, &e) && e.Code() == esdbclient.ErrorUnavailable {
		return true
	}
	return status.Code(err) == codes.Unavailable
}

// probe reports on dead if cn's client has closed itself. A live client
// answers from its state without a network round trip.
func (s *Store) probe(cn *conn, dead chan<- error) {
	s.mu.Lock()
	if cn.retired {
		s.mu.Unlock()
		return
	}
	cn.inflight++
	s.mu.Unlock()
	defer s.release(cn)
	if _, err := cn.c.GetServerVersion(); clientGone(err) {
		select {
		case dead <- err:
		default:
		}
	}
}

// retry runs fn until it succeeds, fails for good, or ctx ends.
func retry[T any](s *Store, ctx context.Context, op string, fn func(context.Context, *esdbclient.Client) (T, error)) (T, error) {
	delay := s.opts.MinBackoff
	for {
		v, err := call(s, ctx, fn)
		if err == nil || !transient(err) {
			if err == nil || !isContextErr(err) {
				s.reached()
			}
			return v, err
		}
		s.unreachable(op, err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			// Both: the caller's deadline ended it, and the reason is an
			// outage (the API answers 503 for either).
			return v, fmt.Errorf("eventstore/esdb: %s: %w: %w (EventStoreDB unreachable: %v)", op, eventstore.ErrUnavailable, ctx.Err(), err)
		case <-s.stop:
			t.Stop()
			return v, ErrClosed
		case <-t.C:
		}
		delay = min(delay*2, s.opts.MaxBackoff)
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed)
}

func clientGone(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errClientGone) {
		return true
	}
	var e *esdbclient.Error
	if errors.As(err, &e) && e.Code() == esdbclient.ErrorCodeConnectionClosed {
		return true
	}
	// The call that ran the failed discovery gets this; the client is
	// closed from then on.
	return strings.Contains(err.Error(), "maximum discovery attempt count reached")
}

// transient: worth retrying as is.
func transient(err error) bool {
	if clientGone(err) {
		return true
	}
	if isContextErr(err) {
		return false
	}
	var e *esdbclient.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case esdbclient.ErrorUnavailable, esdbclient.ErrorCodeNotLeader, esdbclient.ErrorCodeDeadlineExceeded, esdbclient.ErrorAborted:
			return true
		}
	}
	// A request stream the transport cut under us (gRPC reports that as
	// io.EOF on Send). For an append, the server commits only after the
	// whole request arrived, and a replay is idempotent anyway.
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// ---- Store -------------------------------------------------------------------

// Ping implements eventstore.Store: one read of the last $all record.
func (s *Store) Ping(ctx context.Context) error {
	_, err := callOpts(s, ctx, true, func(ctx context.Context, c *esdbclient.Client) (struct{}, error) {
		rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 1)
		if err != nil {
			return struct{}{}, err
		}
		defer rs.Close()
		if _, err := rs.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return struct{}{}, err
		}
		return struct{}{}, nil
	})
	if err != nil {
		if transient(err) {
			s.unreachable("ping", err)
		}
		return fmt.Errorf("eventstore/esdb: ping: %w", err)
	}
	s.reached()
	return nil
}

func isSystem(stream, eventType string) bool {
	return strings.HasPrefix(stream, "$") || strings.HasPrefix(eventType, "$")
}

func validateAppend(stream string, expected int64, events []eventstore.EventData) ([]esdbclient.EventData, error) {
	if stream == "" {
		return nil, fmt.Errorf("%w: empty stream name", eventstore.ErrInvalidAppend)
	}
	if strings.HasPrefix(stream, "$") {
		return nil, fmt.Errorf("%w: stream %q: names starting with $ are EventStoreDB system streams", eventstore.ErrInvalidAppend, stream)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", eventstore.ErrInvalidAppend)
	}
	if expected < eventstore.Any {
		return nil, fmt.Errorf("%w: expected version %d", eventstore.ErrInvalidAppend, expected)
	}
	out := make([]esdbclient.EventData, len(events))
	for i, e := range events {
		if e.ID == "" || e.Type == "" {
			return nil, fmt.Errorf("%w: event %d needs an id and a type", eventstore.ErrInvalidAppend, i)
		}
		if strings.HasPrefix(e.Type, "$") {
			return nil, fmt.Errorf("%w: event %d: types starting with $ are EventStoreDB system types", eventstore.ErrInvalidAppend, i)
		}
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: id %q is not a UUID", eventstore.ErrInvalidAppend, i, e.ID)
		}
		if !json.Valid(e.Data) || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) {
			return nil, fmt.Errorf("%w: event %d: data and metadata must be JSON", eventstore.ErrInvalidAppend, i)
		}
		out[i] = esdbclient.EventData{
			EventID:     id,
			EventType:   e.Type,
			ContentType: esdbclient.ContentTypeJson,
			Data:        e.Data,
			Metadata:    e.Metadata,
		}
	}
	return out, nil
}

func expectedRevision(expected int64) esdbclient.ExpectedRevision {
	switch {
	case expected == eventstore.Any:
		return esdbclient.Any{}
	case expected <= 0:
		return esdbclient.NoStream{}
	default:
		return esdbclient.Revision(uint64(expected - 1))
	}
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	proposed, err := validateAppend(stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	opts := esdbclient.AppendToStreamOptions{ExpectedRevision: expectedRevision(expected)}
	res, err := retry(s, ctx, "append", func(ctx context.Context, c *esdbclient.Client) (*esdbclient.WriteResult, error) {
		return c.AppendToStream(ctx, stream, opts, proposed...)
	})
	if err != nil {
		var e *esdbclient.Error
		switch {
		case errors.As(err, &e) && e.Code() == esdbclient.ErrorCodeWrongExpectedVersion:
			actual, ok := actualVersion(err)
			if !ok {
				if actual, err = s.version(ctx, stream); err != nil {
					return eventstore.AppendResult{}, fmt.Errorf("eventstore/esdb: append to %s: wrong expected version, and reading the actual one failed: %w", stream, err)
				}
			}
			return eventstore.AppendResult{}, &eventstore.VersionConflictError{Stream: stream, Expected: expected, Actual: actual}
		case status.Code(err) == codes.InvalidArgument:
			return eventstore.AppendResult{}, fmt.Errorf("%w: %v", eventstore.ErrInvalidAppend, err)
		}
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/esdb: append to %s: %w", stream, err)
	}
	return eventstore.AppendResult{Version: int64(res.NextExpectedVersion) + 1, Position: res.CommitPosition}, nil
}

// The client reports a wrong expected version only as text:
// "wrong expected version: expecting '<expected>' but got '<current>'",
// current being "no_stream" or the current revision.
var currentRevisionRE = regexp.MustCompile(`but got '([^']*)'`)

func actualVersion(err error) (int64, bool) {
	m := currentRevisionRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	if m[1] == "no_stream" {
		return 0, true
	}
	rev, perr := strconv.ParseInt(m[1], 10, 64)
	if perr != nil || rev < 0 {
		return 0, false
	}
	return rev + 1, true
}

// version reads a stream's current version (0 if it has no events).
func (s *Store) version(ctx context.Context, stream string) (int64, error) {
	return retry(s, ctx, "read stream version", func(ctx context.Context, c *esdbclient.Client) (int64, error) {
		rs, err := c.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 1)
		if err != nil {
			return 0, err
		}
		defer rs.Close()
		ev, err := rs.Recv()
		switch {
		case isNotFound(err), errors.Is(err, io.EOF):
			return 0, nil
		case err != nil:
			return 0, err
		}
		return int64(ev.OriginalEvent().EventNumber) + 1, nil
	})
}

func isNotFound(err error) bool {
	var e *esdbclient.Error
	return errors.As(err, &e) && e.Code() == esdbclient.ErrorCodeResourceNotFound
}

// maxPosition: positions are signed 64-bit on the server. Old servers
// (before v22) send "no position" (all ones) for events read from a stream.
const maxPosition = 1<<63 - 1

func convert(e *esdbclient.RecordedEvent) eventstore.RecordedEvent {
	meta := e.UserMetadata
	if len(meta) == 0 {
		meta = []byte("{}")
	}
	pos := e.Position.Commit
	if pos > maxPosition {
		pos = 0
	}
	return eventstore.RecordedEvent{
		ID:         e.EventID.String(),
		StreamID:   e.StreamID,
		Type:       e.EventType,
		Version:    int64(e.EventNumber) + 1,
		Position:   pos,
		Data:       e.Data,
		Metadata:   meta,
		RecordedAt: e.CreatedDate.UTC(),
	}
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, fromVersion int64, limit int) ([]eventstore.RecordedEvent, error) {
	if fromVersion < 1 {
		fromVersion = 1
	}
	if limit <= 0 {
		limit = 1000
	}
	evs, err := retry(s, ctx, "read stream", func(ctx context.Context, c *esdbclient.Client) ([]eventstore.RecordedEvent, error) {
		rs, err := c.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{
			Direction: esdbclient.Forwards,
			From:      esdbclient.Revision(uint64(fromVersion - 1)),
		}, uint64(limit))
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		out := make([]eventstore.RecordedEvent, 0, min(limit, 64))
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if isNotFound(err) {
				return nil, fmt.Errorf("%w: %s", eventstore.ErrStreamNotFound, stream)
			}
			if err != nil {
				return nil, err
			}
			if e := ev.OriginalEvent(); e != nil {
				out = append(out, convert(e))
			}
		}
	})
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, fmt.Errorf("eventstore/esdb: read stream %s: %w", stream, err)
	}
	return evs, err
}

func allFrom(after uint64) esdbclient.AllPosition {
	if after == 0 {
		return esdbclient.Start{}
	}
	return esdbclient.Position{Commit: after, Prepare: after}
}

// ReadAll implements eventstore.Store. $all reads are inclusive of their
// start, and carry system events, which are skipped; a page can therefore
// take several reads.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	evs, err := retry(s, ctx, "read $all", func(ctx context.Context, c *esdbclient.Client) ([]eventstore.RecordedEvent, error) {
		out := make([]eventstore.RecordedEvent, 0, min(limit, 512))
		from := allFrom(after)
		seen := after
		for {
			want := uint64(limit-len(out)) + 1 // +1: the start itself comes back
			rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Forwards, From: from}, want)
			if err != nil {
				return nil, err
			}
			var got uint64
			for len(out) < limit {
				ev, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					rs.Close()
					return nil, err
				}
				got++
				e := ev.OriginalEvent()
				if e == nil || e.Position.Commit <= seen {
					continue
				}
				seen = e.Position.Commit
				from = e.Position
				if !isSystem(e.StreamID, e.EventType) {
					out = append(out, convert(e))
				}
			}
			rs.Close()
			if len(out) >= limit || got < want {
				return out, nil
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore/esdb: read $all after %d: %w", after, err)
	}
	return evs, nil
}

// Head implements eventstore.Store: the position of the last event that
// is not a system event.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	const page = 64
	h, err := retry(s, ctx, "head", func(ctx context.Context, c *esdbclient.Client) (uint64, error) {
		var from esdbclient.AllPosition = esdbclient.End{}
		for {
			rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: from}, page)
			if err != nil {
				return 0, err
			}
			got := 0
			for {
				ev, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					rs.Close()
					return 0, err
				}
				got++
				e := ev.OriginalEvent()
				if e == nil {
					continue
				}
				if !isSystem(e.StreamID, e.EventType) {
					rs.Close()
					return e.Position.Commit, nil
				}
				from = e.Position // backwards reads exclude their start
			}
			rs.Close()
			if got < page {
				return 0, nil
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("eventstore/esdb: head: %w", err)
	}
	return h, nil
}
