// Running one call against the current client: in its own goroutine so a
// context can abandon it, with liveness probes, retries with backoff, and
// the classification of the client's errors that decides what is retried.

package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/salesos/salesos/eventstore"
)

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
	if !s.hold(cn) {
		return
	}
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
