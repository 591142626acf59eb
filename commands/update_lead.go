package commands

import (
	"context"

	"github.com/salesos/salesos/domain"
)

// UpdateLead applies a JSON-merge-patch style change. ifMatch, when not nil,
// is the version the caller saw (If-Match). A patch that changes nothing
// appends nothing and returns the current state with Position 0.
func (h *Handler) UpdateLead(ctx context.Context, m Meta, id string, patch domain.LeadPatch, ifMatch *int64) (Result[domain.Lead], error) {
	return update(ctx, h, leads, m, id, patch, ifMatch)
}

// loadLead folds the caller's lead. Deleted leads and other organizations'
// leads are domain.ErrNotFound.
func (h *Handler) loadLead(ctx context.Context, m Meta, id string) (domain.Lead, error) {
	return load(ctx, h, leads, m, id)
}
