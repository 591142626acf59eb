package webhooksql

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

const deliveryColumns = `id, webhook_id, event_id, event_type, status, attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at`

// FeedPayload is the SQL for the body of the delivery named d (an alias
// or the table's name): its own payload (a test event, or a delivery made
// before deliveries shared the feed's), or else the event feed's. NULL
// while the feed is being rebuilt, and such a delivery is not claimed
// until it is back (FeedPayloadReady).
func FeedPayload(d string) string {
	return `COALESCE(NULLIF(` + d + `.payload, ''), (SELECT f.payload FROM event_feed f WHERE f.event_id = ` + d + `.event_id))`
}

// FeedPayloadReady is the condition that the body of delivery c exists.
const FeedPayloadReady = `(c.payload <> '' OR EXISTS (SELECT 1 FROM event_feed f WHERE f.event_id = c.event_id))`

// ListDeliveries implements driver.Webhooks.
func (Shared[D]) ListDeliveries(ctx context.Context, e driver.Executor, p driver.DeliveryList) ([]driver.Delivery, error) {
	args := []any{p.OrgID, p.WebhookID}
	q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE org_id = $1 AND webhook_id = $2`
	if p.Status != "" {
		args = append(args, p.Status)
		q += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	if p.After != nil {
		args = append(args, p.After.CreatedAt, p.After.ID)
		q += fmt.Sprintf(` AND (created_at, id) < ($%d, $%d)`, len(args)-1, len(args))
	}
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, p.Limit)
	var rows []driver.Delivery
	err := sqlx.SelectContext(ctx, e, &rows, q, args...)
	return rows, err
}

// GetDelivery implements driver.Webhooks.
func (Shared[D]) GetDelivery(ctx context.Context, e driver.Executor, orgID, webhookID, id string) (driver.Delivery, error) {
	var d driver.Delivery
	err := sqlx.GetContext(ctx, e, &d, `SELECT `+deliveryColumns+` FROM webhook_deliveries d
		WHERE org_id = $1 AND webhook_id = $2 AND id = $3
		AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id AND w.deleted_at IS NULL)`, orgID, webhookID, id)
	return d, err
}

// ListAttempts implements driver.Webhooks.
func (Shared[D]) ListAttempts(ctx context.Context, e driver.Executor, deliveryID string) ([]driver.Attempt, error) {
	out := []driver.Attempt{}
	err := sqlx.SelectContext(ctx, e, &out, `SELECT attempted_at, status_code, duration_ms, error, response_excerpt
		FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id`, deliveryID)
	return out, err
}

// dueIfActive schedules a re-queued delivery at the time in parameter n
// (now), or leaves it paused (NULL) while its webhook is off; reactivation
// makes it due. The CAST gives PostgreSQL the parameter's type, which a
// lone CASE branch does not; SQLite keeps the integer microseconds as they
// are (the type name gives NUMERIC affinity).
func dueIfActive(n int) string {
	return fmt.Sprintf(`(SELECT CASE WHEN w.active THEN CAST($%d AS TIMESTAMPTZ) END FROM webhooks w WHERE w.id = webhook_deliveries.webhook_id)`, n)
}

// RequeueDelivery implements driver.Webhooks.
func (Shared[D]) RequeueDelivery(ctx context.Context, e driver.Executor, orgID, webhookID, id string, now time.Time) (driver.Delivery, error) {
	var d driver.Delivery
	err := sqlx.GetContext(ctx, e, &d, `UPDATE webhook_deliveries
		SET status = 'pending', next_attempt_at = `+dueIfActive(4)+`, delivered_at = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
		WHERE org_id = $1 AND webhook_id = $2 AND id = $3
		RETURNING `+deliveryColumns, orgID, webhookID, id, now)
	return d, err
}

// RequeueFailed implements driver.Webhooks.
func (Shared[D]) RequeueFailed(ctx context.Context, e driver.Executor, orgID, webhookID string, since time.Time, exceptType string, now time.Time) (int64, error) {
	res, err := e.ExecContext(ctx, `UPDATE webhook_deliveries
		SET status = 'pending', next_attempt_at = `+dueIfActive(5)+`, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5
		WHERE org_id = $1 AND webhook_id = $2 AND status = 'failed' AND created_at >= $3 AND event_type <> $4`, orgID, webhookID, since, exceptType, now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// InsertSentDelivery implements driver.Webhooks.
func (Shared[D]) InsertSentDelivery(ctx context.Context, e driver.Executor, d driver.SentDelivery) error {
	if _, err := e.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, attempts,
			last_status_code, last_error, created_at, updated_at, delivered_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $10, $11)`,
		d.ID, d.WebhookID, d.OrgID, d.EventID, d.EventType, d.Payload, d.Status, d.StatusCode, d.Error, d.Now, d.DeliveredAt); err != nil {
		return err
	}
	_, err := e.ExecContext(ctx, `INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
		VALUES ($1, $2, $3, $4, $5, $6)`, d.ID, d.Now, d.StatusCode, d.DurationMS, d.Error, d.Response)
	return err
}
