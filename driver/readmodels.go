package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// LeadRow is a row of the leads table.
type LeadRow struct {
	ID              string     `db:"id" json:"id"`
	OrgID           string     `db:"org_id" json:"org_id"`
	Name            string     `db:"name" json:"name"`
	Email           *string    `db:"email" json:"email"`
	Phone           *string    `db:"phone" json:"phone"`
	Company         *string    `db:"company" json:"company"`
	Title           *string    `db:"title" json:"title"`
	Source          *string    `db:"source" json:"source"`
	Status          string     `db:"status" json:"status"`
	OwnerID         *string    `db:"owner_id" json:"owner_id"`
	CustomFields    JSONDoc    `db:"custom_fields" json:"custom_fields"`
	ConvertedDealID *string    `db:"converted_deal_id" json:"converted_deal_id"`
	CreatedAt       time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at" json:"updated_at"`
	Version         int64      `db:"version" json:"version"`
	DeletedAt       *time.Time `db:"deleted_at" json:"deleted_at"`
}

// DealRow is a row of the deals table. Amount is the exact decimal text
// and ExpectedCloseDate YYYY-MM-DD, whatever the column types.
type DealRow struct {
	ID                string     `db:"id" json:"id"`
	OrgID             string     `db:"org_id" json:"org_id"`
	Name              string     `db:"name" json:"name"`
	Amount            *string    `db:"amount" json:"amount"`
	Currency          *string    `db:"currency" json:"currency"`
	Stage             string     `db:"stage" json:"stage"`
	LeadID            *string    `db:"lead_id" json:"lead_id"`
	OwnerID           *string    `db:"owner_id" json:"owner_id"`
	ExpectedCloseDate *string    `db:"expected_close_date" json:"expected_close_date"`
	LostReason        *string    `db:"lost_reason" json:"lost_reason"`
	CustomFields      JSONDoc    `db:"custom_fields" json:"custom_fields"`
	CreatedAt         time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt         time.Time  `db:"updated_at" json:"updated_at"`
	ClosedAt          *time.Time `db:"closed_at" json:"closed_at"`
	Version           int64      `db:"version" json:"version"`
	DeletedAt         *time.Time `db:"deleted_at" json:"deleted_at"`
}

// LeadWrite is one lead to store. Before is the row as loaded in the same
// transaction, or nil when it was not loaded (a new lead, or one being
// replayed); a driver may use it to write only the columns that changed.
// After replaces the stored row only when its version is newer. Encoded,
// when not nil, is what the driver's EncodeLead returned for After.
type LeadWrite struct {
	Before  *LeadRow
	After   LeadRow
	Encoded any
}

// DealWrite is LeadWrite for deals.
type DealWrite struct {
	Before *DealRow
	After  DealRow
}

// LeadList selects a page of live leads of one organization, newest first
// ((created_at, id) descending); zero fields do not filter.
type LeadList struct {
	OrgID        string
	Status       string
	OwnerID      string
	Q            string // substring of name, email or company, case-insensitive
	CreatedAfter *time.Time
	After        *Keyset // continue after this row
	Limit        int     // the most rows returned
}

// DealList is LeadList for deals.
type DealList struct {
	OrgID        string
	Stage        string
	OwnerID      string
	LeadID       string
	Q            string // substring of the name, case-insensitive
	CreatedAfter *time.Time
	After        *Keyset
	Limit        int
}

// LeadRows reads and writes the leads table.
type LeadRows interface {
	// LoadLeads returns the stored rows among ids, in no order.
	LoadLeads(ctx context.Context, e Executor, ids []string) ([]LeadRow, error)
	// EncodeLead does the part of writing r that needs no database (nil
	// when there is none), so that a caller can do it ahead, outside the
	// transaction; the result goes along as LeadWrite.Encoded.
	EncodeLead(r *LeadRow) any
	// UpsertLeads stores rows, each only if it is newer than the stored
	// one (by version).
	UpsertLeads(ctx context.Context, tx *sqlx.Tx, rows []LeadWrite) error
	// GetLead returns the row of id, deleted or not, whatever its
	// organization; sql.ErrNoRows when there is none.
	GetLead(ctx context.Context, e Executor, id string) (LeadRow, error)
	// ListLeads returns a page of rows.
	ListLeads(ctx context.Context, e Executor, l LeadList) ([]LeadRow, error)
}

// DealRows reads and writes the deals table; see LeadRows.
type DealRows interface {
	LoadDeals(ctx context.Context, e Executor, ids []string) ([]DealRow, error)
	UpsertDeals(ctx context.Context, tx *sqlx.Tx, rows []DealWrite) error
	GetDeal(ctx context.Context, e Executor, id string) (DealRow, error)
	ListDeals(ctx context.Context, e Executor, l DealList) ([]DealRow, error)
}

// JSONDoc is a JSON document column (custom_fields): pgx hands jsonb over as
// bytes, SQLite a TEXT column as a string, and database/sql would not store
// a string into a json.RawMessage.
type JSONDoc json.RawMessage

// Scan implements sql.Scanner.
func (j *JSONDoc) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		*j = bytes.Clone(v) // the driver may reuse its buffer
	case string:
		*j = JSONDoc(v)
	case nil:
		*j = nil
	default:
		return fmt.Errorf("json column: cannot scan %T", src)
	}
	return nil
}

// MarshalJSON writes the document as it is, like json.RawMessage.
func (j JSONDoc) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
}
