package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
)

// CreateLead creates a lead with a new id (derived from the request's
// idempotency key when it has one: see Idempotency).
func (h *Handler) CreateLead(ctx context.Context, m Meta, in domain.LeadInput) (Result[domain.Lead], error) {
	id := h.recordID(ctx, m.OrgID, leads.idPrefix)
	evs, err := domain.CreateLead(id, m.OrgID, in)
	if err != nil {
		return Result[domain.Lead]{}, err
	}
	return create(ctx, h, leads, m, id, evs)
}
