package commands

import (
	"context"
	"fmt"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// Conversion is the outcome of converting a lead.
type Conversion struct {
	Lead     domain.Lead
	Deal     domain.Deal
	Position uint64
}

// ConvertLead marks a lead converted and creates its deal.
//
// The two records live in two streams, and the event store only makes one
// stream's append atomic. The lead's lead.converted event is appended first,
// with the expected version: that append is the decision (a second convert
// loses it and gets a conflict), and it names the deal id. The deal's
// creation follows. Should the process die between the two, the lead says
// converted with a converted_deal_id whose stream does not exist yet; the
// deal creation is retried here on transient errors to keep that window as
// small as we can, and the event names the deal so it can be repaired.
//
// Under an idempotency key (see Idempotency) the deal id and every event id
// are derived from the request, so a retry of a conversion whose lead event
// committed finds that event (the lead names the derived deal), creates the
// deal if the first attempt died before it, and answers as the first
// attempt would have.
func (h *Handler) ConvertLead(ctx context.Context, m Meta, leadID string, in domain.ConvertDealInput, ifMatch *int64) (Conversion, error) {
	dealID := h.recordID(ctx, m.OrgID, "deal")
	_, keyed := idempotencyOf(ctx)
	var dealEvents []domain.Event
	unlock := h.lockStream(envelope.LeadStream(leadID))
	res, err := retry(ctx, ifMatch, func() (Result[domain.Lead], error) {
		lead, err := h.loadLead(ctx, m, leadID)
		if err == nil && keyed && lead.ConvertedDealID == dealID {
			// This request converted the lead already (an earlier
			// attempt): answer from the stored conversion.
			return h.storedConversion(ctx, m, leadID, dealID, in, &dealEvents)
		}
		if err != nil {
			return Result[domain.Lead]{}, err
		}
		if err := checkIfMatch(ifMatch, lead.Version); err != nil {
			return Result[domain.Lead]{}, err
		}
		evs, err := lead.Convert(dealID)
		if err != nil {
			return Result[domain.Lead]{}, err
		}
		// Validate the deal before anything is written.
		dealEvents, err = domain.DealFromConversion(dealID, m.OrgID, lead, in)
		if err != nil {
			return Result[domain.Lead]{}, err
		}
		pos, err := appendTo(ctx, h, leads, m, leadID, &lead, lead.Version, evs)
		return Result[domain.Lead]{Record: lead, Position: pos}, err
	})
	unlock()
	if err != nil {
		return Conversion{}, err
	}
	deal := domain.Deal{ID: dealID}
	var pos uint64
	for attempt := 0; ; attempt++ {
		pos, err = appendTo(ctx, h, deals, m, dealID, &deal, eventstore.NoStream, dealEvents)
		if err == nil || attempt == MaxAttempts-1 || ctx.Err() != nil || alreadyWritten(ctx, err) {
			break
		}
	}
	if keyed && (err == nil || alreadyWritten(ctx, err)) {
		// The deal's events may be an earlier attempt's: answer from
		// what is stored.
		var d Result[domain.Deal]
		d, err = createdBefore(ctx, h, deals, m, dealID, len(dealEvents))
		deal, pos = d.Record, d.Position
	}
	if err != nil {
		return Conversion{}, fmt.Errorf("lead %s converted but deal %s not created: %w", leadID, dealID, err)
	}
	return Conversion{Lead: res.Record, Deal: deal, Position: max(pos, res.Position)}, nil
}

// storedConversion rebuilds the conversion an earlier attempt of this keyed
// request stored: the lead as its lead.converted event left it, and the
// deal events that conversion implies (appended again by the caller; a
// replay when they are stored).
func (h *Handler) storedConversion(ctx context.Context, m Meta, leadID, dealID string, in domain.ConvertDealInput, dealEvents *[]domain.Event) (Result[domain.Lead], error) {
	stream := envelope.LeadStream(leadID)
	// lead.Convert decides one event: lead.converted, the command's first.
	recs, pos, ok, err := created(ctx, h.Store, stream, m.OrgID, []string{eventID(ctx, m.OrgID, stream, 0)})
	if err != nil {
		return Result[domain.Lead]{}, err
	}
	if !ok {
		return Result[domain.Lead]{}, ErrConflict
	}
	before, _ := domain.FoldLead(leadID, recs[:len(recs)-1])
	*dealEvents, err = domain.DealFromConversion(dealID, m.OrgID, before, in)
	if err != nil {
		return Result[domain.Lead]{}, err
	}
	lead, _ := domain.FoldLead(leadID, recs)
	return Result[domain.Lead]{Record: lead, Position: pos}, nil
}
