package webhooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/internal/dialect"
	"github.com/salesos/salesos/projections"
)

// stringList scans a JSON array of strings: webhooks.events as SQLite
// stores it, or PostgreSQL's text[] selected with to_json.
type stringList []string

func (l *stringList) Scan(src any) error {
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
		return fmt.Errorf("stringList: cannot scan %T", src)
	}
	return json.Unmarshal(raw, (*[]string)(l))
}

// Webhook is a subscription as the API shows it. Secret is only filled in
// the answers to create and rotate-secret.
type Webhook struct {
	ID                  string     `json:"id" db:"id"`
	URL                 string     `json:"url" db:"url"`
	Events              stringList `json:"events" db:"events"`
	Description         *string    `json:"description" db:"description"`
	Active              bool       `json:"active" db:"active"`
	Secret              string     `json:"secret,omitempty" db:"-"`
	ConsecutiveFailures int        `json:"consecutive_failures" db:"consecutive_failures"`
	DeactivatedAt       *time.Time `json:"deactivated_at" db:"deactivated_at"`
	DeactivationReason  *string    `json:"deactivation_reason" db:"deactivation_reason"`
	CreatedAt           time.Time  `json:"created_at" db:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at" db:"updated_at"`
}

// Delivery is one event on its way to one webhook.
type Delivery struct {
	ID             string     `json:"id" db:"id"`
	WebhookID      string     `json:"webhook_id" db:"webhook_id"`
	EventID        string     `json:"event_id" db:"event_id"`
	EventType      string     `json:"event_type" db:"event_type"`
	Status         string     `json:"status" db:"status"`
	Attempts       int        `json:"attempts" db:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at" db:"next_attempt_at"`
	LastStatusCode *int       `json:"last_status_code" db:"last_status_code"`
	LastError      *string    `json:"last_error" db:"last_error"`
	CreatedAt      time.Time  `json:"created_at" db:"created_at"`
	DeliveredAt    *time.Time `json:"delivered_at" db:"delivered_at"`
	// AttemptHistory is filled by GetDelivery only (nil, and so absent,
	// in lists).
	AttemptHistory []AttemptRecord `json:"attempt_history,omitzero" db:"-"`
}

const deliveryColumns = `id, webhook_id, event_id, event_type, status, attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at`

// AttemptRecord is one stored attempt.
type AttemptRecord struct {
	AttemptedAt time.Time `json:"attempted_at" db:"attempted_at"`
	StatusCode  *int      `json:"status_code" db:"status_code"`
	DurationMS  float64   `json:"duration_ms" db:"duration_ms"`
	Error       *string   `json:"error" db:"error"`
	Response    *string   `json:"response" db:"response_excerpt"`
}

// Store manages subscriptions and reads deliveries and the event feed.
// Every query names the organization.
type Store struct {
	// DB takes the writes (on SQLite, the file's single writer).
	DB *sqlx.DB
	// Read, when set, serves the read-only methods (Get, List, the
	// delivery views and the event feed): on SQLite the read pool, so
	// polling clients never queue behind the fan-out and the dispatcher on
	// the writer. Default DB.
	Read *sqlx.DB
	// AllowPrivate lets webhooks target loopback and private networks
	// (SALESOS_WEBHOOK_ALLOW_PRIVATE_TARGETS), for development and tests.
	AllowPrivate bool
	// Resolver checks hostnames when a webhook is saved; nil uses the
	// system resolver.
	Resolver *net.Resolver
}

func (s *Store) reader() *sqlx.DB {
	if s.Read != nil {
		return s.Read
	}
	return s.DB
}

// CreateInput is the body of POST /v1/webhooks.
type CreateInput struct {
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Description *string  `json:"description"`
}

// Patch is the body of PATCH /v1/webhooks/{id}.
type Patch struct {
	URL         domain.Opt[string]   `json:"url"`
	Events      domain.Opt[[]string] `json:"events"`
	Description domain.Opt[string]   `json:"description"`
	Active      domain.Opt[bool]     `json:"active"`
}

