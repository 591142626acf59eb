package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// Leads maintains the leads table.
type Leads struct{}

// LeadsName is the leads projection's checkpoint key.
const LeadsName = "leads"

// Name implements Projection.
func (Leads) Name() string { return LeadsName }

// Reset implements Projection.
func (Leads) Reset(ctx context.Context, tx *sqlx.Tx) error {
	_, err := tx.ExecContext(ctx, `TRUNCATE leads`)
	return err
}

// leadRow is a leads row; its json tags feed json_to_recordset in upserts.
type leadRow struct {
	ID              string          `db:"id" json:"id"`
	OrgID           string          `db:"org_id" json:"org_id"`
	Name            string          `db:"name" json:"name"`
	Email           *string         `db:"email" json:"email"`
	Phone           *string         `db:"phone" json:"phone"`
	Company         *string         `db:"company" json:"company"`
	Title           *string         `db:"title" json:"title"`
	Source          *string         `db:"source" json:"source"`
	Status          string          `db:"status" json:"status"`
	OwnerID         *string         `db:"owner_id" json:"owner_id"`
	CustomFields    json.RawMessage `db:"custom_fields" json:"custom_fields"`
	ConvertedDealID *string         `db:"converted_deal_id" json:"converted_deal_id"`
	CreatedAt       time.Time       `db:"created_at" json:"created_at"`
	UpdatedAt       time.Time       `db:"updated_at" json:"updated_at"`
	Version         int64           `db:"version" json:"version"`
	DeletedAt       *time.Time      `db:"deleted_at" json:"deleted_at"`
}

const leadColumns = `id, org_id, name, email, phone, company, title, source, status, owner_id, custom_fields, converted_deal_id, created_at, updated_at, version, deleted_at`

func (r leadRow) lead() (domain.Lead, error) {
	l := domain.Lead{
		ID: r.ID, OrgID: r.OrgID, Name: r.Name, Email: r.Email, Phone: r.Phone, Company: r.Company,
		Title: r.Title, Source: r.Source, Status: domain.LeadStatus(r.Status), OwnerID: r.OwnerID,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Version: r.Version,
		Deleted: r.DeletedAt != nil, DeletedAt: r.DeletedAt,
	}
	if r.ConvertedDealID != nil {
		l.ConvertedDealID = *r.ConvertedDealID
	}
	if err := json.Unmarshal(r.CustomFields, &l.CustomFields); err != nil {
		return l, fmt.Errorf("lead %s: custom_fields: %w", r.ID, err)
	}
	return l, nil
}

func rowFromLead(l domain.Lead) (leadRow, error) {
	cf, err := json.Marshal(l.CustomFields)
	if err != nil {
		return leadRow{}, err
	}
	if l.CustomFields == nil {
		cf = []byte(`{}`)
	}
	r := leadRow{
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
// the current rows, then write every touched lead with one statement.
func (Leads) Apply(ctx context.Context, tx *sqlx.Tx, events []eventstore.RecordedEvent) error {
	byID, order, err := decodeKind(events, envelope.KindLead)
	if err != nil || len(order) == 0 {
		return err
	}
	current, err := loadLeadRows(ctx, tx, order)
	if err != nil {
		return err
	}
	rows := make([]leadRow, 0, len(order))
	for _, id := range order {
		l, ok := current[id]
		if !ok {
			l = domain.Lead{ID: id}
		}
		for _, e := range byID[id] {
			if e.Version <= l.Version {
				continue // already in the row (a replayed batch)
			}
			l.Apply(e.Event, e.Meta)
		}
		if l.Version == 0 || l.OrgID == "" {
			continue // no creation seen: nothing to project
		}
		r, err := rowFromLead(l)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil
	}
	payload, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO leads (`+leadColumns+`)
		SELECT `+leadColumns+` FROM json_to_recordset($1::json) AS x(
			id text, org_id text, name text, email text, phone text, company text, title text, source text,
			status text, owner_id text, custom_fields jsonb, converted_deal_id text,
			created_at timestamptz, updated_at timestamptz, version bigint, deleted_at timestamptz)
		ON CONFLICT (id) DO UPDATE SET
			name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone, company = EXCLUDED.company,
			title = EXCLUDED.title, source = EXCLUDED.source, status = EXCLUDED.status, owner_id = EXCLUDED.owner_id,
			custom_fields = EXCLUDED.custom_fields, converted_deal_id = EXCLUDED.converted_deal_id,
			updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, deleted_at = EXCLUDED.deleted_at
		WHERE leads.version < EXCLUDED.version`, string(payload))
	if err != nil {
		return fmt.Errorf("upsert leads: %w", err)
	}
	return nil
}

func loadLeadRows(ctx context.Context, tx *sqlx.Tx, ids []string) (map[string]domain.Lead, error) {
	var rows []leadRow
	if err := tx.SelectContext(ctx, &rows, `SELECT `+leadColumns+` FROM leads WHERE id = ANY($1)`, ids); err != nil {
		return nil, fmt.Errorf("load leads: %w", err)
	}
	out := make(map[string]domain.Lead, len(rows))
	for _, r := range rows {
		l, err := r.lead()
		if err != nil {
			return nil, err
		}
		out[r.ID] = l
	}
	return out, nil
}

// decodeKind decodes the events of one record kind, grouped by record id in
// first-seen order.
func decodeKind(events []eventstore.RecordedEvent, kind envelope.Kind) (map[string][]envelope.Envelope, []string, error) {
	byID := map[string][]envelope.Envelope{}
	var order []string
	for _, r := range events {
		k, id, ok := envelope.ParseStream(r.StreamID)
		if !ok || k != kind {
			continue
		}
		e, err := envelope.Decode(r)
		if err != nil {
			return nil, nil, err
		}
		if _, seen := byID[id]; !seen {
			order = append(order, id)
		}
		byID[id] = append(byID[id], e)
	}
	return byID, order, nil
}
