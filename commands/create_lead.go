package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// CreateLead creates a lead with a new id.
func (h *Handler) CreateLead(ctx context.Context, m Meta, in domain.LeadInput) (Result[domain.Lead], error) {
	id := h.newID("lead")
	evs, err := domain.CreateLead(id, m.OrgID, in)
	if err != nil {
		return Result[domain.Lead]{}, err
	}
	lead := domain.Lead{ID: id}
	pos, err := h.appendLead(ctx, m, &lead, eventstore.NoStream, evs)
	return Result[domain.Lead]{Record: lead, Position: pos}, err
}

// appendLead appends lead events at the expected version and folds them
// into lead, so the caller answers with the state the events produce.
func (h *Handler) appendLead(ctx context.Context, m Meta, lead *domain.Lead, expected int64, evs []domain.Event) (uint64, error) {
	data, metas, err := h.encode(evs, m, h.now())
	if err != nil {
		return 0, err
	}
	res, err := h.Store.Append(ctx, envelope.LeadStream(lead.ID), expected, data...)
	if err != nil {
		return 0, err
	}
	for i, e := range evs {
		lead.Apply(e, metas[i])
	}
	return res.Position, nil
}
