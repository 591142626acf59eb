package commands

import (
	"context"
	"errors"

	"github.com/salesos/salesos/domain"
)

// CreateDeal creates a deal with a new id (derived from the request's
// idempotency key when it has one: see Idempotency). A lead_id must name a
// lead of the caller's organization that still exists.
func (h *Handler) CreateDeal(ctx context.Context, m Meta, in domain.DealInput) (Result[domain.Deal], error) {
	id := h.recordID(ctx, m.OrgID, deals.idPrefix)
	evs, err := domain.CreateDeal(id, m.OrgID, in)
	if err != nil {
		return Result[domain.Deal]{}, err
	}
	if i, ok := idempotencyOf(ctx); ok && i.Recover {
		// The first attempt may have created the deal; its lead may be
		// gone since, which must not turn the replay into a 422.
		if res, err := createdBefore(ctx, h, deals, m, id, len(evs)); err == nil || !errors.Is(err, ErrConflict) {
			return res, err
		}
	}
	if in.LeadID != nil {
		if err := h.checkLeadExists(ctx, m, *in.LeadID); err != nil {
			return Result[domain.Deal]{}, err
		}
	}
	return create(ctx, h, deals, m, id, evs)
}

// checkLeadExists is nil when leadID names a lead of the caller's
// organization that is not deleted, and a validation error on lead_id when
// it does not.
func (h *Handler) checkLeadExists(ctx context.Context, m Meta, leadID string) error {
	_, err := h.loadLead(ctx, m, leadID)
	if errors.Is(err, domain.ErrNotFound) {
		return &domain.ValidationError{Details: []domain.FieldError{{
			Field: "lead_id", Code: "not_found", Message: "no lead with this id exists",
		}}}
	}
	return err
}
