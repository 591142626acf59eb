package projections

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// leadFromRow is the lead a stored row holds.
func leadFromRow(r driver.LeadRow) (domain.Lead, error) {
	l := domain.Lead{
		ID: r.ID, OrgID: r.OrgID, Name: r.Name, Email: r.Email, Phone: r.Phone, Company: r.Company,
		Title: r.Title, Source: r.Source, Status: domain.LeadStatus(r.Status), OwnerID: r.OwnerID,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Version: r.Version,
		Deleted: r.DeletedAt != nil, DeletedAt: r.DeletedAt,
	}
	if r.ConvertedDealID != nil {
		l.ConvertedDealID = *r.ConvertedDealID
	}
	if err := json.Unmarshal([]byte(r.CustomFields), &l.CustomFields); err != nil {
		return l, fmt.Errorf("lead %s: custom_fields: %w", r.ID, err)
	}
	return l, nil
}

// rowFromLead is the row that stores l.
func rowFromLead(l domain.Lead) (driver.LeadRow, error) {
	cf, err := json.Marshal(l.CustomFields)
	if err != nil {
		return driver.LeadRow{}, err
	}
	if l.CustomFields == nil {
		cf = []byte(`{}`)
	}
	r := driver.LeadRow{
		ID: l.ID, OrgID: l.OrgID, Name: l.Name, Email: l.Email, Phone: l.Phone, Company: l.Company,
		Title: l.Title, Source: l.Source, Status: string(l.Status), OwnerID: l.OwnerID, CustomFields: cf,
		CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt, Version: l.Version, DeletedAt: l.DeletedAt,
	}
	if l.ConvertedDealID != "" {
		r.ConvertedDealID = &l.ConvertedDealID
	}
	return r, nil
}

// leadKind is the leads table to the shared record code (kind.go).
var leadKind = recordKind[domain.Lead, driver.LeadRow, driver.LeadWrite]{
	name: LeadsName, kind: envelope.KindLead, stream: envelope.LeadStream,
	blank:   func(id string) domain.Lead { return domain.Lead{ID: id} },
	apply:   (*domain.Lead).Apply,
	version: domain.Lead.StreamVersion,
	created: func(l domain.Lead) bool { return l.Version != 0 && l.OrgID != "" },
	foldAll: domain.FoldLead, changes: domain.LeadChanges,
	cursor:  func(l domain.Lead) Cursor { return Cursor{CreatedAt: l.CreatedAt, ID: l.ID} },
	fromRow: leadFromRow, toRow: rowFromLead,
	row: func(r *driver.LeadRow) (string, string, bool) { return r.ID, r.OrgID, r.DeletedAt != nil },
	write: func(before *driver.LeadRow, after driver.LeadRow) driver.LeadWrite {
		return driver.LeadWrite{Before: before, After: after}
	},
	load: driver.Driver.LoadLeads, upsert: driver.Driver.UpsertLeads, get: driver.Driver.GetLead,
}

// Apply implements Projection: fold the batch's lead events in memory over
// the current rows, then write every touched lead in one driver call
// (driver.LeadRows.UpsertLeads).
func (l Leads) Apply(ctx context.Context, tx *sqlx.Tx, events []eventstore.RecordedEvent) error {
	prepared, err := l.Prepare(events)
	if err != nil {
		return err
	}
	return l.ApplyPrepared(ctx, tx, prepared, 0)
}

// Prepare implements Preparer: decode the batch's lead events, and fold the
// leads created in the batch already (and encode their rows for the
// driver): their rows do not depend on the table, so this work leaves the
// transaction.
func (p Leads) Prepare(events []eventstore.RecordedEvent) (any, error) {
	d, err := decodeKind(events, leadKind.kind)
	if err != nil {
		return nil, err
	}
	out := preparedLeads{decoded: d, born: map[string]driver.LeadWrite{}}
	for _, id := range d.order {
		evs := d.byID[id]
		if evs[0].Version != 1 {
			continue
		}
		l := leadKind.fold(domain.Lead{ID: id}, evs)
		if !leadKind.created(l) {
			continue
		}
		r, err := rowFromLead(l)
		if err != nil {
			return nil, err
		}
		out.born[id] = driver.LeadWrite{After: r, Encoded: p.Driver.EncodeLead(&r)}
	}
	return out, nil
}

// preparedLeads is a batch as Prepare leaves it.
type preparedLeads struct {
	decoded
	// born holds the final row of each lead created in the batch, encoded
	// for the driver.
	born map[string]driver.LeadWrite
}

// ApplyPrepared implements Preparer.
func (l Leads) ApplyPrepared(ctx context.Context, tx *sqlx.Tx, prepared any, after uint64) error {
	p := prepared.(preparedLeads)
	// Drop what an earlier transaction already applied (a redelivery).
	fresh := decoded{byID: make(map[string][]envelope.Envelope, len(p.order)), order: make([]string, 0, len(p.order))}
	for _, id := range p.order {
		evs := p.byID[id]
		for len(evs) > 0 && evs[0].Position <= after {
			evs = evs[1:]
		}
		if len(evs) > 0 {
			fresh.byID[id] = evs
			fresh.order = append(fresh.order, id)
		}
	}
	return leadKind.project(ctx, tx, l.Driver, fresh, p.born)
}
