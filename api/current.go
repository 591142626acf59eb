package api

import (
	"context"
	"errors"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// A single-record read reflects every write acknowledged before it
// arrived, from any instance, on every backend, without a consistency
// token: the query table may lag the event store by a batch, and a client
// that just changed or deleted a record (or whose colleague did) must not
// read the old one back.
//
// So the row is read as usual, and then the record's stream is probed past
// the row's version: one indexed read of at most one event. When nothing
// is there, the row is current and is the answer. When something is (the
// projection has not applied the newest events yet), the answer is folded
// from the stream itself, which is the source of truth; that happens only
// in the moments right after a write. Lists, search and the event feed
// stay eventually consistent (X-Consistency-Token).

// currentRecord returns the record from row, or from its stream when the
// stream has moved past it. row's error is domain.ErrNotFound for a record
// the table does not show (never created, another organization's, deleted,
// or not projected yet): then the stream decides from its first event.
func currentRecord[R any](ctx context.Context, streams eventstore.StreamReader, stream string, row R, rowVersion int64, rowErr error,
	fold func(envs []envelope.Envelope) (R, error), orgID string) (R, error) {
	var zero R
	if rowErr != nil && !errors.Is(rowErr, domain.ErrNotFound) {
		return zero, rowErr
	}
	from := int64(1)
	if rowErr == nil {
		from = rowVersion + 1
	}
	tail, err := streams.ReadStream(ctx, stream, from, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && len(tail) == 0) {
		return row, rowErr
	}
	if err != nil {
		return zero, err
	}
	envs, err := envelope.ReadRecord(ctx, streams, stream, orgID)
	if err != nil {
		return zero, err
	}
	return fold(envs)
}
