package webhooks

import (
	"context"
	"time"
)

// leaseMargin is how long before an unrenewed lease runs out its attempt
// is cut short, so that no other dispatcher can start the same delivery
// while ours still runs.
func (d *Dispatcher) leaseMargin() time.Duration { return d.cfg.Lease / 5 }

// renewLeases extends the leases of the attempts in flight every Lease/3,
// and moves each attempt's cutoff accordingly. An attempt whose lease is
// no longer ours (another dispatcher took the delivery over) is cut short
// at once.
func (d *Dispatcher) renewLeases(ctx context.Context) {
	t := time.NewTicker(d.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		ids := make([]string, 0, len(d.inflight))
		for id := range d.inflight {
			ids = append(ids, id)
		}
		d.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, d.cfg.Lease/3)
		renewed, err := d.renew(rctx, ids)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				d.failed("renew", err)
				d.cfg.Logger.Warn("webhooks: renewing leases failed; attempts stop before their leases run out", "error", err, "count", len(ids))
			}
			continue
		}
		d.succeeded("renew")
		kept := make(map[string]bool, len(renewed))
		for _, id := range renewed {
			kept[id] = true
		}
		until := start.Add(d.cfg.Lease - d.leaseMargin())
		d.mu.Lock()
		for _, id := range ids {
			f, ok := d.inflight[id]
			if !ok {
				continue
			}
			if !kept[id] {
				f.cancel(errLeaseLost)
				continue
			}
			f.cutoff.Reset(time.Until(until))
		}
		d.mu.Unlock()
	}
}

// renew extends the leases this dispatcher still holds among ids and
// returns the ids it renewed.
func (d *Dispatcher) renew(ctx context.Context, ids []string) ([]string, error) {
	return d.drv.RenewLeases(ctx, d.db, d.cfg.Owner, ids, dbNow(), d.cfg.Lease)
}
