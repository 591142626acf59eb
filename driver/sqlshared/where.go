package sqlshared

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
)

// Where builds the WHERE clause of a list query with numbered placeholders
// ("$1" binds by number on both databases). The drivers differ only in how
// a case-insensitive match is spelled (ILike) and how its pattern is
// written (Fold).
type Where struct {
	// ILike is "column matches the pattern ?" ignoring case.
	ILike func(col string) string
	// Fold, when set, is applied to the searched text before it becomes a
	// pattern.
	Fold  func(string) string
	conds []string
	args  []any
}

// Args are the arguments bound to the placeholders.
func (w *Where) Args() []any { return w.args }

// Add appends a condition; each "?" in it binds the next argument.
func (w *Where) Add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

// Like adds "any of cols contains q, ignoring case".
func (w *Where) Like(q string, cols ...string) {
	if w.Fold != nil {
		q = w.Fold(q)
	}
	p := "%" + escapeLike(q) + "%"
	ors := make([]string, len(cols))
	args := make([]any, len(cols))
	for i, c := range cols {
		ors[i], args[i] = w.ILike(c), p
	}
	if len(cols) == 1 {
		w.Add(ors[0], args...)
		return
	}
	w.Add("("+strings.Join(ors, " OR ")+")", args...)
}

// Keyset continues after the cursor. Both databases compare the row value
// (created_at, id) lexicographically; SQLite's created_at is integer
// microseconds, and the driver binds the cursor's time the same way.
func (w *Where) Keyset(after *driver.Keyset) {
	if after != nil {
		w.Add("(created_at, id) < (?, ?)", after.CreatedAt, after.ID)
	}
}

// Query is the list statement, newest first, at most limit rows.
func (w *Where) Query(selectFrom string, limit int) string {
	return fmt.Sprintf("%s WHERE %s ORDER BY created_at DESC, id DESC LIMIT %d", selectFrom, strings.Join(w.conds, " AND "), limit)
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Equal adds "col = v" unless v is empty (no filter).
func (w *Where) Equal(col, v string) {
	if v != "" {
		w.Add(col+" = ?", v)
	}
}

// live starts the conditions every page has: one organization's rows that
// are not deleted.
func (w *Where) live(orgID string) {
	w.Add("org_id = ?", orgID)
	w.Add("deleted_at IS NULL")
}

// since adds "created after t" unless t is nil, and the cursor.
func (w *Where) since(t *time.Time, after *driver.Keyset) {
	if t != nil {
		w.Add("created_at > ?", *t)
	}
	w.Keyset(after)
}

// LeadConds adds the conditions of a leads page.
func (w *Where) LeadConds(l driver.LeadList) {
	w.live(l.OrgID)
	w.Equal("status", l.Status)
	w.Equal("owner_id", l.OwnerID)
	if l.Q != "" {
		w.Like(l.Q, "name", "email", "company")
	}
	w.since(l.CreatedAfter, l.After)
}

// DealConds adds the conditions of a deals page.
func (w *Where) DealConds(l driver.DealList) {
	w.live(l.OrgID)
	w.Equal("stage", l.Stage)
	w.Equal("owner_id", l.OwnerID)
	w.Equal("lead_id", l.LeadID)
	if l.Q != "" {
		w.Like(l.Q, "name")
	}
	w.since(l.CreatedAfter, l.After)
}

// List runs the page query of w on selectFrom.
func List[T any](ctx context.Context, e driver.Executor, w *Where, selectFrom string, limit int) ([]T, error) {
	var rows []T
	err := sqlx.SelectContext(ctx, e, &rows, w.Query(selectFrom, limit), w.Args()...)
	return rows, err
}
