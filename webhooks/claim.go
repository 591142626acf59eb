package webhooks

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/internal/dialect"
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
	lite := dialect.IsSQLite(tx)
	now := dbNow()
	if !lite {
		if err := customPlans(ctx, tx); err != nil {
			return nil, err
		}
		// The probes below walk small partial indexes that collect the
		// entries of rows updated since the last vacuum (every delivered
		// or re-leased delivery leaves one). A plain index scan marks
		// those dead as it passes, so the next claim skips them; a bitmap
		// scan, which the planner likes for the lease count, never does,
		// and re-read every one of them on every claim.
		if _, err := tx.ExecContext(ctx, `SELECT set_config('enable_bitmapscan', 'off', true)`); err != nil {
			return nil, err
		}
	}
	hooks, err := dueWebhooks(ctx, tx, lite, now, n, d.full(now))
	if err != nil || len(hooks) == 0 {
		return nil, err
	}
	ids := make([]string, len(hooks))
	for i, h := range hooks {
		ids[i] = h.ID
	}
	busy, err := inFlight(ctx, tx, lite, now, d.cfg.Owner, ids)
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
		states[h.ID] = d.withUnrecorded(h.ID, h.state())
		busy[h.ID] += d.flying[h.ID]
	}
	d.mu.Unlock()
	quota := shareSlots(hooks, busy, n, func(h dueWebhook) int {
		return d.policy.EndpointLimit(d.cfg.PerEndpoint, states[h.ID], now)
	})
	if len(quota) == 0 {
		return nil, nil
	}
	chosen, err := d.leaseDue(ctx, tx, lite, now, hooks, quota)
	if err != nil || len(chosen) == 0 {
		return nil, err
	}
	for i := range chosen {
		chosen[i].leasedAt = leasedAt
	}
	return chosen, tx.Commit()
}

// full lists the webhooks that have no room for another attempt by what
// this dispatcher alone has in flight. dueWebhooks leaves them out: they
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

// dueWebhook is an active webhook with at least one due, unleased delivery,
// and not waiting for its next probe.
type dueWebhook struct {
	ID         string     `db:"id"`
	URL        string     `db:"url"`
	Secret     string     `db:"secret"`
	Failures   int        `db:"consecutive_failures"`
	ProbeAfter *time.Time `db:"probe_after"`
}

func (h dueWebhook) state() EndpointState {
	return EndpointState{Active: true, ConsecutiveFailures: h.Failures, ProbeAfter: h.ProbeAfter}
}

