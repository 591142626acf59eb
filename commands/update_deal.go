package commands

import (
	"context"
	"errors"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
)

// UpdateDeal applies a JSON-merge-patch style change; see UpdateLead.
func (h *Handler) UpdateDeal(ctx context.Context, m Meta, id string, patch domain.DealPatch, ifMatch *int64) (Result[domain.Deal], error) {
	if patch.LeadID.Set && !patch.LeadID.Null {
		if _, err := h.loadLead(ctx, m, patch.LeadID.Value); errors.Is(err, domain.ErrNotFound) {
			return Result[domain.Deal]{}, &domain.ValidationError{Details: []domain.FieldError{{
				Field: "lead_id", Code: "not_found", Message: "no lead with this id exists",
			}}}
		} else if err != nil {
			return Result[domain.Deal]{}, err
		}
	}
	defer h.lockStream(envelope.DealStream(id))()
	return retry(ctx, ifMatch, func() (Result[domain.Deal], error) {
		deal, err := h.loadDeal(ctx, m, id)
		if err != nil {
			return Result[domain.Deal]{}, err
		}
		if err := checkIfMatch(ifMatch, deal.Version); err != nil {
			return Result[domain.Deal]{}, err
		}
		evs, err := deal.Update(patch)
		if err != nil || len(evs) == 0 {
			return Result[domain.Deal]{Record: deal}, err
		}
		pos, err := h.appendDeal(ctx, m, &deal, deal.Version, evs)
		return Result[domain.Deal]{Record: deal, Position: pos}, err
	})
}
