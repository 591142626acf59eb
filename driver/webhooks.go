package driver

import (
	"context"
	"time"
)

// Webhooks stores subscriptions, deliveries with their leases and
// attempts, and the event feed.
//
// The methods are single statements (or one statement per row where the
// database has no set-based form); which rows to lock, in what order, and
// what an outcome means for a webhook is decided by the caller
// (webhooks.Dispatcher). Times are passed in by the caller where a
// statement stores them; "not found" is sql.ErrNoRows.
type Webhooks interface {
	// InsertWebhook saves a new subscription. When w.ID exists already it
	// stores nothing and returns sql.ErrNoRows.
	InsertWebhook(ctx context.Context, e Executor, w NewWebhook) (Webhook, error)
	// GetWebhookWithSecret reads a subscription with its secret, deleted
	// or not.
	GetWebhookWithSecret(ctx context.Context, e Executor, orgID, id string) (Webhook, error)
	// GetWebhook reads a subscription that is not deleted.
	GetWebhook(ctx context.Context, e Executor, orgID, id string) (Webhook, error)
	// LockWebhook is GetWebhook with the row locked until e (a
	// transaction) ends.
	LockWebhook(ctx context.Context, e Executor, orgID, id string) (Webhook, error)
	// ListWebhooks lists up to limit subscriptions that are not deleted,
	// newest first, after the cursor when it is set.
	ListWebhooks(ctx context.Context, e Executor, orgID string, limit int, after *ListAfter) ([]Webhook, error)
	// UpdateWebhook changes what p sets and returns the row.
	UpdateWebhook(ctx context.Context, e Executor, p WebhookUpdate) (Webhook, error)
	// DeleteWebhook marks a subscription deleted and inactive; false when
	// there was none.
	DeleteWebhook(ctx context.Context, e Executor, orgID, id string, now time.Time) (bool, error)
	// RotateSecret stores a new secret and returns the row.
	RotateSecret(ctx context.Context, e Executor, orgID, id, secret string, now time.Time) (Webhook, error)
	// GetWebhookTarget reads the URL and secret of a subscription that is
	// not deleted.
	GetWebhookTarget(ctx context.Context, e Executor, orgID, id string) (url, secret string, err error)
	// ResumePaused makes the paused pending deliveries of a webhook due at
	// now.
	ResumePaused(ctx context.Context, e Executor, webhookID string, now time.Time) error
	// PauseInactive takes the unleased pending deliveries of a webhook off
	// the schedule, if the webhook is inactive or deleted.
	PauseInactive(ctx context.Context, e Executor, webhookID string, now time.Time) error

	// ListDeliveries lists up to p.Limit deliveries of a webhook, newest
	// first.
	ListDeliveries(ctx context.Context, e Executor, p DeliveryList) ([]Delivery, error)
	// GetDelivery reads a delivery of a webhook that is not deleted.
	GetDelivery(ctx context.Context, e Executor, orgID, webhookID, id string) (Delivery, error)
	// ListAttempts lists a delivery's attempts, oldest first.
	ListAttempts(ctx context.Context, e Executor, deliveryID string) ([]Attempt, error)
	// RequeueDelivery makes a delivery pending and due at now (paused
	// while its webhook is inactive), whatever its status.
	RequeueDelivery(ctx context.Context, e Executor, orgID, webhookID, id string, now time.Time) (Delivery, error)
	// RequeueFailed does what RequeueDelivery does to every failed
	// delivery of the webhook created since since, except those of event
	// type exceptType, and returns how many.
	RequeueFailed(ctx context.Context, e Executor, orgID, webhookID string, since time.Time, exceptType string, now time.Time) (int64, error)
	// InsertSentDelivery stores a delivery that was attempted once already
	// (a test event), with its attempt.
	InsertSentDelivery(ctx context.Context, e Executor, d SentDelivery) error

	// ResetFeed empties the event feed.
	ResetFeed(ctx context.Context, e Executor) error
	// ListSubscriptions lists the active subscriptions of the
	// organizations.
	ListSubscriptions(ctx context.Context, e Executor, orgIDs []string) ([]Subscription, error)
	// InsertFeedAndDeliveries stores feed items and pending deliveries,
	// skipping those stored already (same position; same webhook and
	// event).
	InsertFeedAndDeliveries(ctx context.Context, e Executor, feed []FeedRow, deliveries []NewDelivery) error
	// ReadFeed lists up to p.Limit feed items of an organization after a
	// position, oldest first.
	ReadFeed(ctx context.Context, e Executor, p FeedRead) ([]FeedItem, error)

	// PrepareClaim and PrepareRecord set up a dispatcher's claim and
	// record transactions; they are its first statements.
	PrepareClaim(ctx context.Context, e Executor) error
	PrepareRecord(ctx context.Context, e Executor) error
	// ListDueWebhooks lists up to limit active webhooks, not in skip and
	// not waiting for a probe, that have a due unleased delivery, the
	// longest-waiting first, and locks them against other claims.
	ListDueWebhooks(ctx context.Context, e Executor, now time.Time, limit int, skip []string) ([]DueWebhook, error)
	// CountForeignLeases counts, per webhook, the unexpired leases owners
	// other than owner hold.
	CountForeignLeases(ctx context.Context, e Executor, now time.Time, owner string, webhookIDs []string) (map[string]int, error)
	// LeaseDue leases to p.Owner, for p.Lease, each webhook's quota of its
	// oldest due, unleased deliveries whose payload exists.
	LeaseDue(ctx context.Context, e Executor, p LeaseDue) ([]LeasedDelivery, error)
	// RenewLeases extends to now+lease the leases owner still holds among
	// ids and returns the ids renewed.
	RenewLeases(ctx context.Context, e Executor, owner string, ids []string, now time.Time, lease time.Duration) ([]string, error)
	// RecordAttempts logs every attempt and stores the outcome of those
	// whose delivery owner still leases (clearing the lease); it returns
	// the ids of those deliveries.
	RecordAttempts(ctx context.Context, e Executor, owner string, now time.Time, outcomes []AttemptOutcome) ([]string, error)
	// LockWebhookStates locks, in id order, and reads those of ids that
	// have a failure count or are in failing.
	LockWebhookStates(ctx context.Context, e Executor, ids, failing []string) ([]WebhookState, error)
	// UpdateWebhookState stores a webhook's failure count and probe time,
	// and switches it off when u.SwitchOff.
	UpdateWebhookState(ctx context.Context, e Executor, u WebhookStateUpdate) error
}

