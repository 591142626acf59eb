package sqlitedriver

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/internal/webhooksql"
)

// The webhook tables of the SQLite file are those of PostgreSQL (see
// migrations/sqlite/0003_webhooks.sql) with lists held as JSON arrays in
// TEXT, read with json_each where PostgreSQL has arrays and unnest. Times
// are passed in from Go rather than taken from now(). A write transaction
// holds the file's only write lock, which excludes every other claimer
// and recorder: no statement here needs a row lock.

// webhookDialect is what the shared webhook statements need to know of
// SQLite.
type webhookDialect struct{}

func (webhookDialect) EventsColumn() string                     { return `events` }
func (webhookDialect) EventsArg(patterns []string) (any, error) { return jsonArray(patterns) }
func (webhookDialect) ForUpdate() string                        { return `` }

// inList is the condition "col is one of list", with list bound as
// parameter $n as a JSON array (SQLite has no arrays).
func inList(col string, n int, list []string) (string, any, error) {
	raw, err := jsonArray(list)
	return fmt.Sprintf(`%s IN (SELECT value FROM json_each($%d))`, col, n), raw, err
}

// ResetFeed implements driver.Webhooks (SQLite has no TRUNCATE).
func (Driver) ResetFeed(ctx context.Context, e driver.Executor) error {
	_, err := e.ExecContext(ctx, `DELETE FROM event_feed`)
	return err
}

// ListSubscriptions implements driver.Webhooks.
func (Driver) ListSubscriptions(ctx context.Context, e driver.Executor, orgIDs []string) ([]driver.Subscription, error) {
	in, arg, err := inList("org_id", 1, orgIDs)
	if err != nil {
		return nil, err
	}
	return webhooksql.SelectSubscriptions(ctx, e, `SELECT id, org_id, `+webhookDialect{}.EventsColumn()+` FROM webhooks
		WHERE `+in+` AND active AND deleted_at IS NULL`, arg)
}

// InsertFeedAndDeliveries implements driver.Webhooks with one statement
// per row: SQLite has no json_to_recordset, and a prepared statement run
// in-process per row costs about what one set-based statement does.
func (Driver) InsertFeedAndDeliveries(ctx context.Context, e driver.Executor, feed []driver.FeedRow, deliveries []driver.NewDelivery) error {
	ins, err := e.PrepareContext(ctx, `INSERT INTO event_feed (position, event_id, org_id, type, occurred_at, payload)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (position) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("insert event feed: %w", err)
	}
	defer ins.Close()
	for _, f := range feed {
		if _, err := ins.ExecContext(ctx, f.Position, f.EventID, f.OrgID, f.Type, f.OccurredAt.UTC(), f.Payload); err != nil {
			return fmt.Errorf("insert event feed: %w", err)
		}
	}
	if len(deliveries) == 0 {
		return nil
	}
	ins, err = e.PrepareContext(ctx, `INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, next_attempt_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, '', 'pending', $6, $6, $6) ON CONFLICT (webhook_id, event_id) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	defer ins.Close()
	for _, d := range deliveries {
		if _, err := ins.ExecContext(ctx, d.ID, d.WebhookID, d.OrgID, d.EventID, d.EventType, d.Now); err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
	}
	return nil
}

// ReadFeed implements driver.Webhooks. Prefixes are compared with substr,
// never as LIKE patterns.
func (Driver) ReadFeed(ctx context.Context, e driver.Executor, p driver.FeedRead) ([]driver.FeedItem, error) {
	args := []any{p.OrgID, p.After}
	q := `SELECT position, payload FROM event_feed WHERE org_id = $1 AND position > $2`
	if len(p.Exact) > 0 || len(p.Prefixes) > 0 {
		exact, err := jsonArray(p.Exact)
		if err != nil {
			return nil, err
		}
		prefixes, err := jsonArray(p.Prefixes)
		if err != nil {
			return nil, err
		}
		// event_feed.type, qualified: json_each has a column named type.
		args = append(args, exact, prefixes)
		q += ` AND (event_feed.type IN (SELECT value FROM json_each($3))
				OR EXISTS (SELECT 1 FROM json_each($4) AS p WHERE substr(event_feed.type, 1, length(p.value)) = p.value))`
	}
	q += fmt.Sprintf(` ORDER BY position LIMIT %d`, p.Limit)
	var rows []driver.FeedItem
	err := sqlx.SelectContext(ctx, e, &rows, q, args...)
	return rows, err
}

// PrepareClaim implements driver.Webhooks: nothing to set up.
func (Driver) PrepareClaim(context.Context, driver.Executor) error { return nil }

// PrepareRecord implements driver.Webhooks: nothing to set up.
func (Driver) PrepareRecord(context.Context, driver.Executor) error { return nil }