func (s *Store) validate(ctx context.Context, url *string, events *[]string, description *string) error {
	var details []domain.FieldError
	if url != nil && strings.TrimSpace(*url) == "" {
		details = append(details, domain.FieldError{Field: "url", Code: domain.CodeRequired, Message: "url is required"})
	} else if url != nil {
		if err := ValidateURL(ctx, *url, s.AllowPrivate, s.Resolver); err != nil {
			code := domain.CodeInvalidFormat
			if errors.Is(err, ErrForbiddenTarget) {
				code = "forbidden_target"
			}
			details = append(details, domain.FieldError{Field: "url", Code: code, Message: err.Error()})
		}
	}
	if events != nil {
		if len(*events) == 0 {
			details = append(details, domain.FieldError{Field: "events", Code: domain.CodeRequired, Message: `name at least one event type, "lead.*" or "*"`})
		}
		known := domain.EventTypes()
		for i, e := range *events {
			if !validPattern(e, known) {
				details = append(details, domain.FieldError{Field: fmt.Sprintf("events[%d]", i), Code: domain.CodeInvalidValue,
					Message: fmt.Sprintf("%q is not an event type; use one of %s, a prefix such as \"deal.*\", or \"*\"", e, strings.Join(known, ", "))})
			}
		}
	}
	if description != nil && len([]rune(*description)) > 500 {
		details = append(details, domain.FieldError{Field: "description", Code: domain.CodeTooLong, Message: "description is at most 500 characters"})
	}
	if len(details) > 0 {
		return &domain.ValidationError{Details: details}
	}
	return nil
}

