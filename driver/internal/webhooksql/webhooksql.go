// Package webhooksql holds the webhook statements that PostgreSQL and
// SQLite share, for pgdriver and sqlitedriver to embed: most of the
// subscription and delivery statements are written once, with the little
// that differs (how webhooks.events is stored, whether a read locks its
// row) asked of the Dialect. The claim, record and fan-out statements
// differ too much and live in each driver.
package webhooksql

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// Dialect is what the shared statements need to know of a database. Its
// implementations are zero-size types, so a driver embedding
// Shared[itsDialect] stays stateless.
type Dialect interface {
	// EventsColumn selects webhooks.events as a JSON array (StringList
	// scans it).
	EventsColumn() string
	// EventsArg is the value stored in webhooks.events.
	EventsArg(patterns []string) (any, error)
	// ForUpdate is appended to a SELECT that locks its row until the
	// transaction ends ("" where the transaction excludes other writers
	// already).
	ForUpdate() string
}

// Shared implements the statements of driver.Webhooks that both databases
// share.
type Shared[D Dialect] struct{}

func (Shared[D]) d() D { var d D; return d }

// StringList scans a JSON array of strings: webhooks.events as SQLite
// stores it, or PostgreSQL's text[] selected with to_json.
type StringList []string

// Scan implements sql.Scanner.
func (l *StringList) Scan(src any) error {
	var raw []byte
	switch v := src.(type) {
	case []byte:
		raw = v
	case string:
		raw = []byte(v)
	case nil:
		*l = nil
		return nil
	default:
		return fmt.Errorf("StringList: cannot scan %T", src)
	}
	return json.Unmarshal(raw, (*[]string)(l))
}

// webhookRow scans a driver.Webhook, events included.
type webhookRow struct {
	driver.Webhook
	Events StringList `db:"events"`
}

func (r webhookRow) webhook() driver.Webhook {
	w := r.Webhook
	w.Events = r.Events
	return w
}

func (s Shared[D]) columns() string {
	return `id, url, ` + s.d().EventsColumn() + `, description, active, consecutive_failures, deactivated_at, deactivation_reason, created_at, updated_at`
}

func (s Shared[D]) get(ctx context.Context, e driver.Executor, q string, args ...any) (driver.Webhook, error) {
	var r webhookRow
	err := sqlx.GetContext(ctx, e, &r, q, args...)
	return r.webhook(), err
}

// InsertWebhook implements driver.Webhooks.
func (s Shared[D]) InsertWebhook(ctx context.Context, e driver.Executor, w driver.NewWebhook) (driver.Webhook, error) {
	events, err := s.d().EventsArg(w.Events)
	if err != nil {
		return driver.Webhook{}, err
	}
	return s.get(ctx, e, `INSERT INTO webhooks (id, org_id, url, events, description, secret, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING RETURNING `+s.columns(),
		w.ID, w.OrgID, w.URL, events, w.Description, w.Secret, w.Now)
}

// GetWebhookWithSecret implements driver.Webhooks.
func (s Shared[D]) GetWebhookWithSecret(ctx context.Context, e driver.Executor, orgID, id string) (driver.Webhook, error) {
	return s.get(ctx, e, `SELECT `+s.columns()+`, secret FROM webhooks WHERE org_id = $1 AND id = $2`, orgID, id)
}

// GetWebhook implements driver.Webhooks.
func (s Shared[D]) GetWebhook(ctx context.Context, e driver.Executor, orgID, id string) (driver.Webhook, error) {
	return s.get(ctx, e, `SELECT `+s.columns()+` FROM webhooks WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`, orgID, id)
}

// LockWebhook implements driver.Webhooks.
func (s Shared[D]) LockWebhook(ctx context.Context, e driver.Executor, orgID, id string) (driver.Webhook, error) {
	return s.get(ctx, e, `SELECT `+s.columns()+` FROM webhooks WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`+s.d().ForUpdate(), orgID, id)
}

// ListWebhooks implements driver.Webhooks.
func (s Shared[D]) ListWebhooks(ctx context.Context, e driver.Executor, orgID string, limit int, after *driver.ListAfter) ([]driver.Webhook, error) {
	args := []any{orgID}
	q := `SELECT ` + s.columns() + ` FROM webhooks WHERE org_id = $1 AND deleted_at IS NULL`
	if after != nil {
		q += ` AND (created_at, id) < ($2, $3)`
		args = append(args, after.CreatedAt, after.ID)
	}
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, limit)
	var rows []webhookRow
	if err := sqlx.SelectContext(ctx, e, &rows, q, args...); err != nil {
		return nil, err
	}
	out := make([]driver.Webhook, len(rows))
	for i, r := range rows {
		out[i] = r.webhook()
	}
	return out, nil
}

