// Package eventstore defines the one seam between SalesOS and the place its
// events live. Every backend (PostgreSQL, and later SQLite and EventStoreDB)
// implements Store and must pass the shared suite in eventstore/eventstoretest.
//
// The guarantees every backend gives:
//   - Appends to one stream are atomic and checked against an expected
//     version (optimistic concurrency); stream versions start at 1 and have
//     no holes.
//   - Every stored event has a global position. Positions grow in commit
//     order: a reader that has seen position p will never later find a newly
//     committed event below p. This is what lets subscribers keep a single
//     number as their checkpoint.
//   - Subscriptions deliver every event after their start position exactly
//     once, in position order.
//   - Event ids are EventStoreDB's idempotency rule: appending events whose
//     ids are stored, at the place they are stored, answers with the stored
//     result and writes nothing; the SQL backends refuse any other clash
//     with ErrDuplicateEventID (see ReplayOrDuplicate).
//   - An append is never reported as failed when it committed: a commit
//     whose answer was lost is settled by looking its event ids up first.
//     Outages (see IsUnavailable) fail with ErrUnavailable.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Expected-version sentinels for Append. Any other non-negative value is the
// exact version the stream must be at (0 is the same as NoStream).
const (
	// Any skips the concurrency check.
	Any int64 = -2
	// NoStream requires that the stream has no events yet.
	NoStream int64 = -1
)

// ErrWrongExpectedVersion is matched (errors.Is) by every concurrency
// failure; the concrete error is a *VersionConflictError.
var ErrWrongExpectedVersion = errors.New("wrong expected version")

// ErrStreamNotFound is returned when reading a stream that has no events.
var ErrStreamNotFound = errors.New("stream not found")

// ErrInvalidAppend is returned for appends the store refuses outright
// (no events, empty stream name, event data that is not JSON...).
var ErrInvalidAppend = errors.New("invalid append")

// VersionConflictError tells which version the stream really had.
type VersionConflictError struct {
	Stream   string
	Expected int64
	Actual   int64 // 0 when the stream does not exist
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("stream %q: expected version %d, actual %d", e.Stream, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongExpectedVersion) work.
func (e *VersionConflictError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// EventData is an event about to be appended. Data and Metadata must be JSON
// objects; the store keeps their bytes as given.
type EventData struct {
	ID       string // a UUID chosen by the writer
	Type     string // the event's wire name, e.g. "lead.created"
	Data     []byte
	Metadata []byte
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	ID         string
	StreamID   string
	Type       string
	Version    int64  // 1-based position inside its stream
	Position   uint64 // global position, > 0, grows in commit order
	Data       []byte
	Metadata   []byte
	RecordedAt time.Time
}

// AppendResult describes a successful append.
type AppendResult struct {
	// Version is the stream's version after the append.
	Version int64
	// Position is the global position of the last appended event. Readers
	// use it as a consistency token: once a projection has passed it, the
	// write is visible there.
	Position uint64
}

// Store is the event store. Implementations are safe for concurrent use.
type Store interface {
	// Append atomically adds events to the end of a stream if the stream is
	// at expectedVersion (see Any and NoStream).
	Append(ctx context.Context, stream string, expectedVersion int64, events ...EventData) (AppendResult, error)
	// ReadStream returns up to limit events of a stream starting at
	// fromVersion (inclusive, >= 1), in version order. A stream without
	// events is ErrStreamNotFound.
	ReadStream(ctx context.Context, stream string, fromVersion int64, limit int) ([]RecordedEvent, error)
	// ReadAll returns up to limit events with a global position greater
	// than after, in position order.
	ReadAll(ctx context.Context, after uint64, limit int) ([]RecordedEvent, error)
	// Subscribe starts a catch-up subscription after the given position.
	Subscribe(ctx context.Context, after uint64, opts SubscribeOptions) (Subscription, error)
	// Head is the position of the last committed event (0 when empty).
	Head(ctx context.Context) (uint64, error)
	// Ping reports whether the store can be reached (for readiness).
	Ping(ctx context.Context) error
	// Close releases the store's resources. Pending appends fail.
	Close() error
}

// SubscribeOptions tunes a subscription.
type SubscribeOptions struct {
	// BatchSize caps the number of events one Next call returns.
	// Default 512.
	BatchSize int
}

// DefaultBatchSize is the subscription batch size when none is given.
const DefaultBatchSize = 512

// Subscription is a catch-up subscription: it first reads what is already
// stored, then waits for new events.
type Subscription interface {
	// Next blocks until at least one event past the previously returned
	// ones exists (or ctx ends), then returns up to BatchSize of them in
	// position order. Every event is returned exactly once.
	Next(ctx context.Context) ([]RecordedEvent, error)
	// Close ends the subscription.
	Close() error
}

// StreamReader is the part of Store that reads single streams.
type StreamReader interface {
	ReadStream(ctx context.Context, stream string, fromVersion int64, limit int) ([]RecordedEvent, error)
}

// StreamHeadReader is implemented by stores that can tell a stream's last
// version in one cheap read (the SQL stores: an index-only lookup). The
// read side uses it to check that a query-table row is current; with a
// store that lacks it, it reads the stream instead (ReadStream).
type StreamHeadReader interface {
	// StreamHead returns the version of the stream's last event, 0 when
	// the stream has none.
	StreamHead(ctx context.Context, stream string) (int64, error)
}

// ReadFullStream reads every event of a stream, page by page.
func ReadFullStream(ctx context.Context, s StreamReader, stream string) ([]RecordedEvent, error) {
	const page = 1000
	var all []RecordedEvent
	from := int64(1)
	for {
		evs, err := s.ReadStream(ctx, stream, from, page)
		if err != nil {
			if errors.Is(err, ErrStreamNotFound) && len(all) > 0 {
				return all, nil
			}
			return nil, err
		}
		all = append(all, evs...)
		if len(evs) < page {
			return all, nil
		}
		from = evs[len(evs)-1].Version + 1
	}
}
