package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
)

// UpdateLead applies a JSON-merge-patch style change. ifMatch, when not nil,
// is the version the caller saw (If-Match). A patch that changes nothing
// appends nothing and returns the current state with Position 0.
func (h *Handler) UpdateLead(ctx context.Context, m Meta, id string, patch domain.LeadPatch, ifMatch *int64) (Result[domain.Lead], error) {
	defer h.lockStream(envelope.LeadStream(id))()
	return retry(ctx, ifMatch, func() (Result[domain.Lead], error) {
		lead, err := h.loadLead(ctx, m, id)
		if err != nil {
			return Result[domain.Lead]{}, err
		}
		if err := checkIfMatch(ifMatch, lead.Version); err != nil {
			return Result[domain.Lead]{}, err
		}
		evs, err := lead.Update(patch)
		if err != nil || len(evs) == 0 {
			return Result[domain.Lead]{Record: lead}, err
		}
		pos, err := h.appendLead(ctx, m, &lead, lead.Version, evs)
		return Result[domain.Lead]{Record: lead, Position: pos}, err
	})
}

// loadLead folds the caller's lead. Deleted leads and other organizations'
// leads are domain.ErrNotFound.
func (h *Handler) loadLead(ctx context.Context, m Meta, id string) (domain.Lead, error) {
	recs, err := loadStream(ctx, h.Store, envelope.LeadStream(id), m.OrgID)
	if err != nil {
		return domain.Lead{}, err
	}
	return domain.FoldLead(id, recs)
}
