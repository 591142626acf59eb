package esdb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/eventstore/esdb"
	"github.com/salesos/salesos/eventstore/esdbtest"
	"github.com/salesos/salesos/eventstore/eventstoretest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newStore(t *testing.T, connString string) *esdb.Store {
	t.Helper()
	s, err := esdb.New(context.Background(), connString, esdb.Options{
		Logger:     quietLogger(),
		MaxBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The whole conformance suite, each test against its own in-process
// EventStoreDB test server (so each store starts empty).
func TestConformance(t *testing.T) {
	eventstoretest.RunWith(t, func(t *testing.T) eventstore.Store {
		srv := esdbtest.Start(t)
		return newStore(t, srv.ConnString())
	}, eventstoretest.Options{
		// Two clients of one server: two processes writing to one
		// EventStoreDB.
		NewPair: func(t *testing.T) (eventstore.Store, eventstore.Store) {
			srv := esdbtest.Start(t)
			return newStore(t, srv.ConnString()), newStore(t, srv.ConnString())
		},
		PerStreamEventIDs: "EventStoreDB checks event ids only where an append would put them (its idempotent replay); " +
			"it has no global index that could refuse an id stored in another stream",
	})
}

func ev(typ string) eventstore.EventData {
	return eventstore.EventData{ID: uuid.NewString(), Type: typ, Data: []byte(`{"n":1}`), Metadata: []byte(`{"org_id":"o1"}`)}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// System events (a "$" type or a "$" stream) in $all are invisible to
// ReadAll, Head and subscriptions.
func TestSystemEventsAreSkipped(t *testing.T) {
	srv := esdbtest.Start(t)
	s := newStore(t, srv.ConnString())
	ctx := testCtx(t, 30*time.Second)

	h, err := s.Head(ctx)
	if err != nil || h != 0 {
		t.Fatalf("head of a store holding only system events: %d, %v; want 0", h, err)
	}
	if all, err := s.ReadAll(ctx, 0, 10); err != nil || len(all) != 0 {
		t.Fatalf("ReadAll of a store holding only system events: %d events, %v", len(all), err)
	}
	sub, err := s.Subscribe(ctx, 0, eventstore.SubscribeOptions{BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	var want []string
	for i := 0; i < 5; i++ {
		r, err := s.Append(ctx, "lead-"+uuid.NewString(), eventstore.NoStream, ev(fmt.Sprintf("e%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("e%d", i))
		srv.AppendSystemEvent("$stats-127.0.0.1:2113", "$statsCollected")
		srv.AppendSystemEvent("$projections-x", "plain-type-in-a-system-stream")
		if i == 4 {
			if h, err := s.Head(ctx); err != nil || h != r.Position {
				t.Fatalf("head %d, %v; want the last user event %d", h, err, r.Position)
			}
		}
	}
	// A page of 2 needs several reads when system events sit in between.
	var got []string
	var after uint64
	for {
		page, err := s.ReadAll(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			got = append(got, e.Type)
			after = e.Position
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ReadAll = %v, want %v", got, want)
	}
	got = got[:0]
	for len(got) < len(want) {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			got = append(got, e.Type)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("subscription = %v, want %v", got, want)
	}
}

func TestAppendRefusesSystemNames(t *testing.T) {
	srv := esdbtest.Start(t)
	s := newStore(t, srv.ConnString())
	ctx := testCtx(t, 10*time.Second)
	if _, err := s.Append(ctx, "$settings", eventstore.Any, ev("a")); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Errorf("append to a $ stream: %v", err)
	}
	if _, err := s.Append(ctx, "s-1", eventstore.Any, ev("$a")); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Errorf("append of a $ type: %v", err)
	}
	if _, err := s.Append(ctx, "s-1", eventstore.Any, eventstore.EventData{ID: "not-a-uuid", Type: "a", Data: []byte(`{}`)}); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Errorf("append with a non-UUID id: %v", err)
	}
}

// The server is not up when the store is created and at its first calls
// (so the client's first discovery fails and it closes itself for good);
// the store recreates the client, with backoff, and the append that was
// waiting succeeds once the server is up.
func TestServerStartsLate(t *testing.T) {
	srv := esdbtest.Start(t)
	srv.Stop()
	s := newStore(t, srv.ConnString())

	pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := s.Ping(pctx)
	cancel()
	if err == nil {
		t.Fatal("Ping succeeded with the server down")
	}

	ctx := testCtx(t, 60*time.Second)
	type res struct {
		r   eventstore.AppendResult
		err error
	}
	done := make(chan res, 1)
	e := ev("late")
	go func() {
		r, err := s.Append(ctx, "lead-late", eventstore.NoStream, e)
		done <- res{r, err}
	}()
	// Let the append fail against the missing server at least once: a
	// second Ping failing means the store went through a dead client.
	pctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	err = s.Ping(pctx)
	cancel()
	if err == nil {
		t.Fatal("Ping succeeded with the server down")
	}
	select {
	case r := <-done:
		t.Fatalf("append returned while the server is down: %+v %v", r.r, r.err)
	default:
	}

	srv.Restart()
	var r res
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("append did not succeed after the server came up")
	}
	if r.err != nil || r.r.Version != 1 || r.r.Position == 0 {
		t.Fatalf("append after the server came up: %+v %v", r.r, r.err)
	}
	got, err := s.ReadStream(ctx, "lead-late", 1, 10)
	if err != nil || len(got) != 1 || got[0].ID != e.ID {
		t.Fatalf("read back: %+v %v", got, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping with the server up: %v", err)
	}
}

// The server restarts under an open subscription, with nothing appended
// while it is down; events appended after the restart reach the subscriber
// exactly once and in order, after those it had before.
func TestSubscriptionSurvivesServerRestart(t *testing.T) {
	srv := esdbtest.Start(t)
	s := newStore(t, srv.ConnString())
	ctx := testCtx(t, 60*time.Second)

	var want []string
	appendSome := func(n int) {
		t.Helper()
		st := "lead-" + uuid.NewString()
		for i := 0; i < n; i++ {
			e := ev("e")
			if _, err := s.Append(ctx, st, int64(i), e); err != nil {
				t.Fatal(err)
			}
			want = append(want, e.ID)
		}
	}
	appendSome(10)

	sub, err := s.Subscribe(ctx, 0, eventstore.SubscribeOptions{BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	var got []eventstore.RecordedEvent
	receive := func(n int) {
		t.Helper()
		for len(got) < n {
			evs, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("after %d of %d events: %v", len(got), n, err)
			}
			if len(evs) > 3 {
				t.Fatalf("batch of %d, want at most 3", len(evs))
			}
			got = append(got, evs...)
		}
	}
	receive(10)
	subsBefore := srv.Subscriptions()

	srv.Stop()
	srv.Restart()
	appendSome(15) // retried by the store until the server answers
	receive(25)

	// The subscription really went through a resubscription.
	if srv.Subscriptions() <= subsBefore {
		t.Fatalf("no resubscription: %d subscriptions before the restart, %d after", subsBefore, srv.Subscriptions())
	}
	// Nothing more is delivered: no duplicates waiting.
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	extra, err := sub.Next(qctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after all events: %d more, %v", len(extra), err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i, e := range got {
		if e.ID != want[i] {
			t.Fatalf("event %d is %s, want %s (missed, repeated or reordered)", i, e.ID, want[i])
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Fatalf("positions not increasing at %d: %d after %d", i, e.Position, got[i-1].Position)
		}
	}
}

// A subscription opened while the server is down starts delivering once it
// is up.
func TestSubscribeWhileServerDown(t *testing.T) {
	srv := esdbtest.Start(t)
	s := newStore(t, srv.ConnString())
	ctx := testCtx(t, 60*time.Second)
	r, err := s.Append(ctx, "lead-1", eventstore.NoStream, ev("a"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	sub, err := s.Subscribe(ctx, 0, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	srv.Restart()
	evs, err := sub.Next(ctx)
	if err != nil || len(evs) != 1 || evs[0].Position != r.Position {
		t.Fatalf("first batch: %+v %v", evs, err)
	}
}

// Closing the store ends subscriptions and fails later calls.
func TestClose(t *testing.T) {
	srv := esdbtest.Start(t)
	s := newStore(t, srv.ConnString())
	ctx := testCtx(t, 10*time.Second)
	sub, err := s.Subscribe(ctx, 0, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := sub.Next(ctx); !errors.Is(err, esdb.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, err := s.Append(ctx, "s", eventstore.Any, ev("a")); err == nil {
		t.Fatal("append after Close succeeded")
	}
}

// A start position that is not an event position (here: inside a record,
// as a checkpoint of another backend would be) is refused, not waited on.
func TestForeignPositionIsRefused(t *testing.T) {
	srv := esdbtest.Start(t)
	s := newStore(t, srv.ConnString())
	ctx := testCtx(t, 20*time.Second)
	r, err := s.Append(ctx, "lead-1", eventstore.NoStream, ev("a"), ev("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAll(ctx, r.Position-1, 10); err == nil {
		t.Fatal("ReadAll from a position inside a record succeeded")
	}
	sub, err := s.Subscribe(ctx, r.Position-1, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if evs, err := sub.Next(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next after a foreign position: %d events, %v", len(evs), err)
	}
}

// While the server is away, a call that gives up says the store is
// unavailable (the API answers 503), not just that its time ran out.
func TestOutageIsUnavailable(t *testing.T) {
	srv := esdbtest.Start(t)
	s := newStore(t, srv.ConnString())
	srv.Stop()
	for name, call := range map[string]func(context.Context) error{
		"append": func(ctx context.Context) error {
			_, err := s.Append(ctx, "lead-x", eventstore.NoStream, ev("a"))
			return err
		},
		"read stream": func(ctx context.Context) error {
			_, err := s.ReadStream(ctx, "lead-x", 1, 10)
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := call(ctx)
		cancel()
		if !errors.Is(err, eventstore.ErrUnavailable) || !eventstore.IsUnavailable(err) {
			t.Errorf("%s with the server down: %v, want ErrUnavailable", name, err)
		}
	}
}
