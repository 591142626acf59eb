// Reads through the read pool: a stream, $all and its head.

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/salesos/salesos/eventstore"
)

const selectEvents = `SELECT event_id, stream_id, version, position, type, data, metadata, recorded_at FROM events`

func scanEvents(rows *sql.Rows, capHint int) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	out := make([]eventstore.RecordedEvent, 0, capHint)
	for rows.Next() {
		var e eventstore.RecordedEvent
		var pos int64
		var at string
		// data and metadata scan straight into []byte: one copy of the
		// driver's text, not a string and then a copy of it.
		if err := rows.Scan(&e.ID, &e.StreamID, &e.Version, &pos, &e.Type, &e.Data, &e.Metadata, &at); err != nil {
			return nil, err
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return nil, fmt.Errorf("event store: event at position %d: recorded_at %q: %w", pos, at, err)
		}
		e.Position = uint64(pos)
		e.RecordedAt = t.UTC()
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
	rows, err := s.reads.readStream.QueryContext(ctx, stream, fromVersion, limit)
	if err != nil {
		return nil, err
	}
	evs, err := scanEvents(rows, min(limit, 64))
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		var exists bool
		if err := s.reads.streamExists.QueryRowContext(ctx, stream).Scan(&exists); err != nil {
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
	err := s.reads.streamHead.QueryRowContext(ctx, stream).Scan(&v)
	return v, err
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	rows, err := s.reads.readAll.QueryContext(ctx, int64(after), limit)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows, min(limit, 1024))
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	var h int64
	err := s.reads.head.QueryRowContext(ctx).Scan(&h)
	return uint64(h), err
}