// dueWebhooks lists up to n active webhooks that have a due delivery nobody
// holds, the longest-waiting first. Each is one probe of the
// (webhook_id, next_attempt_at) index of pending deliveries.
//
// On PostgreSQL the rows are locked, skipping those another transaction
// holds: another dispatcher claiming for the same webhook right now (so
// two claims never both see its room free), or a recorder ending one of
// its attempts (the webhook may be switching off). The lock is FOR NO KEY
// UPDATE, which the fan-out's inserts of new deliveries do not conflict
// with (their foreign key takes KEY SHARE on the webhook): a FOR UPDATE
// here skipped every webhook the fan-out was writing deliveries for, and
// claims came back empty while the fan-out was busy. The other claimer will
// have served it; we take it next round. On SQLite this transaction holds
// the file's only write lock, which excludes all of that already.
//
// Webhooks in skip (those this dispatcher has no room for) are left out.
func dueWebhooks(ctx context.Context, tx *sqlx.Tx, lite bool, now time.Time, n int, skip []string) ([]dueWebhook, error) {
	var out []dueWebhook
	if lite {
		in, arg, err := dialect.InList(tx, "w.id", 3, skip)
		if err != nil {
			return nil, err
		}
		err = tx.SelectContext(ctx, &out, `
			SELECT id, url, secret, consecutive_failures, probe_after FROM (
				SELECT w.id, w.url, w.secret, w.consecutive_failures, w.probe_after,
					(SELECT min(x.next_attempt_at) FROM webhook_deliveries x
					 WHERE x.webhook_id = w.id AND x.status = 'pending' AND x.next_attempt_at <= $2
					   AND (x.lease_expires_at IS NULL OR x.lease_expires_at < $2)) AS oldest
				FROM webhooks w WHERE w.active AND w.deleted_at IS NULL AND NOT `+in+`
				  AND (w.probe_after IS NULL OR w.probe_after <= $2))
			WHERE oldest IS NOT NULL ORDER BY oldest LIMIT $1`, n, now, arg)
		return out, err
	}
	if skip == nil {
		skip = []string{}
	}
	err := tx.SelectContext(ctx, &out, `
		SELECT w.id, w.url, w.secret, w.consecutive_failures, w.probe_after
		FROM webhooks w
		CROSS JOIN LATERAL (
			SELECT x.next_attempt_at AS oldest FROM webhook_deliveries x
			WHERE x.webhook_id = w.id AND x.status = 'pending' AND x.next_attempt_at <= now()
			  AND (x.lease_expires_at IS NULL OR x.lease_expires_at < now())
			ORDER BY x.next_attempt_at LIMIT 1) o
		WHERE w.active AND w.deleted_at IS NULL AND w.id <> ALL($2)
		  AND (w.probe_after IS NULL OR w.probe_after <= now())
		ORDER BY o.oldest
		LIMIT $1
		FOR NO KEY UPDATE OF w SKIP LOCKED`, n, skip)
	return out, err
}

// inFlight counts, per webhook, the deliveries other dispatchers hold an
// unexpired lease on: their attempts running now, or finished but not
// recorded yet (counted as running, the safe side).
//
// It must be a statement of its own, after dueWebhooks has locked the
// webhooks: its snapshot then includes every claim committed before we got
// the locks. Counted inside the locking statement, the snapshot predates
// the lock, and a claim that committed in between was missed: two
// dispatchers each filled a webhook's room, and a failing endpoint got 16
// attempts instead of 10.
//
// Only pending deliveries are ever leased (recording clears the lease with
// the status), so the count says nothing about status: that keeps it on
// the small index of leased deliveries. With "status = 'pending'" the
// planner may walk the webhook's whole due backlog instead, which with a
// dead endpoint's ten thousand due deliveries made every claim take 50 ms.
func inFlight(ctx context.Context, tx *sqlx.Tx, lite bool, now time.Time, owner string, webhookIDs []string) (map[string]int, error) {
	var rows []struct {
		WebhookID string `db:"webhook_id"`
		N         int    `db:"n"`
	}
	var err error
	if lite {
		in, arg, lerr := dialect.InList(tx, "webhook_id", 1, webhookIDs)
		if lerr != nil {
			return nil, lerr
		}
		err = tx.SelectContext(ctx, &rows, `SELECT webhook_id, count(*) AS n FROM webhook_deliveries
			WHERE `+in+` AND lease_owner IS NOT NULL AND lease_owner <> $2 AND lease_expires_at >= $3
			GROUP BY webhook_id`, arg, owner, now)
	} else {
		// One probe of the leased index per webhook: "webhook_id = ANY"
		// with a GROUP BY let the planner walk whole delivery lists.
		err = tx.SelectContext(ctx, &rows, `SELECT w.id AS webhook_id,
				(SELECT count(*) FROM webhook_deliveries l
				 WHERE l.webhook_id = w.id AND l.lease_owner IS NOT NULL AND l.lease_owner <> $2
				   AND l.lease_expires_at >= now()) AS n
			FROM unnest($1::text[]) AS w(id)`, webhookIDs, owner)
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.WebhookID] = r.N
	}
	return out, nil
}

