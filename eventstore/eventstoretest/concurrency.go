// Concurrent writers: versions on one stream are taken once each, and
// positions reach subscribers in order with no gaps, whether the writers
// share one store or use two stores on one database.

package eventstoretest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/salesos/salesos/eventstore"
)

// Many writers race on one stream, each reading the version and appending
// with it; every version must be taken exactly once and the losers must see
// ErrWrongExpectedVersion, never a duplicate or a hole.
func testConcurrentOneStream(t *testing.T, s eventstore.Store) {
	st := stream(t)
	mustAppend(t, s, st, eventstore.NoStream, ev("seed", `{}`))
	const writers, rounds = 8, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				evs, err := eventstore.ReadFullStream(ctx(t), s, st)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = s.Append(ctx(t), st, evs[len(evs)-1].Version, ev("w", `{}`))
				mu.Lock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, eventstore.ErrWrongExpectedVersion):
					conflicts++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	all, err := eventstore.ReadFullStream(ctx(t), s, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != wins+1 {
		t.Fatalf("stream has %d events, want %d wins + seed", len(all), wins)
	}
	for i, e := range all {
		if e.Version != int64(i+1) {
			t.Fatalf("version %d at index %d", e.Version, i)
		}
	}
	if wins+conflicts != writers*rounds || wins == 0 {
		t.Fatalf("wins %d conflicts %d", wins, conflicts)
	}
}

// Concurrent appenders on many streams while a subscriber follows: the
// subscriber must see every event exactly once, in increasing position
// order, even though transactions commit in a different order than they
// started. This is the BIGSERIAL visibility-gap test.
func testGapSafety(t *testing.T, s eventstore.Store) {
	start, err := s.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 32, 25
	total := writers * perWriter
	sub, err := s.Subscribe(ctx(t), start, eventstore.SubscribeOptions{BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	wait := writeConcurrently(t, writers, perWriter, func(int) eventstore.Store { return s }, func(_, i int) string {
		return fmt.Sprintf(`{"i":%d}`, i)
	})
	last := followAll(t, sub, start, total, wait)
	// A second, late subscriber reading everything from the start sees the
	// same sequence (the store did not reorder history).
	all, err := s.ReadAll(ctx(t), start, total+10)
	if err != nil || len(all) != total {
		t.Fatalf("ReadAll: %d events, %v", len(all), err)
	}
	if all[len(all)-1].Position != last {
		t.Fatalf("ReadAll ends at %d, subscriber at %d", all[len(all)-1].Position, last)
	}
}

// Two stores on one database (two processes' worth of writers, each with
// its own writer and commit order) append concurrently while a subscriber
// of one of them follows: it must see every event of both exactly once, in
// increasing position order, and the other store must read the same
// history.
func testGapSafetyTwoStores(t *testing.T, a, b eventstore.Store) {
	start, err := a.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 16, 20
	total := writers * perWriter
	sub, err := a.Subscribe(ctx(t), start, eventstore.SubscribeOptions{BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	storeFor := func(w int) eventstore.Store {
		if w%2 == 1 {
			return b
		}
		return a
	}
	wait := writeConcurrently(t, writers, perWriter, storeFor, func(w, i int) string {
		return fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
	})
	last := followAll(t, sub, start, total, wait)
	all, err := b.ReadAll(ctx(t), start, total+10)
	if err != nil || len(all) != total || all[len(all)-1].Position != last {
		t.Fatalf("the other store reads %d events (%v), want %d ending at %d", len(all), err, total, last)
	}
	for i, e := range all {
		if i > 0 && e.Position <= all[i-1].Position {
			t.Fatalf("the other store reads position %d after %d", e.Position, all[i-1].Position)
		}
	}
}

// writeConcurrently starts writers goroutines, each appending perWriter
// events one at a time to a stream of its own, through the store storeFor
// gives it, with data(w, i) as the i-th event's data. wait waits for the
// writers and returns the ids of every event they wrote.
func writeConcurrently(t *testing.T, writers, perWriter int, storeFor func(w int) eventstore.Store, data func(w, i int) string) (wait func() map[string]bool) {
	want := make(map[string]bool, writers*perWriter)
	var wantMu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		s := storeFor(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stream(t)
			for i := 0; i < perWriter; i++ {
				e := ev("g", data(w, i))
				wantMu.Lock()
				want[e.ID] = true
				wantMu.Unlock()
				if _, err := s.Append(ctx(t), st, int64(i), e); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	return func() map[string]bool {
		wg.Wait()
		return want
	}
}

// followAll reads sub until it has handed out total events, failing the
// test on an event whose position is not above the previous one's (out of
// order or repeated) or that comes twice; once the writers are done (wait),
// every event they wrote must have come. It returns the last position seen.
func followAll(t *testing.T, sub eventstore.Subscription, start uint64, total int, wait func() map[string]bool) uint64 {
	t.Helper()
	seen := make(map[string]bool, total)
	last := start
	c := ctx(t)
	for len(seen) < total {
		evs, err := sub.Next(c)
		if err != nil {
			t.Fatalf("subscription after %d of %d events: %v", len(seen), total, err)
		}
		for _, e := range evs {
			if e.Position <= last {
				t.Fatalf("position %d after %d: out of order or repeated", e.Position, last)
			}
			last = e.Position
			if seen[e.ID] {
				t.Fatalf("event %s delivered twice", e.ID)
			}
			seen[e.ID] = true
		}
	}
	for id := range wait() {
		if !seen[id] {
			t.Fatalf("event %s never delivered", id)
		}
	}
	return last
}
