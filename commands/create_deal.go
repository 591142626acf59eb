package commands

import (
	"context"
	"errors"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// CreateDeal creates a deal with a new id (derived from the request's
// idempotency key when it has one: see Idempotency). A lead_id must name a
// lead of the caller's organization that still exists.
func (h *Handler) CreateDeal(ctx context.Context, m Meta, in domain.DealInput) (Result[domain.Deal], error) {
	id := h.recordID(ctx, m.OrgID, "deal")
	evs, err := domain.CreateDeal(id, m.OrgID, in)
	if err != nil {
		return Result[domain.Deal]{}, err
	}
	if i, ok := idempotencyOf(ctx); ok && i.Recover {
		// The first attempt may have created the deal; its lead may be
		// gone since, which must not turn the replay into a 422.
		if res, err := h.createdDeal(ctx, m, id, len(evs)); err == nil || !errors.Is(err, ErrConflict) {
			return res, err
		}
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
	if i, ok := idempotencyOf(ctx); ok && (err == nil && i.Recover || alreadyWritten(ctx, err)) {
		return h.createdDeal(ctx, m, id, len(evs))
	}
	return Result[domain.Deal]{Record: deal, Position: pos}, err
}

// createdDeal answers a keyed create from what is stored (see createdLead);
// ErrConflict when the deal's creating events are not there.
func (h *Handler) createdDeal(ctx context.Context, m Meta, id string, n int) (Result[domain.Deal], error) {
	stream := envelope.DealStream(id)
	recs, pos, ok, err := created(ctx, h.Store, stream, m.OrgID, []string{eventID(ctx, m.OrgID, stream, n-1)})
	if err != nil {
		return Result[domain.Deal]{}, err
	}
	if !ok {
		return Result[domain.Deal]{}, ErrConflict
	}
	deal, _ := domain.FoldDeal(id, recs)
	return Result[domain.Deal]{Record: deal, Position: pos}, nil
}

func (h *Handler) appendDeal(ctx context.Context, m Meta, deal *domain.Deal, expected int64, evs []domain.Event) (uint64, error) {
	stream := envelope.DealStream(deal.ID)
	data, metas, err := h.encode(ctx, stream, evs, m, h.now())
	if err != nil {
		return 0, err
	}
	res, err := h.Store.Append(ctx, stream, expected, data...)
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
