package projections

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
)

// storeSubscriber is a Watermill message.Subscriber fed by the event store.
// The topic is the projection's name: Subscribe starts after the checkpoint
// stored for that name, and each message carries one batch of events (a
// page of the store's subscription), so the handler can apply the whole
// batch in one transaction.
//
// The subscriber does not write checkpoints itself; the handler does, in the
// same transaction as the read model. On Nack the same batch is sent again.
//
// Before it starts reading, Subscribe takes the projection's leader lock (a
// session-level advisory lock on PostgreSQL; see driver.LeaderLocks), so among several instances
// only one runs a given projection; the others wait for it to go away.
type storeSubscriber struct {
	store     eventstore.Store
	db        *sqlx.DB // the write handle (leader lock)
	d         driver.Driver
	read      *sqlx.DB // checkpoint reads
	batchSize int
	logger    *slog.Logger
	lockRetry time.Duration
	// maxBackoff caps the pause before a nacked batch is offered again.
	maxBackoff time.Duration
	// Hooks for the runner's supervisor (each optional): waiting for the
	// leader lock, following the store, and an error that ended the
	// subscription.
	onStandby, onLeading func()
	onError              func(error)

	mu      sync.Mutex
	closed  bool
	lastErr error
	cancel  []context.CancelFunc
	wg      sync.WaitGroup
}

var _ message.Subscriber = (*storeSubscriber)(nil)

// batchPayload is a batch of events handed to a projection's handler.
//
// It travels in the Watermill message's context, not serialized into its
// payload: subscriber and router are in one process, and encoding every
// batch to JSON and back only to cross that boundary was a sixth of the
// server's CPU under write load.
type batchPayload struct {
	Generation int64
	Events     []eventstore.RecordedEvent
}

type batchKey struct{}

// withBatch returns msg carrying b.
func withBatch(msg *message.Message, b *batchPayload) *message.Message {
	msg.SetContext(context.WithValue(msg.Context(), batchKey{}, b))
	return msg
}

// batchOf returns the batch msg carries.
func batchOf(msg *message.Message) (*batchPayload, bool) {
	b, ok := msg.Context().Value(batchKey{}).(*batchPayload)
	return b, ok
}

func (s *storeSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("subscriber closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = append(s.cancel, cancel)
	s.wg.Add(1)
	s.mu.Unlock()

	out := make(chan *message.Message)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.run(ctx, topic, out)
	}()
	return out, nil
}

// run follows the store as the projection's leader until ctx ends or an
// error; the error is kept (lastError) and the channel closed, which stops
// the router so that the runner's supervisor starts the projection again.
func (s *storeSubscriber) run(ctx context.Context, name string, out chan<- *message.Message) {
	if s.onStandby != nil {
		s.onStandby()
	}
	leader, err := acquireLeader(ctx, s.db, s.d, name, s.lockRetry)
	if err != nil {
		return // ctx ended while waiting
	}
	defer leader.unlock()
	// The lock lives as long as its connection: if that dies (a database
	// restart, a killed session) another instance may take over, so stop
	// and queue for the lock again.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go leader.watch(ctx, s.lockRetry, cancel)
	for ctx.Err() == nil {
		err := s.follow(ctx, name, out)
		if errors.Is(err, errRebuilt) {
			s.logger.Info("projection: rebuilt; replaying from the start", "projection", name)
			continue
		}
		if cause := context.Cause(ctx); errors.Is(cause, errLeaderLost) {
			err = cause
		}
		if err != nil && (ctx.Err() == nil || errors.Is(err, errLeaderLost)) {
			s.logger.Error("projection: subscription failed", "projection", name, "error", err)
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			if s.onError != nil {
				s.onError(err)
			}
		}
		return
	}
}

