package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
)

// DeleteLead deletes a lead. Deletion is terminal; the stream and so the
// history stay.
func (h *Handler) DeleteLead(ctx context.Context, m Meta, id string, ifMatch *int64) (Result[domain.Lead], error) {
	return remove(ctx, h, leads, m, id, ifMatch)
}
