package domain_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/salesos/salesos/domain"
)

// Wire names are stored and sent to webhook subscribers; this table is the
// tripwire for anyone tempted to rename one.
func TestEventWireNames(t *testing.T) {
	tests := []struct {
		event domain.Event
		want  string
	}{
		{domain.LeadCreated{}, "lead.created"},
		{domain.LeadUpdated{}, "lead.updated"},
		{domain.LeadStatusChanged{}, "lead.status_changed"},
		{domain.LeadConverted{}, "lead.converted"},
		{domain.LeadDeleted{}, "lead.deleted"},
		{domain.DealCreated{}, "deal.created"},
		{domain.DealUpdated{}, "deal.updated"},
		{domain.DealStageChanged{}, "deal.stage_changed"},
		{domain.DealWon{}, "deal.won"},
		{domain.DealLost{}, "deal.lost"},
		{domain.DealDeleted{}, "deal.deleted"},
	}
	var names []string
	for _, tt := range tests {
		if got := tt.event.EventType(); got != tt.want {
			t.Errorf("%T.EventType() = %q, want %q", tt.event, got, tt.want)
		}
		names = append(names, tt.want)
	}
	slices.Sort(names)
	if got := domain.EventTypes(); !slices.Equal(got, names) {
		t.Errorf("EventTypes() = %v, want %v", got, names)
	}
}

func TestEncodeDecodeRoundTripsEveryEvent(t *testing.T) {
	date, _ := domain.ParseDate("2026-06-30")
	custom := map[string]json.RawMessage{"tier": json.RawMessage(`"gold"`), "n": json.RawMessage(`0.10`)}
	events := []domain.Event{
		domain.LeadCreated{ID: "lead_1", Name: "Ada", Email: str("ada@example.com"), Status: domain.LeadStatusNew, CustomFields: custom},
		domain.LeadUpdated{Name: domain.OptOf("Ada L."), Email: domain.OptNull[string](), CustomFields: domain.OptOf(custom)},
		domain.LeadStatusChanged{From: domain.LeadStatusNew, To: domain.LeadStatusQualified},
		domain.LeadConverted{DealID: "deal_1", From: domain.LeadStatusQualified},
		domain.LeadDeleted{},
		domain.DealCreated{ID: "deal_1", Name: "D", Amount: amount(t, "12345678901234.123456"), Currency: str("USD"),
			Stage: domain.DealStageQualification, LeadID: str("lead_1"), ExpectedCloseDate: &date, CustomFields: map[string]json.RawMessage{}},
		domain.DealUpdated{Amount: domain.OptOf(*amount(t, "0.1")), Currency: domain.OptOf("EUR"),
			ExpectedCloseDate: domain.OptOf(date), OwnerID: domain.OptNull[string]()},
		domain.DealStageChanged{From: domain.DealStageWon, To: domain.DealStageProposal},
		domain.DealWon{From: domain.DealStageNegotiation},
		domain.DealLost{From: domain.DealStageProposal, LostReason: "budget"},
		domain.DealDeleted{},
	}
	covered := map[string]bool{}
	for _, e := range events {
		t.Run(e.EventType(), func(t *testing.T) {
			typ, version, data, err := domain.EncodeEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			if typ != e.EventType() || version != 1 {
				t.Errorf("encoded as %s v%d", typ, version)
			}
			got, err := domain.DecodeEvent(typ, version, data)
			if err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			if !reflect.DeepEqual(got, e) {
				t.Errorf("round trip of %s\n got %#v\nwant %#v", data, got, e)
			}
			covered[typ] = true
		})
	}
	for _, typ := range domain.EventTypes() {
		if !covered[typ] {
			t.Errorf("no round-trip case for %s", typ)
		}
	}
}

// Payloads are a public format (webhooks, other services reading the
// store): pin the shape of the ones whose encoding is not obvious.
func TestEventPayloadShapes(t *testing.T) {
	tests := []struct {
		event domain.Event
		want  string
	}{
		{domain.LeadUpdated{Email: domain.OptOf("a@b.c"), Phone: domain.OptNull[string]()}, `{"email":"a@b.c","phone":null}`},
		{domain.DealUpdated{Amount: domain.OptOf(*amount(t, "1250.50"))}, `{"amount":1250.5}`},
		{domain.DealLost{From: domain.DealStageProposal, LostReason: "budget"}, `{"from":"proposal","lost_reason":"budget"}`},
		{domain.LeadDeleted{}, `{}`},
	}
	for _, tt := range tests {
		_, _, data, err := domain.EncodeEvent(tt.event)
		if err != nil || string(data) != tt.want {
			t.Errorf("%s: got %s (%v), want %s", tt.event.EventType(), data, err, tt.want)
		}
	}
}

func TestDecodeRefusesWhatItDoesNotKnow(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		version int
	}{
		{"an unknown type", "lead.merged", 1},
		{"a type named after a Go type", "LeadCreated", 1},
		{"a version from a newer release", "lead.created", 2},
		{"a version that never existed", "lead.created", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := domain.DecodeEvent(tt.typ, tt.version, []byte(`{}`)); !errors.Is(err, domain.ErrUnknownEvent) {
				t.Errorf("err = %v, want ErrUnknownEvent", err)
			}
		})
	}
	if _, err := domain.DecodeEvent("lead.created", 1, []byte(`{"name":`)); err == nil || errors.Is(err, domain.ErrUnknownEvent) {
		t.Errorf("corrupt payload: err = %v, want a decode error", err)
	}
}

type foreignEvent struct{}

func (foreignEvent) EventType() string { return "lead.merged" }

func TestEncodeRefusesUnregisteredEvents(t *testing.T) {
	if _, _, _, err := domain.EncodeEvent(foreignEvent{}); !errors.Is(err, domain.ErrUnknownEvent) {
		t.Errorf("err = %v, want ErrUnknownEvent", err)
	}
}

// A stream may hold events this build ignores; Version must still count
// them, or the next append would use the wrong expected version.
func TestApplyCountsEventsItDoesNotUnderstand(t *testing.T) {
	l := newLead(t, `{"name":"Ada"}`)
	l.Apply(foreignEvent{}, meta(1))
	if l.Version != 2 || l.Name != "Ada" {
		t.Errorf("version %d, name %q", l.Version, l.Name)
	}
}
