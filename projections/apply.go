package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
)

// Checkpointed apply: a batch and the checkpoint move together, in one
// transaction, under the checkpoint's lock.

// errRebuilt: the projection was reset by a rebuild after the batch was read.
var errRebuilt = errors.New("projection was rebuilt")

// applyBatch applies the events above the stored checkpoint and moves the
// checkpoint, in one transaction. The checkpoint row is locked first
// (driver.Checkpoints.LockCheckpoint), so even two runners that both
// believe they lead cannot apply a batch twice, and a batch read before a
// rebuild (another generation) is dropped.
//
// A batch is first applied whole, without a savepoint (on SQLite a
// savepoint makes every page the batch dirties be copied aside). If that
// fails for a reason that is not transient, it is rolled back and applied
// again in a fresh transaction that isolates and parks the events at fault
// (see parking.go).
func applyBatch(ctx context.Context, db *sqlx.DB, d driver.Driver, p Projection, generation int64, events []eventstore.RecordedEvent, prepared any) (uint64, error) {
	last, err := applyBatchTx(ctx, db, d, p, generation, events, prepared, false)
	var ni *needsIsolation
	if errors.As(err, &ni) {
		last, err = applyBatchTx(ctx, db, d, p, generation, events, nil, true)
	}
	return last, err
}

func applyBatchTx(ctx context.Context, db *sqlx.DB, d driver.Driver, p Projection, generation int64, events []eventstore.RecordedEvent, prepared any, isolate bool) (uint64, error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if err := d.BeginProjectionBatch(ctx, tx); err != nil {
		return 0, err
	}
	cp, err := d.LockCheckpoint(ctx, tx, p.Name())
	if err != nil {
		return 0, err
	}
	if cp.Generation != generation {
		return 0, errRebuilt
	}
	fresh := events
	for len(fresh) > 0 && fresh[0].Position <= uint64(cp.Position) {
		fresh = fresh[1:]
	}
	if len(fresh) == 0 {
		return uint64(cp.Position), nil // a redelivered batch: already applied
	}
	// Events that cannot be applied are parked (see parking.go); only a
	// transient error fails the batch.
	if err := applyOrPark(ctx, tx, d, p, fresh, prepared, uint64(cp.Position), isolate); err != nil {
		return 0, fmt.Errorf("projection %s: %w", p.Name(), err)
	}
	last := fresh[len(fresh)-1].Position
	if err := d.AdvanceCheckpoint(ctx, tx, p.Name(), int64(last), time.Now().UTC()); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return last, nil
}

// Position is the checkpoint of a projection as stored.
func Position(ctx context.Context, db driver.Executor, d driver.Driver, name string) (uint64, error) {
	cp, err := d.ReadCheckpoint(ctx, db, name)
	return uint64(cp.Position), err
}

// Rebuild empties a projection's tables, resets its checkpoint to 0 and
// starts a new generation, in one transaction. An instance running the
// projection notices the new generation after its current batch and replays
// every event from the start; CatchUp does the same in-process.
func Rebuild(ctx context.Context, db *sqlx.DB, d driver.Driver, p Projection) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Lock the checkpoint row first: a batch being applied right now
	// finishes before the reset, never after it.
	if _, err := d.LockCheckpoint(ctx, tx, p.Name()); err != nil {
		return err
	}
	if err := p.Reset(ctx, tx); err != nil {
		return err
	}
	// The replay meets the parked events again and parks them afresh.
	if err := d.UnparkAll(ctx, tx, p.Name()); err != nil {
		return err
	}
	if err := d.RestartCheckpoint(ctx, tx, p.Name(), time.Now().UTC()); err != nil {
		return err
	}
	return tx.Commit()
}
