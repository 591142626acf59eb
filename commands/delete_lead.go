package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
)

// DeleteLead deletes a lead. Deletion is terminal; the stream and so the
// history stay.
func (h *Handler) DeleteLead(ctx context.Context, m Meta, id string, ifMatch *int64) (Result[domain.Lead], error) {
	defer h.lockStream(envelope.LeadStream(id))()
	return retry(ctx, ifMatch, func() (Result[domain.Lead], error) {
		lead, err := h.loadLead(ctx, m, id)
		if err != nil {
			return Result[domain.Lead]{}, err
		}
		if err := checkIfMatch(ifMatch, lead.Version); err != nil {
			return Result[domain.Lead]{}, err
		}
		evs, err := lead.Delete()
		if err != nil {
			return Result[domain.Lead]{}, err
		}
		pos, err := h.appendLead(ctx, m, &lead, lead.Version, evs)
		return Result[domain.Lead]{Record: lead, Position: pos}, err
	})
}
