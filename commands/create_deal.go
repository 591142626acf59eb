package commands

import (
	"context"
	"errors"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// CreateDeal creates a deal with a new id. A lead_id must name a lead of
// the caller's organization that still exists.
func (h *Handler) CreateDeal(ctx context.Context, m Meta, in domain.DealInput) (Result[domain.Deal], error) {
	id := h.newID("deal")
	evs, err := domain.CreateDeal(id, m.OrgID, in)
	if err != nil {
		return Result[domain.Deal]{}, err
	}
	if in.LeadID != nil {
		if _, err := h.loadLead(ctx, m, *in.LeadID); errors.Is(err, domain.ErrNotFound) {
			return Result[domain.Deal]{}, &domain.ValidationError{Details: []domain.FieldError{{
				Field: "lead_id", Code: "not_found", Message: "no lead with this id exists",
			}}}
		} else if err != nil {
			return Result[domain.Deal]{}, err
		}
	}
	deal := domain.Deal{ID: id}
	pos, err := h.appendDeal(ctx, m, &deal, eventstore.NoStream, evs)
	return Result[domain.Deal]{Record: deal, Position: pos}, err
}

func (h *Handler) appendDeal(ctx context.Context, m Meta, deal *domain.Deal, expected int64, evs []domain.Event) (uint64, error) {
	data, metas, err := h.encode(evs, m, h.now())
	if err != nil {
		return 0, err
	}
	res, err := h.Store.Append(ctx, envelope.DealStream(deal.ID), expected, data...)
	if err != nil {
		return 0, err
	}
	for i, e := range evs {
		deal.Apply(e, metas[i])
	}
	return res.Position, nil
}

// loadDeal folds the caller's deal. Deleted deals and other organizations'
// deals are domain.ErrNotFound.
func (h *Handler) loadDeal(ctx context.Context, m Meta, id string) (domain.Deal, error) {
	recs, err := loadStream(ctx, h.Store, envelope.DealStream(id), m.OrgID)
	if err != nil {
		return domain.Deal{}, err
	}
	return domain.FoldDeal(id, recs)
}
