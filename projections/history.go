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

// LeadHistory lists every change of a lead, oldest first, deletion included.
func LeadHistory(ctx context.Context, store eventstore.StreamReader, orgID, id string) ([]HistoryEntry, error) {
	return leadKind.history(ctx, store, orgID, id)
}

// LeadAsOf folds a lead's events up to and including instant at. A lead that
// did not exist yet, or was already deleted, at that instant is not found.
func LeadAsOf(ctx context.Context, store eventstore.StreamReader, orgID, id string, at time.Time) (domain.Lead, error) {
	return leadKind.asOf(ctx, store, orgID, id, at)
}

// DealHistory lists every change of a deal, oldest first.
func DealHistory(ctx context.Context, store eventstore.StreamReader, orgID, id string) ([]HistoryEntry, error) {
	return dealKind.history(ctx, store, orgID, id)
}

// DealAsOf is LeadAsOf for deals.
func DealAsOf(ctx context.Context, store eventstore.StreamReader, orgID, id string, at time.Time) (domain.Deal, error) {
	return dealKind.asOf(ctx, store, orgID, id, at)
}