// UpdateWebhook implements driver.Webhooks.
func (s Shared[D]) UpdateWebhook(ctx context.Context, e driver.Executor, p driver.WebhookUpdate) (driver.Webhook, error) {
	args := []any{p.OrgID, p.ID, p.Now}
	set := []string{"updated_at = $3"}
	add := func(expr string, v any) {
		args = append(args, v)
		set = append(set, fmt.Sprintf(expr, len(args)))
	}
	if p.URL != nil {
		add("url = $%d", *p.URL)
	}
	if p.Events != nil {
		v, err := s.d().EventsArg(*p.Events)
		if err != nil {
			return driver.Webhook{}, err
		}
		add("events = $%d", v)
	}
	if p.SetDescription {
		add("description = $%d", p.Description)
	}
	switch {
	case p.Activate:
		set = append(set, "active = true", "consecutive_failures = 0", "probe_after = NULL", "deactivated_at = NULL", "deactivation_reason = NULL")
	case p.Deactivate:
		set = append(set, "active = false", "deactivated_at = $3")
		add("deactivation_reason = $%d", p.DeactivationReason)
	}
	return s.get(ctx, e, `UPDATE webhooks SET `+strings.Join(set, ", ")+` WHERE org_id = $1 AND id = $2 RETURNING `+s.columns(), args...)
}

// DeleteWebhook implements driver.Webhooks.
func (Shared[D]) DeleteWebhook(ctx context.Context, e driver.Executor, orgID, id string, now time.Time) (bool, error) {
	res, err := e.ExecContext(ctx, `UPDATE webhooks SET deleted_at = $3, active = false, updated_at = $3
		WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`, orgID, id, now)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// RotateSecret implements driver.Webhooks.
func (s Shared[D]) RotateSecret(ctx context.Context, e driver.Executor, orgID, id, secret string, now time.Time) (driver.Webhook, error) {
	return s.get(ctx, e, `UPDATE webhooks SET secret = $3, updated_at = $4
		WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING `+s.columns(), orgID, id, secret, now)
}

// GetWebhookTarget implements driver.Webhooks.
func (Shared[D]) GetWebhookTarget(ctx context.Context, e driver.Executor, orgID, id string) (string, string, error) {
	var target struct {
		URL    string `db:"url"`
		Secret string `db:"secret"`
	}
	err := sqlx.GetContext(ctx, e, &target, `SELECT url, secret FROM webhooks WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`, orgID, id)
	return target.URL, target.Secret, err
}

// ResumePaused implements driver.Webhooks.
func (Shared[D]) ResumePaused(ctx context.Context, e driver.Executor, webhookID string, now time.Time) error {
	_, err := e.ExecContext(ctx, `UPDATE webhook_deliveries SET next_attempt_at = $2, updated_at = $2
			WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at IS NULL`, webhookID, now)
	return err
}

// PauseInactive implements driver.Webhooks: next_attempt_at NULL takes a
// delivery off every dispatcher's schedule (the claim's index only holds
// due rows); ResumePaused puts it back.
func (Shared[D]) PauseInactive(ctx context.Context, e driver.Executor, webhookID string, now time.Time) error {
	_, err := e.ExecContext(ctx, `UPDATE webhook_deliveries SET next_attempt_at = NULL, updated_at = $2
		WHERE webhook_id = $1 AND status = 'pending' AND lease_owner IS NULL AND next_attempt_at IS NOT NULL
		  AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = $1 AND NOT (w.active AND w.deleted_at IS NULL))`, webhookID, now)
	return err
}

// UpdateWebhookState implements driver.Webhooks.
func (Shared[D]) UpdateWebhookState(ctx context.Context, e driver.Executor, u driver.WebhookStateUpdate) error {
	_, err := e.ExecContext(ctx, `
			UPDATE webhooks SET consecutive_failures = $2, probe_after = $6,
				active = CASE WHEN $3 THEN false ELSE active END,
				deactivated_at = CASE WHEN $3 THEN $4 ELSE deactivated_at END,
				deactivation_reason = CASE WHEN $3 THEN $5 ELSE deactivation_reason END,
				updated_at = $4
			WHERE id = $1`, u.ID, u.Failures, u.SwitchOff, u.Now, u.Reason, u.ProbeAfter)
	return err
}

// SelectSubscriptions runs q, which selects id, org_id and events (as
// EventsColumn does), and returns the subscriptions.
func SelectSubscriptions(ctx context.Context, e driver.Executor, q string, args ...any) ([]driver.Subscription, error) {
	var rows []struct {
		ID       string     `db:"id"`
		OrgID    string     `db:"org_id"`
		Patterns StringList `db:"events"`
	}
	if err := sqlx.SelectContext(ctx, e, &rows, q, args...); err != nil {
		return nil, err
	}
	out := make([]driver.Subscription, len(rows))
	for i, r := range rows {
		out[i] = driver.Subscription{ID: r.ID, OrgID: r.OrgID, Patterns: r.Patterns}
	}
	return out, nil
}

// SelectCounts runs q, which selects webhook_id and n, and returns n by
// webhook.
func SelectCounts(ctx context.Context, e driver.Executor, q string, args ...any) (map[string]int, error) {
	var rows []struct {
		WebhookID string `db:"webhook_id"`
		N         int    `db:"n"`
	}
	if err := sqlx.SelectContext(ctx, e, &rows, q, args...); err != nil {
		return nil, err
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.WebhookID] = r.N
	}
	return out, nil
}
