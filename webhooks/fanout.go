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
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/internal/dialect"
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
}

// Name implements projections.Projection.
func (FanOut) Name() string { return FanOutName }

// Reset implements projections.Projection. Only the feed is rebuilt:
// deliveries already made are history, and re-sending every event to every
// endpoint on a rebuild would be a surprise to every receiver.
func (FanOut) Reset(ctx context.Context, tx *sqlx.Tx) error {
	q := `TRUNCATE event_feed`
	if dialect.IsSQLite(tx) {
		q = `DELETE FROM event_feed` // SQLite has no TRUNCATE
	}
	_, err := tx.ExecContext(ctx, q)
	return err
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

type feedRow struct {
	Position   int64     `json:"position"`
	EventID    string    `json:"event_id"`
	OrgID      string    `json:"org_id"`
	Type       string    `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	Payload    string    `json:"payload"`
}

// deliveryRow is a delivery the fan-out creates. It carries no payload of
// its own: its payload column is left empty, which means "the event
// feed's row with the same event_id" (feedPayload). The body was stored
// once per webhook before, and with many webhooks per organization those
// copies were most of what the fan-out, and every lease and outcome
// rewriting the row, had to write.
type deliveryRow struct {
	ID        string    `json:"id"`
	WebhookID string    `json:"webhook_id"`
	OrgID     string    `json:"org_id"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Now       time.Time `json:"now"`
}

// feedPayload is the SQL for the body of the delivery named d (an alias or
// the table's name): its own payload (a test event, or a delivery made
// before deliveries shared the feed's), or else the event feed's. NULL
// while the feed is being rebuilt, and such a delivery is not claimed until
// it is back (feedPayloadReady).
func feedPayload(d string) string {
	return `COALESCE(NULLIF(` + d + `.payload, ''), (SELECT f.payload FROM event_feed f WHERE f.event_id = ` + d + `.event_id))`
}

// feedPayloadReady is the condition that the body of delivery c exists.
const feedPayloadReady = `(c.payload <> '' OR EXISTS (SELECT 1 FROM event_feed f WHERE f.event_id = c.event_id))`

type subscription struct {
	ID       string     `db:"id"`
	OrgID    string     `db:"org_id"`
	Patterns stringList `db:"events"`
}

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
	inOrgs, orgsArg, err := dialect.InList(tx, "org_id", 1, orgList)
	if err != nil {
		return err
	}
	var subs []subscription
	if err := tx.SelectContext(ctx, &subs, `SELECT id, org_id, `+eventsColumn(tx)+` FROM webhooks
		WHERE `+inOrgs+` AND active AND deleted_at IS NULL`, orgsArg); err != nil {
		return fmt.Errorf("load webhooks: %w", err)
	}
	byOrg := map[string][]subscription{}
	for _, s := range subs {
		byOrg[s.OrgID] = append(byOrg[s.OrgID], s)
	}
	now := dbNow()
	feed := make([]feedRow, 0, len(payloads))
	var deliveries []deliveryRow
	for _, p := range payloads {
		feed = append(feed, p.row)
		for _, s := range byOrg[p.row.OrgID] {
			if Matches(s.Patterns, p.row.Type) {
				deliveries = append(deliveries, deliveryRow{
					ID: newID("dlv"), WebhookID: s.ID, OrgID: p.row.OrgID, EventID: p.row.EventID,
					EventType: p.row.Type, Now: now,
				})
			}
		}
	}
	if dialect.IsSQLite(tx) {
		return insertFanOutSQLite(ctx, tx, feed, deliveries)
	}
	raw, err := json.Marshal(feed)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO event_feed (position, event_id, org_id, type, occurred_at, payload)
		SELECT position, event_id, org_id, type, occurred_at, payload
		FROM json_to_recordset($1::json) AS x(position bigint, event_id text, org_id text, type text, occurred_at timestamptz, payload text)
		ON CONFLICT (position) DO NOTHING`, string(raw)); err != nil {
		return fmt.Errorf("insert event feed: %w", err)
	}
	if len(deliveries) == 0 {
		return nil
	}
	if raw, err = json.Marshal(deliveries); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, next_attempt_at, created_at, updated_at)
		SELECT id, webhook_id, org_id, event_id, event_type, '', 'pending', now, now, now
		FROM json_to_recordset($1::json) AS x(id text, webhook_id text, org_id text, event_id text, event_type text, now timestamptz)
		ON CONFLICT (webhook_id, event_id) DO NOTHING`, string(raw)); err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	return nil
}

// insertFanOutSQLite writes the rows one statement each: SQLite has no
// json_to_recordset, and a prepared statement run in-process per row costs
// about what one set-based statement does.
func insertFanOutSQLite(ctx context.Context, tx *sqlx.Tx, feed []feedRow, deliveries []deliveryRow) error {
	ins, err := tx.PrepareContext(ctx, `INSERT INTO event_feed (position, event_id, org_id, type, occurred_at, payload)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (position) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("insert event feed: %w", err)
	}
	defer ins.Close()
	for _, f := range feed {
		if _, err := ins.ExecContext(ctx, f.Position, f.EventID, f.OrgID, f.Type, f.OccurredAt.UTC(), f.Payload); err != nil {
			return fmt.Errorf("insert event feed: %w", err)
		}
	}
	if len(deliveries) == 0 {
		return nil
	}
	ins, err = tx.PrepareContext(ctx, `INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, payload, status, next_attempt_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, '', 'pending', $6, $6, $6) ON CONFLICT (webhook_id, event_id) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	defer ins.Close()
	for _, d := range deliveries {
		if _, err := ins.ExecContext(ctx, d.ID, d.WebhookID, d.OrgID, d.EventID, d.EventType, d.Now); err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
	}
	return nil
}

type payloadOut struct{ row feedRow }

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
			out = append(out, payloadOut{row: feedRow{
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
