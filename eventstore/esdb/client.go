// The client's lifecycle: making a client, warming it up, handing it to
// calls, retiring it when it closed itself or lost its node, and the
// health check (Ping) that also triggers reconnection.

package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

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
		if !s.hold(cn) {
			continue
		}
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

// hold counts one more call inside cn, unless cn is retired (then it
// must not be used, and hold reports false). release must follow a true.
func (s *Store) hold(cn *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cn.retired {
		return false
	}
	cn.inflight++
	return true
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
