package pgdriver

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/internal/webhooksql"
)

// webhookDialect is what the shared webhook statements need to know of
// PostgreSQL: webhooks.events is a text[].
type webhookDialect struct{}

func (webhookDialect) EventsColumn() string                     { return `to_json(events) AS events` }
func (webhookDialect) EventsArg(patterns []string) (any, error) { return patterns, nil }

// ForUpdate locks the row: readers elsewhere go on, writers wait.
func (webhookDialect) ForUpdate() string { return ` FOR UPDATE` }

// ResetFeed implements driver.Webhooks.
func (Driver) ResetFeed(ctx context.Context, e driver.Executor) error {
	_, err := e.ExecContext(ctx, `TRUNCATE event_feed`)
	return err
}

// ListSubscriptions implements driver.Webhooks.
func (Driver) ListSubscriptions(ctx context.Context, e driver.Executor, orgIDs []string) ([]driver.Subscription, error) {
	return webhooksql.SelectSubscriptions(ctx, e, `SELECT id, org_id, `+webhookDialect{}.EventsColumn()+` FROM webhooks
		WHERE org_id = ANY($1) AND active AND deleted_at IS NULL`, orgIDs)
}

// InsertFeedAndDeliveries implements driver.Webhooks: one statement per
// table, the rows passed as one JSON document.
func (Driver) InsertFeedAndDeliveries(ctx context.Context, e driver.Executor, feed []driver.FeedRow, deliveries []driver.NewDelivery) error {
	raw, err := json.Marshal(feed)
	if err != nil {
		return err
	}
	if _, err := e.ExecContext(ctx, `
		INSERT INTO event_feed (position, event_id, org_id, type, occurred_at, payload)
		SELECT position, event_id, org_id, type, occurred_at, payload
		FROM json_to_recordset($1::json) AS x(position bigint, event_id text, org_id text, type text, occurred_at timestamptz, payload text)
		ON CONFLICT (position) DO NOTHING`, string(raw)); err != nil {
		return fmt.Errorf("insert event feed: %w", err)
	}
	if len(deliveries) == 0 {
		return nil
	}
	if raw, err = json.Marshal(deliveries); err != nil {
		return err
	}
	if _, err := e.ExecContext(ctx, `
		INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, next_attempt_at, created_at, updated_at)
		SELECT id, webhook_id, org_id, event_id, event_type, '', 'pending', now, now, now
		FROM json_to_recordset($1::json) AS x(id text, webhook_id text, org_id text, event_id text, event_type text, now timestamptz)
		ON CONFLICT (webhook_id, event_id) DO NOTHING`, string(raw)); err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	return nil
}

// ReadFeed implements driver.Webhooks.
func (Driver) ReadFeed(ctx context.Context, e driver.Executor, p driver.FeedRead) ([]driver.FeedItem, error) {
	args := []any{p.OrgID, p.After}
	q := `SELECT position, payload FROM event_feed WHERE org_id = $1 AND position > $2`
	if len(p.Exact) > 0 || len(p.Prefixes) > 0 {
		args = append(args, p.Exact, p.Prefixes)
		q += ` AND (type = ANY($3) OR EXISTS (SELECT 1 FROM unnest($4::text[]) AS p WHERE starts_with(type, p)))`
	}
	q += fmt.Sprintf(` ORDER BY position LIMIT %d`, p.Limit)
	var rows []driver.FeedItem
	err := sqlx.SelectContext(ctx, e, &rows, q, args...)
	return rows, err
}

// customPlans sets up a dispatcher transaction.
//
// Its statements are planned with their actual parameters: a cached
// generic plan made while the deliveries table was small would scan it (the
// same reason as BeginProjectionBatch, in projections.go).
//
// And its commit does not wait for the WAL flush (synchronous_commit off).
// Claims and outcomes are the dispatcher's bookkeeping, and at-least-once
// delivery already covers losing the last few of them when PostgreSQL
// itself crashes: a lost lease or a lost "delivered" leaves the delivery
// pending, and it is sent again with the same webhook-id. Waiting for the
// flush made every claim and every record queue behind the disk, which
// halved the delivery rate while a checkpoint was writing. The fan-out,
// which creates deliveries, keeps durable commits: a delivery is never lost.
func customPlans(ctx context.Context, e driver.Executor) error {
	_, err := e.ExecContext(ctx, `SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
		set_config('synchronous_commit', 'off', true)`)
	return err
}

