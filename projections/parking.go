package projections

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"

	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/internal/dialect"
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
type ParkedEvent struct {
	Projection     string    `db:"projection"`
	Position       uint64    `db:"position"`
	StreamID       string    `db:"stream_id"`
	EventID        string    `db:"event_id"`
	EventType      string    `db:"event_type"`
	Error          string    `db:"error"`
	Attempts       int       `db:"attempts"` // 0: held back behind an earlier parked event of its stream
	FirstAttemptAt time.Time `db:"first_attempt_at"`
	LastAttemptAt  time.Time `db:"last_attempt_at"`
}

const parkedColumns = `projection, position, stream_id, event_id, event_type, error, attempts, first_attempt_at, last_attempt_at`

// heldBackError is the error recorded for an event parked only because an
// earlier event of its stream is parked.
func heldBackError(first uint64) string {
	return fmt.Sprintf("held back: event at position %d of this stream is parked", first)
}

// Transient marks err as a passing problem, never the fault of the events
// being applied: a projection returns it for failures of what it reads
// besides its transaction (the event store, say), so that the batch is
// retried instead of its events parked.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err}
}

type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// errConnectionLost marks a failure after which the database did not
// answer: transient, whatever the original error said.
var errConnectionLost = errors.New("database connection lost")

// transient reports whether err is a passing problem of the database or
// the connection (retry the batch later) rather than something about the
// events (isolate and park).
func transient(err error) bool {
	if err == nil {
		return false
	}
	var marked *transientError
	if errors.As(err, &marked) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errConnectionLost) || errors.Is(err, errRebuilt) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, sql.ErrTxDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code[:2] {
		case "08", // connection exception
			"25", // invalid transaction state (an earlier failure on this connection)
			"40", // serialization failure, deadlock
			"53", // insufficient resources (disk full, too many connections)
			"57", // operator intervention: shutdown, statement timeout, cancel
			"58", // system error (I/O)
			"XX": // internal error
			return true
		}
		return pg.Code == "55P03" // lock_not_available
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff {
		case 5, 6, // SQLITE_BUSY, SQLITE_LOCKED
			10, 13, 14, 15: // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	// pgx reports a connection it closed after an error as a plain error.
	return strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "conn busy")
}

// safeApply runs fn, turning a panic into an error (a panicking fold is a
// poison event like any other).
func safeApply(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return fn()
}

