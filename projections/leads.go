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

// Leads maintains the leads table through Driver.
type Leads struct{ Driver driver.Driver }

// LeadsName is the leads projection's checkpoint key.
const LeadsName = "leads"

// Name implements Projection.
func (Leads) Name() string { return LeadsName }

// Reset implements Projection.
func (l Leads) Reset(ctx context.Context, tx *sqlx.Tx) error {
	return l.Driver.EmptyReadModel(ctx, tx, "leads")
}

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
	d, err := decodeKind(events, envelope.KindLead)
	if err != nil {
		return nil, err
	}
	out := preparedLeads{decoded: d, born: map[string]driver.LeadWrite{}}
	for _, id := range d.order {
		evs := d.byID[id]
		if evs[0].Version != 1 {
			continue
		}
		l := foldLead(domain.Lead{ID: id}, evs)
		if l.Version == 0 || l.OrgID == "" {
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

// foldLead applies the events newer than l's version.
func foldLead(l domain.Lead, evs []envelope.Envelope) domain.Lead {
	for _, e := range evs {
		if e.Version <= l.Version {
			continue // already in the row
		}
		l.Apply(e.Event, e.Meta)
	}
	return l
}

// ApplyPrepared implements Preparer.
func (l Leads) ApplyPrepared(ctx context.Context, tx *sqlx.Tx, prepared any, after uint64) error {
	p := prepared.(preparedLeads)
	d := p.decoded
	// Drop what an earlier transaction already applied (a redelivery).
	byID := make(map[string][]envelope.Envelope, len(d.order))
	order := make([]string, 0, len(d.order))
	for _, id := range d.order {
		evs := d.byID[id]
		for len(evs) > 0 && evs[0].Position <= after {
			evs = evs[1:]
		}
		if len(evs) > 0 {
			byID[id] = evs
			order = append(order, id)
		}
	}
	if len(order) == 0 {
		return nil
	}
	// Only leads created before these events can have a row: a lead whose
	// first event here is its creation is new.
	existing := make([]string, 0, len(order))
	for _, id := range order {
		if byID[id][0].Version > 1 {
			existing = append(existing, id)
		}
	}
	loaded, err := l.Driver.LoadLeads(ctx, tx, existing)
	if err != nil {
		return err
	}
	current := indexByID(loaded, func(r *driver.LeadRow) string { return r.ID })
	// The stored row goes along with its new state: a driver may write only
	// the columns that changed (SQLite does).
	writes := make([]driver.LeadWrite, 0, len(order))
	for _, id := range order {
		if b, ok := p.born[id]; ok && byID[id][0].Version == 1 {
			// Created in this batch and none of its events applied yet:
			// Prepare folded it.
			writes = append(writes, b)
			continue
		}
		stored, ok := current[id]
		lead := domain.Lead{ID: id}
		if ok {
			if lead, err = leadFromRow(stored); err != nil {
				return err
			}
		}
		lead = foldLead(lead, byID[id])
		if lead.Version == 0 || lead.OrgID == "" {
			continue // no creation seen: nothing to project
		}
		r, err := rowFromLead(lead)
		if err != nil {
			return err
		}
		w := driver.LeadWrite{After: r}
		if ok {
			w.Before = &stored
		}
		writes = append(writes, w)
	}
	return l.Driver.UpsertLeads(ctx, tx, writes)
}

// indexByID indexes rows (as a driver's LoadLeads or LoadDeals returns
// them) by their id.
func indexByID[R any](rows []R, id func(*R) string) map[string]R {
	out := make(map[string]R, len(rows))
	for i := range rows {
		out[id(&rows[i])] = rows[i]
	}
	return out
}

// decoded is a batch's events of one record kind, grouped by record id in
// first-seen order.
type decoded struct {
	byID  map[string][]envelope.Envelope
	order []string
}

func decodeKind(events []eventstore.RecordedEvent, kind envelope.Kind) (decoded, error) {
	d := decoded{byID: map[string][]envelope.Envelope{}}
	for _, r := range events {
		k, id, ok := envelope.ParseStream(r.StreamID)
		if !ok || k != kind {
			continue
		}
		e, err := envelope.Decode(r)
		if err != nil {
			return decoded{}, err
		}
		if _, seen := d.byID[id]; !seen {
			d.order = append(d.order, id)
		}
		d.byID[id] = append(d.byID[id], e)
	}
	return d, nil
}
