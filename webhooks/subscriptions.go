package webhooks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/paging"
)

// Webhook is a subscription as the API shows it. Secret is only filled in
// the answers to create and rotate-secret.
type Webhook struct {
	ID                  string     `json:"id"`
	URL                 string     `json:"url"`
	Events              []string   `json:"events"`
	Description         *string    `json:"description"`
	Active              bool       `json:"active"`
	Secret              string     `json:"secret,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	DeactivatedAt       *time.Time `json:"deactivated_at"`
	DeactivationReason  *string    `json:"deactivation_reason"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
}

func webhookFrom(r driver.Webhook) Webhook {
	return Webhook{
		ID: r.ID, URL: r.URL, Events: r.Events, Description: r.Description, Active: r.Active,
		ConsecutiveFailures: r.ConsecutiveFailures, DeactivatedAt: r.DeactivatedAt, DeactivationReason: r.DeactivationReason,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
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
	// Driver runs the statements.
	Driver driver.Webhooks
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
	r, err := s.Driver.InsertWebhook(ctx, s.DB, driver.NewWebhook{
		ID: id, OrgID: orgID, URL: in.URL, Events: dedupe(in.Events), Description: in.Description, Secret: secret, Now: dbNow(),
	})
	if errors.Is(err, sql.ErrNoRows) {
		// Inserted before, by an earlier attempt of the same request.
		r, err = s.Driver.GetWebhookWithSecret(ctx, s.DB, orgID, id)
		if errors.Is(err, sql.ErrNoRows) {
			return Webhook{}, fmt.Errorf("webhook id %s is taken by another organization", id)
		}
		if err != nil {
			return Webhook{}, err
		}
		w := webhookFrom(r)
		w.Secret = r.Secret
		return w, nil
	}
	if err != nil {
		return Webhook{}, err
	}
	w := webhookFrom(r)
	w.Secret = secret
	return w, nil
}

// Get returns a subscription of the organization.
func (s *Store) Get(ctx context.Context, orgID, id string) (Webhook, error) {
	r, err := s.Driver.GetWebhook(ctx, s.reader(), orgID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, domain.ErrNotFound
	}
	return webhookFrom(r), err
}

// List returns the organization's subscriptions, newest first.
func (s *Store) List(ctx context.Context, orgID string, limit int, after *paging.Cursor) (paging.Page[Webhook], error) {
	rows, err := s.Driver.ListWebhooks(ctx, s.reader(), orgID, limit+1, listAfter(after))
	if err != nil {
		return paging.Page[Webhook]{}, err
	}
	var hooks []Webhook // nil when there are none, as before
	for _, r := range rows {
		hooks = append(hooks, webhookFrom(r))
	}
	return paging.Of(hooks, limit, func(w Webhook) paging.Cursor { return paging.Cursor{CreatedAt: w.CreatedAt, ID: w.ID} }), nil
}

func listAfter(c *paging.Cursor) *driver.ListAfter {
	if c == nil {
		return nil
	}
	return &driver.ListAfter{CreatedAt: c.CreatedAt, ID: c.ID}
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
	// The row is locked until commit, so the switch below sees the state
	// it changes.
	cur, err := s.Driver.LockWebhook(ctx, tx, orgID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, domain.ErrNotFound
	}
	if err != nil {
		return Webhook{}, err
	}
	current := webhookFrom(cur)
	now := dbNow()
	u := driver.WebhookUpdate{OrgID: orgID, ID: id, Now: now, URL: url, SetDescription: p.Description.Set, Description: desc}
	if events != nil {
		v := dedupe(*events)
		u.Events = &v
	}
	if p.Active.Set {
		switch {
		case p.Active.Value && !current.Active:
			u.Activate = true // a clean start: no failures, no probe wait
		case !p.Active.Value && current.Active:
			u.Deactivate, u.DeactivationReason = true, "deactivated through the API"
		}
	}
	r, err := s.Driver.UpdateWebhook(ctx, tx, u)
	if err != nil {
		return Webhook{}, err
	}
	w := webhookFrom(r)
	if w.Active && !current.Active {
		// Resume what waited while the webhook was off: due now.
		if err := s.Driver.ResumePaused(ctx, tx, id, now); err != nil {
			return Webhook{}, err
		}
	} else if !w.Active {
		if err := pauseIfInactive(ctx, s.Driver, tx, id, now); err != nil {
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
	found, err := s.Driver.DeleteWebhook(ctx, tx, orgID, id, now)
	if err != nil {
		return err
	}
	if !found {
		return domain.ErrNotFound
	}
	if err := pauseIfInactive(ctx, s.Driver, tx, id, now); err != nil {
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
	r, err := s.Driver.RotateSecret(ctx, s.DB, orgID, id, secret, dbNow())
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, domain.ErrNotFound
	}
	w := webhookFrom(r)
	w.Secret = secret
	return w, err
}
