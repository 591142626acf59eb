package webhooks

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// claim leases up to n due deliveries, shared fairly between the webhooks
// that have some: webhooks are served oldest-waiting first, one delivery
// each per round until n is reached or every webhook has used its room
// (Policy.EndpointLimit less the attempts it already has in flight,
// whichever dispatcher runs them).
func (d *Dispatcher) claim(ctx context.Context, n int) ([]claimed, error) {
	leasedAt := time.Now()
	tx, err := d.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	now := dbNow()
	if err := d.drv.PrepareClaim(ctx, tx); err != nil {
		return nil, err
	}
	// The webhooks with due deliveries, longest-waiting first, locked
	// against other claimers (those another claim or a recorder holds are
	// skipped: the other claimer serves them, we take them next round),
	// without those this dispatcher has no room for. Why each statement is
	// written as it is, per database, is in the drivers.
	hooks, err := d.drv.ListDueWebhooks(ctx, tx, now, n, d.full(now))
	if err != nil || len(hooks) == 0 {
		return nil, err
	}
	ids := make([]string, len(hooks))
	for i, h := range hooks {
		ids[i] = h.ID
	}
	// The deliveries other dispatchers hold an unexpired lease on: their
	// attempts running now, or finished but not recorded yet (counted as
	// running, the safe side). This must be a statement of its own, after
	// the webhooks are locked: its snapshot then includes every claim
	// committed before we got the locks. Counted inside the locking
	// statement, the snapshot predates the lock, and a claim that committed
	// in between was missed: two dispatchers each filled a webhook's room,
	// and a failing endpoint got 16 attempts instead of 10.
	busy, err := d.drv.CountForeignLeases(ctx, tx, now, d.cfg.Owner, ids)
	if err != nil {
		return nil, err
	}
	// Our own share comes from memory, which is ahead of the database:
	// attempts still running count as in flight, and the outcomes of
	// finished ones that the recorder has not stored yet are folded into
	// the webhook's state (a failure there makes it a one-at-a-time
	// webhook now, not after the next commit). A finished attempt holds no
	// room, so the next one can start before the recorder commits.
	states := make(map[string]EndpointState, len(hooks))
	d.mu.Lock()
	for _, h := range hooks {
		states[h.ID] = d.withUnrecorded(h.ID, dueState(h))
		busy[h.ID] += d.flying[h.ID]
	}
	d.mu.Unlock()
	quota := shareSlots(hooks, busy, n, func(h driver.DueWebhook) int {
		return d.policy.EndpointLimit(d.cfg.PerEndpoint, states[h.ID], now)
	})
	if len(quota) == 0 {
		return nil, nil
	}
	chosen, err := d.leaseDue(ctx, tx, now, hooks, quota)
	if err != nil || len(chosen) == 0 {
		return nil, err
	}
	for i := range chosen {
		chosen[i].leasedAt = leasedAt
	}
	return chosen, tx.Commit()
}

// full lists the webhooks that have no room for another attempt by what
// this dispatcher alone has in flight. ListDueWebhooks leaves them out: they
// are often the ones waiting longest (a slow or dead endpoint's backlog),
// and listed first they used up the claim's limit, so that a claim made
// with a few free slots found only webhooks it could not serve.
func (d *Dispatcher) full(now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id, n := range d.flying {
		if n >= d.policy.EndpointLimit(d.cfg.PerEndpoint, d.withUnrecorded(id, d.claimedState[id]), now) {
			out = append(out, id)
		}
	}
	for id := range d.unrecorded {
		if d.flying[id] == 0 && d.policy.EndpointLimit(d.cfg.PerEndpoint, d.withUnrecorded(id, EndpointState{Active: true}), now) == 0 {
			out = append(out, id) // a failure not stored yet: waiting for its next probe
		}
	}
	return out
}

// withUnrecorded folds the outcomes of the webhook's finished attempts that
// the recorder has not stored yet into e. d.mu must be held.
func (d *Dispatcher) withUnrecorded(webhookID string, e EndpointState) EndpointState {
	for _, o := range d.unrecorded[webhookID] {
		_, e = d.policy.Next(DeliveryState{}, e, o.outcome, o.at)
	}
	return e
}

// dueState is the state of a webhook as the claim read it.
func dueState(h driver.DueWebhook) EndpointState {
	return EndpointState{Active: true, ConsecutiveFailures: h.Failures, ProbeAfter: h.ProbeAfter}
}

// shareSlots deals n slots out to hooks (in their order) one at a time,
// round after round, never giving a webhook more than its limit less what
// it has in flight. It returns the quota per webhook id, without zeros.
func shareSlots(hooks []driver.DueWebhook, busy map[string]int, n int, limit func(driver.DueWebhook) int) map[string]int {
	room := make([]int, len(hooks))
	for i, h := range hooks {
		room[i] = max(0, limit(h)-busy[h.ID])
	}
	quota := map[string]int{}
	for given := true; given && n > 0; {
		given = false
		for i, h := range hooks {
			if n == 0 {
				break
			}
			if room[i] > 0 {
				room[i]--
				quota[h.ID]++
				n--
				given = true
			}
		}
	}
	return quota
}

// leaseDue leases each webhook's quota of its oldest due, unleased
// deliveries, the webhooks in the order they are served.
func (d *Dispatcher) leaseDue(ctx context.Context, tx *sqlx.Tx, now time.Time, hooks []driver.DueWebhook, quota map[string]int) ([]claimed, error) {
	p := driver.LeaseDue{Now: now, Owner: d.cfg.Owner, Lease: d.cfg.Lease}
	byID := make(map[string]driver.DueWebhook, len(hooks))
	for _, h := range hooks {
		byID[h.ID] = h
		if q := quota[h.ID]; q > 0 {
			p.Quotas = append(p.Quotas, driver.WebhookQuota{WebhookID: h.ID, Quota: q})
		}
	}
	rows, err := d.drv.LeaseDue(ctx, tx, p)
	if err != nil {
		return nil, err
	}
	out := make([]claimed, len(rows))
	for i, r := range rows {
		h := byID[r.WebhookID]
		out[i] = claimed{ID: r.ID, WebhookID: r.WebhookID, EventID: r.EventID, Payload: r.Payload, Attempts: r.Attempts,
			URL: h.URL, Secret: h.Secret, state: dueState(h)}
	}
	return out, nil
}
