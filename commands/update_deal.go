package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
)

// UpdateDeal applies a JSON-merge-patch style change; see UpdateLead. A
// lead_id it sets must name a lead of the caller's organization that still
// exists.
func (h *Handler) UpdateDeal(ctx context.Context, m Meta, id string, patch domain.DealPatch, ifMatch *int64) (Result[domain.Deal], error) {
	if patch.LeadID.Set && !patch.LeadID.Null {
		if err := h.checkLeadExists(ctx, m, patch.LeadID.Value); err != nil {
			return Result[domain.Deal]{}, err
		}
	}
	return update(ctx, h, deals, m, id, patch, ifMatch)
}
