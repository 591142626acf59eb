package sqlitedriver

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/sqlshared"
	"github.com/salesos/salesos/eventstore/sqlite"
)

// SQLite stores a deal's amount and date as text already
// (migrations/sqlite/0002_read_models.sql), so deals are selected by their
// plain columns.
const (
	leadColumns = sqlshared.LeadColumns
	dealColumns = sqlshared.DealColumns
)

// inIDs is the condition "id is one of $1": SQLite has no arrays, so the
// list travels as a JSON array (jsonList) read with json_each.
const inIDs = `id IN (SELECT value FROM json_each($1))`

func jsonList(ids []string) (any, error) { return jsonArray(ids) }

// jsonArray is list as a JSON array, never null: the form lists take as
// parameters and in TEXT columns here.
func jsonArray(list []string) (string, error) {
	if list == nil {
		list = []string{}
	}
	raw, err := json.Marshal(list)
	return string(raw), err
}

// LoadLeads implements driver.LeadRows.
func (Driver) LoadLeads(ctx context.Context, e driver.Executor, ids []string) ([]driver.LeadRow, error) {
	return sqlshared.Load[driver.LeadRow](ctx, e, "load leads", `SELECT `+leadColumns+` FROM leads WHERE `+inIDs, ids, jsonList)
}

// EncodeLead implements driver.LeadRows: the row's values as the
// statements bind them (leadValues).
func (Driver) EncodeLead(r *driver.LeadRow) any { return leadValues(r) }

// UpsertLeads implements driver.LeadRows with a prepared statement per row
// (see writer.go): a loaded row has only its changed columns updated.
func (Driver) UpsertLeads(ctx context.Context, tx *sqlx.Tx, writes []driver.LeadWrite) error {
	if len(writes) == 0 {
		return nil
	}
	w := newLiteWriter(liteLeads, tx)
	defer w.close()
	for i := range writes {
		var before []any
		if writes[i].Before != nil {
			before = leadValues(writes[i].Before)
		}
		after, ok := writes[i].Encoded.([]any)
		if !ok {
			after = leadValues(&writes[i].After)
		}
		w.add(before, after)
	}
	return w.flush(ctx)
}

// ListLeads implements driver.LeadRows.
func (Driver) ListLeads(ctx context.Context, e driver.Executor, l driver.LeadList) ([]driver.LeadRow, error) {
	w := where()
	w.LeadConds(l)
	return sqlshared.List[driver.LeadRow](ctx, e, w, `SELECT `+leadColumns+` FROM leads`, l.Limit)
}

// where builds list queries. SQLite has no ILIKE, and its LIKE ignores the
// case of ASCII letters only: both sides go through the fold function the
// SQLite package registers (the pattern is lower-cased before it is
// escaped), and the escape character is spelled out.
func where() *sqlshared.Where {
	return &sqlshared.Where{
		ILike: func(col string) string { return sqlite.FoldFunc + `(` + col + `) LIKE ? ESCAPE '\'` },
		Fold:  strings.ToLower,
	}
}

// LoadDeals implements driver.DealRows.
func (Driver) LoadDeals(ctx context.Context, e driver.Executor, ids []string) ([]driver.DealRow, error) {
	return sqlshared.Load[driver.DealRow](ctx, e, "load deals", `SELECT `+dealColumns+` FROM deals WHERE `+inIDs, ids, jsonList)
}

// UpsertDeals implements driver.DealRows; see UpsertLeads.
func (Driver) UpsertDeals(ctx context.Context, tx *sqlx.Tx, writes []driver.DealWrite) error {
	if len(writes) == 0 {
		return nil
	}
	w := newLiteWriter(liteDeals, tx)
	defer w.close()
	for i := range writes {
		var before []any
		if writes[i].Before != nil {
			before = dealValues(writes[i].Before)
		}
		w.add(before, dealValues(&writes[i].After))
	}
	return w.flush(ctx)
}

// GetDeal implements driver.DealRows.
func (Driver) GetDeal(ctx context.Context, e driver.Executor, id string) (driver.DealRow, error) {
	return sqlshared.Get[driver.DealRow](ctx, e, `SELECT `+dealColumns+` FROM deals WHERE id = $1`, id)
}

// ListDeals implements driver.DealRows.
func (Driver) ListDeals(ctx context.Context, e driver.Executor, l driver.DealList) ([]driver.DealRow, error) {
	w := where()
	w.DealConds(l)
	return sqlshared.List[driver.DealRow](ctx, e, w, `SELECT `+dealColumns+` FROM deals`, l.Limit)
}
