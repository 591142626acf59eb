// Package eventstoretest is the conformance suite every event-store backend
// must pass. A backend's test file calls Run with a constructor that returns
// a fresh, empty store; adding a backend adds one such call, never a copy of
// these tests.
package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

func testAppendAndReadStream(t *testing.T, s eventstore.Store) {
	st := stream(t)
	r1 := mustAppend(t, s, st, eventstore.NoStream, ev("a", `{"n":1}`), ev("b", `{"n":2}`))
	if r1.Version != 2 || r1.Position == 0 {
		t.Fatalf("first append: got version %d position %d, want version 2 and a position", r1.Version, r1.Position)
	}
	r2 := mustAppend(t, s, st, 2, ev("c", `{"n":3}`))
	if r2.Version != 3 || r2.Position <= r1.Position {
		t.Fatalf("second append: got version %d position %d after %d", r2.Version, r2.Position, r1.Position)
	}
	got, err := s.ReadStream(ctx(t), st, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	for i, e := range got {
		if e.Version != int64(i+1) || e.StreamID != st {
			t.Errorf("event %d: version %d stream %s", i, e.Version, e.StreamID)
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Errorf("positions not increasing: %d then %d", got[i-1].Position, e.Position)
		}
		if e.RecordedAt.IsZero() {
			t.Errorf("event %d has no recorded time", i)
		}
	}
	if got[2].Position != r2.Position || got[2].Type != "c" {
		t.Errorf("last event: position %d type %s, want %d c", got[2].Position, got[2].Type, r2.Position)
	}
}

func testExpectedVersion(t *testing.T, s eventstore.Store) {
	st := stream(t)
	mustAppend(t, s, st, eventstore.NoStream, ev("a", `{}`))
	cases := []struct {
		name     string
		expected int64
		actual   int64
		ok       bool
	}{
		{"NoStream on an existing stream", eventstore.NoStream, 1, false},
		{"stale version", 0, 1, false},
		{"version from the future", 5, 1, false},
		{"exact version", 1, 1, true},
		{"Any", eventstore.Any, 2, true},
	}
	for _, c := range cases {
		_, err := s.Append(ctx(t), st, c.expected, ev("x", `{}`))
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			t.Errorf("%s: err = %v, want ErrWrongExpectedVersion", c.name, err)
			continue
		}
		var vc *eventstore.VersionConflictError
		if !errors.As(err, &vc) || vc.Actual != c.actual || vc.Stream != st {
			t.Errorf("%s: conflict = %+v, want actual %d", c.name, vc, c.actual)
		}
	}
	// A failed append writes nothing.
	got, err := s.ReadStream(ctx(t), st, 1, 100)
	if err != nil || len(got) != 3 {
		t.Fatalf("after conflicts: %d events, err %v; want 3", len(got), err)
	}
	// Any on a new stream creates it.
	if r := mustAppend(t, s, stream(t), eventstore.Any, ev("a", `{}`)); r.Version != 1 {
		t.Errorf("Any on a new stream: version %d", r.Version)
	}
}

func testStreamNotFound(t *testing.T, s eventstore.Store) {
	_, err := s.ReadStream(ctx(t), stream(t), 1, 10)
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("err = %v, want ErrStreamNotFound", err)
	}
	_, err = s.Append(ctx(t), stream(t), 3, ev("a", `{}`))
	if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("append with a version to a missing stream: %v", err)
	}
}

