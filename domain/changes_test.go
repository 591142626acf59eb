package domain_test

import (
	"testing"

	"github.com/salesos/salesos/domain"
)

// changeSummary renders changes as field -> "from→to" for compact tables.
func changeSummary(changes map[string]domain.Change) map[string]string {
	out := map[string]string{}
	for k, c := range changes {
		out[k] = string(c.From) + "→" + string(c.To)
	}
	return out
}

func TestLeadChanges(t *testing.T) {
	created := newLead(t, `{"name":"Ada","email":"ada@example.com","custom_fields":{"tier":"gold"}}`)

	updated := created
	events, _ := updated.Update(decode[domain.LeadPatch](t, `{"email":null,"title":"CTO","status":"qualified"}`))
	applyLead(&updated, 1, events)

	converted := updated
	events, _ = converted.Convert("deal_1")
	applyLead(&converted, 3, events)

	deleted := converted
	events, _ = deleted.Delete()
	applyLead(&deleted, 4, events)

	tests := []struct {
		name          string
		before, after domain.Lead
		want          map[string]string
	}{
		{"creation lists every non-null field from null, bookkeeping excluded", domain.Lead{}, created, map[string]string{
			"name": `null→"Ada"`, "email": `null→"ada@example.com"`, "status": `null→"new"`, "custom_fields": `null→{"tier":"gold"}`,
		}},
		{"an update lists only what changed", created, updated, map[string]string{
			"email": `"ada@example.com"→null`, "title": `null→"CTO"`, "status": `"new"→"qualified"`,
		}},
		{"conversion shows the status and the deal", updated, converted, map[string]string{
			"status": `"qualified"→"converted"`, "converted_deal_id": `null→"deal_1"`,
		}},
		{"deletion clears every field", converted, deleted, map[string]string{
			"name": `"Ada"→null`, "title": `"CTO"→null`, "status": `"converted"→null`,
			"custom_fields": `{"tier":"gold"}→null`, "converted_deal_id": `"deal_1"→null`,
		}},
		{"no change, no entries", created, created, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := changeSummary(domain.LeadChanges(tt.before, tt.after))
			if len(got) != len(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: got %s, want %s", k, got[k], v)
				}
			}
		})
	}
}

func TestDealChanges(t *testing.T) {
	before := newDeal(t, `{"name":"D","amount":100,"currency":"USD"}`)
	after := before
	events, _ := after.Update(decode[domain.DealPatch](t, `{"amount":1250.50,"stage":"lost","lost_reason":"price"}`))
	applyDeal(&after, 1, events)

	got := changeSummary(domain.DealChanges(before, after))
	want := map[string]string{
		"amount":      `100→1250.5`,
		"stage":       `"qualification"→"lost"`,
		"lost_reason": `null→"price"`,
		"closed_at":   `null→"2026-03-15T14:32:00Z"`,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %s, want %s", k, got[k], v)
		}
	}
	if s := mustJSON(t, domain.DealChanges(before, before)); s != "{}" {
		t.Errorf("no changes serialize as %s, want {}", s)
	}
}
