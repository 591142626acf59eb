package projections

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/paging"
)

// Queries reads the query tables through Driver. Every query names the
// organization. DB may be a read-only handle (on SQLite, the read pool).
type Queries struct {
	DB     *sqlx.DB
	Driver driver.Driver
}

// The list types live in paging, which lists outside the query tables
// (webhooks) share; these names keep the package's API as it was.
type (
	// Cursor is a position in a list ordered newest first.
	Cursor = paging.Cursor
	// Page is one page of a list.
	Page[T any] = paging.Page[T]
)

// ErrBadCursor is returned for a cursor this server did not issue.
var ErrBadCursor = paging.ErrBadCursor

// DecodeCursor parses a cursor from Cursor.Encode.
func DecodeCursor(s string) (Cursor, error) { return paging.DecodeCursor(s) }

// LeadFilter selects leads; zero fields do not filter.
type LeadFilter struct {
	Status       string
	OwnerID      string
	Q            string // substring of name, email or company, case-insensitive
	CreatedAfter *time.Time
	Limit        int
	After        *Cursor
}

// GetLead returns a live lead of the organization, or domain.ErrNotFound
// (see recordKind.getLive for why it is a primary-key probe).
func (q Queries) GetLead(ctx context.Context, orgID, id string) (domain.Lead, error) {
	return leadKind.getLive(ctx, q.Driver, q.DB, orgID, id)
}

// ListLeads lists live leads newest first.
func (q Queries) ListLeads(ctx context.Context, orgID string, f LeadFilter) (Page[domain.Lead], error) {
	// One row more than the page tells whether more exist.
	rows, err := q.Driver.ListLeads(ctx, q.DB, driver.LeadList{
		OrgID: orgID, Status: f.Status, OwnerID: f.OwnerID, Q: f.Q, CreatedAfter: f.CreatedAfter,
		After: keyset(f.After), Limit: f.Limit + 1,
	})
	if err != nil {
		return Page[domain.Lead]{}, err
	}
	return leadKind.page(rows, f.Limit)
}

// DealFilter selects deals; zero fields do not filter.
type DealFilter struct {
	Stage        string
	OwnerID      string
	LeadID       string
	Q            string // substring of the name, case-insensitive
	CreatedAfter *time.Time
	Limit        int
	After        *Cursor
}

// GetDeal returns a live deal of the organization, or domain.ErrNotFound.
func (q Queries) GetDeal(ctx context.Context, orgID, id string) (domain.Deal, error) {
	return dealKind.getLive(ctx, q.Driver, q.DB, orgID, id)
}

// ListDeals lists live deals newest first.
func (q Queries) ListDeals(ctx context.Context, orgID string, f DealFilter) (Page[domain.Deal], error) {
	rows, err := q.Driver.ListDeals(ctx, q.DB, driver.DealList{
		OrgID: orgID, Stage: f.Stage, OwnerID: f.OwnerID, LeadID: f.LeadID, Q: f.Q, CreatedAfter: f.CreatedAfter,
		After: keyset(f.After), Limit: f.Limit + 1,
	})
	if err != nil {
		return Page[domain.Deal]{}, err
	}
	return dealKind.page(rows, f.Limit)
}

// keyset is the cursor as the driver takes it (nil stays nil).
func keyset(c *Cursor) *driver.Keyset {
	if c == nil {
		return nil
	}
	return &driver.Keyset{CreatedAt: c.CreatedAt, ID: c.ID}
}
