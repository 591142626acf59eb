package projections

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
)

// CatchUp applies stored events to the projection until it reaches the head
// that was current when it started, without a router (the rebuild command
// and benchmarks use it). It is safe beside a running instance: both go
// through the same locked checkpoint.
func CatchUp(ctx context.Context, db *sqlx.DB, d driver.Driver, store eventstore.Store, p Projection, batchSize int) (uint64, error) {
	if batchSize <= 0 {
		batchSize = 1000
	}
	head, err := store.Head(ctx)
	if err != nil {
		return 0, err
	}
	cp, err := d.ReadCheckpoint(ctx, db, p.Name())
	if err != nil {
		return 0, err
	}
	pos := uint64(cp.Position)

	// A reader reads (and, for a Preparer, decodes) ahead while the
	// database applies: two batches in flight at most.
	type batch struct {
		evs      []eventstore.RecordedEvent
		prepared any
		err      error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan batch, 1)
	go func() {
		defer close(batches)
		next := pos
		for next < head {
			evs, err := store.ReadAll(ctx, next, batchSize)
			b := batch{evs: evs, err: err}
			if err == nil && len(evs) > 0 {
				if pp, ok := p.(Preparer); ok {
					// A batch that does not decode goes through Apply, which
					// finds and parks the events at fault.
					if prepared, err := pp.Prepare(evs); err == nil {
						b.prepared = prepared
					}
				}
				next = evs[len(evs)-1].Position
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil || len(evs) == 0 {
				return
			}
		}
	}()
	for b := range batches {
		if b.err != nil {
			return pos, b.err
		}
		if len(b.evs) == 0 {
			break
		}
		applied, err := applyBatch(ctx, db, d, p, cp.Generation, b.evs, b.prepared)
		if err != nil {
			return pos, err
		}
		pos = max(applied, b.evs[len(b.evs)-1].Position)
	}
	return pos, nil
}