// shareSlots deals n slots out to hooks (in their order) one at a time,
// round after round, never giving a webhook more than its limit less what
// it has in flight. It returns the quota per webhook id, without zeros.
func shareSlots(hooks []dueWebhook, busy map[string]int, n int, limit func(dueWebhook) int) map[string]int {
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
// deliveries (on PostgreSQL in one statement, skipping rows another
// claimer has locked).
func (d *Dispatcher) leaseDue(ctx context.Context, tx *sqlx.Tx, lite bool, now time.Time, hooks []dueWebhook, quota map[string]int) ([]claimed, error) {
	var out []claimed
	byID := make(map[string]dueWebhook, len(hooks))
	for _, h := range hooks {
		byID[h.ID] = h
	}
	if lite {
		for _, h := range hooks {
			q := quota[h.ID]
			if q == 0 {
				continue
			}
			var rows []claimed
			if err := tx.SelectContext(ctx, &rows, `
				UPDATE webhook_deliveries SET lease_owner = $4, lease_expires_at = $5
				WHERE id IN (
					SELECT c.id FROM webhook_deliveries c
					WHERE c.webhook_id = $1 AND c.status = 'pending' AND c.next_attempt_at <= $2
					  AND (c.lease_expires_at IS NULL OR c.lease_expires_at < $2) AND `+feedPayloadReady+`
					ORDER BY c.next_attempt_at LIMIT $3)
				RETURNING id, webhook_id, event_id, `+feedPayload("webhook_deliveries")+` AS payload, attempts`, h.ID, now, q, d.cfg.Owner, now.Add(d.cfg.Lease)); err != nil {
				return nil, err
			}
			out = append(out, rows...)
		}
	} else {
		ids := make([]string, 0, len(quota))
		limits := make([]int32, 0, len(quota))
		for _, h := range hooks {
			if q := quota[h.ID]; q > 0 {
				ids = append(ids, h.ID)
				limits = append(limits, int32(q))
			}
		}
		if err := tx.SelectContext(ctx, &out, `
			UPDATE webhook_deliveries d SET lease_owner = $3, lease_expires_at = now() + $4 * interval '1 millisecond'
			FROM (
				SELECT x.id FROM unnest($1::text[], $2::int[]) AS q(webhook_id, quota)
				CROSS JOIN LATERAL (
					SELECT c.id FROM webhook_deliveries c
					WHERE c.webhook_id = q.webhook_id AND c.status = 'pending' AND c.next_attempt_at <= now()
					  AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now()) AND `+feedPayloadReady+`
					ORDER BY c.next_attempt_at LIMIT q.quota
					FOR UPDATE OF c SKIP LOCKED) x
			) pick
			WHERE d.id = pick.id
			RETURNING d.id, d.webhook_id, d.event_id, `+feedPayload("d")+` AS payload, d.attempts`, ids, limits, d.cfg.Owner, d.cfg.Lease.Milliseconds()); err != nil {
			return nil, err
		}
	}
	for i := range out {
		h := byID[out[i].WebhookID]
		out[i].URL, out[i].Secret, out[i].state = h.URL, h.Secret, h.state()
	}
	return out, nil
}

// renew extends the leases this dispatcher still holds among ids and
// returns the ids it renewed.
func (d *Dispatcher) renew(ctx context.Context, ids []string) ([]string, error) {
	in, arg, err := dialect.InList(d.db, "id", 1, ids)
	if err != nil {
		return nil, err
	}
	var renewed []string
	if dialect.IsSQLite(d.db) {
		err = d.db.SelectContext(ctx, &renewed, `UPDATE webhook_deliveries SET lease_expires_at = $3
			WHERE `+in+` AND lease_owner = $2 AND status = 'pending' RETURNING id`, arg, d.cfg.Owner, dbNow().Add(d.cfg.Lease))
	} else {
		err = d.db.SelectContext(ctx, &renewed, `UPDATE webhook_deliveries SET lease_expires_at = now() + $3 * interval '1 millisecond'
			WHERE `+in+` AND lease_owner = $2 AND status = 'pending' RETURNING id`, arg, d.cfg.Owner, d.cfg.Lease.Milliseconds())
	}
	return renewed, err
}