func validPattern(p string, known []string) bool {
	if p == "*" || slices.Contains(known, p) {
		return true
	}
	if prefix, ok := strings.CutSuffix(p, ".*"); ok {
		for _, k := range known {
			if strings.HasPrefix(k, prefix+".") {
				return true
			}
		}
	}
	return false
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, e := range in {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// Create saves a new subscription and returns it with its secret, which is
// never shown again.
func (s *Store) Create(ctx context.Context, orgID string, in CreateInput) (Webhook, error) {
	return s.CreateWithID(ctx, orgID, "", in)
}

// CreateWithID is Create with the subscription's id chosen by the caller
// ("" for a new one): a request retried under an idempotency key passes the
// id derived from the key. When that id exists already in the organization
// (the first attempt inserted it), the stored subscription is returned,
// secret included, instead of a second one.
func (s *Store) CreateWithID(ctx context.Context, orgID, id string, in CreateInput) (Webhook, error) {
	if id == "" {
		id = newID("wh")
	}
	if err := s.validate(ctx, &in.URL, &in.Events, in.Description); err != nil {
		return Webhook{}, err
	}
	secret, err := NewSecret()
	if err != nil {
		return Webhook{}, err
	}
	events, err := eventsArg(s.DB, dedupe(in.Events))
	if err != nil {
		return Webhook{}, err
	}
	var w Webhook
	err = s.DB.GetContext(ctx, &w, `INSERT INTO webhooks (id, org_id, url, events, description, secret, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING RETURNING `+webhookColumns(s.DB),
		id, orgID, in.URL, events, in.Description, secret, dbNow())
	if errors.Is(err, sql.ErrNoRows) {
		// Inserted before, by an earlier attempt of the same request.
		var row struct {
			Webhook
			Secret string `db:"secret"`
		}
		err = s.DB.GetContext(ctx, &row, `SELECT `+webhookColumns(s.DB)+`, secret FROM webhooks WHERE org_id = $1 AND id = $2`, orgID, id)
		if errors.Is(err, sql.ErrNoRows) {
			return Webhook{}, fmt.Errorf("webhook id %s is taken by another organization", id)
		}
		if err != nil {
			return Webhook{}, err
		}
		row.Webhook.Secret = row.Secret
		return row.Webhook, nil
	}
	if err != nil {
		return Webhook{}, err
	}
	w.Secret = secret
	return w, nil
}

// Get returns a subscription of the organization.
func (s *Store) Get(ctx context.Context, orgID, id string) (Webhook, error) {
	var w Webhook
	err := s.reader().GetContext(ctx, &w, `SELECT `+webhookColumns(s.reader())+` FROM webhooks WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`, orgID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return w, domain.ErrNotFound
	}
	return w, err
}

// List returns the organization's subscriptions, newest first.
func (s *Store) List(ctx context.Context, orgID string, limit int, after *projections.Cursor) (projections.Page[Webhook], error) {
	args := []any{orgID}
	q := `SELECT ` + webhookColumns(s.reader()) + ` FROM webhooks WHERE org_id = $1 AND deleted_at IS NULL`
	if after != nil {
		q += ` AND (created_at, id) < ($2, $3)`
		args = append(args, after.CreatedAt, after.ID)
	}
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, limit+1)
	var rows []Webhook
	if err := s.reader().SelectContext(ctx, &rows, q, args...); err != nil {
		return projections.Page[Webhook]{}, err
	}
	return page(rows, limit, func(w Webhook) projections.Cursor { return projections.Cursor{CreatedAt: w.CreatedAt, ID: w.ID} }), nil
}

func page[T any](rows []T, limit int, cursor func(T) projections.Cursor) projections.Page[T] {
	p := projections.Page[T]{Data: rows}
	if len(rows) > limit {
		p.Data, p.HasMore = rows[:limit], true
		c := cursor(rows[limit-1])
		p.NextCursor = &c
	}
	return p
}

// Update changes a subscription. Reactivating resets the failure count and
// resumes its pending deliveries; deactivating by hand keeps them pending.
func (s *Store) Update(ctx context.Context, orgID, id string, p Patch) (Webhook, error) {
	var url *string
	var events *[]string
	var desc *string
	if p.URL.Set {
		if p.URL.Null {
			return Webhook{}, &domain.ValidationError{Details: []domain.FieldError{{Field: "url", Code: domain.CodeRequired, Message: "url cannot be removed"}}}
		}
		url = &p.URL.Value
	}
	if p.Events.Set {
		if p.Events.Null {
			p.Events.Value = nil
		}
		events = &p.Events.Value
	}
	if p.Description.Set && !p.Description.Null {
		desc = &p.Description.Value
	}
	if p.Active.Set && p.Active.Null {
		return Webhook{}, &domain.ValidationError{Details: []domain.FieldError{{Field: "active", Code: domain.CodeInvalidValue, Message: "active must be true or false"}}}
	}
	if err := s.validate(ctx, url, events, desc); err != nil {
		return Webhook{}, err
	}
	tx, err := s.DB.BeginTxx(ctx, nil)
	if err != nil {
		return Webhook{}, err
	}
	defer tx.Rollback()
	// The row is locked until commit: PostgreSQL with FOR UPDATE; on SQLite
	// the transaction is the file's only writer already.
	lock := ` FOR UPDATE`
	if dialect.IsSQLite(s.DB) {
		lock = ``
	}
	var current Webhook
	err = tx.GetContext(ctx, &current, `SELECT `+webhookColumns(s.DB)+` FROM webhooks WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`+lock, orgID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, domain.ErrNotFound
	}
	if err != nil {
		return Webhook{}, err
	}
	now := dbNow()
	args := []any{orgID, id, now}
	set := []string{"updated_at = $3"}
	add := func(expr string, v any) {
		args = append(args, v)
		set = append(set, fmt.Sprintf(expr, len(args)))
	}
	if url != nil {
		add("url = $%d", *url)
	}
	if events != nil {
		v, err := eventsArg(s.DB, dedupe(*events))
		if err != nil {
			return Webhook{}, err
		}
		add("events = $%d", v)
	}
	if p.Description.Set {
		add("description = $%d", desc)
	}
	if p.Active.Set {
		switch {
		case p.Active.Value && !current.Active:
			set = append(set, "active = true", "consecutive_failures = 0", "probe_after = NULL", "deactivated_at = NULL", "deactivation_reason = NULL")
		case !p.Active.Value && current.Active:
			set = append(set, "active = false", "deactivated_at = $3", "deactivation_reason = 'deactivated through the API'")
		}
	}
	var w Webhook
	if err := tx.GetContext(ctx, &w, `UPDATE webhooks SET `+strings.Join(set, ", ")+` WHERE org_id = $1 AND id = $2 RETURNING `+webhookColumns(s.DB), args...); err != nil {
		return Webhook{}, err
	}
	if w.Active && !current.Active {
		// Resume what waited while the webhook was off: due now.
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET next_attempt_at = $2, updated_at = $2
			WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at IS NULL`, id, now); err != nil {
			return Webhook{}, err
		}
	} else if !w.Active {
		if err := pauseIfInactive(ctx, tx, id, now); err != nil {
			return Webhook{}, err
		}
	}
	return w, tx.Commit()
}

// Delete removes a subscription; its pending deliveries are no longer sent.
func (s *Store) Delete(ctx context.Context, orgID, id string) error {
	tx, err := s.DB.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := dbNow()
	res, err := tx.ExecContext(ctx, `UPDATE webhooks SET deleted_at = $3, active = false, updated_at = $3
		WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`, orgID, id, now)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return domain.ErrNotFound
	}
	if err := pauseIfInactive(ctx, tx, id, now); err != nil {
		return err
	}
	return tx.Commit()
}

// RotateSecret replaces the signing secret and returns the webhook with it.
func (s *Store) RotateSecret(ctx context.Context, orgID, id string) (Webhook, error) {
	secret, err := NewSecret()
	if err != nil {
		return Webhook{}, err
	}
	var w Webhook
	err = s.DB.GetContext(ctx, &w, `UPDATE webhooks SET secret = $3, updated_at = $4
		WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING `+webhookColumns(s.DB), orgID, id, secret, dbNow())
	if errors.Is(err, sql.ErrNoRows) {
		return w, domain.ErrNotFound
	}
	w.Secret = secret
	return w, err
}

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// ListDeliveries lists a webhook's deliveries, newest first, optionally of
// one status.
func (s *Store) ListDeliveries(ctx context.Context, orgID, webhookID, status string, limit int, after *projections.Cursor) (projections.Page[Delivery], error) {
	if _, err := s.Get(ctx, orgID, webhookID); err != nil {
		return projections.Page[Delivery]{}, err
	}
	args := []any{orgID, webhookID}
	q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE org_id = $1 AND webhook_id = $2`
	if status != "" {
		args = append(args, status)
		q += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	if after != nil {
		args = append(args, after.CreatedAt, after.ID)
		q += fmt.Sprintf(` AND (created_at, id) < ($%d, $%d)`, len(args)-1, len(args))
	}
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, limit+1)
	var rows []Delivery
	if err := s.reader().SelectContext(ctx, &rows, q, args...); err != nil {
		return projections.Page[Delivery]{}, err
	}
	return page(rows, limit, func(d Delivery) projections.Cursor { return projections.Cursor{CreatedAt: d.CreatedAt, ID: d.ID} }), nil
}

// GetDelivery returns one delivery with every attempt.
func (s *Store) GetDelivery(ctx context.Context, orgID, webhookID, id string) (Delivery, error) {
	var d Delivery
	err := s.reader().GetContext(ctx, &d, `SELECT `+deliveryColumns+` FROM webhook_deliveries d
		WHERE org_id = $1 AND webhook_id = $2 AND id = $3
		AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id AND w.deleted_at IS NULL)`, orgID, webhookID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return d, domain.ErrNotFound
	}
	if err != nil {
		return d, err
	}
	d.AttemptHistory = []AttemptRecord{}
	err = s.reader().SelectContext(ctx, &d.AttemptHistory, `SELECT attempted_at, status_code, duration_ms, error, response_excerpt
		FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id`, id)
	return d, err
}

// dueIfActive schedules a re-queued delivery at the time in parameter n
// (now), or leaves it paused (NULL) while its webhook is off; reactivation
// makes it due. The CAST gives PostgreSQL the parameter's type, which a
// lone CASE branch does not; SQLite keeps the integer microseconds as they
// are (the type name gives NUMERIC affinity).
func dueIfActive(n int) string {
	return fmt.Sprintf(`(SELECT CASE WHEN w.active THEN CAST($%d AS TIMESTAMPTZ) END FROM webhooks w WHERE w.id = webhook_deliveries.webhook_id)`, n)
}

// Retry makes a delivery due now, whatever its status: a failed one that
// had used up its schedule gets one more attempt, a delivered one is sent
// again (receivers de-duplicate on webhook-id).
func (s *Store) Retry(ctx context.Context, orgID, webhookID, id string) (Delivery, error) {
	if _, err := s.Get(ctx, orgID, webhookID); err != nil {
		return Delivery{}, err
	}
	var d Delivery
	err := s.DB.GetContext(ctx, &d, `UPDATE webhook_deliveries
		SET status = 'pending', next_attempt_at = `+dueIfActive(4)+`, delivered_at = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
		WHERE org_id = $1 AND webhook_id = $2 AND id = $3
		RETURNING `+deliveryColumns, orgID, webhookID, id, dbNow())
	if errors.Is(err, sql.ErrNoRows) {
		return d, domain.ErrNotFound
	}
	return d, err
}

// Recover re-queues every failed delivery of the webhook created since the
// given time and returns how many.
func (s *Store) Recover(ctx context.Context, orgID, webhookID string, since time.Time) (int64, error) {
	if _, err := s.Get(ctx, orgID, webhookID); err != nil {
		return 0, err
	}
	res, err := s.DB.ExecContext(ctx, `UPDATE webhook_deliveries
		SET status = 'pending', next_attempt_at = `+dueIfActive(5)+`, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5
		WHERE org_id = $1 AND webhook_id = $2 AND status = 'failed' AND created_at >= $3 AND event_type <> $4`, orgID, webhookID, since, TestEventType, dbNow())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// FeedItem is one event of the organization's feed.
type FeedItem struct {
	Position int64  `db:"position"`
	Payload  string `db:"payload"` // the JSON body, as webhooks send it
}

// Feed returns the organization's events after a position, oldest first,
// optionally only types matching the patterns.
func (s *Store) Feed(ctx context.Context, orgID string, after int64, patterns []string, limit int) ([]FeedItem, bool, error) {
	args := []any{orgID, after}
	q := `SELECT position, payload FROM event_feed WHERE org_id = $1 AND position > $2`
	if len(patterns) > 0 && !slices.Contains(patterns, "*") {
		// The same patterns as subscriptions: an exact type or "<prefix>.*".
		// Prefixes are compared as plain text (starts_with, or substr on
		// SQLite), never as LIKE patterns.
		var exact, prefixes []string
		for _, p := range patterns {
			if prefix, ok := strings.CutSuffix(p, ".*"); ok {
				prefixes = append(prefixes, prefix+".")
			} else {
				exact = append(exact, p)
			}
		}
		if dialect.IsSQLite(s.DB) {
			e, err := dialect.JSONList(exact)
			if err != nil {
				return nil, false, err
			}
			p, err := dialect.JSONList(prefixes)
			if err != nil {
				return nil, false, err
			}
			// event_feed.type, qualified: json_each has a column named type.
			args = append(args, e, p)
			q += ` AND (event_feed.type IN (SELECT value FROM json_each($3))
				OR EXISTS (SELECT 1 FROM json_each($4) AS p WHERE substr(event_feed.type, 1, length(p.value)) = p.value))`
		} else {
			args = append(args, exact, prefixes)
			q += ` AND (type = ANY($3) OR EXISTS (SELECT 1 FROM unnest($4::text[]) AS p WHERE starts_with(type, p)))`
		}
	}
	q += fmt.Sprintf(` ORDER BY position LIMIT %d`, limit+1)
	var rows []FeedItem
	if err := s.reader().SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, false, err
	}
	if len(rows) > limit {
		return rows[:limit], true, nil
	}
	return rows, false, nil
}

// TestEventType is the type of the event POST /v1/webhooks/{id}/test sends.
const TestEventType = "webhook.test"

// SendTest sends a webhook.test event to this webhook's endpoint only, now,
// and records it as a delivery with its one attempt. It is not retried and
// does not count towards deactivation: it is the integrator checking their
// endpoint, not the endpoint failing real traffic.
func (s *Store) SendTest(ctx context.Context, sender *Sender, orgID, id string) (Delivery, error) {
	var target struct {
		URL    string `db:"url"`
		Secret string `db:"secret"`
	}
	err := s.DB.GetContext(ctx, &target, `SELECT url, secret FROM webhooks WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL`, orgID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, domain.ErrNotFound
	}
	if err != nil {
		return Delivery{}, err
	}
	now := dbNow()
	var p Payload
	p.ID, p.Type, p.OccurredAt, p.OrgID = newID("evt"), TestEventType, now, orgID
	p.Data.Object = map[string]string{"webhook_id": id, "message": "This is a test event from SalesOS."}
	p.Data.Changes = map[string]domain.Change{}
	body, err := json.Marshal(p)
	if err != nil {
		return Delivery{}, err
	}
	h, err := Headers(target.Secret, p.ID, now, body)
	if err != nil {
		return Delivery{}, err
	}
	a := sender.Send(ctx, target.URL, h, body)
	status, code, errText := StatusFailed, (*int)(nil), (*string)(nil)
	if a.StatusCode != 0 {
		code = &a.StatusCode
	}
	if a.Success() {
		status = StatusDelivered
	} else {
		msg := failureMessage(a)
		errText = &msg
	}
	var excerpt *string
	if a.ResponseExcerpt != "" {
		excerpt = &a.ResponseExcerpt
	}
	var deliveredAt *time.Time
	if status == StatusDelivered {
		deliveredAt = &now
	}
	deliveryID := newID("dlv")
	tx, err := s.DB.BeginTxx(ctx, nil)
	if err != nil {
		return Delivery{}, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, attempts,
			last_status_code, last_error, created_at, updated_at, delivered_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $10, $11)`,
		deliveryID, id, orgID, p.ID, TestEventType, string(body), status, code, errText, now, deliveredAt); err != nil {
		return Delivery{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
		VALUES ($1, $2, $3, $4, $5, $6)`, deliveryID, now, code, float64(a.Duration.Microseconds())/1000, errText, excerpt); err != nil {
		return Delivery{}, err
	}
	if err := tx.Commit(); err != nil {
		return Delivery{}, err
	}
	return s.GetDelivery(ctx, orgID, id, deliveryID)
}