// PrepareClaim implements driver.Webhooks.
func (Driver) PrepareClaim(ctx context.Context, e driver.Executor) error {
	if err := customPlans(ctx, e); err != nil {
		return err
	}
	// The claim's probes walk small partial indexes that collect the
	// entries of rows updated since the last vacuum (every delivered or
	// re-leased delivery leaves one). A plain index scan marks those dead
	// as it passes, so the next claim skips them; a bitmap scan, which the
	// planner likes for the lease count, never does, and re-read every one
	// of them on every claim.
	_, err := e.ExecContext(ctx, `SELECT set_config('enable_bitmapscan', 'off', true)`)
	return err
}

// PrepareRecord implements driver.Webhooks.
func (Driver) PrepareRecord(ctx context.Context, e driver.Executor) error { return customPlans(ctx, e) }

// ListDueWebhooks implements driver.Webhooks. Each webhook is one probe
// of the (webhook_id, next_attempt_at) index of pending deliveries.
//
// The rows are locked, skipping those another transaction holds: another
// dispatcher claiming for the same webhook right now (so two claims never
// both see its room free), or a recorder ending one of its attempts (the
// webhook may be switching off). The lock is FOR NO KEY UPDATE, which the
// fan-out's inserts of new deliveries do not conflict with (their foreign
// key takes KEY SHARE on the webhook): a FOR UPDATE here skipped every
// webhook the fan-out was writing deliveries for, and claims came back
// empty while the fan-out was busy. The other claimer will have served
// it; we take it next round.
func (Driver) ListDueWebhooks(ctx context.Context, e driver.Executor, _ time.Time, n int, skip []string) ([]driver.DueWebhook, error) {
	if skip == nil {
		skip = []string{}
	}
	var out []driver.DueWebhook
	err := sqlx.SelectContext(ctx, e, &out, `
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

// CountForeignLeases implements driver.Webhooks.
//
// Only pending deliveries are ever leased (recording clears the lease with
// the status), so the count says nothing about status: that keeps it on
// the small index of leased deliveries. With "status = 'pending'" the
// planner may walk the webhook's whole due backlog instead, which with a
// dead endpoint's ten thousand due deliveries made every claim take 50 ms.
// And it is one probe of that index per webhook: "webhook_id = ANY" with a
// GROUP BY let the planner walk whole delivery lists.
func (Driver) CountForeignLeases(ctx context.Context, e driver.Executor, _ time.Time, owner string, webhookIDs []string) (map[string]int, error) {
	return webhooksql.SelectCounts(ctx, e, `SELECT w.id AS webhook_id,
				(SELECT count(*) FROM webhook_deliveries l
				 WHERE l.webhook_id = w.id AND l.lease_owner IS NOT NULL AND l.lease_owner <> $2
				   AND l.lease_expires_at >= now()) AS n
			FROM unnest($1::text[]) AS w(id)`, webhookIDs, owner)
}

// LeaseDue implements driver.Webhooks in one statement, skipping rows
// another claimer has locked.
func (Driver) LeaseDue(ctx context.Context, e driver.Executor, p driver.LeaseDue) ([]driver.LeasedDelivery, error) {
	ids := make([]string, 0, len(p.Quotas))
	limits := make([]int32, 0, len(p.Quotas))
	for _, q := range p.Quotas {
		ids = append(ids, q.WebhookID)
		limits = append(limits, int32(q.Quota))
	}
	var out []driver.LeasedDelivery
	err := sqlx.SelectContext(ctx, e, &out, `
			UPDATE webhook_deliveries d SET lease_owner = $3, lease_expires_at = now() + $4 * interval '1 millisecond'
			FROM (
				SELECT x.id FROM unnest($1::text[], $2::int[]) AS q(webhook_id, quota)
				CROSS JOIN LATERAL (
					SELECT c.id FROM webhook_deliveries c
					WHERE c.webhook_id = q.webhook_id AND c.status = 'pending' AND c.next_attempt_at <= now()
					  AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now()) AND `+webhooksql.FeedPayloadReady+`
					ORDER BY c.next_attempt_at LIMIT q.quota
					FOR UPDATE OF c SKIP LOCKED) x
			) pick
			WHERE d.id = pick.id
			RETURNING d.id, d.webhook_id, d.event_id, `+webhooksql.FeedPayload("d")+` AS payload, d.attempts`, ids, limits, p.Owner, p.Lease.Milliseconds())
	return out, err
}

// RenewLeases implements driver.Webhooks.
func (Driver) RenewLeases(ctx context.Context, e driver.Executor, owner string, ids []string, _ time.Time, lease time.Duration) ([]string, error) {
	var renewed []string
	err := sqlx.SelectContext(ctx, e, &renewed, `UPDATE webhook_deliveries SET lease_expires_at = now() + $3 * interval '1 millisecond'
			WHERE id = ANY($1) AND lease_owner = $2 AND status = 'pending' RETURNING id`, ids, owner, lease.Milliseconds())
	return renewed, err
}

// RecordAttempts implements driver.Webhooks: it logs the attempts and
// updates their deliveries in one statement. Parallel arrays, and
// "d.id = ANY($1)" so the deliveries are reached through their primary key
// whatever the table's size.
func (Driver) RecordAttempts(ctx context.Context, e driver.Executor, owner string, _ time.Time, rows []driver.AttemptOutcome) ([]string, error) {
	n := len(rows)
	var (
		ids, statuses   = make([]string, n), make([]string, n)
		attempts        = make([]int32, n)
		nexts           = make([]*time.Time, n)
		codes           = make([]*int32, n)
		errs, responses = make([]*string, n), make([]*string, n)
		ats             = make([]time.Time, n)
		durations       = make([]float64, n)
		delivered       = make([]bool, n)
	)
	for i, o := range rows {
		ids[i], statuses[i], attempts[i], nexts[i] = o.ID, o.Status, int32(o.Attempts), o.NextAttemptAt
		if o.StatusCode != nil {
			c := int32(*o.StatusCode)
			codes[i] = &c
		}
		errs[i], responses[i], ats[i], durations[i], delivered[i] = o.Error, o.Response, o.At, o.DurationMS, o.Delivered
	}
	var updated []string
	err := sqlx.SelectContext(ctx, e, &updated, `
		WITH o AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::int[], $6::text[],
				$7::timestamptz[], $8::double precision[], $9::text[], $10::bool[])
				AS x(id, status, attempts, next_attempt_at, status_code, error, at, duration_ms, response, delivered)
		), ins AS (
			INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
			SELECT id, at, status_code, duration_ms, error, response FROM o
		)
		UPDATE webhook_deliveries d SET
			status = o.status, attempts = o.attempts, next_attempt_at = o.next_attempt_at,
			last_status_code = o.status_code, last_error = o.error,
			delivered_at = CASE WHEN o.delivered THEN o.at ELSE d.delivered_at END,
			lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
		FROM o WHERE d.id = o.id AND d.id = ANY($1) AND d.lease_owner = $11
		RETURNING d.id`,
		ids, statuses, attempts, nexts, codes, errs, ats, durations, responses, delivered, owner)
	return updated, err
}

// LockWebhookStates implements driver.Webhooks. The lock is NO KEY
// UPDATE, so the fan-out's foreign-key checks (KEY SHARE) on the same
// webhooks neither wait for us nor make us wait; and rows are locked in id
// order, like every other transaction that locks several webhooks, so two
// recorders cannot deadlock on each other.
func (Driver) LockWebhookStates(ctx context.Context, e driver.Executor, ids, failing []string) ([]driver.WebhookState, error) {
	var states []driver.WebhookState
	err := sqlx.SelectContext(ctx, e, &states, `SELECT id, active AND deleted_at IS NULL AS active, consecutive_failures, probe_after
		FROM webhooks WHERE id = ANY($1) AND (consecutive_failures <> 0 OR id = ANY($2)) ORDER BY id FOR NO KEY UPDATE`, ids, failing)
	return states, err
}
