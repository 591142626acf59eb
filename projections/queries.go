package projections

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
)

// Queries reads the query tables through Driver. Every query names the
// organization. DB may be a read-only handle (on SQLite, the read pool).
type Queries struct {
	DB     *sqlx.DB
	Driver driver.Driver
}

// Cursor is a position in a list ordered newest first: (created_at, id) of
// the last item returned. Keyset positions stay valid while records are
// inserted concurrently: nothing is skipped or repeated.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// ErrBadCursor is returned for a cursor this server did not issue.
var ErrBadCursor = errors.New("invalid cursor")

// Encode returns the opaque form handed to clients.
func (c Cursor) Encode() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixNano(), 10) + "|" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses a cursor from Encode.
func DecodeCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	ns, id, ok := strings.Cut(string(raw), "|")
	// The id goes into a query: one no database can store (NUL, invalid
	// UTF-8) is not one this server issued, and would make PostgreSQL fail.
	if !ok || id == "" || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return Cursor{}, ErrBadCursor
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{CreatedAt: time.Unix(0, n).UTC(), ID: id}, nil
}

// Page is one page of a list.
type Page[T any] struct {
	Data       []T
	HasMore    bool
	NextCursor *Cursor
}

// LeadFilter selects leads; zero fields do not filter.
type LeadFilter struct {
	Status       string
	OwnerID      string
	Q            string // substring of name, email or company, case-insensitive
	CreatedAfter *time.Time
	Limit        int
	After        *Cursor
}

// GetLead returns a live lead of the organization, or domain.ErrNotFound.
//
// The statement names the primary key alone and the organization and
// deletion are checked here: with "org_id = $1" in the WHERE clause,
// PostgreSQL's cached generic plan for a table it has no statistics of
// yet can pick an org_id index and walk every lead of the organization.
func (q Queries) GetLead(ctx context.Context, orgID, id string) (domain.Lead, error) {
	r, err := q.Driver.GetLead(ctx, q.DB, id)
	if err == nil && (r.OrgID != orgID || r.DeletedAt != nil) {
		err = sql.ErrNoRows
	}
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Lead{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Lead{}, err
	}
	return leadFromRow(r)
}

// ListLeads lists live leads newest first.
func (q Queries) ListLeads(ctx context.Context, orgID string, f LeadFilter) (Page[domain.Lead], error) {
	// One row more than the page tells whether more exist.
	rows, err := q.Driver.ListLeads(ctx, q.DB, driver.LeadList{
		OrgID: orgID, Status: f.Status, OwnerID: f.OwnerID, Q: f.Q, CreatedAfter: f.CreatedAfter,
		After: f.After.keyset(), Limit: f.Limit + 1,
	})
	if err != nil {
		return Page[domain.Lead]{}, err
	}
	out := Page[domain.Lead]{Data: make([]domain.Lead, 0, len(rows))}
	for i, r := range rows {
		if i == f.Limit {
			out.HasMore = true
			break
		}
		l, err := leadFromRow(r)
		if err != nil {
			return out, err
		}
		out.Data = append(out.Data, l)
	}
	if out.HasMore {
		last := out.Data[len(out.Data)-1]
		out.NextCursor = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return out, nil
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
// Like GetLead, the statement is a primary-key probe.
func (q Queries) GetDeal(ctx context.Context, orgID, id string) (domain.Deal, error) {
	r, err := q.Driver.GetDeal(ctx, q.DB, id)
	if err == nil && (r.OrgID != orgID || r.DeletedAt != nil) {
		err = sql.ErrNoRows
	}
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Deal{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Deal{}, err
	}
	return dealFromRow(r)
}

// ListDeals lists live deals newest first.
func (q Queries) ListDeals(ctx context.Context, orgID string, f DealFilter) (Page[domain.Deal], error) {
	rows, err := q.Driver.ListDeals(ctx, q.DB, driver.DealList{
		OrgID: orgID, Stage: f.Stage, OwnerID: f.OwnerID, LeadID: f.LeadID, Q: f.Q, CreatedAfter: f.CreatedAfter,
		After: f.After.keyset(), Limit: f.Limit + 1,
	})
	if err != nil {
		return Page[domain.Deal]{}, err
	}
	out := Page[domain.Deal]{Data: make([]domain.Deal, 0, len(rows))}
	for i, r := range rows {
		if i == f.Limit {
			out.HasMore = true
			break
		}
		d, err := dealFromRow(r)
		if err != nil {
			return out, err
		}
		out.Data = append(out.Data, d)
	}
	if out.HasMore {
		last := out.Data[len(out.Data)-1]
		out.NextCursor = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return out, nil
}

// keyset is the cursor as the driver takes it (nil stays nil).
func (c *Cursor) keyset() *driver.Keyset {
	if c == nil {
		return nil
	}
	return &driver.Keyset{CreatedAt: c.CreatedAt, ID: c.ID}
}
