package projections

import (
	"context"
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

func entry(e envelope.Envelope, changes map[string]domain.Change) HistoryEntry {
	if changes == nil {
		changes = map[string]domain.Change{}
	}
	return HistoryEntry{
		EventID: e.Meta.EventID, Type: e.Event.EventType(), Version: e.Version, OccurredAt: e.Meta.OccurredAt,
		Actor: e.Meta.Actor, RequestID: e.Meta.RequestID, Changes: changes,
	}
}

// folder is a record type whose pointer folds events (Lead, Deal).
type folder[T any] interface {
	*T
	Apply(domain.Event, domain.Metadata)
}

// history replays a stream and records, for each event, the fields it
// changed.
func history[T any, P folder[T]](envs []envelope.Envelope, state T, diff func(before, after T) map[string]domain.Change) []HistoryEntry {
	out := make([]HistoryEntry, 0, len(envs))
	for _, e := range envs {
		before := state
		P(&state).Apply(e.Event, e.Meta)
		out = append(out, entry(e, diff(before, state)))
	}
	return out
}

// LeadHistory lists every change of a lead, oldest first, deletion included.
func LeadHistory(ctx context.Context, store eventstore.StreamReader, orgID, id string) ([]HistoryEntry, error) {
	envs, err := envelope.ReadRecord(ctx, store, envelope.LeadStream(id), orgID)
	if err != nil {
		return nil, err
	}
	return history(envs, domain.Lead{ID: id}, domain.LeadChanges), nil
}

// LeadAsOf folds a lead's events up to and including instant at. A lead that
// did not exist yet, or was already deleted, at that instant is not found.
func LeadAsOf(ctx context.Context, store eventstore.StreamReader, orgID, id string, at time.Time) (domain.Lead, error) {
	envs, err := envelope.ReadRecord(ctx, store, envelope.LeadStream(id), orgID)
	if err != nil {
		return domain.Lead{}, err
	}
	return domain.FoldLead(id, envelope.Recorded(envelope.Until(envs, at)))
}

// DealHistory lists every change of a deal, oldest first.
func DealHistory(ctx context.Context, store eventstore.StreamReader, orgID, id string) ([]HistoryEntry, error) {
	envs, err := envelope.ReadRecord(ctx, store, envelope.DealStream(id), orgID)
	if err != nil {
		return nil, err
	}
	return history(envs, domain.Deal{ID: id}, domain.DealChanges), nil
}

// DealAsOf is LeadAsOf for deals.
func DealAsOf(ctx context.Context, store eventstore.StreamReader, orgID, id string, at time.Time) (domain.Deal, error) {
	envs, err := envelope.ReadRecord(ctx, store, envelope.DealStream(id), orgID)
	if err != nil {
		return domain.Deal{}, err
	}
	return domain.FoldDeal(id, envelope.Recorded(envelope.Until(envs, at)))
}
