package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/sqlshared"
	"github.com/salesos/salesos/eventstore"
)

// ListParked returns the parked events of projection (every projection
// when empty), by projection and position. It needs no driver: the
// statement is one every database shares (driver/sqlshared).
func ListParked(ctx context.Context, db driver.Executor, projection string) ([]ParkedEvent, error) {
	return sqlshared.Statements{}.ListParked(ctx, db, projection)
}

// ParkedCounts returns how many events each projection has parked
// (projections with none are absent).
func ParkedCounts(ctx context.Context, db driver.Executor, d driver.Driver) (map[string]int64, error) {
	return d.CountParked(ctx, db)
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
func RetryParked(ctx context.Context, db *sqlx.DB, d driver.Driver, store eventstore.Store, p Projection, position uint64) (RetryResult, error) {
	var res RetryResult
	all, err := d.ListParked(ctx, db, p.Name())
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
		applied, still, err := retryStream(ctx, db, d, store, p, stream)
		res.Applied += applied
		res.StillParked += still
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func retryStream(ctx context.Context, db *sqlx.DB, d driver.Driver, store eventstore.Store, p Projection, stream string) (applied, still int, err error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	if err := d.BeginProjectionBatch(ctx, tx); err != nil {
		return 0, 0, err
	}
	// The checkpoint lock keeps a running batch from parking (or not) new
	// events of this stream while we change its parked set.
	if _, err := d.LockCheckpoint(ctx, tx, p.Name()); err != nil {
		return 0, 0, err
	}
	rows, err := d.ListParkedStream(ctx, tx, p.Name(), stream)
	if err != nil {
		return 0, 0, err
	}
	iso := &isolator{ctx: ctx, tx: tx, d: d, p: p, held: map[string]uint64{}, now: time.Now().UTC()}
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
			if err := d.RecordParkedAttempt(ctx, tx, p.Name(), row.Position, truncateError(aerr.Error()), iso.now); err != nil {
				return 0, 0, err
			}
			// The events behind it now wait for this one.
			if err := d.HoldBackParked(ctx, tx, p.Name(), stream, row.Position, heldBackError(row.Position)); err != nil {
				return 0, 0, err
			}
			still = len(rows) - i
			break
		}
		if err := d.Unpark(ctx, tx, p.Name(), row.Position); err != nil {
			return 0, 0, err
		}
		applied++
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, err
	}
	return applied, still, nil
}
