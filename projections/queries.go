package projections

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/eventstore/sqlite"
	"github.com/salesos/salesos/internal/dialect"
)

// Queries reads the query tables. Every query names the organization.
// DB may be a read-only handle (on SQLite, the read pool).
type Queries struct{ DB *sqlx.DB }

// Cursor is a position in a list ordered newest first: (created_at, id) of
// the last item returned. Keyset positions stay valid while records are
// inserted concurrently: nothing is skipped or repeated.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// ErrBadCursor is returned for a cursor this server did not issue.
var ErrBadCursor = errors.New("invalid cursor")

// Encode returns the opaque form handed to clients.
func (c Cursor) Encode() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixNano(), 10) + "|" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses a cursor from Encode.
func DecodeCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	ns, id, ok := strings.Cut(string(raw), "|")
	// The id goes into a query: one no database can store (NUL, invalid
	// UTF-8) is not one this server issued, and would make PostgreSQL fail.
	if !ok || id == "" || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return Cursor{}, ErrBadCursor
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{CreatedAt: time.Unix(0, n).UTC(), ID: id}, nil
}

// Page is one page of a list.
type Page[T any] struct {
	Data       []T
	HasMore    bool
	NextCursor *Cursor
}

// LeadFilter selects leads; zero fields do not filter.
type LeadFilter struct {
	Status       string
	OwnerID      string
	Q            string // substring of name, email or company, case-insensitive
	CreatedAfter *time.Time
	Limit        int
	After        *Cursor
}

// GetLead returns a live lead of the organization, or domain.ErrNotFound.
//
// The statement names the primary key alone and the organization and
// deletion are checked here: with "org_id = $1" in the WHERE clause,
// PostgreSQL's cached generic plan for a table it has no statistics of
// yet can pick an org_id index and walk every lead of the organization.
func (q Queries) GetLead(ctx context.Context, orgID, id string) (domain.Lead, error) {
	var r leadRow
	err := q.DB.GetContext(ctx, &r, `SELECT `+leadColumns+` FROM leads WHERE id = $1`, id)
	if err == nil && (r.OrgID != orgID || r.DeletedAt != nil) {
		err = sql.ErrNoRows
	}
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Lead{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Lead{}, err
	}
	return r.lead()
}

// ListLeads lists live leads newest first.
func (q Queries) ListLeads(ctx context.Context, orgID string, f LeadFilter) (Page[domain.Lead], error) {
	w := where{lite: dialect.IsSQLite(q.DB)}
	w.add("org_id = ?", orgID)
	w.add("deleted_at IS NULL")
	if f.Status != "" {
		w.add("status = ?", f.Status)
	}
	if f.OwnerID != "" {
		w.add("owner_id = ?", f.OwnerID)
	}
	if f.Q != "" {
		p := w.likePattern(f.Q)
		w.add("("+w.ilike("name")+" OR "+w.ilike("email")+" OR "+w.ilike("company")+")", p, p, p)
	}
	if f.CreatedAfter != nil {
		w.add("created_at > ?", *f.CreatedAfter)
	}
	w.keyset(f.After)
	var rows []leadRow
	if err := q.DB.SelectContext(ctx, &rows, w.query(`SELECT `+leadColumns+` FROM leads`, f.Limit), w.args...); err != nil {
		return Page[domain.Lead]{}, err
	}
	out := Page[domain.Lead]{Data: make([]domain.Lead, 0, len(rows))}
	for i, r := range rows {
		if i == f.Limit {
			out.HasMore = true
			break
		}
		l, err := r.lead()
		if err != nil {
			return out, err
		}
		out.Data = append(out.Data, l)
	}
	if out.HasMore {
		last := out.Data[len(out.Data)-1]
		out.NextCursor = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return out, nil
}

// DealFilter selects deals; zero fields do not filter.
type DealFilter struct {
	Stage        string
	OwnerID      string
	LeadID       string
	Q            string // substring of the name, case-insensitive
	CreatedAfter *time.Time
	Limit        int
	After        *Cursor
}

// GetDeal returns a live deal of the organization, or domain.ErrNotFound.
// Like GetLead, the statement is a primary-key probe.
func (q Queries) GetDeal(ctx context.Context, orgID, id string) (domain.Deal, error) {
	var r dealRow
	err := q.DB.GetContext(ctx, &r, `SELECT `+dealSelectFor(q.DB)+` FROM deals WHERE id = $1`, id)
	if err == nil && (r.OrgID != orgID || r.DeletedAt != nil) {
		err = sql.ErrNoRows
	}
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Deal{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Deal{}, err
	}
	return r.deal()
}

// ListDeals lists live deals newest first.
func (q Queries) ListDeals(ctx context.Context, orgID string, f DealFilter) (Page[domain.Deal], error) {
	w := where{lite: dialect.IsSQLite(q.DB)}
	w.add("org_id = ?", orgID)
	w.add("deleted_at IS NULL")
	if f.Stage != "" {
		w.add("stage = ?", f.Stage)
	}
	if f.OwnerID != "" {
		w.add("owner_id = ?", f.OwnerID)
	}
	if f.LeadID != "" {
		w.add("lead_id = ?", f.LeadID)
	}
	if f.Q != "" {
		w.add(w.ilike("name"), w.likePattern(f.Q))
	}
	if f.CreatedAfter != nil {
		w.add("created_at > ?", *f.CreatedAfter)
	}
	w.keyset(f.After)
	var rows []dealRow
	if err := q.DB.SelectContext(ctx, &rows, w.query(`SELECT `+dealSelectFor(q.DB)+` FROM deals`, f.Limit), w.args...); err != nil {
		return Page[domain.Deal]{}, err
	}
	out := Page[domain.Deal]{Data: make([]domain.Deal, 0, len(rows))}
	for i, r := range rows {
		if i == f.Limit {
			out.HasMore = true
			break
		}
		d, err := r.deal()
		if err != nil {
			return out, err
		}
		out.Data = append(out.Data, d)
	}
	if out.HasMore {
		last := out.Data[len(out.Data)-1]
		out.NextCursor = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return out, nil
}

// where builds a WHERE clause with numbered placeholders ("$1" binds by
// number on both databases).
type where struct {
	lite  bool // SQLite
	conds []string
	args  []any
}

// ilike is a case-insensitive "column matches the pattern ?" (escaped with
// escapeLike). SQLite has no ILIKE, and its LIKE ignores the case of ASCII
// letters only: both sides go through the fold function the SQLite package
// registers (the pattern is folded by likePattern), and the escape
// character is spelled out.
func (w *where) ilike(col string) string {
	if w.lite {
		return sqlite.FoldFunc + `(` + col + `) LIKE ? ESCAPE '\'`
	}
	return col + " ILIKE ?"
}

// likePattern is the pattern for ilike: q anywhere in the value.
func (w *where) likePattern(q string) string {
	if w.lite {
		q = strings.ToLower(q)
	}
	return "%" + escapeLike(q) + "%"
}

func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

// keyset continues after the cursor. Both databases compare the row value
// (created_at, id) lexicographically; SQLite's created_at is integer
// microseconds, and the driver binds the cursor's time the same way.
func (w *where) keyset(after *Cursor) {
	if after != nil {
		w.add("(created_at, id) < (?, ?)", after.CreatedAt, after.ID)
	}
}

// query fetches one row more than the limit to learn whether more exist.
func (w *where) query(selectFrom string, limit int) string {
	return fmt.Sprintf("%s WHERE %s ORDER BY created_at DESC, id DESC LIMIT %d", selectFrom, strings.Join(w.conds, " AND "), limit+1)
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
