// Package eventstoretest is the conformance suite every event-store backend
// must pass. A backend's test file calls Run with a constructor that returns
// a fresh, empty store; adding a backend adds one such call, never a copy of
// these tests.
package eventstoretest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/salesos/salesos/eventstore"
)

// NewStore returns a fresh, empty store; the suite closes it.
type NewStore func(t *testing.T) eventstore.Store

// Options describe what a backend can and cannot be asked.
type Options struct {
	// NewPair returns two fresh stores on one empty database, standing for
	// two processes that write to it. Nil skips the tests that need it;
	// say why in SkipPairReason.
	NewPair        func(t *testing.T) (a, b eventstore.Store)
	SkipPairReason string
	// PerStreamEventIDs, when set, says why the backend cannot refuse an
	// event id that is already stored at another place (EventStoreDB keeps
	// ids per write, not in a global index); the suite then checks only
	// the idempotent replay part of the event-id rule.
	PerStreamEventIDs string
}

// Run runs the whole suite.
func Run(t *testing.T, newStore NewStore) { RunWith(t, newStore, Options{}) }

// RunWith runs the whole suite with a backend's options.
func RunWith(t *testing.T, newStore NewStore, o Options) {
	t.Run("DuplicateEventIDs", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t.Cleanup(func() { s.Close() })
		testDuplicateEventIDs(t, s, o)
	})
	t.Run("GapSafeAcrossTwoStores", func(t *testing.T) {
		if o.NewPair == nil {
			t.Skip(o.SkipPairReason)
		}
		t.Parallel()
		a, b := o.NewPair(t)
		t.Cleanup(func() { a.Close(); b.Close() })
		testGapSafetyTwoStores(t, a, b)
	})
	tests := []struct {
		name string
		fn   func(*testing.T, eventstore.Store)
	}{
		{"AppendAndReadStream", testAppendAndReadStream},
		{"ExpectedVersion", testExpectedVersion},
		{"StreamNotFound", testStreamNotFound},
		{"ReadStreamPaging", testReadStreamPaging},
		{"ReadAllOrderAndPaging", testReadAll},
		{"InvalidAppends", testInvalidAppends},
		{"DataRoundTrip", testDataRoundTrip},
		{"ConcurrentWritersOneStream", testConcurrentOneStream},
		{"GapSafeUnderConcurrency", testGapSafety},
		{"SubscriptionCatchUpAndLive", testSubscription},
		{"HeadAndPing", testHeadAndPing},
		{"StreamHead", testStreamHead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

func ev(typ string, data string) eventstore.EventData {
	return eventstore.EventData{ID: uuid.NewString(), Type: typ, Data: []byte(data), Metadata: []byte(`{"org_id":"o1"}`)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func stream(t *testing.T) string { return "test-" + uuid.NewString() }

func mustAppend(t *testing.T, s eventstore.Store, stream string, expected int64, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	r, err := s.Append(ctx(t), stream, expected, evs...)
	if err != nil {
		t.Fatalf("append to %s (expected %d): %v", stream, expected, err)
	}
	return r
}
