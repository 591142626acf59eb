// Subscriptions (catch-up, then live), Head and Ping.

package eventstoretest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/salesos/salesos/eventstore"
)

func testSubscription(t *testing.T, s eventstore.Store) {
	st := stream(t)
	mustAppend(t, s, st, eventstore.NoStream, ev("a", `{}`), ev("b", `{}`), ev("c", `{}`))
	// Start after "a". Positions are not dense (EventStoreDB's are log
	// offsets), so take a's real position rather than computing one.
	first, err := s.ReadStream(ctx(t), st, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscribe(ctx(t), first[0].Position, eventstore.SubscribeOptions{BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got, err := sub.Next(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != "b" || got[1].Type != "c" {
		t.Fatalf("catch-up from the middle: %+v", got)
	}
	// Live: Next blocks until the next append, which happens later.
	type res struct {
		evs []eventstore.RecordedEvent
		err error
	}
	done := make(chan res, 1)
	go func() {
		evs, err := sub.Next(ctx(t))
		done <- res{evs, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Next returned before any new event: %+v %v", r.evs, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	mustAppend(t, s, st, 3, ev("d", `{}`))
	select {
	case r := <-done:
		if r.err != nil || len(r.evs) != 1 || r.evs[0].Type != "d" {
			t.Fatalf("live event: %+v %v", r.evs, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("live event not delivered within 10s")
	}
	// Next honours cancellation.
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sub.Next(c); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on a cancelled context: %v", err)
	}
}

func testHeadAndPing(t *testing.T, s eventstore.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r := mustAppend(t, s, stream(t), eventstore.NoStream, ev("a", `{}`))
	h, err := s.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if h < r.Position {
		t.Fatalf("head %d below the last append %d", h, r.Position)
	}
}