// Webhook is a subscription's row.
type Webhook struct {
	ID                  string     `db:"id"`
	URL                 string     `db:"url"`
	Events              []string   `db:"-"`
	Description         *string    `db:"description"`
	Active              bool       `db:"active"`
	ConsecutiveFailures int        `db:"consecutive_failures"`
	DeactivatedAt       *time.Time `db:"deactivated_at"`
	DeactivationReason  *string    `db:"deactivation_reason"`
	CreatedAt           time.Time  `db:"created_at"`
	UpdatedAt           time.Time  `db:"updated_at"`
	// Secret is only read by GetWebhookWithSecret.
	Secret string `db:"secret"`
}

// NewWebhook is a subscription to insert.
type NewWebhook struct {
	ID, OrgID, URL string
	Events         []string
	Description    *string
	Secret         string
	Now            time.Time
}

// ListAfter is a keyset cursor: rows strictly before (CreatedAt, ID) in
// newest-first order.
type ListAfter struct {
	CreatedAt time.Time
	ID        string
}

// WebhookUpdate is what UpdateWebhook changes; nil fields stay.
type WebhookUpdate struct {
	OrgID, ID string
	Now       time.Time
	URL       *string
	Events    *[]string
	// SetDescription stores Description (nil clears it).
	SetDescription bool
	Description    *string
	// Activate switches the webhook on with a clean failure state;
	// Deactivate switches it off at Now for DeactivationReason.
	Activate, Deactivate bool
	DeactivationReason   string
}

// Delivery is a delivery's row.
type Delivery struct {
	ID             string     `db:"id"`
	WebhookID      string     `db:"webhook_id"`
	EventID        string     `db:"event_id"`
	EventType      string     `db:"event_type"`
	Status         string     `db:"status"`
	Attempts       int        `db:"attempts"`
	NextAttemptAt  *time.Time `db:"next_attempt_at"`
	LastStatusCode *int       `db:"last_status_code"`
	LastError      *string    `db:"last_error"`
	CreatedAt      time.Time  `db:"created_at"`
	DeliveredAt    *time.Time `db:"delivered_at"`
}

