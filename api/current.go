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
// the row's version: on the SQL stores one index-only read of the stream's
// last version, elsewhere a read of at most one event. When nothing
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
	known := int64(0) // the version the table shows
	if rowErr == nil {
		known = rowVersion
	}
	newer, err := streamPast(ctx, streams, stream, known)
	if err != nil {
		return zero, err
	}
	if !newer {
		return row, rowErr
	}
	envs, err := envelope.ReadRecord(ctx, streams, stream, orgID)
	if err != nil {
		return zero, err
	}
	return fold(envs)
}

// streamPast reports whether the stream has an event after version known.
// The SQL stores answer from their index alone (StreamHead); otherwise the
// first event after known is read.
func streamPast(ctx context.Context, streams eventstore.StreamReader, stream string, known int64) (bool, error) {
	if hr, ok := streams.(eventstore.StreamHeadReader); ok {
		head, err := hr.StreamHead(ctx, stream)
		return head > known, err
	}
	tail, err := streams.ReadStream(ctx, stream, known+1, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return false, nil
	}
	return len(tail) > 0, err
}
