package domain

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// ActorType says whether a change was made by a person or by a machine
// client (an Auth0 client-credentials token).
type ActorType string

const (
	ActorUser   ActorType = "user"
	ActorClient ActorType = "client"
)

// Actor is who made a change, as shown in history entries.
type Actor struct {
	Sub  string    `json:"sub"`
	Type ActorType `json:"type"`
}

// Metadata travels with every stored event but is not part of its payload:
// it is assigned by the command layer when the event is appended.
type Metadata struct {
	EventID       string    `json:"event_id"`
	OccurredAt    time.Time `json:"occurred_at"`
	OrgID         string    `json:"org_id"`
	Actor         Actor     `json:"actor"`
	RequestID     string    `json:"request_id,omitempty"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	CausationID   string    `json:"causation_id,omitempty"`
	// IdempotencyKey is the Idempotency-Key of the request that wrote the
	// event, so the outcome of a request can be recovered from the events.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	SchemaVersion  int    `json:"schema_version"` // of the event payload
}

// Event is a fact about a lead or a deal. Implementations are value types;
// EventType returns the wire name, which is stored and sent to webhooks and
// so must never change.
type Event interface {
	EventType() string
}

// Recorded is an event as read back from a stream, with its metadata.
type Recorded struct {
	Event    Event
	Metadata Metadata
}

// Wire names of events. They are spelled out rather than derived from Go type
// names so that renaming a Go type can never orphan stored streams or break
// webhook subscribers.
const (
	EventLeadCreated       = "lead.created"
	EventLeadUpdated       = "lead.updated"
	EventLeadStatusChanged = "lead.status_changed"
	EventLeadConverted     = "lead.converted"
	EventLeadDeleted       = "lead.deleted"
	EventDealCreated       = "deal.created"
	EventDealUpdated       = "deal.updated"
	EventDealStageChanged  = "deal.stage_changed"
	EventDealWon           = "deal.won"
	EventDealLost          = "deal.lost"
	EventDealDeleted       = "deal.deleted"
)

// registry maps each event type to the schema version written today and to
// the upcasters that lift older stored payloads to it.
//
// Changing a payload's shape incompatibly works like this: bump version,
// add upcasters[n] that rewrites a version-n payload (as raw JSON) into a
// version n+1 payload, and add a test that decodes a hand-written version-n
// payload. Old rows are never rewritten; they are lifted on every read.
// Every event is at version 1 today, so no upcaster exists yet.
type registry map[string]codec

type codec struct {
	version  int
	decode   func([]byte) (Event, error)
	upcaster map[int]func(json.RawMessage) (json.RawMessage, error)
}

func codecOf[E Event](version int) codec {
	return codec{
		version: version,
		decode: func(data []byte) (Event, error) {
			var e E
			if err := json.Unmarshal(data, &e); err != nil {
				return nil, err
			}
			return e, nil
		},
	}
}

var eventRegistry = registry{
	EventLeadCreated:       codecOf[LeadCreated](1),
	EventLeadUpdated:       codecOf[LeadUpdated](1),
	EventLeadStatusChanged: codecOf[LeadStatusChanged](1),
	EventLeadConverted:     codecOf[LeadConverted](1),
	EventLeadDeleted:       codecOf[LeadDeleted](1),
	EventDealCreated:       codecOf[DealCreated](1),
	EventDealUpdated:       codecOf[DealUpdated](1),
	EventDealStageChanged:  codecOf[DealStageChanged](1),
	EventDealWon:           codecOf[DealWon](1),
	EventDealLost:          codecOf[DealLost](1),
	EventDealDeleted:       codecOf[DealDeleted](1),
}

// EventTypes lists every event type this build knows, sorted; webhook
// subscriptions are validated against it.
func EventTypes() []string {
	types := make([]string, 0, len(eventRegistry))
	for t := range eventRegistry {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// EncodeEvent serializes e for storage and returns the type and schema
// version to store beside it.
func EncodeEvent(e Event) (eventType string, schemaVersion int, data []byte, err error) {
	return eventRegistry.encode(e)
}

// DecodeEvent reads a stored event, upcasting older schema versions to the
// current one. It fails with ErrUnknownEvent for a type or version this build
// does not know, rather than guessing.
func DecodeEvent(eventType string, schemaVersion int, data []byte) (Event, error) {
	return eventRegistry.decode(eventType, schemaVersion, data)
}

func (r registry) encode(e Event) (string, int, []byte, error) {
	if e == nil {
		return "", 0, nil, fmt.Errorf("domain: encode nil event")
	}
	t := e.EventType()
	c, ok := r[t]
	if !ok {
		return "", 0, nil, fmt.Errorf("%w: type %q", ErrUnknownEvent, t)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("domain: encode %s: %w", t, err)
	}
	return t, c.version, data, nil
}

func (r registry) decode(eventType string, version int, data []byte) (Event, error) {
	c, ok := r[eventType]
	if !ok {
		return nil, fmt.Errorf("%w: type %q", ErrUnknownEvent, eventType)
	}
	if version < 1 || version > c.version {
		return nil, fmt.Errorf("%w: %s schema version %d (this build reads up to %d)", ErrUnknownEvent, eventType, version, c.version)
	}
	raw := json.RawMessage(data)
	for v := version; v < c.version; v++ {
		up, ok := c.upcaster[v]
		if !ok {
			return nil, fmt.Errorf("%w: %s has no upcaster from schema version %d", ErrUnknownEvent, eventType, v)
		}
		var err error
		if raw, err = up(raw); err != nil {
			return nil, fmt.Errorf("domain: upcast %s from version %d: %w", eventType, v, err)
		}
	}
	e, err := c.decode(raw)
	if err != nil {
		return nil, fmt.Errorf("domain: decode %s v%d: %w", eventType, version, err)
	}
	return e, nil
}
