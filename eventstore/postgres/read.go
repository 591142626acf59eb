// Reads: a stream, $all and its head.

package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/salesos/salesos/eventstore"
)

const selectEvents = `SELECT event_id::text, stream_id, version, position, type, data::text, metadata::text, recorded_at FROM events`

func scanEvents(rows *sql.Rows, capHint int) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	out := make([]eventstore.RecordedEvent, 0, capHint)
	for rows.Next() {
		var e eventstore.RecordedEvent
		var pos int64
		var data, meta string
		if err := rows.Scan(&e.ID, &e.StreamID, &e.Version, &pos, &e.Type, &data, &meta, &e.RecordedAt); err != nil {
			return nil, err
		}
		e.Position = uint64(pos)
		e.Data = []byte(data)
		e.Metadata = []byte(meta)
		e.RecordedAt = e.RecordedAt.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, fromVersion int64, limit int) ([]eventstore.RecordedEvent, error) {
	if fromVersion < 1 {
		fromVersion = 1
	}
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, selectEvents+` WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, stream, fromVersion, limit)
	if err != nil {
		return nil, err
	}
	evs, err := scanEvents(rows, 16)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		var exists bool
		if err := s.db.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = $1)`, stream); err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("%w: %s", eventstore.ErrStreamNotFound, stream)
		}
	}
	return evs, nil
}

// StreamHead implements eventstore.StreamHeadReader, from the
// (stream_id, version) index alone.
func (s *Store) StreamHead(ctx context.Context, stream string) (int64, error) {
	var v int64
	err := s.db.GetContext(ctx, &v, `SELECT COALESCE(max(version), 0) FROM events WHERE stream_id = $1`, stream)
	return v, err
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	rows, err := s.db.QueryContext(ctx, selectEvents+` WHERE position > $1 ORDER BY position LIMIT $2`, int64(after), limit)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows, limit)
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	var h int64
	err := s.db.GetContext(ctx, &h, `SELECT COALESCE(max(position), 0) FROM events`)
	return uint64(h), err
}
