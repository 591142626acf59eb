package projections

import (
	"context"
	"errors"
	"time"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// History and as_of reads are served from the event store, not from the
// query tables: a record's stream is its complete audit trail.

// HistoryEntry is one change of a record.
type HistoryEntry struct {
	EventID    string                   `json:"event_id"`
	Type       string                   `json:"type"`
	Version    int64                    `json:"version"`
	OccurredAt time.Time                `json:"occurred_at"`
	Actor      domain.Actor             `json:"actor"`
	RequestID  string                   `json:"request_id"`
	Changes    map[string]domain.Change `json:"changes"`
}

// readRecord loads a stream for the organization; another organization's
// stream is domain.ErrNotFound, like a missing one.
func readRecord(ctx context.Context, store eventstore.StreamReader, stream, orgID string) ([]envelope.Envelope, error) {
	raw, err := eventstore.ReadFullStream(ctx, store, stream)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, domain.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	envs, err := envelope.DecodeAll(raw)
	if err != nil {
		return nil, err
	}
	if len(envs) == 0 || envs[0].Meta.OrgID != orgID {
		return nil, domain.ErrNotFound
	}
	return envs, nil
}

func entry(e envelope.Envelope, changes map[string]domain.Change) HistoryEntry {
	if changes == nil {
		changes = map[string]domain.Change{}
	}
	return HistoryEntry{
		EventID: e.Meta.EventID, Type: e.Event.EventType(), Version: e.Version, OccurredAt: e.Meta.OccurredAt,
		Actor: e.Meta.Actor, RequestID: e.Meta.RequestID, Changes: changes,
	}
}

// LeadHistory lists every change of a lead, oldest first, deletion included.
func LeadHistory(ctx context.Context, store eventstore.StreamReader, orgID, id string) ([]HistoryEntry, error) {
	envs, err := readRecord(ctx, store, envelope.LeadStream(id), orgID)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, 0, len(envs))
	state := domain.Lead{ID: id}
	for _, e := range envs {
		before := state
		state.Apply(e.Event, e.Meta)
		out = append(out, entry(e, domain.LeadChanges(before, state)))
	}
	return out, nil
}

// LeadAsOf folds a lead's events up to and including instant at. A lead that
// did not exist yet, or was already deleted, at that instant is not found.
func LeadAsOf(ctx context.Context, store eventstore.StreamReader, orgID, id string, at time.Time) (domain.Lead, error) {
	envs, err := readRecord(ctx, store, envelope.LeadStream(id), orgID)
	if err != nil {
		return domain.Lead{}, err
	}
	return domain.FoldLead(id, recorded(envelope.Until(envs, at)))
}

// DealHistory lists every change of a deal, oldest first.
func DealHistory(ctx context.Context, store eventstore.StreamReader, orgID, id string) ([]HistoryEntry, error) {
	envs, err := readRecord(ctx, store, envelope.DealStream(id), orgID)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, 0, len(envs))
	state := domain.Deal{ID: id}
	for _, e := range envs {
		before := state
		state.Apply(e.Event, e.Meta)
		out = append(out, entry(e, domain.DealChanges(before, state)))
	}
	return out, nil
}

// DealAsOf is LeadAsOf for deals.
func DealAsOf(ctx context.Context, store eventstore.StreamReader, orgID, id string, at time.Time) (domain.Deal, error) {
	envs, err := readRecord(ctx, store, envelope.DealStream(id), orgID)
	if err != nil {
		return domain.Deal{}, err
	}
	return domain.FoldDeal(id, recorded(envelope.Until(envs, at)))
}

func recorded(envs []envelope.Envelope) []domain.Recorded {
	out := make([]domain.Recorded, len(envs))
	for i, e := range envs {
		out[i] = domain.Recorded{Event: e.Event, Metadata: e.Meta}
	}
	return out
}
