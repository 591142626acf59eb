package projections

import (
	"encoding/json"
	"fmt"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/envelope"
)

// dealFromRow is the deal a stored row holds.
func dealFromRow(r driver.DealRow) (domain.Deal, error) {
	d := domain.Deal{
		ID: r.ID, OrgID: r.OrgID, Name: r.Name, Currency: r.Currency, Stage: domain.DealStage(r.Stage),
		LeadID: r.LeadID, OwnerID: r.OwnerID, LostReason: r.LostReason,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Version: r.Version,
		Deleted: r.DeletedAt != nil, DeletedAt: r.DeletedAt,
	}
	if r.ClosedAt != nil {
		t := r.ClosedAt.UTC()
		d.ClosedAt = &t
	}
	if r.Amount != nil {
		a, err := domain.ParseAmount(*r.Amount)
		if err != nil {
			return d, fmt.Errorf("deal %s: amount %q: %w", r.ID, *r.Amount, err)
		}
		d.Amount = &a
	}
	if r.ExpectedCloseDate != nil {
		dt, err := domain.ParseDate(*r.ExpectedCloseDate)
		if err != nil {
			return d, fmt.Errorf("deal %s: expected_close_date: %w", r.ID, err)
		}
		d.ExpectedCloseDate = &dt
	}
	if err := json.Unmarshal([]byte(r.CustomFields), &d.CustomFields); err != nil {
		return d, fmt.Errorf("deal %s: custom_fields: %w", r.ID, err)
	}
	return d, nil
}

// rowFromDeal is the row that stores d: the amount as its exact decimal
// text, the date as YYYY-MM-DD.
func rowFromDeal(d domain.Deal) (driver.DealRow, error) {
	cf := []byte(`{}`)
	if d.CustomFields != nil {
		var err error
		if cf, err = json.Marshal(d.CustomFields); err != nil {
			return driver.DealRow{}, err
		}
	}
	r := driver.DealRow{
		ID: d.ID, OrgID: d.OrgID, Name: d.Name, Currency: d.Currency, Stage: string(d.Stage),
		LeadID: d.LeadID, OwnerID: d.OwnerID, LostReason: d.LostReason, CustomFields: cf,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, ClosedAt: d.ClosedAt, Version: d.Version, DeletedAt: d.DeletedAt,
	}
	if d.Amount != nil {
		a := d.Amount.String()
		r.Amount = &a
	}
	if d.ExpectedCloseDate != nil {
		s := d.ExpectedCloseDate.String()
		r.ExpectedCloseDate = &s
	}
	return r, nil
}

// dealKind is the deals table to the shared record code (kind.go).
var dealKind = recordKind[domain.Deal, driver.DealRow, driver.DealWrite]{
	name: DealsName, kind: envelope.KindDeal, stream: envelope.DealStream,
	blank:   func(id string) domain.Deal { return domain.Deal{ID: id} },
	apply:   (*domain.Deal).Apply,
	version: domain.Deal.StreamVersion,
	created: func(d domain.Deal) bool { return d.Version != 0 && d.OrgID != "" },
	foldAll: domain.FoldDeal, changes: domain.DealChanges,
	cursor:  func(d domain.Deal) Cursor { return Cursor{CreatedAt: d.CreatedAt, ID: d.ID} },
	fromRow: dealFromRow, toRow: rowFromDeal,
	row: func(r *driver.DealRow) (string, string, bool) { return r.ID, r.OrgID, r.DeletedAt != nil },
	write: func(before *driver.DealRow, after driver.DealRow) driver.DealWrite {
		return driver.DealWrite{Before: before, After: after}
	},
	load: driver.Driver.LoadDeals, upsert: driver.Driver.UpsertDeals, get: driver.Driver.GetDeal,
}