func testReadStreamPaging(t *testing.T, s eventstore.Store) {
	st := stream(t)
	var evs []eventstore.EventData
	for i := 0; i < 25; i++ {
		evs = append(evs, ev("a", fmt.Sprintf(`{"i":%d}`, i)))
	}
	mustAppend(t, s, st, eventstore.NoStream, evs...)
	page, err := s.ReadStream(ctx(t), st, 11, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 10 || page[0].Version != 11 || page[9].Version != 20 {
		t.Fatalf("page: %d events from %d", len(page), page[0].Version)
	}
	tail, err := s.ReadStream(ctx(t), st, 21, 10)
	if err != nil || len(tail) != 5 {
		t.Fatalf("tail: %d events, %v", len(tail), err)
	}
	past, err := s.ReadStream(ctx(t), st, 26, 10)
	if err != nil || len(past) != 0 {
		t.Fatalf("past the end of an existing stream: %d events, %v (want none, no error)", len(past), err)
	}
	all, err := eventstore.ReadFullStream(ctx(t), s, st)
	if err != nil || len(all) != 25 {
		t.Fatalf("ReadFullStream: %d, %v", len(all), err)
	}
}

func testReadAll(t *testing.T, s eventstore.Store) {
	start, err := s.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	a, b := stream(t), stream(t)
	mustAppend(t, s, a, eventstore.NoStream, ev("a1", `{}`))
	mustAppend(t, s, b, eventstore.NoStream, ev("b1", `{}`), ev("b2", `{}`))
	mustAppend(t, s, a, 1, ev("a2", `{}`))
	got, err := s.ReadAll(ctx(t), start, 100)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, e := range got {
		types = append(types, e.Type)
		if i > 0 && e.Position <= got[i-1].Position {
			t.Fatalf("ReadAll not in position order")
		}
	}
	if fmt.Sprint(types) != "[a1 b1 b2 a2]" {
		t.Fatalf("ReadAll order = %v, want [a1 b1 b2 a2]", types)
	}
	page, err := s.ReadAll(ctx(t), got[1].Position, 2)
	if err != nil || len(page) != 2 || page[0].Type != "b2" || page[1].Type != "a2" {
		t.Fatalf("ReadAll after %d limit 2: %+v %v", got[1].Position, page, err)
	}
}

func testInvalidAppends(t *testing.T, s eventstore.Store) {
	cases := map[string]func() error{
		"no events": func() error { _, err := s.Append(ctx(t), stream(t), eventstore.Any); return err },
		"empty stream": func() error {
			_, err := s.Append(ctx(t), "", eventstore.Any, ev("a", `{}`))
			return err
		},
		"data not JSON": func() error {
			_, err := s.Append(ctx(t), stream(t), eventstore.Any, eventstore.EventData{ID: uuid.NewString(), Type: "a", Data: []byte("{nope")})
			return err
		},
	}
	for name, fn := range cases {
		if err := fn(); !errors.Is(err, eventstore.ErrInvalidAppend) {
			t.Errorf("%s: err = %v, want ErrInvalidAppend", name, err)
		}
	}
}

func testDataRoundTrip(t *testing.T, s eventstore.Store) {
	st := stream(t)
	data := `{"amount":12345678901234.123456,"name":"Zoë \u00e9 \"q\"","z":1,"a":[1,2,{"b":null}]}`
	meta := `{"org_id":"org_1","actor":{"sub":"auth0|1","type":"user"}}`
	e := eventstore.EventData{ID: uuid.NewString(), Type: "lead.created", Data: []byte(data), Metadata: []byte(meta)}
	mustAppend(t, s, st, eventstore.NoStream, e)
	got, err := s.ReadStream(ctx(t), st, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0].Data) != data || string(got[0].Metadata) != meta || got[0].ID != e.ID || got[0].Type != e.Type {
		t.Fatalf("round trip changed the event:\n got %s %s %s %s\nwant %s %s %s %s", got[0].ID, got[0].Type, got[0].Data, got[0].Metadata, e.ID, e.Type, data, meta)
	}
}

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

	want := make(map[string]bool, total)
	var wantMu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stream(t)
			for i := 0; i < perWriter; i++ {
				e := ev("g", fmt.Sprintf(`{"i":%d}`, i))
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

	seen := make(map[string]bool, total)
	var last uint64 = start
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
	wg.Wait()
	for id := range want {
		if !seen[id] {
			t.Fatalf("event %s never delivered", id)
		}
	}
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

// The event-id rule (eventstore.ReplayOrDuplicate): re-appending stored
// events at the place they are stored answers with the stored result and
// writes nothing; any other clash with a stored id is refused.
func testDuplicateEventIDs(t *testing.T, s eventstore.Store, o Options) {
	st := stream(t)
	e1, e2, e3 := ev("a", `{"n":1}`), ev("b", `{"n":2}`), ev("c", `{"n":3}`)
	r1 := mustAppend(t, s, st, eventstore.NoStream, e1, e2)
	replays := []struct {
		name     string
		expected int64
	}{{"NoStream", eventstore.NoStream}, {"exact version 0", 0}, {"Any", eventstore.Any}}
	for _, c := range replays {
		r, err := s.Append(ctx(t), st, c.expected, e1, e2)
		if err != nil || r != r1 {
			t.Errorf("re-append of the same events with %s: %+v %v, want the first result %+v", c.name, r, err, r1)
		}
	}
	r2 := mustAppend(t, s, st, 2, e3)
	// The place of e1, e2 is still the start, after the stream moved on.
	if r, err := s.Append(ctx(t), st, eventstore.NoStream, e1, e2); err != nil || r != r1 {
		t.Errorf("re-append of the creating events after a later append: %+v %v, want %+v", r, err, r1)
	}
	if r, err := s.Append(ctx(t), st, 2, e3); err != nil || r != r2 {
		t.Errorf("re-append of the last event at its version: %+v %v, want %+v", r, err, r2)
	}
	// Two writers sending the same events at once: both learn the one
	// stored result.
	st2 := stream(t)
	same := []eventstore.EventData{ev("x", `{}`), ev("y", `{}`)}
	var wg sync.WaitGroup
	results := make([]eventstore.AppendResult, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Append(ctx(t), st2, eventstore.NoStream, same...)
		}()
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || results[i] != results[0] {
			t.Errorf("concurrent identical append %d: %+v %v, want %+v", i, results[i], errs[i], results[0])
		}
	}
	for name, want := range map[string]int{st: 3, st2: 2} {
		all, err := eventstore.ReadFullStream(ctx(t), s, name)
		if err != nil || len(all) != want {
			t.Fatalf("stream %s has %d events (%v), want %d: a replay wrote again", name, len(all), err, want)
		}
	}
	if o.PerStreamEventIDs != "" {
		t.Log("not checking clashes elsewhere: " + o.PerStreamEventIDs)
		return
	}
	clashes := map[string]func() error{
		"a stored id at the end of its stream": func() error {
			_, err := s.Append(ctx(t), st, 3, e1)
			return err
		},
		"a stored id in another stream": func() error {
			_, err := s.Append(ctx(t), stream(t), eventstore.NoStream, e1)
			return err
		},
		"stored and new ids mixed": func() error {
			_, err := s.Append(ctx(t), st, 2, e3, ev("d", `{}`))
			return err
		},
	}
	for name, fn := range clashes {
		if err := fn(); !errors.Is(err, eventstore.ErrDuplicateEventID) || !errors.Is(err, eventstore.ErrInvalidAppend) {
			t.Errorf("%s: err = %v, want ErrDuplicateEventID", name, err)
		}
	}
	if all, err := eventstore.ReadFullStream(ctx(t), s, st); err != nil || len(all) != 3 {
		t.Fatalf("after refused clashes the stream has %d events (%v), want 3", len(all), err)
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
	want := make(map[string]bool, total)
	var wantMu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stream(t)
			for i := 0; i < perWriter; i++ {
				e := ev("g", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
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
	wg.Wait()
	for id := range want {
		if !seen[id] {
			t.Fatalf("event %s never delivered", id)
		}
	}
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