// DeliveryList selects deliveries; Status "" means any.
type DeliveryList struct {
	OrgID, WebhookID, Status string
	Limit                    int
	After                    *ListAfter
}

// Attempt is an attempt's row.
type Attempt struct {
	AttemptedAt time.Time `db:"attempted_at"`
	StatusCode  *int      `db:"status_code"`
	DurationMS  float64   `db:"duration_ms"`
	Error       *string   `db:"error"`
	Response    *string   `db:"response_excerpt"`
}

// SentDelivery is a delivery with its one attempt.
type SentDelivery struct {
	ID, WebhookID, OrgID, EventID, EventType, Payload, Status string
	StatusCode                                                *int
	Error, Response                                           *string
	DurationMS                                                float64
	Now                                                       time.Time
	DeliveredAt                                               *time.Time
}

// Subscription is what the fan-out needs of an active webhook.
type Subscription struct {
	ID       string
	OrgID    string
	Patterns []string
}

// FeedRow is an event feed item to insert.
type FeedRow struct {
	Position   int64     `json:"position"`
	EventID    string    `json:"event_id"`
	OrgID      string    `json:"org_id"`
	Type       string    `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	Payload    string    `json:"payload"`
}

// NewDelivery is a pending delivery, due at Now, that the fan-out
// creates. It carries no payload of its own: its payload column is left
// empty, which means "the event feed's row with the same event_id". The
// body was stored once per webhook before, and with many webhooks per
// organization those copies were most of what the fan-out, and every lease
// and outcome rewriting the row, had to write.
type NewDelivery struct {
	ID        string    `json:"id"`
	WebhookID string    `json:"webhook_id"`
	OrgID     string    `json:"org_id"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Now       time.Time `json:"now"`
}

// FeedRead selects feed items. With Exact and Prefixes both empty every
// type matches; otherwise a type matches when it is one of Exact or starts
// with one of Prefixes (plain text, not a LIKE pattern).
type FeedRead struct {
	OrgID           string
	After           int64
	Exact, Prefixes []string
	Limit           int
}

// FeedItem is one event of the feed.
type FeedItem struct {
	Position int64  `db:"position"`
	Payload  string `db:"payload"`
}

// DueWebhook is an active webhook with a due, unleased delivery.
type DueWebhook struct {
	ID         string     `db:"id"`
	URL        string     `db:"url"`
	Secret     string     `db:"secret"`
	Failures   int        `db:"consecutive_failures"`
	ProbeAfter *time.Time `db:"probe_after"`
}

// LeaseDue is what LeaseDue leases: Quotas in the order the webhooks are
// served, each quota above zero.
type LeaseDue struct {
	Now    time.Time
	Owner  string
	Lease  time.Duration
	Quotas []WebhookQuota
}

// WebhookQuota is how many deliveries of a webhook to lease.
type WebhookQuota struct {
	WebhookID string
	Quota     int
}

// LeasedDelivery is a delivery LeaseDue leased, with its body.
type LeasedDelivery struct {
	ID        string `db:"id"`
	WebhookID string `db:"webhook_id"`
	EventID   string `db:"event_id"`
	Payload   string `db:"payload"`
	Attempts  int    `db:"attempts"`
}

// AttemptOutcome is an attempt to log and the state its delivery moves to.
type AttemptOutcome struct {
	ID            string
	Status        string
	Attempts      int
	NextAttemptAt *time.Time
	StatusCode    *int
	Error         *string
	At            time.Time
	DurationMS    float64
	Response      *string
	Delivered     bool
}

// WebhookState is a webhook's delivery health.
type WebhookState struct {
	ID         string     `db:"id"`
	Active     bool       `db:"active"`
	Failures   int        `db:"consecutive_failures"`
	ProbeAfter *time.Time `db:"probe_after"`
}

// WebhookStateUpdate is what UpdateWebhookState stores.
type WebhookStateUpdate struct {
	ID         string
	Failures   int
	ProbeAfter *time.Time
	// SwitchOff deactivates the webhook at Now for Reason.
	SwitchOff bool
	Reason    string
	Now       time.Time
}
