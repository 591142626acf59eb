package projections

import (
	"context"
	"errors"
	"time"
)

// Waiting: read-your-writes and progress reports, from the stored
// checkpoints (so they hold whichever instance runs a projection).

// ErrNotCaughtUp is returned by WaitFor when the wait runs out.
var ErrNotCaughtUp = errors.New("projection has not caught up yet")

// WaitFor blocks until the projection has applied every event up to pos
// (read-your-writes), or ctx ends. It works whichever instance runs the
// projection: it watches the stored checkpoint, woken early by local
// progress.
func (r *Runner) WaitFor(ctx context.Context, name string, pos uint64) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		wake := r.progress.Wait()
		cp, err := Position(ctx, r.read, r.d, name)
		if err != nil {
			if ctx.Err() != nil {
				return ErrNotCaughtUp
			}
			return err
		}
		if cp >= pos {
			return nil
		}
		select {
		case <-ctx.Done():
			return ErrNotCaughtUp
		case <-wake:
		case <-tick.C:
		}
	}
}

// Positions reports each projection's stored checkpoint and the event
// store's head (for metrics).
func (r *Runner) Positions(ctx context.Context) (map[string]uint64, uint64, error) {
	head, err := r.store.Head(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]uint64, len(r.projections))
	for _, p := range r.projections {
		cp, err := Position(ctx, r.read, r.d, p.Name())
		if err != nil {
			return nil, 0, err
		}
		out[p.Name()] = cp
	}
	return out, head, nil
}

// Lag reports, per projection, how many positions it is behind the head of
// the event store.
func (r *Runner) Lag(ctx context.Context) (map[string]uint64, error) {
	cps, head, err := r.Positions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(cps))
	for name, cp := range cps {
		out[name] = head - min(cp, head)
	}
	return out, nil
}
