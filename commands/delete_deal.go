package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
)

// DeleteDeal deletes a deal; its history stays readable.
func (h *Handler) DeleteDeal(ctx context.Context, m Meta, id string, ifMatch *int64) (Result[domain.Deal], error) {
	return remove(ctx, h, deals, m, id, ifMatch)
}