// ListDueWebhooks implements driver.Webhooks. The claim's transaction
// holds the file's only write lock, which keeps other claimers and
// recorders out while it runs.
func (Driver) ListDueWebhooks(ctx context.Context, e driver.Executor, now time.Time, n int, skip []string) ([]driver.DueWebhook, error) {
	in, arg, err := inList("w.id", 3, skip)
	if err != nil {
		return nil, err
	}
	var out []driver.DueWebhook
	err = sqlx.SelectContext(ctx, e, &out, `
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

// CountForeignLeases implements driver.Webhooks.
func (Driver) CountForeignLeases(ctx context.Context, e driver.Executor, now time.Time, owner string, webhookIDs []string) (map[string]int, error) {
	in, arg, err := inList("webhook_id", 1, webhookIDs)
	if err != nil {
		return nil, err
	}
	return webhooksql.SelectCounts(ctx, e, `SELECT webhook_id, count(*) AS n FROM webhook_deliveries
			WHERE `+in+` AND lease_owner IS NOT NULL AND lease_owner <> $2 AND lease_expires_at >= $3
			GROUP BY webhook_id`, arg, owner, now)
}

// LeaseDue implements driver.Webhooks with one statement per webhook.
func (Driver) LeaseDue(ctx context.Context, e driver.Executor, p driver.LeaseDue) ([]driver.LeasedDelivery, error) {
	var out []driver.LeasedDelivery
	for _, q := range p.Quotas {
		var rows []driver.LeasedDelivery
		if err := sqlx.SelectContext(ctx, e, &rows, `
				UPDATE webhook_deliveries SET lease_owner = $4, lease_expires_at = $5
				WHERE id IN (
					SELECT c.id FROM webhook_deliveries c
					WHERE c.webhook_id = $1 AND c.status = 'pending' AND c.next_attempt_at <= $2
					  AND (c.lease_expires_at IS NULL OR c.lease_expires_at < $2) AND `+webhooksql.FeedPayloadReady+`
					ORDER BY c.next_attempt_at LIMIT $3)
				RETURNING id, webhook_id, event_id, `+webhooksql.FeedPayload("webhook_deliveries")+` AS payload, attempts`, q.WebhookID, p.Now, q.Quota, p.Owner, p.Now.Add(p.Lease)); err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// RenewLeases implements driver.Webhooks.
func (Driver) RenewLeases(ctx context.Context, e driver.Executor, owner string, ids []string, now time.Time, lease time.Duration) ([]string, error) {
	in, arg, err := inList("id", 1, ids)
	if err != nil {
		return nil, err
	}
	var renewed []string
	err = sqlx.SelectContext(ctx, e, &renewed, `UPDATE webhook_deliveries SET lease_expires_at = $3
			WHERE `+in+` AND lease_owner = $2 AND status = 'pending' RETURNING id`, arg, owner, now.Add(lease))
	return renewed, err
}

// RecordAttempts implements driver.Webhooks with two prepared statements
// run per outcome (no unnest in SQLite; in-process statements are cheap).
func (Driver) RecordAttempts(ctx context.Context, e driver.Executor, owner string, now time.Time, rows []driver.AttemptOutcome) ([]string, error) {
	logAttempt, err := e.PrepareContext(ctx, `INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
		VALUES ($1, $2, $3, $4, $5, $6)`)
	if err != nil {
		return nil, err
	}
	defer logAttempt.Close()
	update, err := e.PrepareContext(ctx, `UPDATE webhook_deliveries SET
			status = $2, attempts = $3, next_attempt_at = $4, last_status_code = $5, last_error = $6,
			delivered_at = COALESCE($7, delivered_at),
			lease_owner = NULL, lease_expires_at = NULL, updated_at = $8
		WHERE id = $1 AND lease_owner = $9`)
	if err != nil {
		return nil, err
	}
	defer update.Close()
	var kept []string
	for _, o := range rows {
		if _, err := logAttempt.ExecContext(ctx, o.ID, o.At, o.StatusCode, o.DurationMS, o.Error, o.Response); err != nil {
			return nil, err
		}
		var deliveredAt *time.Time
		if o.Delivered {
			deliveredAt = &o.At
		}
		res, err := update.ExecContext(ctx, o.ID, o.Status, o.Attempts, o.NextAttemptAt, o.StatusCode, o.Error, deliveredAt, now, owner)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			kept = append(kept, o.ID)
		}
	}
	return kept, nil
}

// LockWebhookStates implements driver.Webhooks; the transaction's write
// lock is the lock.
func (Driver) LockWebhookStates(ctx context.Context, e driver.Executor, ids, failing []string) ([]driver.WebhookState, error) {
	in, arg, err := inList("id", 1, ids)
	if err != nil {
		return nil, err
	}
	alsoFailing, failingArg, err := inList("id", 2, failing)
	if err != nil {
		return nil, err
	}
	var states []driver.WebhookState
	err = sqlx.SelectContext(ctx, e, &states, `SELECT id, active AND deleted_at IS NULL AS active, consecutive_failures, probe_after
		FROM webhooks WHERE `+in+` AND (consecutive_failures <> 0 OR `+alsoFailing+`) ORDER BY id`, arg, failingArg)
	return states, err
}
