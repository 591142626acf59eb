// Package paging is the keyset pagination every list of the API shares: the
// opaque cursor handed to clients and the page it continues. It is its own
// package so that a list outside the query tables (webhook subscriptions
// and deliveries) pages the same way without depending on projections.
package paging

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

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

// Of makes a page of rows read with one row more than the page holds
// (limit+1): that extra row's presence says there is a next page, which
// continues after the page's last item (its position from cursor).
func Of[T any](rows []T, limit int, cursor func(T) Cursor) Page[T] {
	p := Page[T]{Data: rows}
	if len(rows) > limit {
		p.Data, p.HasMore = rows[:limit], true
		c := cursor(rows[limit-1])
		p.NextCursor = &c
	}
	return p
}
