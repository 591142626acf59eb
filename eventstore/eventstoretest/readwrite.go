// What a single writer and reader see: appends and their versions, the
// expected-version check, reads of a stream and of $all with paging,
// refused appends, and data that comes back as it was written.

package eventstoretest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/salesos/salesos/eventstore"
)

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

// A store that tells stream heads (eventstore.StreamHeadReader) tells them
// right: 0 for a stream without events, else the last version, at once
// after an append. Stores without it skip this test.
func testStreamHead(t *testing.T, s eventstore.Store) {
	hr, ok := s.(eventstore.StreamHeadReader)
	if !ok {
		t.Skip("the store does not implement StreamHeadReader")
	}
	st := stream(t)
	if v, err := hr.StreamHead(ctx(t), st); err != nil || v != 0 {
		t.Fatalf("head of a stream without events = %d, %v; want 0", v, err)
	}
	mustAppend(t, s, st, eventstore.NoStream, ev("a", `{}`), ev("b", `{}`))
	mustAppend(t, s, stream(t), eventstore.NoStream, ev("other", `{}`))
	mustAppend(t, s, st, 2, ev("c", `{}`))
	if v, err := hr.StreamHead(ctx(t), st); err != nil || v != 3 {
		t.Fatalf("head after three events = %d, %v; want 3", v, err)
	}
}
