package domain_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/domain"
)

var t0 = time.Date(2026, 3, 15, 14, 30, 0, 0, time.UTC)

// meta returns metadata for the n-th event of a test, one minute apart, so
// assertions can tell which event set a timestamp.
func meta(n int) domain.Metadata {
	return domain.Metadata{
		EventID:    "evt_" + string(rune('a'+n)),
		OccurredAt: t0.Add(time.Duration(n) * time.Minute),
		OrgID:      "org_1",
		Actor:      domain.Actor{Sub: "user_1", Type: domain.ActorUser},
	}
}

func str(s string) *string { return &s }

func amount(t *testing.T, s string) *domain.Amount {
	t.Helper()
	a, err := domain.ParseAmount(s)
	if err != nil {
		t.Fatalf("ParseAmount(%q): %v", s, err)
	}
	return &a
}

// decode reads a request body the way the API does, so tests can state
// patches exactly as clients send them.
func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

// applyLead folds events into l, numbering their metadata from n.
func applyLead(l *domain.Lead, n int, events []domain.Event) {
	for i, e := range events {
		l.Apply(e, meta(n+i))
	}
}

func applyDeal(d *domain.Deal, n int, events []domain.Event) {
	for i, e := range events {
		d.Apply(e, meta(n+i))
	}
}

func newLead(t *testing.T, body string) domain.Lead {
	t.Helper()
	events, err := domain.CreateLead("lead_1", "org_1", decode[domain.LeadInput](t, body))
	if err != nil {
		t.Fatalf("CreateLead(%s): %v", body, err)
	}
	var l domain.Lead
	applyLead(&l, 0, events)
	return l
}

func newDeal(t *testing.T, body string) domain.Deal {
	t.Helper()
	events, err := domain.CreateDeal("deal_1", "org_1", decode[domain.DealInput](t, body))
	if err != nil {
		t.Fatalf("CreateDeal(%s): %v", body, err)
	}
	var d domain.Deal
	applyDeal(&d, 0, events)
	return d
}

// fieldErrors renders a validation error as "field:code" pairs, sorted, so
// tables can list the expected problems compactly. A nil error gives nil.
func fieldErrors(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T: %v", err, err)
	}
	var out []string
	for _, d := range ve.Details {
		if d.Message == "" {
			t.Errorf("field error %s/%s has no message", d.Field, d.Code)
		}
		out = append(out, d.Field+":"+d.Code)
	}
	slices.Sort(out)
	return out
}

func eventTypes(events []domain.Event) []string {
	out := []string{}
	for _, e := range events {
		out = append(out, e.EventType())
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return string(b)
}
