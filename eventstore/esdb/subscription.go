package esdb

import (
	"context"
	"fmt"
	"sync"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/salesos/salesos/eventstore"
)

// Subscribe implements eventstore.Store. It returns at once; the catch-up
// subscription to $all is made (and remade after a drop) in the
// background, so a server that is down or restarting only delays Next.
// The subscription lives until Close (or the store's Close), not ctx.
func (s *Store) Subscribe(ctx context.Context, after uint64, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = eventstore.DefaultBatchSize
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.subs.Add(1)
	s.mu.Unlock()
	sctx, cancel := context.WithCancel(s.base)
	sub := &subscription{
		s:      s,
		ctx:    sctx,
		cancel: cancel,
		last:   after,
		batch:  batch,
		// At most about one batch waits ahead of the consumer; beyond
		// that, gRPC flow control holds the server back.
		ch:   make(chan item, batch),
		done: make(chan struct{}),
	}
	go sub.run()
	return sub, nil
}

// item is what run hands to Next: an event, or a mark of where the
// server's catch-up ends (or starts again after a resubscription).
type item struct {
	ev   eventstore.RecordedEvent
	mark int
}

const (
	markNone = iota
	markCaughtUp
	markCatchingUp
)

type subscription struct {
	s      *Store
	ctx    context.Context
	cancel context.CancelFunc
	batch  int
	ch     chan item
	done   chan struct{}

	nextMu sync.Mutex
	live   bool // the last mark Next saw was caught-up; guarded by nextMu

	// last is the position of the last event put into ch, that is, handed
	// out or about to be. Only run touches it.
	last uint64
	// err is why run gave up for good; set before done closes.
	err error
}

// catchUpLinger is how long Next waits for the next stored event of a
// catch-up before it returns a partial batch. Servers since v23.10 say when
// a catch-up is over (caught_up), which ends the wait at once; the linger
// only matters on older servers and for a slow network.
const catchUpLinger = 20 * time.Millisecond

// Next implements eventstore.Subscription. While the subscription catches
// up it fills the batch (stored events stream in); once live it returns
// whatever has arrived.
func (sub *subscription) Next(ctx context.Context) ([]eventstore.RecordedEvent, error) {
	sub.nextMu.Lock()
	defer sub.nextMu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []eventstore.RecordedEvent
	take := func(it item) {
		switch it.mark {
		case markCaughtUp:
			sub.live = true
		case markCatchingUp:
			sub.live = false
		default:
			out = append(out, it.ev)
		}
	}
	for len(out) == 0 {
		select {
		case it := <-sub.ch:
			take(it)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sub.done:
			if sub.err != nil {
				return nil, sub.err
			}
			return nil, ErrClosed
		}
	}
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for len(out) < sub.batch {
		select {
		case it := <-sub.ch:
			take(it)
			continue
		default:
		}
		if sub.live {
			return out, nil
		}
		if linger == nil {
			linger = time.NewTimer(catchUpLinger)
		} else {
			linger.Reset(catchUpLinger)
		}
		select {
		case it := <-sub.ch:
			take(it)
		case <-linger.C:
			return out, nil
		case <-ctx.Done():
			return out, nil
		case <-sub.done:
			return out, nil
		}
	}
	return out, nil
}

// Close implements eventstore.Subscription.
func (sub *subscription) Close() error {
	sub.cancel()
	<-sub.done
	return nil
}

func (sub *subscription) from() esdbclient.AllPosition {
	// Subscribing from a position means "after it" on the server; events
	// at or below last are dropped here anyway.
	return allFrom(sub.last)
}

// run keeps a server subscription open and feeds ch, resubscribing from
// last after every drop.
func (sub *subscription) run() {
	s := sub.s
	defer s.subs.Done()
	defer close(sub.done)
	delay := s.opts.MinBackoff
	dropped := false
	for sub.ctx.Err() == nil {
		es, err := retry(s, sub.ctx, "subscribe to $all", func(ctx context.Context, c *esdbclient.Client) (*esdbclient.Subscription, error) {
			return c.SubscribeToAll(ctx, esdbclient.SubscribeToAllOptions{
				From:   sub.from(),
				Filter: esdbclient.ExcludeSystemEventsFilter(),
			})
		})
		if err != nil {
			if sub.ctx.Err() != nil {
				return
			}
			if status.Code(err) == codes.InvalidArgument {
				// A start the server refuses (a position that is not
				// one of its event positions, say one from another
				// backend) will never work: Next reports it.
				sub.err = fmt.Errorf("eventstore/esdb: subscribe to $all after %d: %w", sub.last, err)
				return
			}
			// Not a connection problem (access denied...): say so, and
			// keep trying, slowly.
			s.log.Error("eventstore/esdb: cannot subscribe to $all", "after", sub.last, "error", err)
			if !sub.sleep(s.opts.MaxBackoff) {
				return
			}
			continue
		}
		if dropped {
			s.log.Info("eventstore/esdb: subscription to $all resumed", "after", sub.last)
		}
		delivered, err := sub.pump(es)
		_ = es.Close()
		if sub.ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.InvalidArgument {
			sub.err = fmt.Errorf("eventstore/esdb: subscription to $all after %d: %w", sub.last, err)
			return
		}
		dropped = true
		s.log.Warn("eventstore/esdb: subscription to $all dropped; resubscribing after the last event handed out", "after", sub.last, "error", err)
		if delivered > 0 {
			delay = s.opts.MinBackoff
		}
		if !sub.sleep(delay) {
			return
		}
		delay = min(delay*2, s.opts.MaxBackoff)
	}
}

func (sub *subscription) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sub.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pump moves events from the server subscription into ch until it drops
// or the subscription is closed.
func (sub *subscription) pump(es *esdbclient.Subscription) (int, error) {
	delivered := 0
	put := func(it item) error {
		select {
		case sub.ch <- it:
			return nil
		case <-sub.ctx.Done():
			return sub.ctx.Err()
		}
	}
	if err := put(item{mark: markCatchingUp}); err != nil {
		return 0, err
	}
	for {
		ev := es.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			return delivered, ev.SubscriptionDropped.Error
		case ev.EventAppeared != nil:
			e := ev.EventAppeared.OriginalEvent()
			if e == nil || e.Position.Commit <= sub.last || isSystem(e.StreamID, e.EventType) {
				continue
			}
			if err := put(item{ev: convert(e)}); err != nil {
				return delivered, err
			}
			sub.last = e.Position.Commit
			delivered++
		case ev.CaughtUp != nil:
			if err := put(item{mark: markCaughtUp}); err != nil {
				return delivered, err
			}
		}
		// Checkpoints carry nothing we need: the position to resume from
		// is the last event handed out.
	}
}
