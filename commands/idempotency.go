package commands

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// Idempotency is what a command knows about the request's Idempotency-Key.
//
// A creating command run under a key derives every id it writes — the new
// record's id and its events' ids — from (organization, key, request
// fingerprint) instead of drawing them at random, and records the key in
// the events' metadata. Running the same request again therefore writes the
// same events at the same place, which the event store answers with the
// stored result (its event-id rule) instead of a second record, and the
// command answers with what the first run created. That is how a retry that
// takes over an abandoned key (Recover) learns the outcome of an attempt
// whose process died after its events committed: never a duplicate, always
// the id the first attempt made.
type Idempotency struct {
	Key string
	// Fingerprint is the request's method, path and body (see
	// idempotency.Fingerprint): a different request under the same key
	// derives different ids.
	Fingerprint string
	// Recover: an earlier attempt of this request may have written
	// already. The command reads back what is stored and answers from it.
	Recover bool
}

type idemCtxKey struct{}

// WithIdempotency returns ctx carrying the request's idempotency key, for
// the commands the request runs.
func WithIdempotency(ctx context.Context, i Idempotency) context.Context {
	return context.WithValue(ctx, idemCtxKey{}, i)
}

func idempotencyOf(ctx context.Context) (Idempotency, bool) {
	i, ok := ctx.Value(idemCtxKey{}).(Idempotency)
	return i, ok && i.Key != ""
}

// idNamespace is the UUIDv5 namespace of derived ids. Changing it changes
// every derived id: retries of requests in flight during a deploy would
// then create duplicates.
var idNamespace = uuid.MustParse("5b7e4a52-8a5e-4c57-9f55-0b1e2f0c8d11")

func (i Idempotency) derive(orgID, what string) uuid.UUID {
	return uuid.NewSHA1(idNamespace, []byte(orgID+"\x00"+i.Key+"\x00"+i.Fingerprint+"\x00"+what))
}

// recordID is the id of the record a command creates: derived under a key,
// new otherwise.
func (h *Handler) recordID(ctx context.Context, orgID, prefix string) string {
	if id, ok := KeyedID(ctx, orgID, prefix); ok {
		return id
	}
	return h.newID(prefix)
}

// KeyedID is the id a request running under an idempotency key gives the
// record it creates (prefix_<32 hex>, the shape of new ids), also for
// records that are not event-sourced (webhook subscriptions): ok is false
// without a key.
func KeyedID(ctx context.Context, orgID, prefix string) (id string, ok bool) {
	i, ok := idempotencyOf(ctx)
	if !ok {
		return "", false
	}
	return prefix + "_" + strings.ReplaceAll(i.derive(orgID, "record:"+prefix).String(), "-", ""), true
}

// eventID is the id of the n-th event a command appends to stream.
func eventID(ctx context.Context, orgID, stream string, n int) string {
	if i, ok := idempotencyOf(ctx); ok {
		return i.derive(orgID, "event:"+stream+":"+strconv.Itoa(n)).String()
	}
	return uuid.Must(uuid.NewV7()).String()
}

// alreadyWritten reports whether err says that an earlier run of the same
// keyed request stored these events (the stream exists, or the ids are
// stored elsewhere than this run would put them).
func alreadyWritten(ctx context.Context, err error) bool {
	if _, ok := idempotencyOf(ctx); !ok {
		return false
	}
	return errors.Is(err, eventstore.ErrWrongExpectedVersion) || errors.Is(err, eventstore.ErrDuplicateEventID)
}

// created reads back the events the keyed request stored in stream: from the
// first event carrying the request's event ids through the last, so the
// answer is the record as the first run left it, not as later writes
// changed it. ok is false when the stream holds no such events.
func created(ctx context.Context, s Appender, stream, orgID string, ids []string) (recs []domain.Recorded, pos uint64, ok bool, err error) {
	envs, err := envelope.ReadRecord(ctx, s, stream, orgID)
	if errors.Is(err, domain.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	last := ids[len(ids)-1]
	for i, e := range envs {
		if e.Meta.EventID == last {
			return envelope.Recorded(envs[:i+1]), e.Position, true, nil
		}
	}
	return nil, 0, false, nil
}
