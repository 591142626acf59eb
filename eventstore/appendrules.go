// The append rules every backend shares: what an append may carry, when an
// expected version holds, and the event-id rule for replays and clashes.

package eventstore

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ValidateAppend refuses what no backend stores, and returns the event ids
// in canonical UUID form.
func ValidateAppend(stream string, expected int64, events []EventData) ([]string, error) {
	if stream == "" {
		return nil, fmt.Errorf("%w: empty stream name", ErrInvalidAppend)
	}
	if !utf8.ValidString(stream) {
		return nil, fmt.Errorf("%w: stream name is not UTF-8", ErrInvalidAppend)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrInvalidAppend)
	}
	if expected < Any {
		return nil, fmt.Errorf("%w: expected version %d", ErrInvalidAppend, expected)
	}
	ids := make([]string, len(events))
	for i, e := range events {
		if e.ID == "" || e.Type == "" {
			return nil, fmt.Errorf("%w: event %d needs an id and a type", ErrInvalidAppend, i)
		}
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: id %q is not a UUID", ErrInvalidAppend, i, e.ID)
		}
		ids[i] = id.String()
		if !json.Valid(e.Data) || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) {
			return nil, fmt.Errorf("%w: event %d: data and metadata must be JSON", ErrInvalidAppend, i)
		}
	}
	return ids, nil
}

// ExpectationHolds reports whether a stream at version current satisfies
// an append's expected version (Any, NoStream or an exact version).
func ExpectationHolds(expected, current int64) bool {
	switch expected {
	case Any:
		return true
	case NoStream:
		return current == 0
	default:
		return expected == current
	}
}

// SettleWithoutWriting applies, to one append of a batch being planned,
// the rules that can answer it without writing anything, in the order every
// backend applies them: the event-id rule (ReplayOrDuplicate) first, then
// the expected version against current, the stream's version as planned so
// far. ok is false when the append is to be written.
func SettleWithoutWriting(p PendingAppend, found map[string]StoredEvent, current int64) (out AppendOutcome, ok bool) {
	if out, ok := ReplayOrDuplicate(p, found); ok {
		return out, true
	}
	if !ExpectationHolds(p.Expected, current) {
		return AppendOutcome{Err: &VersionConflictError{Stream: p.Stream, Expected: p.Expected, Actual: current}}, true
	}
	return AppendOutcome{}, false
}

// ErrDuplicateEventID is returned for an append whose event ids are already
// stored somewhere else than where the append would put them (another
// stream, another version, or only some of them). It wraps
// ErrInvalidAppend: the append is refused, nothing is written.
var ErrDuplicateEventID = fmt.Errorf("%w: duplicate event id", ErrInvalidAppend)

// ReplayOrDuplicate applies the event-id rule every backend shares, the
// rule of EventStoreDB: appending events whose ids are already stored, at
// the place they are stored, is an idempotent success that answers with the
// stored result and writes nothing (a writer retrying after a lost answer
// learns what it wrote). "The place" is the stream and the version the
// expected version points to (NoStream: the start; an exact version v: right
// after v; Any: wherever the run of ids starts). Any other clash with
// stored ids is ErrDuplicateEventID.
//
// found holds the stored events among the append's ids. handled is false
// when none of them is stored: the append proceeds normally.
func ReplayOrDuplicate(p PendingAppend, found map[string]StoredEvent) (out AppendOutcome, handled bool) {
	n := 0
	for _, id := range p.IDs {
		if _, ok := found[id]; ok {
			n++
		}
	}
	if n == 0 {
		return AppendOutcome{}, false
	}
	dup := AppendOutcome{Err: fmt.Errorf("%w: stream %q: an event id of this append is already stored elsewhere", ErrDuplicateEventID, p.Stream)}
	if n != len(p.IDs) {
		return dup, true
	}
	first := found[p.IDs[0]]
	for i, id := range p.IDs {
		e := found[id]
		if e.Stream != p.Stream || e.Version != first.Version+int64(i) {
			return dup, true
		}
	}
	switch start := first.Version - 1; p.Expected {
	case Any:
	case NoStream:
		if start != 0 {
			return dup, true
		}
	default:
		if start != p.Expected {
			return dup, true
		}
	}
	last := found[p.IDs[len(p.IDs)-1]]
	return AppendOutcome{Result: AppendResult{Version: last.Version, Position: last.Position}}, true
}
