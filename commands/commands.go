// Package commands turns API requests into events: each command loads the
// record's stream, asks the domain what happens, and appends the resulting
// events with the version it loaded as the expected version.
//
// Concurrency: when the caller sent If-Match, a different current version is
// ErrPreconditionFailed and a concurrent write that lands between load and
// append is too, since the caller asked for exactly that version. Without
// If-Match, a concurrent write makes the command reload and decide again, up
// to MaxAttempts times, so no acknowledged change is ever lost or applied on
// stale state.
package commands

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// MaxAttempts bounds the reload-and-retry loop on concurrent writes from
// other instances (writes from this instance to one record are serialized
// and never collide).
const MaxAttempts = 10

// ErrPreconditionFailed: the record is not at the version the caller named.
var ErrPreconditionFailed = errors.New("precondition failed")

// ErrConflict: concurrent writers kept winning for MaxAttempts rounds.
var ErrConflict = errors.New("too many concurrent changes")

// Appender is what commands need from the event store.
type Appender interface {
	Append(ctx context.Context, stream string, expectedVersion int64, events ...eventstore.EventData) (eventstore.AppendResult, error)
	ReadStream(ctx context.Context, stream string, fromVersion int64, limit int) ([]eventstore.RecordedEvent, error)
}

// Meta says who issues a command and on behalf of which organization.
type Meta struct {
	OrgID         string
	Actor         domain.Actor
	RequestID     string
	CorrelationID string // defaults to RequestID
	CausationID   string
}

// Handler runs commands. The zero value is not usable; set Store.
type Handler struct {
	Store Appender
	// Now is the clock; defaults to time.Now. Times are kept in UTC at
	// microsecond precision, the precision PostgreSQL stores, so a record
	// reads back exactly as the write answered it.
	Now func() time.Time
	// NewID returns a new record id with the given prefix; defaults to
	// "<prefix>_" + a time-ordered UUID without dashes.
	NewID func(prefix string) string

	// streamLocks serialize load-decide-append per record within this
	// process: concurrent writers of one record queue instead of failing
	// each other's expected version.
	streamLocks [64]sync.Mutex
}

// lockStream takes the stripe lock of a stream and returns its unlock.
func (h *Handler) lockStream(stream string) func() {
	f := fnv.New32a()
	f.Write([]byte(stream))
	m := &h.streamLocks[f.Sum32()%uint32(len(h.streamLocks))]
	m.Lock()
	return m.Unlock
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC().Truncate(time.Microsecond)
	}
	return time.Now().UTC().Truncate(time.Microsecond)
}

func (h *Handler) newID(prefix string) string {
	if h.NewID != nil {
		return h.NewID(prefix)
	}
	return prefix + "_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
}

// Result of a write: the state computed from the events just appended, and
// the global position of the last one (the consistency token).
type Result[T any] struct {
	Record   T
	Position uint64
}

// encode wraps domain events bound for stream with metadata. All events of
// one command share a timestamp and causation, each gets its own id
// (derived from the request's idempotency key when it has one, see
// Idempotency).
func (h *Handler) encode(ctx context.Context, stream string, evs []domain.Event, m Meta, at time.Time) ([]eventstore.EventData, []domain.Metadata, error) {
	out := make([]eventstore.EventData, 0, len(evs))
	metas := make([]domain.Metadata, 0, len(evs))
	corr := m.CorrelationID
	if corr == "" {
		corr = m.RequestID
	}
	idem, _ := idempotencyOf(ctx)
	for i, e := range evs {
		md := domain.Metadata{
			EventID:        eventID(ctx, m.OrgID, stream, i),
			OccurredAt:     at,
			OrgID:          m.OrgID,
			Actor:          m.Actor,
			RequestID:      m.RequestID,
			CorrelationID:  corr,
			CausationID:    m.CausationID,
			IdempotencyKey: idem.Key,
		}
		d, err := envelope.Encode(e, md)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, d)
		metas = append(metas, md)
	}
	return out, metas, nil
}

// loadStream reads the caller's record stream (see envelope.ReadRecord).
func loadStream(ctx context.Context, s Appender, stream, orgID string) ([]domain.Recorded, error) {
	envs, err := envelope.ReadRecord(ctx, s, stream, orgID)
	if err != nil {
		return nil, err
	}
	return envelope.Recorded(envs), nil
}

// retry runs attempt until it succeeds, fails for another reason than a
// version conflict, or MaxAttempts conflicts happened, waiting a short,
// growing, jittered pause between rounds so colliding writers spread out.
// With an If-Match version a conflict is final: the caller asked for that
// exact version.
func retry[T any](ctx context.Context, ifMatch *int64, attempt func() (T, error)) (T, error) {
	var zero T
	pause := time.Millisecond
	for i := 0; i < MaxAttempts; i++ {
		res, err := attempt()
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			return zero, err
		}
		if ifMatch != nil {
			return zero, fmt.Errorf("%w: %v", ErrPreconditionFailed, err)
		}
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, 100*time.Millisecond)
	}
	return zero, ErrConflict
}

func checkIfMatch(ifMatch *int64, current int64) error {
	if ifMatch != nil && *ifMatch != current {
		return fmt.Errorf("%w: record is at version %d, If-Match named %d", ErrPreconditionFailed, current, *ifMatch)
	}
	return nil
}
