package webhooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/paging"
)

// Delivery is one event on its way to one webhook.
type Delivery struct {
	ID             string     `json:"id"`
	WebhookID      string     `json:"webhook_id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	LastStatusCode *int       `json:"last_status_code"`
	LastError      *string    `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
	// AttemptHistory is filled by GetDelivery only (nil, and so absent,
	// in lists).
	AttemptHistory []AttemptRecord `json:"attempt_history,omitzero"`
}

func deliveryFrom(r driver.Delivery) Delivery {
	return Delivery{
		ID: r.ID, WebhookID: r.WebhookID, EventID: r.EventID, EventType: r.EventType, Status: r.Status, Attempts: r.Attempts,
		NextAttemptAt: r.NextAttemptAt, LastStatusCode: r.LastStatusCode, LastError: r.LastError,
		CreatedAt: r.CreatedAt, DeliveredAt: r.DeliveredAt,
	}
}

// AttemptRecord is one stored attempt.
type AttemptRecord struct {
	AttemptedAt time.Time `json:"attempted_at"`
	StatusCode  *int      `json:"status_code"`
	DurationMS  float64   `json:"duration_ms"`
	Error       *string   `json:"error"`
	Response    *string   `json:"response"`
}

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// ListDeliveries lists a webhook's deliveries, newest first, optionally of
// one status.
func (s *Store) ListDeliveries(ctx context.Context, orgID, webhookID, status string, limit int, after *paging.Cursor) (paging.Page[Delivery], error) {
	if _, err := s.Get(ctx, orgID, webhookID); err != nil {
		return paging.Page[Delivery]{}, err
	}
	rows, err := s.Driver.ListDeliveries(ctx, s.reader(), driver.DeliveryList{
		OrgID: orgID, WebhookID: webhookID, Status: status, Limit: limit + 1, After: listAfter(after),
	})
	if err != nil {
		return paging.Page[Delivery]{}, err
	}
	var out []Delivery
	for _, r := range rows {
		out = append(out, deliveryFrom(r))
	}
	return paging.Of(out, limit, func(d Delivery) paging.Cursor { return paging.Cursor{CreatedAt: d.CreatedAt, ID: d.ID} }), nil
}

// GetDelivery returns one delivery with every attempt.
func (s *Store) GetDelivery(ctx context.Context, orgID, webhookID, id string) (Delivery, error) {
	r, err := s.Driver.GetDelivery(ctx, s.reader(), orgID, webhookID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, domain.ErrNotFound
	}
	if err != nil {
		return Delivery{}, err
	}
	d := deliveryFrom(r)
	attempts, err := s.Driver.ListAttempts(ctx, s.reader(), id)
	d.AttemptHistory = make([]AttemptRecord, len(attempts))
	for i, a := range attempts {
		d.AttemptHistory[i] = AttemptRecord(a)
	}
	return d, err
}

// Retry makes a delivery due now, whatever its status: a failed one that
// had used up its schedule gets one more attempt, a delivered one is sent
// again (receivers de-duplicate on webhook-id). While the webhook is off
// the delivery stays paused; reactivation makes it due.
func (s *Store) Retry(ctx context.Context, orgID, webhookID, id string) (Delivery, error) {
	if _, err := s.Get(ctx, orgID, webhookID); err != nil {
		return Delivery{}, err
	}
	r, err := s.Driver.RequeueDelivery(ctx, s.DB, orgID, webhookID, id, dbNow())
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, domain.ErrNotFound
	}
	return deliveryFrom(r), err
}

// Recover re-queues every failed delivery of the webhook created since the
// given time and returns how many. Test events are left alone: they are
// never retried.
func (s *Store) Recover(ctx context.Context, orgID, webhookID string, since time.Time) (int64, error) {
	if _, err := s.Get(ctx, orgID, webhookID); err != nil {
		return 0, err
	}
	return s.Driver.RequeueFailed(ctx, s.DB, orgID, webhookID, since, TestEventType, dbNow())
}

// TestEventType is the type of the event POST /v1/webhooks/{id}/test sends.
const TestEventType = "webhook.test"

// SendTest sends a webhook.test event to this webhook's endpoint only, now,
// and records it as a delivery with its one attempt. It is not retried and
// does not count towards deactivation: it is the integrator checking their
// endpoint, not the endpoint failing real traffic.
func (s *Store) SendTest(ctx context.Context, sender *Sender, orgID, id string) (Delivery, error) {
	url, secret, err := s.Driver.GetWebhookTarget(ctx, s.DB, orgID, id)
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
	h, err := Headers(secret, p.ID, now, body)
	if err != nil {
		return Delivery{}, err
	}
	a := sender.Send(ctx, url, h, body)
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
	if err := s.Driver.InsertSentDelivery(ctx, tx, driver.SentDelivery{
		ID: deliveryID, WebhookID: id, OrgID: orgID, EventID: p.ID, EventType: TestEventType, Payload: string(body),
		Status: status, StatusCode: code, Error: errText, Response: excerpt,
		DurationMS: float64(a.Duration.Microseconds()) / 1000, Now: now, DeliveredAt: deliveredAt,
	}); err != nil {
		return Delivery{}, err
	}
	if err := tx.Commit(); err != nil {
		return Delivery{}, err
	}
	return s.GetDelivery(ctx, orgID, id, deliveryID)
}
