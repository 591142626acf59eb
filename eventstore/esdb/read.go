// Reading: a stream, $all and its head, skipping the server's system
// events, and converting recorded events to ours.

package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/salesos/salesos/eventstore"
)

func isSystem(stream, eventType string) bool {
	return strings.HasPrefix(stream, "$") || strings.HasPrefix(eventType, "$")
}

func isNotFound(err error) bool {
	var e *esdbclient.Error
	return errors.As(err, &e) && e.Code() == esdbclient.ErrorCodeResourceNotFound
}

// maxPosition: positions are signed 64-bit on the server. Old servers
// (before v22) send "no position" (all ones) for events read from a stream.
const maxPosition = 1<<63 - 1

func convert(e *esdbclient.RecordedEvent) eventstore.RecordedEvent {
	meta := e.UserMetadata
	if len(meta) == 0 {
		meta = []byte("{}")
	}
	pos := e.Position.Commit
	if pos > maxPosition {
		pos = 0
	}
	return eventstore.RecordedEvent{
		ID:         e.EventID.String(),
		StreamID:   e.StreamID,
		Type:       e.EventType,
		Version:    int64(e.EventNumber) + 1,
		Position:   pos,
		Data:       e.Data,
		Metadata:   meta,
		RecordedAt: e.CreatedDate.UTC(),
	}
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, fromVersion int64, limit int) ([]eventstore.RecordedEvent, error) {
	if fromVersion < 1 {
		fromVersion = 1
	}
	if limit <= 0 {
		limit = 1000
	}
	evs, err := retry(s, ctx, "read stream", func(ctx context.Context, c *esdbclient.Client) ([]eventstore.RecordedEvent, error) {
		rs, err := c.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{
			Direction: esdbclient.Forwards,
			From:      esdbclient.Revision(uint64(fromVersion - 1)),
		}, uint64(limit))
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		out := make([]eventstore.RecordedEvent, 0, min(limit, 64))
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if isNotFound(err) {
				return nil, fmt.Errorf("%w: %s", eventstore.ErrStreamNotFound, stream)
			}
			if err != nil {
				return nil, err
			}
			if e := ev.OriginalEvent(); e != nil {
				out = append(out, convert(e))
			}
		}
	})
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, fmt.Errorf("eventstore/esdb: read stream %s: %w", stream, err)
	}
	return evs, err
}

func allFrom(after uint64) esdbclient.AllPosition {
	if after == 0 {
		return esdbclient.Start{}
	}
	return esdbclient.Position{Commit: after, Prepare: after}
}

// ReadAll implements eventstore.Store. $all reads are inclusive of their
// start, and carry system events, which are skipped; a page can therefore
// take several reads.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		limit = eventstore.DefaultBatchSize
	}
	evs, err := retry(s, ctx, "read $all", func(ctx context.Context, c *esdbclient.Client) ([]eventstore.RecordedEvent, error) {
		out := make([]eventstore.RecordedEvent, 0, min(limit, 512))
		from := allFrom(after)
		seen := after
		for {
			want := uint64(limit-len(out)) + 1 // +1: the start itself comes back
			rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Forwards, From: from}, want)
			if err != nil {
				return nil, err
			}
			var got uint64
			for len(out) < limit {
				ev, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					rs.Close()
					return nil, err
				}
				got++
				e := ev.OriginalEvent()
				if e == nil || e.Position.Commit <= seen {
					continue
				}
				seen = e.Position.Commit
				from = e.Position
				if !isSystem(e.StreamID, e.EventType) {
					out = append(out, convert(e))
				}
			}
			rs.Close()
			if len(out) >= limit || got < want {
				return out, nil
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore/esdb: read $all after %d: %w", after, err)
	}
	return evs, nil
}

// Head implements eventstore.Store: the position of the last event that
// is not a system event.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	const page = 64
	h, err := retry(s, ctx, "head", func(ctx context.Context, c *esdbclient.Client) (uint64, error) {
		var from esdbclient.AllPosition = esdbclient.End{}
		for {
			rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: from}, page)
			if err != nil {
				return 0, err
			}
			got := 0
			for {
				ev, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					rs.Close()
					return 0, err
				}
				got++
				e := ev.OriginalEvent()
				if e == nil {
					continue
				}
				if !isSystem(e.StreamID, e.EventType) {
					rs.Close()
					return e.Position.Commit, nil
				}
				from = e.Position // backwards reads exclude their start
			}
			rs.Close()
			if got < page {
				return 0, nil
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("eventstore/esdb: head: %w", err)
	}
	return h, nil
}
