package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
)

// Parking. An event a projection cannot apply (a value the database
// refuses, data that does not decode, a panic in the fold) would fail its
// batch on every retry and stop the projection for every organization. So
// when a batch fails with an error that is not a passing database problem
// (see transient), the batch is split in halves, inside savepoints of the
// same transaction, until the failing events are found; every other event
// is applied, and the failing ones are recorded in projection_parked_events
// with the error. A stream with a parked event is held back: its later
// events are parked behind it without being tried, so a record never skips
// a change. The checkpoint moves past parked events; `salesos projections
// retry` (RetryParked) re-applies them in order.
//
// A transient error parks nothing: the batch is retried with backoff. And a
// failure is only blamed on an event when the database still answers right
// after it (the savepoint rolls back and a probe query runs), so a
// connection lost in the middle of a batch is never mistaken for a poison
// event.

// ParkedEvent is an event a projection could not apply.
type ParkedEvent = driver.ParkedEvent

// heldBackError is the error recorded for an event parked only because an
// earlier event of its stream is parked.
func heldBackError(first uint64) string {
	return fmt.Sprintf("held back: event at position %d of this stream is parked", first)
}

// isolator applies events inside one transaction, parking those that fail.
type isolator struct {
	ctx  context.Context
	tx   *sqlx.Tx
	d    driver.Driver
	p    Projection
	held map[string]uint64 // stream → position of its first parked event
	now  time.Time
	// parked are the events to record, in the order they were met.
	parked []parkedRow
}

type parkedRow struct {
	ev       eventstore.RecordedEvent
	err      string
	attempts int
}

// attempt runs fn inside a savepoint. On failure the savepoint is rolled
// back and the database probed: if either fails, the connection is gone
// and the error says so (transient).
func (iso *isolator) attempt(fn func() error) error {
	if err := iso.d.BeginAttempt(iso.ctx, iso.tx); err != nil {
		return fmt.Errorf("%w: %w", errConnectionLost, err)
	}
	err := safeApply(fn)
	if err == nil {
		if err := iso.d.KeepAttempt(iso.ctx, iso.tx); err != nil {
			return fmt.Errorf("%w: %w", errConnectionLost, err)
		}
		return nil
	}
	if transient(err) {
		return err
	}
	if rerr := iso.d.UndoAttempt(iso.ctx, iso.tx); rerr != nil {
		return fmt.Errorf("%w: %w (after %w)", errConnectionLost, rerr, err)
	}
	return err
}

// split applies evs (in order) with Apply, halving the part that fails
// until the failing events are single; those are parked, and their
// streams held back.
func (iso *isolator) split(evs []eventstore.RecordedEvent) error {
	run := make([]eventstore.RecordedEvent, 0, len(evs))
	for _, e := range evs {
		if first, ok := iso.held[e.StreamID]; ok {
			iso.parked = append(iso.parked, parkedRow{ev: e, err: heldBackError(first)})
			continue
		}
		run = append(run, e)
	}
	if len(run) == 0 {
		return nil
	}
	err := iso.attempt(func() error { return iso.p.Apply(iso.ctx, iso.tx, run) })
	if err == nil {
		return nil
	}
	if transient(err) {
		return err
	}
	if len(run) == 1 {
		iso.park(run[0], err)
		return nil
	}
	mid := len(run) / 2
	if err := iso.split(run[:mid]); err != nil {
		return err
	}
	return iso.split(run[mid:])
}

func (iso *isolator) park(e eventstore.RecordedEvent, err error) {
	iso.held[e.StreamID] = e.Position
	iso.parked = append(iso.parked, parkedRow{ev: e, err: err.Error(), attempts: 1})
}

// record writes the parked events (a redelivered one counts one attempt
// more).
func (iso *isolator) record() error {
	if len(iso.parked) == 0 {
		return nil
	}
	rows := make([]ParkedEvent, len(iso.parked))
	for i, r := range iso.parked {
		rows[i] = ParkedEvent{
			Projection: iso.p.Name(), Position: r.ev.Position, StreamID: r.ev.StreamID, EventID: r.ev.ID, EventType: r.ev.Type,
			Error: truncateError(r.err), Attempts: r.attempts, FirstAttemptAt: iso.now, LastAttemptAt: iso.now,
		}
	}
	return iso.d.Park(iso.ctx, iso.tx, rows)
}

// truncateError keeps a stored error readable (and an error quoting the
// event's own bad bytes storable: NUL and invalid UTF-8 are replaced).
func truncateError(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\x00`), "\uFFFD")
	if len(s) > 2000 {
		s = strings.ToValidUTF8(s[:2000], "") + "…"
	}
	return s
}

// heldStreams returns the streams of projection that have parked events,
// with the position of the first one.
func heldStreams(ctx context.Context, tx *sqlx.Tx, d driver.Driver, projection string) (map[string]uint64, error) {
	held, err := d.HeldStreams(ctx, tx, projection)
	if err != nil {
		return nil, fmt.Errorf("read parked streams: %w", err)
	}
	return held, nil
}

// needsIsolation: the batch failed as a whole for a reason that is not
// transient; the caller rolls back and calls applyOrPark again with
// isolate set.
type needsIsolation struct{ err error }

func (e *needsIsolation) Error() string { return e.err.Error() }
func (e *needsIsolation) Unwrap() error { return e.err }

// applyOrPark applies events (all above the checkpoint) in tx. Without
// isolate, and when no stream is held back, the batch is applied whole
// (prepared, when not nil, is the Preparer's form of a batch that may start
// at or before after); a failure that is not transient comes back as
// *needsIsolation. With isolate, or when streams are held back, the batch
// is split until the failing events are found, and those are parked.
func applyOrPark(ctx context.Context, tx *sqlx.Tx, d driver.Driver, p Projection, events []eventstore.RecordedEvent, prepared any, after uint64, isolate bool) error {
	held, err := heldStreams(ctx, tx, d, p.Name())
	if err != nil {
		return err
	}
	if len(held) == 0 && !isolate {
		err := safeApply(func() error {
			if pp, ok := p.(Preparer); ok && prepared != nil {
				return pp.ApplyPrepared(ctx, tx, prepared, after)
			}
			return p.Apply(ctx, tx, events)
		})
		if err == nil || transient(err) {
			return err
		}
		return &needsIsolation{err}
	}
	iso := &isolator{ctx: ctx, tx: tx, d: d, p: p, held: held, now: time.Now().UTC()}
	if err := iso.split(events); err != nil {
		return err
	}
	return iso.record()
}
