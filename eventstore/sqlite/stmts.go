// The prepared statements: the writer's on the write handle, the readers'
// on the read pool, each prepared once because parsing costs more than
// running them on SQLite.

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// insertChunk is how many events one multi-row INSERT carries (8 bound
// values each, far under SQLite's limit of 32766 variables). Larger batches
// use it repeatedly and finish with the one-row statement.
const insertChunk = 32

const insertPrefix = `INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, recorded_at) VALUES `

func insertSQL(rows int) string {
	var b strings.Builder
	b.Grow(len(insertPrefix) + rows*18)
	b.WriteString(insertPrefix)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// The writer's statements. Prepared once on the write handle: parsing SQL
// costs more than running these on SQLite.
const (
	// One correlated max() per stream: SQLite answers each from the
	// (stream_id, version) index in O(log n). (A GROUP BY over the streams
	// would walk every version of every stream in the batch.)
	sqlVersions = `SELECT s.value, (SELECT max(version) FROM events WHERE stream_id = s.value) FROM json_each(?) AS s`
	sqlHead     = `SELECT COALESCE(max(position), 0) FROM events`
	sqlLookup   = `SELECT event_id, stream_id, version, position FROM events WHERE event_id IN (SELECT value FROM json_each(?))`
)

type writeStmts struct {
	versions, head, lookup, insert1, insertN *sql.Stmt
}

// readStmts are prepared on the read handle (database/sql prepares each on
// every pooled connection as it is first used there).
type readStmts struct {
	readStream, streamExists, streamHead, readAll, head, lookup *sql.Stmt
}

func prepareRead(ctx context.Context, db *sqlx.DB) (*readStmts, error) {
	var r readStmts
	var err error
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&r.readStream, selectEvents + ` WHERE stream_id = ? AND version >= ? ORDER BY version LIMIT ?`},
		{&r.streamExists, `SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = ?)`},
		{&r.streamHead, `SELECT COALESCE(max(version), 0) FROM events WHERE stream_id = ?`},
		{&r.readAll, selectEvents + ` WHERE position > ? ORDER BY position LIMIT ?`},
		{&r.head, sqlHead},
		{&r.lookup, sqlLookup},
	} {
		if *p.dst, err = db.PrepareContext(ctx, p.sql); err != nil {
			r.close()
			return nil, fmt.Errorf("sqlite event store: prepare: %w", err)
		}
	}
	return &r, nil
}

func (r *readStmts) close() {
	for _, st := range []*sql.Stmt{r.readStream, r.streamExists, r.streamHead, r.readAll, r.head, r.lookup} {
		if st != nil {
			st.Close()
		}
	}
}

func prepareWrite(ctx context.Context, db *sqlx.DB) (*writeStmts, error) {
	var w writeStmts
	var err error
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.versions, sqlVersions},
		{&w.head, sqlHead},
		{&w.lookup, sqlLookup},
		{&w.insert1, insertSQL(1)},
		{&w.insertN, insertSQL(insertChunk)},
	} {
		if *p.dst, err = db.PrepareContext(ctx, p.sql); err != nil {
			w.close()
			return nil, fmt.Errorf("sqlite event store: prepare: %w", err)
		}
	}
	return &w, nil
}

func (w *writeStmts) close() {
	for _, st := range []*sql.Stmt{w.versions, w.head, w.lookup, w.insert1, w.insertN} {
		if st != nil {
			st.Close()
		}
	}
}
