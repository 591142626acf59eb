package sqlitedriver

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/driver/sqlshared"
)

// The write path of the query tables. The projection folds a batch in
// memory; then each touched row is written with a prepared statement
// inside the batch's transaction. SQLite runs in-process, so a statement per
// row costs a function call, not a round trip.
//
// What costs on SQLite is pages: every page a transaction dirties is written
// whole to the write-ahead log at commit, and again into the database file
// at the next checkpoint (see also migrations/sqlite/0002_read_models.sql).
// An upsert sets every column, and SQLite rewrites the entry of every index
// holding a column in the SET list (it goes by the list, not the values), so
// updating an old lead would dirty a random index page even when only its
// title changed. Rows that existed before the batch are loaded for the fold
// anyway, so they are written with an UPDATE of exactly the columns that
// changed; new rows, and rows not loaded, take the version-guarded upsert.

// liteTable is a query table as the SQLite writer sees it.
type liteTable struct {
	name    string
	columns []string // in the order of row values; columns[0] is "id"
	mutable []int    // columns an upsert may change (all but id, org_id, created_at)
	version int      // index of the "version" column
	owner   int      // index of the "owner_id" column
	upsert  string   // insert, or update when the stored version is older
}

func newLiteTable(name, columns string) *liteTable {
	t := &liteTable{name: name, version: -1}
	var params, sets []string
	for i, c := range strings.Split(columns, ",") {
		c = strings.TrimSpace(c)
		t.columns = append(t.columns, c)
		params = append(params, "$"+strconv.Itoa(i+1))
		switch c {
		case "id", "org_id", "created_at":
			continue
		case "version":
			t.version = i
		case "owner_id":
			t.owner = i
		}
		t.mutable = append(t.mutable, i)
		sets = append(sets, c+" = excluded."+c)
	}
	if t.columns[0] != "id" || t.columns[1] != "org_id" || t.version < 0 || t.owner <= 0 || len(t.columns) > 64 {
		panic("sqlitedriver: bad column list for " + name)
	}
	t.upsert = fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (id) DO UPDATE SET %s WHERE %s.version < excluded.version`,
		name, strings.Join(t.columns, ", "), strings.Join(params, ", "), strings.Join(sets, ", "), name)
	return t
}

var (
	liteLeads = newLiteTable("leads", sqlshared.LeadColumns)
	liteDeals = newLiteTable("deals", sqlshared.DealColumns)
)

// liteWriter writes rows of one table inside one transaction, preparing
// each statement shape once. Rows are queued by add and written by flush;
// close it before the transaction ends.
type liteWriter struct {
	t       *liteTable
	tx      *sqlx.Tx
	upsert  *sql.Stmt
	updates map[uint64]*sql.Stmt // by the set of changed columns
	fresh   [][]any              // rows to upsert
	changed []liteChange         // loaded rows to update
	args    []any
}

type liteChange struct {
	mask uint64
	row  []any
}

func newLiteWriter(t *liteTable, tx *sqlx.Tx) *liteWriter {
	return &liteWriter{t: t, tx: tx, updates: map[uint64]*sql.Stmt{}}
}

// add queues the row after. before is the row as loaded in this
// transaction, or nil when it was not loaded (a new row, or one being
// replayed): the whole row is then upserted, kept only if its version is
// newer.
func (w *liteWriter) add(before, after []any) {
	if before == nil {
		w.fresh = append(w.fresh, after)
		return
	}
	var mask uint64
	for _, i := range w.t.mutable {
		if !sameValue(before[i], after[i]) {
			mask |= 1 << i
		}
	}
	if mask&(1<<w.t.version) != 0 { // else no newer event: nothing to write
		w.changed = append(w.changed, liteChange{mask, after})
	}
}

// flush writes the queued rows in key order: new rows by (org_id,
// owner_id, id), updated rows by id. Sorted, the writes sweep each b-tree
// once instead of hopping between its pages, which matters when a batch
// touches more pages than SQLite's page cache holds.
func (w *liteWriter) flush(ctx context.Context) error {
	slices.SortFunc(w.fresh, func(a, b []any) int {
		for _, i := range [...]int{1, w.t.owner, 0} {
			if c := compareValue(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	slices.SortFunc(w.changed, func(a, b liteChange) int { return compareValue(a.row[0], b.row[0]) })
	if len(w.fresh) > 0 && w.upsert == nil {
		st, err := w.tx.PrepareContext(ctx, w.t.upsert)
		if err != nil {
			return err
		}
		w.upsert = st
	}
	for _, row := range w.fresh {
		if _, err := w.upsert.ExecContext(ctx, row...); err != nil {
			return fmt.Errorf("%s %v: %w", w.t.name, row[0], err)
		}
	}
	for _, c := range w.changed {
		st := w.updates[c.mask]
		if st == nil {
			var err error
			if st, err = w.tx.PrepareContext(ctx, w.t.update(c.mask)); err != nil {
				return err
			}
			w.updates[c.mask] = st
		}
		w.args = append(w.args[:0], c.row[0])
		for _, i := range w.t.mutable {
			if c.mask&(1<<i) != 0 {
				w.args = append(w.args, c.row[i])
			}
		}
		if _, err := st.ExecContext(ctx, w.args...); err != nil {
			return fmt.Errorf("%s %v: %w", w.t.name, c.row[0], err)
		}
	}
	w.fresh, w.changed = w.fresh[:0], w.changed[:0]
	return nil
}

// update is the statement setting the changed columns of row $1, guarded
// like the upsert: a stored row at the same or a newer version is kept.
func (t *liteTable) update(changed uint64) string {
	var sets []string
	guard := ""
	for _, i := range t.mutable {
		if changed&(1<<i) == 0 {
			continue
		}
		p := "$" + strconv.Itoa(len(sets)+2)
		sets = append(sets, t.columns[i]+" = "+p)
		if i == t.version {
			guard = p
		}
	}
	return fmt.Sprintf(`UPDATE %s SET %s WHERE id = $1 AND version < %s`, t.name, strings.Join(sets, ", "), guard)
}

func (w *liteWriter) close() {
	if w.upsert != nil {
		w.upsert.Close()
	}
	for _, st := range w.updates {
		st.Close()
	}
}

// compareValue orders two row values of one column: nil first, then
// strings by bytes (the only kinds sorted on).
func compareValue(a, b any) int {
	x, xok := a.(string)
	y, yok := b.(string)
	switch {
	case xok && yok:
		return strings.Compare(x, y)
	case xok:
		return 1
	case yok:
		return -1
	}
	return 0
}

// sameValue compares two row values (nil, string, int64 or time.Time).
func sameValue(a, b any) bool {
	if x, ok := a.(time.Time); ok {
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return a == b
}

func strOrNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}

// leadValues is the row in LeadColumns order, as liteWriter takes it.
func leadValues(r *driver.LeadRow) []any {
	return []any{r.ID, r.OrgID, r.Name, strOrNil(r.Email), strOrNil(r.Phone), strOrNil(r.Company), strOrNil(r.Title),
		strOrNil(r.Source), r.Status, strOrNil(r.OwnerID), string(r.CustomFields), strOrNil(r.ConvertedDealID),
		r.CreatedAt.UTC(), r.UpdatedAt.UTC(), r.Version, timeOrNil(r.DeletedAt)}
}

// dealValues is the row in DealColumns order: the amount as its exact
// decimal text, the date as YYYY-MM-DD.
func dealValues(r *driver.DealRow) []any {
	return []any{r.ID, r.OrgID, r.Name, strOrNil(r.Amount), strOrNil(r.Currency), r.Stage, strOrNil(r.LeadID),
		strOrNil(r.OwnerID), strOrNil(r.ExpectedCloseDate), strOrNil(r.LostReason), string(r.CustomFields),
		r.CreatedAt.UTC(), r.UpdatedAt.UTC(), timeOrNil(r.ClosedAt), r.Version, timeOrNil(r.DeletedAt)}
}
