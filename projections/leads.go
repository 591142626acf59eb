package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/internal/dialect"
)

// Leads maintains the leads table.
type Leads struct{}

// LeadsName is the leads projection's checkpoint key.
const LeadsName = "leads"

// Name implements Projection.
func (Leads) Name() string { return LeadsName }

// Reset implements Projection.
func (Leads) Reset(ctx context.Context, tx *sqlx.Tx) error {
	return emptyTable(ctx, tx, "leads")
}

// emptyTable deletes every row of a query table: TRUNCATE on PostgreSQL,
// DELETE on SQLite (which has no TRUNCATE; a DELETE without WHERE is its
// fast path).
func emptyTable(ctx context.Context, tx *sqlx.Tx, table string) error {
	q := `TRUNCATE ` + table
	if dialect.IsSQLite(tx) {
		q = `DELETE FROM ` + table
	}
	_, err := tx.ExecContext(ctx, q)
	return err
}

// leadRow is a leads row.
type leadRow struct {
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
	CustomFields    jsonDoc    `db:"custom_fields" json:"custom_fields"`
	ConvertedDealID *string    `db:"converted_deal_id" json:"converted_deal_id"`
	CreatedAt       time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at" json:"updated_at"`
	Version         int64      `db:"version" json:"version"`
	DeletedAt       *time.Time `db:"deleted_at" json:"deleted_at"`
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
	if err := json.Unmarshal([]byte(r.CustomFields), &l.CustomFields); err != nil {
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
// the current rows, then write every touched lead: with one statement on
// PostgreSQL, with a prepared statement per row on SQLite (see sqlite.go).
func (l Leads) Apply(ctx context.Context, tx *sqlx.Tx, events []eventstore.RecordedEvent) error {
	prepared, err := l.Prepare(events)
	if err != nil {
		return err
	}
	return l.ApplyPrepared(ctx, tx, prepared, 0)
}

// Prepare implements Preparer: decode the batch's lead events, and fold the
// leads created in the batch already: their rows do not depend on the
// table, so this work leaves the transaction.
func (Leads) Prepare(events []eventstore.RecordedEvent) (any, error) {
	d, err := decodeKind(events, envelope.KindLead)
	if err != nil {
		return nil, err
	}
	p := preparedLeads{decoded: d, born: map[string]bornLead{}}
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
		p.born[id] = bornLead{row: r, values: r.values()}
	}
	return p, nil
}

// preparedLeads is a batch as Prepare leaves it.
type preparedLeads struct {
	decoded
	// born holds the final row of each lead created in the batch.
	born map[string]bornLead
}

type bornLead struct {
	row    leadRow
	values []any // row.values(), for SQLite
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
func (Leads) ApplyPrepared(ctx context.Context, tx *sqlx.Tx, prepared any, after uint64) error {
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
	current, err := loadLeadRows(ctx, tx, existing)
	if err != nil {
		return err
	}
	// On SQLite rows go through a liteWriter (see sqlite.go), which compares
	// each loaded row with its new state.
	var lite *liteWriter
	if dialect.IsSQLite(tx) {
		lite = newLiteWriter(liteLeads, tx)
		defer lite.close()
	}
	rows := make([]leadRow, 0, len(order))
	for _, id := range order {
		if b, ok := p.born[id]; ok && byID[id][0].Version == 1 {
			// Created in this batch and none of its events applied yet:
			// Prepare folded it.
			if lite != nil {
				lite.add(nil, b.values)
			} else {
				rows = append(rows, b.row)
			}
			continue
		}
		stored, ok := current[id]
		l := domain.Lead{ID: id}
		if ok {
			if l, err = stored.lead(); err != nil {
				return err
			}
		}
		l = foldLead(l, byID[id])
		if l.Version == 0 || l.OrgID == "" {
			continue // no creation seen: nothing to project
		}
		r, err := rowFromLead(l)
		if err != nil {
			return err
		}
		if lite != nil {
			var before []any
			if ok {
				before = stored.values()
			}
			lite.add(before, r.values())
			continue
		}
		rows = append(rows, r)
	}
	if lite != nil {
		return lite.flush(ctx)
	}
	if len(rows) == 0 {
		return nil
	}
	// One statement for the whole batch. Columns travel as parallel arrays:
	// PostgreSQL unnests arrays far faster than it parses a JSON document
	// of the same rows.
	n := len(rows)
	var (
		ids, orgs, names, statuses, customs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		emails, phones, companies, titles   = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		sources, owners, converted          = make([]*string, n), make([]*string, n), make([]*string, n)
		created, updated                    = make([]time.Time, n), make([]time.Time, n)
		deleted                             = make([]*time.Time, n)
		versions                            = make([]int64, n)
	)
	for i, r := range rows {
		ids[i], orgs[i], names[i], statuses[i], customs[i] = r.ID, r.OrgID, r.Name, r.Status, string(r.CustomFields)
		emails[i], phones[i], companies[i], titles[i] = r.Email, r.Phone, r.Company, r.Title
		sources[i], owners[i], converted[i] = r.Source, r.OwnerID, r.ConvertedDealID
		created[i], updated[i], deleted[i], versions[i] = r.CreatedAt, r.UpdatedAt, r.DeletedAt, r.Version
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO leads (`+leadColumns+`)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::text[], $11::jsonb[], $12::text[], $13::timestamptz[], $14::timestamptz[], $15::bigint[], $16::timestamptz[])
		ON CONFLICT (id) DO UPDATE SET
			name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone, company = EXCLUDED.company,
			title = EXCLUDED.title, source = EXCLUDED.source, status = EXCLUDED.status, owner_id = EXCLUDED.owner_id,
			custom_fields = EXCLUDED.custom_fields, converted_deal_id = EXCLUDED.converted_deal_id,
			updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, deleted_at = EXCLUDED.deleted_at
		WHERE leads.version < EXCLUDED.version`,
		ids, orgs, names, emails, phones, companies, titles, sources, statuses, owners, customs, converted,
		created, updated, versions, deleted)
	if err != nil {
		return fmt.Errorf("upsert leads: %w", err)
	}
	return nil
}

// loadLeadRows reads the stored rows of ids, by id.
func loadLeadRows(ctx context.Context, tx *sqlx.Tx, ids []string) (map[string]leadRow, error) {
	if len(ids) == 0 {
		return map[string]leadRow{}, nil
	}
	var rows []leadRow
	q, arg, err := dialect.InList(tx, "id", 1, ids)
	if err != nil {
		return nil, err
	}
	if err := tx.SelectContext(ctx, &rows, `SELECT `+leadColumns+` FROM leads WHERE `+q, arg); err != nil {
		return nil, fmt.Errorf("load leads: %w", err)
	}
	out := make(map[string]leadRow, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out, nil
}

// jsonDoc is a JSON document column (custom_fields): pgx hands jsonb over as
// bytes, SQLite a TEXT column as a string, and database/sql would not store
// a string into a json.RawMessage.
type jsonDoc json.RawMessage

// Scan implements sql.Scanner.
func (j *jsonDoc) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		*j = bytes.Clone(v) // the driver may reuse its buffer
	case string:
		*j = jsonDoc(v)
	case nil:
		*j = nil
	default:
		return fmt.Errorf("json column: cannot scan %T", src)
	}
	return nil
}

// MarshalJSON writes the document as it is, like json.RawMessage.
func (j jsonDoc) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
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
