package pgdriver

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/sqlshared"
)

// Columns of deals as selected: numeric and date come back as text so they
// are parsed by the domain's exact types.
const dealSelect = `id, org_id, name, amount::text AS amount, currency, stage, lead_id, owner_id,
	to_char(expected_close_date, 'YYYY-MM-DD') AS expected_close_date, lost_reason, custom_fields,
	created_at, updated_at, closed_at, version, deleted_at`

const (
	leadColumns = sqlshared.LeadColumns
	dealColumns = sqlshared.DealColumns
)

// LoadLeads implements driver.LeadRows.
func (Driver) LoadLeads(ctx context.Context, e driver.Executor, ids []string) ([]driver.LeadRow, error) {
	return sqlshared.Load[driver.LeadRow](ctx, e, "load leads", `SELECT `+leadColumns+` FROM leads WHERE id = ANY($1)`, ids, nil)
}

// EncodeLead implements driver.LeadRows: the arrays UpsertLeads binds are
// built in the transaction, there is nothing to do ahead.
func (Driver) EncodeLead(*driver.LeadRow) any { return nil }

// UpsertLeads implements driver.LeadRows with one statement for the whole
// batch. Columns travel as parallel arrays: PostgreSQL unnests arrays far
// faster than it parses a JSON document of the same rows.
func (Driver) UpsertLeads(ctx context.Context, tx *sqlx.Tx, writes []driver.LeadWrite) error {
	if len(writes) == 0 {
		return nil
	}
	n := len(writes)
	var (
		ids, orgs, names, statuses, customs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		emails, phones, companies, titles   = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		sources, owners, converted          = make([]*string, n), make([]*string, n), make([]*string, n)
		created, updated                    = make([]time.Time, n), make([]time.Time, n)
		deleted                             = make([]*time.Time, n)
		versions                            = make([]int64, n)
	)
	for i, w := range writes {
		r := &w.After
		ids[i], orgs[i], names[i], statuses[i], customs[i] = r.ID, r.OrgID, r.Name, r.Status, string(r.CustomFields)
		emails[i], phones[i], companies[i], titles[i] = r.Email, r.Phone, r.Company, r.Title
		sources[i], owners[i], converted[i] = r.Source, r.OwnerID, r.ConvertedDealID
		created[i], updated[i], deleted[i], versions[i] = r.CreatedAt, r.UpdatedAt, r.DeletedAt, r.Version
	}
	_, err := tx.ExecContext(ctx, `
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

// ListLeads implements driver.LeadRows.
func (Driver) ListLeads(ctx context.Context, e driver.Executor, l driver.LeadList) ([]driver.LeadRow, error) {
	w := where()
	w.LeadConds(l)
	return sqlshared.List[driver.LeadRow](ctx, e, w, `SELECT `+leadColumns+` FROM leads`, l.Limit)
}

func where() *sqlshared.Where {
	return &sqlshared.Where{ILike: func(col string) string { return col + " ILIKE ?" }}
}

// LoadDeals implements driver.DealRows.
func (Driver) LoadDeals(ctx context.Context, e driver.Executor, ids []string) ([]driver.DealRow, error) {
	return sqlshared.Load[driver.DealRow](ctx, e, "load deals", `SELECT `+dealSelect+` FROM deals WHERE id = ANY($1)`, ids, nil)
}

// dealJSON is a deal as json_to_recordset reads it. The amount travels as
// a JSON number (json.Number), so it is never rounded through a float on
// the way to NUMERIC.
type dealJSON struct {
	driver.DealRow
	Amount *json.Number `json:"amount"`
}

// UpsertDeals implements driver.DealRows with one statement for the whole
// batch, the rows as one JSON document.
func (Driver) UpsertDeals(ctx context.Context, tx *sqlx.Tx, writes []driver.DealWrite) error {
	if len(writes) == 0 {
		return nil
	}
	rows := make([]dealJSON, len(writes))
	for i, w := range writes {
		rows[i].DealRow = w.After
		if w.After.Amount != nil {
			n := json.Number(*w.After.Amount)
			rows[i].Amount = &n
		}
	}
	payload, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO deals (`+dealColumns+`)
		SELECT `+dealColumns+` FROM json_to_recordset($1::json) AS x(
			id text, org_id text, name text, amount numeric, currency text, stage text, lead_id text, owner_id text,
			expected_close_date date, lost_reason text, custom_fields jsonb,
			created_at timestamptz, updated_at timestamptz, closed_at timestamptz, version bigint, deleted_at timestamptz)
		ON CONFLICT (id) DO UPDATE SET
			name = EXCLUDED.name, amount = EXCLUDED.amount, currency = EXCLUDED.currency, stage = EXCLUDED.stage,
			lead_id = EXCLUDED.lead_id, owner_id = EXCLUDED.owner_id, expected_close_date = EXCLUDED.expected_close_date,
			lost_reason = EXCLUDED.lost_reason, custom_fields = EXCLUDED.custom_fields, updated_at = EXCLUDED.updated_at,
			closed_at = EXCLUDED.closed_at, version = EXCLUDED.version, deleted_at = EXCLUDED.deleted_at
		WHERE deals.version < EXCLUDED.version`, string(payload))
	if err != nil {
		return fmt.Errorf("upsert deals: %w", err)
	}
	return nil
}

// GetDeal implements driver.DealRows.
func (Driver) GetDeal(ctx context.Context, e driver.Executor, id string) (driver.DealRow, error) {
	return sqlshared.Get[driver.DealRow](ctx, e, `SELECT `+dealSelect+` FROM deals WHERE id = $1`, id)
}

// ListDeals implements driver.DealRows.
func (Driver) ListDeals(ctx context.Context, e driver.Executor, l driver.DealList) ([]driver.DealRow, error) {
	w := where()
	w.DealConds(l)
	return sqlshared.List[driver.DealRow](ctx, e, w, `SELECT `+dealSelect+` FROM deals`, l.Limit)
}
