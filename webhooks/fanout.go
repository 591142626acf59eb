package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/projections"
)

// FanOutName is the fan-out's checkpoint key (see projections: renaming it
// would fan every event out again).
const FanOutName = "webhook_fanout"

// FanOut is the projection that turns events into the event feed and into
// one pending delivery per matching active webhook. It runs on the
// projections' router, so its rows and its checkpoint commit together.
type FanOut struct {
	// Streams reads earlier events of a record when a batch starts in the
	// middle of its stream (the payload carries the whole record).
	Streams eventstore.StreamReader
	// Driver stores the feed and the deliveries.
	Driver driver.Webhooks
}

// Name implements projections.Projection.
func (FanOut) Name() string { return FanOutName }

// Reset implements projections.Projection. Only the feed is rebuilt:
// deliveries already made are history, and re-sending every event to every
// endpoint on a rebuild would be a surprise to every receiver.
func (f FanOut) Reset(ctx context.Context, tx *sqlx.Tx) error {
	return f.Driver.ResetFeed(ctx, tx)
}

// Payload is the body of a webhook and of an event-feed item.
type Payload struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	OrgID      string    `json:"org_id"`
	Data       struct {
		Object  any                      `json:"object"`
		Changes map[string]domain.Change `json:"changes"`
	} `json:"data"`
}

// A delivery the fan-out creates carries no payload of its own: it
// shares the event feed's (see driver.NewDelivery).

// Apply implements projections.Projection.
func (f FanOut) Apply(ctx context.Context, tx *sqlx.Tx, events []eventstore.RecordedEvent) error {
	payloads, err := f.payloads(ctx, events)
	if err != nil || len(payloads) == 0 {
		return err
	}
	orgs := map[string]bool{}
	var orgList []string
	for _, p := range payloads {
		if !orgs[p.row.OrgID] {
			orgs[p.row.OrgID] = true
			orgList = append(orgList, p.row.OrgID)
		}
	}
	subs, err := f.Driver.ListSubscriptions(ctx, tx, orgList)
	if err != nil {
		return fmt.Errorf("load webhooks: %w", err)
	}
	byOrg := map[string][]driver.Subscription{}
	for _, s := range subs {
		byOrg[s.OrgID] = append(byOrg[s.OrgID], s)
	}
	now := dbNow()
	feed := make([]driver.FeedRow, 0, len(payloads))
	var deliveries []driver.NewDelivery
	for _, p := range payloads {
		feed = append(feed, p.row)
		for _, s := range byOrg[p.row.OrgID] {
			if Matches(s.Patterns, p.row.Type) {
				deliveries = append(deliveries, driver.NewDelivery{
					ID: newID("dlv"), WebhookID: s.ID, OrgID: p.row.OrgID, EventID: p.row.EventID,
					EventType: p.row.Type, Now: now,
				})
			}
		}
	}
	return f.Driver.InsertFeedAndDeliveries(ctx, tx, feed, deliveries)
}

type payloadOut struct{ row driver.FeedRow }

// payloads builds the webhook body of every lead and deal event in the
// batch: the record after the event, and the fields it changed.
func (f FanOut) payloads(ctx context.Context, events []eventstore.RecordedEvent) ([]payloadOut, error) {
	type streamBatch struct {
		kind envelope.Kind
		id   string
		evs  []envelope.Envelope
	}
	var order []string
	streams := map[string]*streamBatch{}
	for _, r := range events {
		kind, id, ok := envelope.ParseStream(r.StreamID)
		if !ok {
			continue
		}
		e, err := envelope.Decode(r)
		if err != nil {
			return nil, err
		}
		sb := streams[r.StreamID]
		if sb == nil {
			sb = &streamBatch{kind: kind, id: id}
			streams[r.StreamID] = sb
			order = append(order, r.StreamID)
		}
		sb.evs = append(sb.evs, e)
	}
	out := make([]payloadOut, 0, len(events))
	for _, stream := range order {
		sb := streams[stream]
		// Events before this batch, if the batch starts mid-stream.
		var earlier []envelope.Envelope
		if first := sb.evs[0].Version; first > 1 {
			raw, err := f.Streams.ReadStream(ctx, stream, 1, int(first-1))
			if err != nil {
				// The event store failing is never the event's fault:
				// retry the batch rather than park its events.
				return nil, projections.Transient(fmt.Errorf("read %s: %w", stream, err))
			}
			if earlier, err = envelope.DecodeAll(raw); err != nil {
				return nil, err
			}
		}
		var step func(e envelope.Envelope) (any, map[string]domain.Change)
		switch sb.kind {
		case envelope.KindLead:
			state := domain.Lead{ID: sb.id}
			for _, e := range earlier {
				state.Apply(e.Event, e.Meta)
			}
			step = func(e envelope.Envelope) (any, map[string]domain.Change) {
				before := state
				state.Apply(e.Event, e.Meta)
				return state, domain.LeadChanges(before, state)
			}
		case envelope.KindDeal:
			state := domain.Deal{ID: sb.id}
			for _, e := range earlier {
				state.Apply(e.Event, e.Meta)
			}
			step = func(e envelope.Envelope) (any, map[string]domain.Change) {
				before := state
				state.Apply(e.Event, e.Meta)
				return state, domain.DealChanges(before, state)
			}
		default:
			continue
		}
		for _, e := range sb.evs {
			obj, changes := step(e)
			var p Payload
			p.ID, p.Type, p.OccurredAt, p.OrgID = e.Meta.EventID, e.Event.EventType(), e.Meta.OccurredAt, e.Meta.OrgID
			p.Data.Object, p.Data.Changes = obj, changes
			body, err := json.Marshal(p)
			if err != nil {
				return nil, err
			}
			out = append(out, payloadOut{row: driver.FeedRow{
				Position: int64(e.Position), EventID: p.ID, OrgID: p.OrgID, Type: p.Type, OccurredAt: p.OccurredAt, Payload: string(body),
			}})
		}
	}
	return out, nil
}

// Matches reports whether an event type matches any subscription pattern:
// "*" matches everything, "lead.*" every lead event, anything else exactly.
func Matches(patterns []string, eventType string) bool {
	for _, p := range patterns {
		switch {
		case p == "*", p == eventType:
			return true
		case strings.HasSuffix(p, ".*") && strings.HasPrefix(eventType, strings.TrimSuffix(p, "*")):
			return true
		}
	}
	return false
}

func newID(prefix string) string {
	return prefix + "_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
}
