package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// CreateLead creates a lead with a new id (derived from the request's
// idempotency key when it has one: see Idempotency).
func (h *Handler) CreateLead(ctx context.Context, m Meta, in domain.LeadInput) (Result[domain.Lead], error) {
	id := h.recordID(ctx, m.OrgID, "lead")
	evs, err := domain.CreateLead(id, m.OrgID, in)
	if err != nil {
		return Result[domain.Lead]{}, err
	}
	lead := domain.Lead{ID: id}
	pos, err := h.appendLead(ctx, m, &lead, eventstore.NoStream, evs)
	if i, ok := idempotencyOf(ctx); ok && (err == nil && i.Recover || alreadyWritten(ctx, err)) {
		return h.createdLead(ctx, m, id, len(evs))
	}
	return Result[domain.Lead]{Record: lead, Position: pos}, err
}

// createdLead answers a keyed create from what is stored: the lead as its
// creating events (the first n of the stream, with this request's ids) left
// it, and the position of the last of them.
func (h *Handler) createdLead(ctx context.Context, m Meta, id string, n int) (Result[domain.Lead], error) {
	stream := envelope.LeadStream(id)
	recs, pos, ok, err := created(ctx, h.Store, stream, m.OrgID, []string{eventID(ctx, m.OrgID, stream, n-1)})
	if err != nil {
		return Result[domain.Lead]{}, err
	}
	if !ok {
		return Result[domain.Lead]{}, ErrConflict
	}
	lead, _ := domain.FoldLead(id, recs)
	return Result[domain.Lead]{Record: lead, Position: pos}, nil
}

// appendLead appends lead events at the expected version and folds them
// into lead, so the caller answers with the state the events produce.
func (h *Handler) appendLead(ctx context.Context, m Meta, lead *domain.Lead, expected int64, evs []domain.Event) (uint64, error) {
	stream := envelope.LeadStream(lead.ID)
	data, metas, err := h.encode(ctx, stream, evs, m, h.now())
	if err != nil {
		return 0, err
	}
	res, err := h.Store.Append(ctx, stream, expected, data...)
	if err != nil {
		return 0, err
	}
	for i, e := range evs {
		lead.Apply(e, metas[i])
	}
	return res.Position, nil
}
