// Package envelope converts between domain events and stored events: a
// domain event plus its metadata becomes an eventstore.EventData, and a
// stored event becomes a domain event again (upcast to today's schema).
// It also owns the stream naming scheme, which is part of the stored
// format: "lead-<id>" and "deal-<id>".
//
// Commands, projections and webhooks all read and write events through
// here, so the storage format is defined once.
package envelope

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/eventstore"
)

// Stream name prefixes. They are stored data: never change them.
const (
	leadPrefix = "lead-"
	dealPrefix = "deal-"
)

// LeadStream is the stream of one lead.
func LeadStream(id string) string { return leadPrefix + id }

// DealStream is the stream of one deal.
func DealStream(id string) string { return dealPrefix + id }

// Kind of record a stream belongs to.
type Kind string

const (
	KindLead Kind = "lead"
	KindDeal Kind = "deal"
)

// ParseStream splits a stream name into the record kind and id.
func ParseStream(stream string) (Kind, string, bool) {
	switch {
	case strings.HasPrefix(stream, leadPrefix):
		return KindLead, stream[len(leadPrefix):], true
	case strings.HasPrefix(stream, dealPrefix):
		return KindDeal, stream[len(dealPrefix):], true
	}
	return "", "", false
}

// Envelope is a decoded stored event.
type Envelope struct {
	Event    domain.Event
	Meta     domain.Metadata
	StreamID string
	Kind     Kind
	RecordID string
	Version  int64
	Position uint64
}

// Encode prepares a domain event for appending. The metadata's schema
// version is filled in from the event registry.
func Encode(e domain.Event, meta domain.Metadata) (eventstore.EventData, error) {
	typ, version, data, err := domain.EncodeEvent(e)
	if err != nil {
		return eventstore.EventData{}, err
	}
	meta.SchemaVersion = version
	meta.OccurredAt = meta.OccurredAt.UTC()
	m, err := json.Marshal(meta)
	if err != nil {
		return eventstore.EventData{}, err
	}
	return eventstore.EventData{ID: meta.EventID, Type: typ, Data: data, Metadata: m}, nil
}

// Decode turns a stored event back into a domain event with its metadata.
func Decode(r eventstore.RecordedEvent) (Envelope, error) {
	var meta domain.Metadata
	if err := json.Unmarshal(r.Metadata, &meta); err != nil {
		return Envelope{}, fmt.Errorf("event %s: metadata: %w", r.ID, err)
	}
	if meta.SchemaVersion == 0 {
		meta.SchemaVersion = 1
	}
	if meta.EventID == "" {
		meta.EventID = r.ID
	}
	if meta.OccurredAt.IsZero() {
		meta.OccurredAt = r.RecordedAt
	}
	meta.OccurredAt = meta.OccurredAt.UTC()
	ev, err := domain.DecodeEvent(r.Type, meta.SchemaVersion, r.Data)
	if err != nil {
		return Envelope{}, fmt.Errorf("event %s (%s): %w", r.ID, r.Type, err)
	}
	kind, id, _ := ParseStream(r.StreamID)
	return Envelope{Event: ev, Meta: meta, StreamID: r.StreamID, Kind: kind, RecordID: id, Version: r.Version, Position: r.Position}, nil
}

// DecodeAll decodes a slice of stored events.
func DecodeAll(rs []eventstore.RecordedEvent) ([]Envelope, error) {
	out := make([]Envelope, 0, len(rs))
	for _, r := range rs {
		e, err := Decode(r)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Until keeps the events that occurred at or before t (for as_of reads).
func Until(evs []Envelope, t time.Time) []Envelope {
	for i, e := range evs {
		if e.Meta.OccurredAt.After(t) {
			return evs[:i]
		}
	}
	return evs
}

// ReadRecord loads and decodes a record's whole stream for an organization.
// A missing stream and another organization's stream are both
// domain.ErrNotFound: callers must not be able to tell them apart.
func ReadRecord(ctx context.Context, r eventstore.StreamReader, stream, orgID string) ([]Envelope, error) {
	raw, err := eventstore.ReadFullStream(ctx, r, stream)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, domain.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	envs, err := DecodeAll(raw)
	if err != nil {
		return nil, err
	}
	if len(envs) == 0 || envs[0].Meta.OrgID != orgID {
		return nil, domain.ErrNotFound
	}
	return envs, nil
}

// Recorded strips store details, for the domain's fold functions.
func Recorded(envs []Envelope) []domain.Recorded {
	out := make([]domain.Recorded, len(envs))
	for i, e := range envs {
		out[i] = domain.Recorded{Event: e.Event, Metadata: e.Meta}
	}
	return out
}
