package domain_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/domain"
)

func TestCreateDealValidation(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"a name is all a deal needs", `{"name":"Big sale"}`, nil},
		{"name is required", `{"amount":10,"currency":"USD"}`, []string{"name:required"}},
		{"amount with currency", `{"name":"D","amount":1250.5,"currency":"EUR"}`, nil},
		{"amount zero is fine", `{"name":"D","amount":0,"currency":"EUR"}`, nil},
		{"amount must not be negative", `{"name":"D","amount":-1,"currency":"USD"}`, []string{"amount:must_be_non_negative"}},
		{"amount requires a currency", `{"name":"D","amount":10}`, []string{"currency:required"}},
		{"currency alone is fine", `{"name":"D","currency":"JPY"}`, nil},
		{"currency is uppercase", `{"name":"D","amount":1,"currency":"usd"}`, []string{"currency:invalid_format"}},
		{"currency is three letters", `{"name":"D","currency":"US"}`, []string{"currency:invalid_format"}},
		{"currency is an ISO 4217 code", `{"name":"D","currency":"XYZ"}`, []string{"currency:invalid_value"}},
		{"stage must be one of the enum", `{"name":"D","stage":"closed"}`, []string{"stage:invalid_value"}},
		{"lost requires lost_reason", `{"name":"D","stage":"lost"}`, []string{"lost_reason:required"}},
		{"a blank lost_reason is no reason", `{"name":"D","stage":"lost","lost_reason":" "}`, []string{"lost_reason:required"}},
		{"lost with a reason", `{"name":"D","stage":"lost","lost_reason":"budget"}`, nil},
		{"lost_reason belongs to lost deals only", `{"name":"D","stage":"won","lost_reason":"budget"}`, []string{"lost_reason:invalid_value"}},
		{"every problem is reported at once", `{"amount":-5,"currency":"usd","stage":"lost"}`,
			[]string{"amount:must_be_non_negative", "currency:invalid_format", "lost_reason:required", "name:required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := domain.CreateDeal("deal_1", "org_1", decode[domain.DealInput](t, tt.body))
			if got := fieldErrors(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCreatedDealHasTheContractShape(t *testing.T) {
	d := newDeal(t, `{"name":"Engines","amount":12345678901234.123456,"currency":"GBP","lead_id":"lead_1","expected_close_date":"2026-06-30"}`)
	want := `{"id":"deal_1","name":"Engines","amount":12345678901234.123456,"currency":"GBP","stage":"qualification",` +
		`"lead_id":"lead_1","owner_id":null,"expected_close_date":"2026-06-30","lost_reason":null,"custom_fields":{},` +
		`"created_at":"2026-03-15T14:30:00Z","updated_at":"2026-03-15T14:30:00Z","closed_at":null,"version":1}`
	if got := mustJSON(t, d); got != want {
		t.Errorf("deal JSON\n got %s\nwant %s", got, want)
	}
}

func TestDealCreatedClosedIsClosedAtCreation(t *testing.T) {
	d := newDeal(t, `{"name":"D","stage":"won"}`)
	if d.ClosedAt == nil || !d.ClosedAt.Equal(meta(0).OccurredAt) {
		t.Errorf("closed_at = %v, want the creation time", d.ClosedAt)
	}
}

func TestDealUpdate(t *testing.T) {
	const open = `{"name":"D","amount":100,"currency":"USD","stage":"proposal"}`
	const won = `{"name":"D","amount":100,"currency":"USD","stage":"won"}`
	const lost = `{"name":"D","amount":100,"currency":"USD","stage":"lost","lost_reason":"price"}`
	closedAt := func(want *time.Time) func(*testing.T, domain.Deal) {
		return func(t *testing.T, d domain.Deal) {
			t.Helper()
			if (d.ClosedAt == nil) != (want == nil) || (want != nil && !d.ClosedAt.Equal(*want)) {
				t.Errorf("closed_at = %v, want %v", d.ClosedAt, want)
			}
		}
	}
	patchTime := meta(1).OccurredAt // the first event of the patch

	tests := []struct {
		name       string
		deal       string
		patch      string
		wantEvents []string
		wantErrors []string
		check      func(*testing.T, domain.Deal)
	}{
		{name: "an empty patch changes nothing", deal: open, patch: `{}`, wantEvents: []string{}},
		{name: "an equal amount written differently changes nothing", deal: open, patch: `{"amount":100.00}`, wantEvents: []string{}},
		{name: "an amount change is deal.updated", deal: open, patch: `{"amount":0.1}`, wantEvents: []string{domain.EventDealUpdated},
			check: func(t *testing.T, d domain.Deal) {
				if d.Amount.String() != "0.1" {
					t.Errorf("amount = %s", d.Amount)
				}
			}},
		{name: "amount must not become negative", deal: open, patch: `{"amount":-0.5}`, wantErrors: []string{"amount:must_be_non_negative"}},
		{name: "currency cannot be cleared while there is an amount", deal: open, patch: `{"currency":null}`, wantErrors: []string{"currency:required"}},
		{name: "amount and currency can be cleared together", deal: open, patch: `{"amount":null,"currency":null}`, wantEvents: []string{domain.EventDealUpdated}},
		{name: "currency is validated", deal: open, patch: `{"currency":"eur"}`, wantErrors: []string{"currency:invalid_format"}},
		{name: "stage cannot be cleared", deal: open, patch: `{"stage":null}`, wantErrors: []string{"stage:required"}},
		{name: "stage must be one of the enum", deal: open, patch: `{"stage":"closed_won"}`, wantErrors: []string{"stage:invalid_value"}},
		{name: "moving between open stages is deal.stage_changed", deal: open, patch: `{"stage":"negotiation"}`,
			wantEvents: []string{domain.EventDealStageChanged}, check: closedAt(nil)},
		{name: "moving to won is deal.won and sets closed_at", deal: open, patch: `{"stage":"won"}`,
			wantEvents: []string{domain.EventDealWon}, check: closedAt(&patchTime)},
		{name: "moving to lost needs a reason", deal: open, patch: `{"stage":"lost"}`, wantErrors: []string{"lost_reason:required"}},
		{name: "moving to lost with a reason is deal.lost and sets closed_at", deal: open, patch: `{"stage":"lost","lost_reason":"timing"}`,
			wantEvents: []string{domain.EventDealLost},
			check: func(t *testing.T, d domain.Deal) {
				closedAt(&patchTime)(t, d)
				if d.LostReason == nil || *d.LostReason != "timing" {
					t.Errorf("lost_reason = %v", d.LostReason)
				}
			}},
		{name: "fields and stage together: updated, then won", deal: open, patch: `{"amount":120,"stage":"won"}`,
			wantEvents: []string{domain.EventDealUpdated, domain.EventDealWon}},
		{name: "reopening a won deal clears closed_at", deal: won, patch: `{"stage":"negotiation"}`,
			wantEvents: []string{domain.EventDealStageChanged}, check: closedAt(nil)},
		{name: "reopening a lost deal clears closed_at and lost_reason", deal: lost, patch: `{"stage":"qualification"}`,
			wantEvents: []string{domain.EventDealStageChanged},
			check: func(t *testing.T, d domain.Deal) {
				closedAt(nil)(t, d)
				if d.LostReason != nil {
					t.Errorf("lost_reason = %q, want null", *d.LostReason)
				}
			}},
		{name: "a lost deal keeps its reason while other fields change", deal: lost, patch: `{"name":"D2"}`,
			wantEvents: []string{domain.EventDealUpdated},
			check: func(t *testing.T, d domain.Deal) {
				if d.LostReason == nil || *d.LostReason != "price" || d.ClosedAt == nil {
					t.Errorf("lost_reason = %v, closed_at = %v", d.LostReason, d.ClosedAt)
				}
			}},
		{name: "a lost deal's reason can be reworded", deal: lost, patch: `{"lost_reason":"price too high"}`, wantEvents: []string{domain.EventDealUpdated}},
		{name: "a lost deal's reason cannot be cleared", deal: lost, patch: `{"lost_reason":null}`, wantErrors: []string{"lost_reason:required"}},
		{name: "restating lost with the same reason changes nothing", deal: lost, patch: `{"stage":"lost","lost_reason":"price"}`, wantEvents: []string{}},
		{name: "won to lost moves closed_at to the loss", deal: won, patch: `{"stage":"lost","lost_reason":"cancelled"}`,
			wantEvents: []string{domain.EventDealLost}, check: closedAt(&patchTime)},
		{name: "an open deal takes no lost_reason", deal: open, patch: `{"lost_reason":"maybe"}`, wantErrors: []string{"lost_reason:invalid_value"}},
		{name: "expected_close_date can be set and cleared", deal: open, patch: `{"expected_close_date":"2026-12-31"}`,
			wantEvents: []string{domain.EventDealUpdated},
			check: func(t *testing.T, d domain.Deal) {
				if d.ExpectedCloseDate == nil || d.ExpectedCloseDate.String() != "2026-12-31" {
					t.Errorf("expected_close_date = %v", d.ExpectedCloseDate)
				}
			}},
		{name: "custom fields merge", deal: open, patch: `{"custom_fields":{"a":1}}`, wantEvents: []string{domain.EventDealUpdated}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeal(t, tt.deal)
			events, err := d.Update(decode[domain.DealPatch](t, tt.patch))
			if got := fieldErrors(t, err); !slices.Equal(got, tt.wantErrors) {
				t.Fatalf("errors = %v, want %v", got, tt.wantErrors)
			}
			if err != nil {
				return
			}
			if got := eventTypes(events); !slices.Equal(got, tt.wantEvents) {
				t.Fatalf("events = %v, want %v", got, tt.wantEvents)
			}
			applyDeal(&d, 1, events)
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}

func TestDeletedOrMissingDealIsNotFound(t *testing.T) {
	d := newDeal(t, `{"name":"D"}`)
	events, err := d.Delete()
	if err != nil {
		t.Fatal(err)
	}
	applyDeal(&d, 1, events)
	for name, d := range map[string]domain.Deal{"deleted": d, "never created": {}} {
		if _, err := d.Delete(); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("delete a %s deal: %v, want ErrNotFound", name, err)
		}
		if _, err := d.Update(decode[domain.DealPatch](t, `{"name":"X"}`)); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("update a %s deal: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := domain.FoldDeal("deal_1", nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("FoldDeal of an empty stream: %v", err)
	}
}

func TestDealFromConversion(t *testing.T) {
	tests := []struct {
		name       string
		lead       string
		in         string
		wantName   string
		wantAmount string
		wantErrors []string
	}{
		{name: "the deal is named after the lead's company", lead: `{"name":"Ada","company":"Analytical Engines","owner_id":"u_7"}`, in: `{}`, wantName: "Analytical Engines"},
		{name: "or after the lead when it has no company", lead: `{"name":"Ada"}`, in: `{}`, wantName: "Ada"},
		{name: "an empty company does not name a deal", lead: `{"name":"Ada","company":""}`, in: `{}`, wantName: "Ada"},
		{name: "a long company is shortened to a valid name", lead: `{"name":"Ada","company":"` + strings.Repeat("c", 300) + `"}`, in: `{}`, wantName: strings.Repeat("c", 200)},
		{name: "the client may name the deal and price it", lead: `{"name":"Ada"}`, in: `{"name":"Engines","amount":1250.50,"currency":"USD"}`, wantName: "Engines", wantAmount: "1250.5"},
		{name: "a given name must not be blank", lead: `{"name":"Ada"}`, in: `{"name":""}`, wantErrors: []string{"deal.name:required"}},
		{name: "an amount needs a currency", lead: `{"name":"Ada"}`, in: `{"amount":5}`, wantErrors: []string{"deal.currency:required"}},
		{name: "the amount must not be negative", lead: `{"name":"Ada"}`, in: `{"amount":-5,"currency":"USD"}`, wantErrors: []string{"deal.amount:must_be_non_negative"}},
		{name: "the currency is validated", lead: `{"name":"Ada"}`, in: `{"currency":"ABC"}`, wantErrors: []string{"deal.currency:invalid_value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lead := newLead(t, tt.lead)
			events, err := domain.DealFromConversion("deal_9", "org_1", lead, decode[domain.ConvertDealInput](t, tt.in))
			if got := fieldErrors(t, err); !slices.Equal(got, tt.wantErrors) {
				t.Fatalf("errors = %v, want %v", got, tt.wantErrors)
			}
			if err != nil {
				return
			}
			var d domain.Deal
			applyDeal(&d, 1, events)
			if d.ID != "deal_9" || d.Name != tt.wantName || d.Stage != domain.DealStageQualification {
				t.Errorf("deal = %s %q %s", d.ID, d.Name, d.Stage)
			}
			if d.LeadID == nil || *d.LeadID != lead.ID {
				t.Errorf("lead_id = %v, want %s", d.LeadID, lead.ID)
			}
			if !equalStrPtr(d.OwnerID, lead.OwnerID) {
				t.Errorf("owner_id = %v, want the lead's %v", d.OwnerID, lead.OwnerID)
			}
			if tt.wantAmount != "" && (d.Amount == nil || d.Amount.String() != tt.wantAmount) {
				t.Errorf("amount = %v, want %s", d.Amount, tt.wantAmount)
			}
		})
	}
}

func TestDealFromConversionNeedsAnUnconvertedLead(t *testing.T) {
	lead := newLead(t, `{"name":"Ada"}`)
	converted := lead
	events, _ := converted.Convert("deal_1")
	applyLead(&converted, 1, events)
	if _, err := domain.DealFromConversion("deal_2", "org_1", converted, domain.ConvertDealInput{}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("converted lead: %v, want ErrConflict", err)
	}
	deleted := lead
	events, _ = deleted.Delete()
	applyLead(&deleted, 1, events)
	if _, err := domain.DealFromConversion("deal_2", "org_1", deleted, domain.ConvertDealInput{}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("deleted lead: %v, want ErrNotFound", err)
	}
}

func equalStrPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestParseDealStage(t *testing.T) {
	for _, s := range []string{"qualification", "needs_analysis", "proposal", "negotiation", "won", "lost"} {
		st, err := domain.ParseDealStage(s)
		if err != nil || string(st) != s {
			t.Errorf("ParseDealStage(%q) = %q, %v", s, st, err)
		}
		if st.Closed() != (s == "won" || s == "lost") {
			t.Errorf("%s.Closed() = %v", s, st.Closed())
		}
	}
	if got := fieldErrors(t, func() error { _, err := domain.ParseDealStage("Won"); return err }()); !slices.Equal(got, []string{"stage:invalid_value"}) {
		t.Errorf("got %v", got)
	}
}
