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
	"github.com/salesos/salesos/internal/dialect"
)

// Deals maintains the deals table.
type Deals struct{}

// DealsName is the deals projection's checkpoint key.
const DealsName = "deals"

// Name implements Projection.
func (Deals) Name() string { return DealsName }

// Reset implements Projection.
func (Deals) Reset(ctx context.Context, tx *sqlx.Tx) error {
	return emptyTable(ctx, tx, "deals")
}

// dealRow is a deals row. Amount travels as a JSON number (json.Number) so
// it is never rounded through a float on the way to NUMERIC; SQLite keeps
// the decimal text itself (Amount).
type dealRow struct {
	ID                string       `db:"id" json:"id"`
	OrgID             string       `db:"org_id" json:"org_id"`
	Name              string       `db:"name" json:"name"`
	Amount            *string      `db:"amount" json:"-"`
	AmountJSON        *json.Number `db:"-" json:"amount"`
	Currency          *string      `db:"currency" json:"currency"`
	Stage             string       `db:"stage" json:"stage"`
	LeadID            *string      `db:"lead_id" json:"lead_id"`
	OwnerID           *string      `db:"owner_id" json:"owner_id"`
	ExpectedCloseDate *string      `db:"expected_close_date" json:"expected_close_date"`
	LostReason        *string      `db:"lost_reason" json:"lost_reason"`
	CustomFields      jsonDoc      `db:"custom_fields" json:"custom_fields"`
	CreatedAt         time.Time    `db:"created_at" json:"created_at"`
	UpdatedAt         time.Time    `db:"updated_at" json:"updated_at"`
	ClosedAt          *time.Time   `db:"closed_at" json:"closed_at"`
	Version           int64        `db:"version" json:"version"`
	DeletedAt         *time.Time   `db:"deleted_at" json:"deleted_at"`
}

// Columns as selected: numeric and date come back as text so they are parsed
// by the domain's exact types.
const dealSelect = `id, org_id, name, amount::text AS amount, currency, stage, lead_id, owner_id,
	to_char(expected_close_date, 'YYYY-MM-DD') AS expected_close_date, lost_reason, custom_fields,
	created_at, updated_at, closed_at, version, deleted_at`

const dealColumns = `id, org_id, name, amount, currency, stage, lead_id, owner_id, expected_close_date, lost_reason, custom_fields, created_at, updated_at, closed_at, version, deleted_at`

// dealSelectFor is dealSelect for db's dialect: SQLite stores the amount
// and the date as text already (migrations/sqlite/0002_read_models.sql).
func dealSelectFor(db dialect.DriverNamer) string {
	if dialect.IsSQLite(db) {
		return dealColumns
	}
	return dealSelect
}

func (r dealRow) deal() (domain.Deal, error) {
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

func rowFromDeal(d domain.Deal) (dealRow, error) {
	cf := []byte(`{}`)
	if d.CustomFields != nil {
		var err error
		if cf, err = json.Marshal(d.CustomFields); err != nil {
			return dealRow{}, err
		}
	}
	r := dealRow{
		ID: d.ID, OrgID: d.OrgID, Name: d.Name, Currency: d.Currency, Stage: string(d.Stage),
		LeadID: d.LeadID, OwnerID: d.OwnerID, LostReason: d.LostReason, CustomFields: cf,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, ClosedAt: d.ClosedAt, Version: d.Version, DeletedAt: d.DeletedAt,
	}
	if d.Amount != nil {
		a := d.Amount.String()
		n := json.Number(a)
		r.Amount, r.AmountJSON = &a, &n
	}
	if d.ExpectedCloseDate != nil {
		s := d.ExpectedCloseDate.String()
		r.ExpectedCloseDate = &s
	}
	return r, nil
}

// Apply implements Projection; see Leads.Apply.
func (Deals) Apply(ctx context.Context, tx *sqlx.Tx, events []eventstore.RecordedEvent) error {
	d, err := decodeKind(events, envelope.KindDeal)
	if err != nil || len(d.order) == 0 {
		return err
	}
	byID, order := d.byID, d.order
	existing := make([]string, 0, len(order))
	for _, id := range order {
		if byID[id][0].Version > 1 {
			existing = append(existing, id)
		}
	}
	current, err := loadDealRows(ctx, tx, existing)
	if err != nil {
		return err
	}
	var lite *liteWriter // see Leads.ApplyPrepared
	if dialect.IsSQLite(tx) {
		lite = newLiteWriter(liteDeals, tx)
		defer lite.close()
	}
	rows := make([]dealRow, 0, len(order))
	for _, id := range order {
		stored, ok := current[id]
		d := domain.Deal{ID: id}
		if ok {
			if d, err = stored.deal(); err != nil {
				return err
			}
		}
		for _, e := range byID[id] {
			if e.Version <= d.Version {
				continue
			}
			d.Apply(e.Event, e.Meta)
		}
		if d.Version == 0 || d.OrgID == "" {
			continue
		}
		r, err := rowFromDeal(d)
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

// loadDealRows reads the stored rows of ids, by id.
func loadDealRows(ctx context.Context, tx *sqlx.Tx, ids []string) (map[string]dealRow, error) {
	if len(ids) == 0 {
		return map[string]dealRow{}, nil
	}
	var rows []dealRow
	q, arg, err := dialect.InList(tx, "id", 1, ids)
	if err != nil {
		return nil, err
	}
	if err := tx.SelectContext(ctx, &rows, `SELECT `+dealSelectFor(tx)+` FROM deals WHERE `+q, arg); err != nil {
		return nil, fmt.Errorf("load deals: %w", err)
	}
	out := make(map[string]dealRow, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out, nil
}