// lastError is the error that ended the subscription, if any.
func (s *storeSubscriber) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// follow feeds batches from the stored checkpoint on, until ctx ends, an
// error, or a rebuild (errRebuilt).
func (s *storeSubscriber) follow(ctx context.Context, name string, out chan<- *message.Message) error {
	cp, err := s.d.ReadCheckpoint(ctx, s.read, name)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	// A rebuild resets the checkpoint under us. Between batches we check
	// after each ack; while idle, a watcher checks every lockRetry and
	// interrupts the wait.
	if s.onLeading != nil {
		s.onLeading()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go s.watchGeneration(ctx, name, cp.Generation, cancel)

	sub, err := s.store.Subscribe(ctx, uint64(cp.Position), eventstore.SubscribeOptions{BatchSize: s.batchSize})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Close()

	backoff := &backoff{min: 100 * time.Millisecond, max: cmp.Or(s.maxBackoff, 5*time.Second)}
	backoff.reset()
	for {
		evs, err := sub.Next(ctx)
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errRebuilt) {
				return errRebuilt
			}
			return err
		}
		batch := &batchPayload{Generation: cp.Generation, Events: evs}
		last := strconv.FormatUint(evs[len(evs)-1].Position, 10)
		for {
			msg := withBatch(message.NewMessage(watermill.NewUUID(), nil), batch)
			msg.Metadata.Set("last_position", last)
			select {
			case out <- msg:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-msg.Acked():
				backoff.reset()
			case <-msg.Nacked():
				// The router's retry middleware has given up on this batch.
				// A projection must never skip an event, so wait and offer
				// the same batch again.
				if !backoff.wait(ctx) {
					return ctx.Err()
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
			break
		}
		now, err := s.d.ReadCheckpoint(ctx, s.read, name)
		if err != nil {
			return fmt.Errorf("read checkpoint: %w", err)
		}
		if now.Generation != cp.Generation {
			return errRebuilt
		}
	}
}

func (s *storeSubscriber) watchGeneration(ctx context.Context, name string, gen int64, cancel context.CancelCauseFunc) {
	everyTick(ctx, s.lockRetry, func() bool {
		cp, err := s.d.ReadCheckpoint(ctx, s.read, name)
		if err == nil && cp.Generation != gen {
			cancel(errRebuilt)
			return false
		}
		return true
	})
}

// everyTick calls check every interval until ctx ends or check returns
// false (it has found what it watches for).
func everyTick(ctx context.Context, every time.Duration, check func() bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !check() {
			return
		}
	}
}

func (s *storeSubscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, c := range s.cancel {
		c()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// errLeaderLost: the connection holding the leader lock is gone.
var errLeaderLost = errors.New("leader lock lost")

// leadership is a held leader lock.
type leadership struct {
	conn   *sql.Conn // nil when the driver needs no lock
	unlock func()
}

// watch cancels ctx with errLeaderLost when the lock's connection stops
// answering.
func (l leadership) watch(ctx context.Context, every time.Duration, cancel context.CancelCauseFunc) {
	if l.conn == nil {
		return
	}
	everyTick(ctx, every, func() bool {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.conn.PingContext(pctx)
		pcancel()
		if err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("%w: %w", errLeaderLost, err))
			return false
		}
		return true
	})
}

// acquireLeader blocks until this process holds the projection's leader
// lock, or ctx ends, trying again every retry (a failed attempt, even an
// error, only means "not yet"). The lock lives on a dedicated connection and
// goes away with it, so a crashed instance frees its projections at once.
// A driver that needs no lock (SQLite; see its TryLeaderLock for why that is
// safe) returns at once, with no connection to watch.
func acquireLeader(ctx context.Context, db *sqlx.DB, d driver.Driver, name string, retry time.Duration) (leadership, error) {
	for {
		conn, held, err := d.TryLeaderLock(ctx, db, name)
		if err == nil && held {
			return leadership{conn: conn, unlock: func() {
				uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = d.ReleaseLeaderLock(uctx, conn, name)
			}}, nil
		}
		select {
		case <-ctx.Done():
			return leadership{}, ctx.Err()
		case <-time.After(retry):
		}
	}
}

// backoff is a doubling pause from min to max; call reset before use.
type backoff struct{ d, min, max time.Duration }

func (b *backoff) reset() { b.d = b.min }
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(b.d*2, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
