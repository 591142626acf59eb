package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
)

// DeleteDeal deletes a deal; its history stays readable.
func (h *Handler) DeleteDeal(ctx context.Context, m Meta, id string, ifMatch *int64) (Result[domain.Deal], error) {
	defer h.lockStream(envelope.DealStream(id))()
	return retry(ctx, ifMatch, func() (Result[domain.Deal], error) {
		deal, err := h.loadDeal(ctx, m, id)
		if err != nil {
			return Result[domain.Deal]{}, err
		}
		if err := checkIfMatch(ifMatch, deal.Version); err != nil {
			return Result[domain.Deal]{}, err
		}
		evs, err := deal.Delete()
		if err != nil {
			return Result[domain.Deal]{}, err
		}
		pos, err := h.appendDeal(ctx, m, &deal, deal.Version, evs)
		return Result[domain.Deal]{Record: deal, Position: pos}, err
	})
}
