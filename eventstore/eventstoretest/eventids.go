// The event-id rule: replays of stored events are answered as stored, other
// clashes with a stored id are refused.

package eventstoretest

import (
	"errors"
	"sync"
	"testing"

	"github.com/salesos/salesos/eventstore"
)

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
