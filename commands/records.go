package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// state is what the generic commands need of a record's folded state,
// implemented by *domain.Lead and *domain.Deal. The rules that differ
// between the kinds (what a patch may change, stages, conversion) stay in
// their domain types; everything around them (load, check the version,
// append, fold the new events in, answer a keyed create from what is
// stored) is written once here.
type state[R any, P any] interface {
	*R
	Apply(domain.Event, domain.Metadata)
	Update(P) ([]domain.Event, error)
	Delete() ([]domain.Event, error)
	StreamVersion() int64
}

// kind describes one record kind to the generic commands.
type kind[R any, P any, S state[R, P]] struct {
	// idPrefix starts every id of the kind ("lead" → lead_…).
	idPrefix string
	stream   func(id string) string
	fold     func(id string, events []domain.Recorded) (R, error)
	// empty is the state before the first event of record id.
	empty func(id string) R
}

var (
	leads = kind[domain.Lead, domain.LeadPatch, *domain.Lead]{
		idPrefix: "lead", stream: envelope.LeadStream, fold: domain.FoldLead,
		empty: func(id string) domain.Lead { return domain.Lead{ID: id} },
	}
	deals = kind[domain.Deal, domain.DealPatch, *domain.Deal]{
		idPrefix: "deal", stream: envelope.DealStream, fold: domain.FoldDeal,
		empty: func(id string) domain.Deal { return domain.Deal{ID: id} },
	}
)

// load folds the caller's record. Deleted records and other
// organizations' records are domain.ErrNotFound.
func load[R any, P any, S state[R, P]](ctx context.Context, h *Handler, k kind[R, P, S], m Meta, id string) (R, error) {
	recs, err := loadStream(ctx, h.Store, k.stream(id), m.OrgID)
	if err != nil {
		var zero R
		return zero, err
	}
	return k.fold(id, recs)
}

// appendTo appends the record's events at the expected version and folds
// them into rec, so the caller answers with the state the events produce.
func appendTo[R any, P any, S state[R, P]](ctx context.Context, h *Handler, k kind[R, P, S], m Meta, id string, rec S, expected int64, evs []domain.Event) (uint64, error) {
	stream := k.stream(id)
	data, metas, err := h.encode(ctx, stream, evs, m, h.now())
	if err != nil {
		return 0, err
	}
	res, err := h.Store.Append(ctx, stream, expected, data...)
	if err != nil {
		return 0, err
	}
	for i, e := range evs {
		rec.Apply(e, metas[i])
	}
	return res.Position, nil
}

// create appends the creating events of a new record id. Under an
// idempotency key a retry, or a create whose events turn out to be stored
// already, answers from what is stored (see Idempotency).
func create[R any, P any, S state[R, P]](ctx context.Context, h *Handler, k kind[R, P, S], m Meta, id string, evs []domain.Event) (Result[R], error) {
	rec := k.empty(id)
	pos, err := appendTo(ctx, h, k, m, id, S(&rec), eventstore.NoStream, evs)
	if i, ok := idempotencyOf(ctx); ok && (err == nil && i.Recover || alreadyWritten(ctx, err)) {
		return createdBefore(ctx, h, k, m, id, len(evs))
	}
	return Result[R]{Record: rec, Position: pos}, err
}

// createdBefore answers a keyed create from what is stored: the record as
// its creating events (the first n of the stream, with this request's ids)
// left it, and the position of the last of them; ErrConflict when they are
// not there.
func createdBefore[R any, P any, S state[R, P]](ctx context.Context, h *Handler, k kind[R, P, S], m Meta, id string, n int) (Result[R], error) {
	stream := k.stream(id)
	recs, pos, ok, err := created(ctx, h.Store, stream, m.OrgID, []string{eventID(ctx, m.OrgID, stream, n-1)})
	if err != nil {
		return Result[R]{}, err
	}
	if !ok {
		return Result[R]{}, ErrConflict
	}
	rec, _ := k.fold(id, recs)
	return Result[R]{Record: rec, Position: pos}, nil
}

// change loads the record, checks If-Match, asks decide for the events and
// appends them, reloading and deciding again on a concurrent write (see
// retry). No events means nothing changed: the current state comes back
// with Position 0.
func change[R any, P any, S state[R, P]](ctx context.Context, h *Handler, k kind[R, P, S], m Meta, id string, ifMatch *int64, decide func(S) ([]domain.Event, error)) (Result[R], error) {
	defer h.lockStream(k.stream(id))()
	return retry(ctx, ifMatch, func() (Result[R], error) {
		rec, err := load(ctx, h, k, m, id)
		if err != nil {
			return Result[R]{}, err
		}
		s := S(&rec)
		if err := checkIfMatch(ifMatch, s.StreamVersion()); err != nil {
			return Result[R]{}, err
		}
		evs, err := decide(s)
		if err != nil || len(evs) == 0 {
			return Result[R]{Record: rec}, err
		}
		pos, err := appendTo(ctx, h, k, m, id, s, s.StreamVersion(), evs)
		return Result[R]{Record: rec, Position: pos}, err
	})
}

// update applies a JSON-merge-patch style change.
func update[R any, P any, S state[R, P]](ctx context.Context, h *Handler, k kind[R, P, S], m Meta, id string, patch P, ifMatch *int64) (Result[R], error) {
	return change(ctx, h, k, m, id, ifMatch, func(s S) ([]domain.Event, error) { return s.Update(patch) })
}

// remove deletes a record. Deletion is terminal; the stream, and so the
// history, stay.
func remove[R any, P any, S state[R, P]](ctx context.Context, h *Handler, k kind[R, P, S], m Meta, id string, ifMatch *int64) (Result[R], error) {
	return change(ctx, h, k, m, id, ifMatch, func(s S) ([]domain.Event, error) { return s.Delete() })
}