// isolator applies events inside one transaction, parking those that fail.
type isolator struct {
	ctx  context.Context
	tx   *sqlx.Tx
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
	if _, err := iso.tx.ExecContext(iso.ctx, `SAVEPOINT projection_attempt`); err != nil {
		return fmt.Errorf("%w: %w", errConnectionLost, err)
	}
	err := safeApply(fn)
	if err == nil {
		if _, err := iso.tx.ExecContext(iso.ctx, `RELEASE SAVEPOINT projection_attempt`); err != nil {
			return fmt.Errorf("%w: %w", errConnectionLost, err)
		}
		return nil
	}
	if transient(err) {
		return err
	}
	if _, rerr := iso.tx.ExecContext(iso.ctx, `ROLLBACK TO SAVEPOINT projection_attempt`); rerr != nil {
		return fmt.Errorf("%w: %w (after %w)", errConnectionLost, rerr, err)
	}
	if _, rerr := iso.tx.ExecContext(iso.ctx, `RELEASE SAVEPOINT projection_attempt`); rerr != nil {
		return fmt.Errorf("%w: %w (after %w)", errConnectionLost, rerr, err)
	}
	var one int
	if rerr := iso.tx.GetContext(iso.ctx, &one, `SELECT 1`); rerr != nil {
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
	st, err := iso.tx.PrepareContext(iso.ctx, `INSERT INTO projection_parked_events (`+parkedColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
		ON CONFLICT (projection, position) DO UPDATE SET error = excluded.error,
			attempts = projection_parked_events.attempts + excluded.attempts, last_attempt_at = excluded.last_attempt_at`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range iso.parked {
		if _, err := st.ExecContext(iso.ctx, iso.p.Name(), int64(r.ev.Position), r.ev.StreamID, r.ev.ID, r.ev.Type,
			truncateError(r.err), r.attempts, iso.now); err != nil {
			return fmt.Errorf("park event %d: %w", r.ev.Position, err)
		}
	}
	return nil
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
func heldStreams(ctx context.Context, q sqlx.QueryerContext, projection string) (map[string]uint64, error) {
	var rows []struct {
		Stream string `db:"stream_id"`
		First  int64  `db:"first"`
	}
	if err := sqlx.SelectContext(ctx, q, &rows, `SELECT stream_id, min(position) AS first FROM projection_parked_events
		WHERE projection = $1 GROUP BY stream_id`, projection); err != nil {
		return nil, fmt.Errorf("read parked streams: %w", err)
	}
	out := make(map[string]uint64, len(rows))
	for _, r := range rows {
		out[r.Stream] = uint64(r.First)
	}
	return out, nil
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
func applyOrPark(ctx context.Context, tx *sqlx.Tx, p Projection, events []eventstore.RecordedEvent, prepared any, after uint64, isolate bool) error {
	held, err := heldStreams(ctx, tx, p.Name())
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
	iso := &isolator{ctx: ctx, tx: tx, p: p, held: held, now: time.Now().UTC()}
	if err := iso.split(events); err != nil {
		return err
	}
	return iso.record()
}

// ListParked returns the parked events of projection (every projection
// when empty), by projection and position.
func ListParked(ctx context.Context, db sqlx.QueryerContext, projection string) ([]ParkedEvent, error) {
	var out []ParkedEvent
	err := sqlx.SelectContext(ctx, db, &out, `SELECT `+parkedColumns+` FROM projection_parked_events
		WHERE $1 = '' OR projection = $1 ORDER BY projection, position`, projection)
	for i := range out {
		out[i].FirstAttemptAt, out[i].LastAttemptAt = out[i].FirstAttemptAt.UTC(), out[i].LastAttemptAt.UTC()
	}
	return out, err
}

// ParkedCounts returns how many events each projection has parked
// (projections with none are absent).
func ParkedCounts(ctx context.Context, db sqlx.QueryerContext) (map[string]int64, error) {
	var rows []struct {
		Projection string `db:"projection"`
		N          int64  `db:"n"`
	}
	if err := sqlx.SelectContext(ctx, db, &rows, `SELECT projection, count(*) AS n FROM projection_parked_events GROUP BY projection`); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Projection] = r.N
	}
	return out, nil
}

// ErrNotParked is returned by RetryParked for a position that is not parked.
var ErrNotParked = errors.New("no parked event at that position")

// RetryResult counts what RetryParked did.
type RetryResult struct {
	Applied     int // re-applied and removed from the parked events
	StillParked int // failed again, or held back behind one that did
}

// RetryParked re-applies the parked events of p, stream by stream in
// position order: each one that applies is removed; at the first that
// fails again its attempt count and error are updated and the rest of its
// stream stays parked behind it. With position > 0 only the stream of that
// parked event is retried (from its first parked event, so that no change
// of the record is skipped). It runs under the projection's checkpoint
// lock, so it is safe beside a running instance. Events are read again
// from store.
func RetryParked(ctx context.Context, db *sqlx.DB, store eventstore.Store, p Projection, position uint64) (RetryResult, error) {
	var res RetryResult
	all, err := ListParked(ctx, db, p.Name())
	if err != nil {
		return res, err
	}
	var streams []string
	seen := map[string]bool{}
	for _, e := range all {
		if position > 0 && e.Position == position {
			streams, seen = []string{e.StreamID}, map[string]bool{e.StreamID: true}
			break
		}
		if position == 0 && !seen[e.StreamID] {
			seen[e.StreamID] = true
			streams = append(streams, e.StreamID)
		}
	}
	if position > 0 && len(streams) == 0 {
		return res, fmt.Errorf("%s: position %d: %w", p.Name(), position, ErrNotParked)
	}
	for _, stream := range streams {
		applied, still, err := retryStream(ctx, db, store, p, stream)
		res.Applied += applied
		res.StillParked += still
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func retryStream(ctx context.Context, db *sqlx.DB, store eventstore.Store, p Projection, stream string) (applied, still int, err error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	if !dialect.IsSQLite(tx) {
		if err := customPlans(ctx, tx); err != nil {
			return 0, 0, err
		}
	}
	// The checkpoint lock keeps a running batch from parking (or not) new
	// events of this stream while we change its parked set.
	if _, err := lockCheckpoint(ctx, tx, p.Name(), dialect.IsSQLite(tx)); err != nil {
		return 0, 0, err
	}
	var rows []ParkedEvent
	if err := tx.SelectContext(ctx, &rows, `SELECT `+parkedColumns+` FROM projection_parked_events
		WHERE projection = $1 AND stream_id = $2 ORDER BY position`, p.Name(), stream); err != nil {
		return 0, 0, err
	}
	iso := &isolator{ctx: ctx, tx: tx, p: p, held: map[string]uint64{}, now: time.Now().UTC()}
	for i, row := range rows {
		evs, err := store.ReadAll(ctx, row.Position-1, 1)
		if err != nil {
			return 0, 0, fmt.Errorf("read event %d: %w", row.Position, err)
		}
		if len(evs) != 1 || evs[0].Position != row.Position {
			return 0, 0, fmt.Errorf("parked event %d of %s is not in the event store", row.Position, p.Name())
		}
		aerr := iso.attempt(func() error { return p.Apply(ctx, tx, evs) })
		if aerr != nil {
			if transient(aerr) {
				return 0, 0, aerr
			}
			if _, err := tx.ExecContext(ctx, `UPDATE projection_parked_events SET attempts = attempts + 1, error = $3, last_attempt_at = $4
				WHERE projection = $1 AND position = $2`, p.Name(), int64(row.Position), truncateError(aerr.Error()), iso.now); err != nil {
				return 0, 0, err
			}
			// The events behind it now wait for this one.
			if _, err := tx.ExecContext(ctx, `UPDATE projection_parked_events SET error = $4
				WHERE projection = $1 AND stream_id = $2 AND position > $3 AND attempts = 0`,
				p.Name(), stream, int64(row.Position), heldBackError(row.Position)); err != nil {
				return 0, 0, err
			}
			still = len(rows) - i
			break
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM projection_parked_events WHERE projection = $1 AND position = $2`,
			p.Name(), int64(row.Position)); err != nil {
			return 0, 0, err
		}
		applied++
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, err
	}
	return applied, still, nil
}
