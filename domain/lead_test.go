package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/salesos/salesos/domain"
)

func TestCreateLeadValidation(t *testing.T) {
	manyFields := map[string]int{}
	for i := range 51 {
		manyFields[fmt.Sprintf("k%d", i)] = i
	}
	tooMany, _ := json.Marshal(map[string]any{"name": "Ada", "custom_fields": manyFields})

	tests := []struct {
		name string
		body string
		want []string
	}{
		{"a name is all a lead needs", `{"name":"Ada"}`, nil},
		{"name is required", `{}`, []string{"name:required"}},
		{"a blank name is no name", `{"name":"   "}`, []string{"name:required"}},
		{"name holds at most 200 characters", `{"name":"` + strings.Repeat("é", 201) + `"}`, []string{"name:too_long"}},
		{"200 characters are fine", `{"name":"` + strings.Repeat("é", 200) + `"}`, nil},
		{"email must be an address", `{"name":"Ada","email":"ada"}`, []string{"email:invalid_format"}},
		{"email takes no display name", `{"name":"Ada","email":"Ada <ada@example.com>"}`, []string{"email:invalid_format"}},
		{"email holds at most 254 characters", `{"name":"Ada","email":"` + strings.Repeat("a", 250) + `@b.co"}`, []string{"email:too_long"}},
		{"email may be null", `{"name":"Ada","email":null}`, nil},
		{"other texts hold at most 500 characters", `{"name":"Ada","company":"` + strings.Repeat("x", 501) + `"}`, []string{"company:too_long"}},
		{"status must be one of the enum", `{"name":"Ada","status":"hot"}`, []string{"status:invalid_value"}},
		{"status is case sensitive", `{"name":"Ada","status":"New"}`, []string{"status:invalid_value"}},
		{"a lead cannot be created converted", `{"name":"Ada","status":"converted"}`, []string{"status:invalid_value"}},
		{"custom fields hold at most 50 keys", string(tooMany), []string{"custom_fields:too_long"}},
		{"custom field keys are at most 64 characters", `{"name":"Ada","custom_fields":{"` + strings.Repeat("k", 65) + `":1}}`, []string{"custom_fields:invalid_format"}},
		{"custom field keys are not empty", `{"name":"Ada","custom_fields":{"":1}}`, []string{"custom_fields:invalid_format"}},
		{"every problem is reported at once", `{"email":"nope","status":"hot","title":"` + strings.Repeat("x", 501) + `"}`,
			[]string{"email:invalid_format", "name:required", "status:invalid_value", "title:too_long"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := domain.CreateLead("lead_1", "org_1", decode[domain.LeadInput](t, tt.body))
			if got := fieldErrors(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCreatedLeadHasTheContractShape(t *testing.T) {
	l := newLead(t, `{"name":"Ada Lovelace","email":"ada@example.com","phone":"+44 20 7946 0958",
		"company":"Analytical Engines","title":"CTO","source":"web","custom_fields":{"tier":"gold","score":0.10,"gone":null}}`)
	want := `{"id":"lead_1","name":"Ada Lovelace","email":"ada@example.com","phone":"+44 20 7946 0958",` +
		`"company":"Analytical Engines","title":"CTO","source":"web","status":"new","owner_id":null,` +
		`"custom_fields":{"score":0.10,"tier":"gold"},"created_at":"2026-03-15T14:30:00Z","updated_at":"2026-03-15T14:30:00Z","version":1}`
	if got := mustJSON(t, l); got != want {
		t.Errorf("lead JSON\n got %s\nwant %s", got, want)
	}
	if l.OrgID != "org_1" {
		t.Errorf("OrgID = %q, want it from the metadata", l.OrgID)
	}
}

func TestLeadCustomFieldsAreAlwaysAnObject(t *testing.T) {
	for _, l := range []domain.Lead{{}, newLead(t, `{"name":"Ada"}`), newLead(t, `{"name":"Ada","custom_fields":null}`)} {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(mustJSON(t, l)), &m); err != nil {
			t.Fatal(err)
		}
		if string(m["custom_fields"]) != "{}" {
			t.Errorf("custom_fields = %s, want {}", m["custom_fields"])
		}
	}
}

func TestLeadUpdate(t *testing.T) {
	base := `{"name":"Ada","email":"ada@example.com","company":"AE","custom_fields":{"tier":"gold","address":{"city":"London","zip":"N1"}}}`
	tests := []struct {
		name       string
		patch      string
		wantEvents []string
		wantErrors []string
		check      func(t *testing.T, l domain.Lead)
	}{
		{name: "an empty patch changes nothing", patch: `{}`, wantEvents: []string{}},
		{name: "setting a field to its current value changes nothing", patch: `{"name":"Ada","email":"ada@example.com","status":"new"}`, wantEvents: []string{}},
		{name: "a plain field change is lead.updated", patch: `{"email":"ada@analytical.example"}`,
			wantEvents: []string{domain.EventLeadUpdated},
			check: func(t *testing.T, l domain.Lead) {
				if *l.Email != "ada@analytical.example" {
					t.Errorf("email = %s", *l.Email)
				}
			}},
		{name: "null clears a field", patch: `{"company":null}`, wantEvents: []string{domain.EventLeadUpdated},
			check: func(t *testing.T, l domain.Lead) {
				if l.Company != nil {
					t.Errorf("company = %q, want null", *l.Company)
				}
			}},
		{name: "absent fields are left alone", patch: `{"title":"CTO"}`, wantEvents: []string{domain.EventLeadUpdated},
			check: func(t *testing.T, l domain.Lead) {
				if l.Company == nil || *l.Company != "AE" || *l.Email != "ada@example.com" {
					t.Errorf("untouched fields changed: %+v", l)
				}
			}},
		{name: "name cannot be cleared", patch: `{"name":null}`, wantErrors: []string{"name:required"}},
		{name: "name cannot be blanked", patch: `{"name":""}`, wantErrors: []string{"name:required"}},
		{name: "email is validated", patch: `{"email":"not an email"}`, wantErrors: []string{"email:invalid_format"}},
		{name: "a status change is lead.status_changed", patch: `{"status":"contacted"}`,
			wantEvents: []string{domain.EventLeadStatusChanged},
			check: func(t *testing.T, l domain.Lead) {
				if l.Status != domain.LeadStatusContacted {
					t.Errorf("status = %s", l.Status)
				}
			}},
		{name: "fields and status together: updated, then status_changed", patch: `{"title":"CTO","status":"qualified"}`,
			wantEvents: []string{domain.EventLeadUpdated, domain.EventLeadStatusChanged}},
		{name: "status cannot be cleared", patch: `{"status":null}`, wantErrors: []string{"status:required"}},
		{name: "status must be one of the enum", patch: `{"status":"won"}`, wantErrors: []string{"status:invalid_value"}},
		{name: "converted is reached only through convert", patch: `{"status":"converted"}`, wantErrors: []string{"status:invalid_value"}},
		{name: "all problems at once", patch: `{"name":null,"email":"x","status":"won"}`,
			wantErrors: []string{"email:invalid_format", "name:required", "status:invalid_value"}},
		{name: "custom fields merge: new keys are added", patch: `{"custom_fields":{"score":42}}`,
			wantEvents: []string{domain.EventLeadUpdated},
			check:      wantCustomFields(`{"address":{"city":"London","zip":"N1"},"score":42,"tier":"gold"}`)},
		{name: "custom fields merge: null removes a key", patch: `{"custom_fields":{"tier":null}}`,
			wantEvents: []string{domain.EventLeadUpdated},
			check:      wantCustomFields(`{"address":{"city":"London","zip":"N1"}}`)},
		{name: "custom fields merge: nested objects merge too (RFC 7396)", patch: `{"custom_fields":{"address":{"city":"Paris"}}}`,
			wantEvents: []string{domain.EventLeadUpdated},
			check:      wantCustomFields(`{"address":{"city":"Paris","zip":"N1"},"tier":"gold"}`)},
		{name: "custom fields merge: an object replaces a scalar, minus its nulls", patch: `{"custom_fields":{"tier":{"level":2,"old":null}}}`,
			wantEvents: []string{domain.EventLeadUpdated},
			check:      wantCustomFields(`{"address":{"city":"London","zip":"N1"},"tier":{"level":2}}`)},
		{name: "custom fields merge: removing a missing key changes nothing", patch: `{"custom_fields":{"nope":null}}`, wantEvents: []string{}},
		{name: "custom fields: null clears them all", patch: `{"custom_fields":null}`,
			wantEvents: []string{domain.EventLeadUpdated}, check: wantCustomFields(`{}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLead(t, base)
			before := mustJSON(t, l)
			events, err := l.Update(decode[domain.LeadPatch](t, tt.patch))
			if got := fieldErrors(t, err); !slices.Equal(got, tt.wantErrors) {
				t.Fatalf("errors = %v, want %v", got, tt.wantErrors)
			}
			if mustJSON(t, l) != before {
				t.Fatalf("Update modified the lead it was called on")
			}
			if err != nil {
				return
			}
			if got := eventTypes(events); !slices.Equal(got, tt.wantEvents) {
				t.Fatalf("events = %v, want %v", got, tt.wantEvents)
			}
			applyLead(&l, 1, events)
			if l.Version != int64(1+len(events)) {
				t.Errorf("version = %d, want one per event", l.Version)
			}
			if tt.check != nil {
				tt.check(t, l)
			}
		})
	}
}

func wantCustomFields(want string) func(t *testing.T, l domain.Lead) {
	return func(t *testing.T, l domain.Lead) {
		t.Helper()
		if got := mustJSON(t, l.CustomFields); got != want {
			t.Errorf("custom_fields = %s, want %s", got, want)
		}
	}
}

func TestConvertedLead(t *testing.T) {
	convert := func(t *testing.T) domain.Lead {
		l := newLead(t, `{"name":"Ada","company":"AE"}`)
		events, err := l.Convert("deal_1")
		if err != nil {
			t.Fatal(err)
		}
		applyLead(&l, 1, events)
		return l
	}

	t.Run("converting sets the status and links the deal", func(t *testing.T) {
		l := convert(t)
		if l.Status != domain.LeadStatusConverted || l.ConvertedDealID != "deal_1" || l.Version != 2 {
			t.Errorf("got status %s, deal %q, version %d", l.Status, l.ConvertedDealID, l.Version)
		}
	})
	t.Run("converting twice is a conflict", func(t *testing.T) {
		if _, err := convert(t).Convert("deal_2"); !errors.Is(err, domain.ErrConflict) {
			t.Errorf("err = %v, want ErrConflict", err)
		}
	})
	t.Run("plain fields can still be corrected", func(t *testing.T) {
		events, err := convert(t).Update(decode[domain.LeadPatch](t, `{"title":"CEO"}`))
		if err != nil || !slices.Equal(eventTypes(events), []string{domain.EventLeadUpdated}) {
			t.Errorf("events %v, err %v", eventTypes(events), err)
		}
	})
	t.Run("restating converted changes nothing", func(t *testing.T) {
		events, err := convert(t).Update(decode[domain.LeadPatch](t, `{"status":"converted"}`))
		if err != nil || len(events) != 0 {
			t.Errorf("events %v, err %v", eventTypes(events), err)
		}
	})
	t.Run("the status can no longer change", func(t *testing.T) {
		_, err := convert(t).Update(decode[domain.LeadPatch](t, `{"status":"qualified"}`))
		if !errors.Is(err, domain.ErrConflict) {
			t.Errorf("err = %v, want ErrConflict", err)
		}
	})
}

func TestDeletedOrMissingLeadIsNotFound(t *testing.T) {
	deleted := newLead(t, `{"name":"Ada"}`)
	events, err := deleted.Delete()
	if err != nil {
		t.Fatal(err)
	}
	applyLead(&deleted, 1, events)
	if !deleted.Deleted || deleted.DeletedAt == nil || !deleted.DeletedAt.Equal(meta(1).OccurredAt) {
		t.Fatalf("after delete: Deleted=%v DeletedAt=%v", deleted.Deleted, deleted.DeletedAt)
	}

	for name, l := range map[string]domain.Lead{"deleted": deleted, "never created": {ID: "lead_x"}} {
		ops := map[string]func() ([]domain.Event, error){
			"delete":  l.Delete,
			"update":  func() ([]domain.Event, error) { return l.Update(decode[domain.LeadPatch](t, `{"name":"B"}`)) },
			"convert": func() ([]domain.Event, error) { return l.Convert("deal_1") },
		}
		for op, f := range ops {
			if _, err := f(); !errors.Is(err, domain.ErrNotFound) {
				t.Errorf("%s on a %s lead: err = %v, want ErrNotFound", op, name, err)
			}
		}
	}
}

func TestLeadApplyTimestampsAndVersion(t *testing.T) {
	l := newLead(t, `{"name":"Ada"}`)
	events, _ := l.Update(decode[domain.LeadPatch](t, `{"name":"Ada L.","status":"contacted"}`))
	applyLead(&l, 5, events)
	if !l.CreatedAt.Equal(meta(0).OccurredAt) {
		t.Errorf("created_at = %v, want the creation event's time", l.CreatedAt)
	}
	if !l.UpdatedAt.Equal(meta(6).OccurredAt) {
		t.Errorf("updated_at = %v, want the last event's time", l.UpdatedAt)
	}
	if l.Version != 3 {
		t.Errorf("version = %d, want 3", l.Version)
	}
}

func TestFoldLead(t *testing.T) {
	created, _ := domain.CreateLead("lead_1", "org_1", domain.LeadInput{Name: "Ada"})
	stream := []domain.Recorded{{Event: created[0], Metadata: meta(0)}}

	l, err := domain.FoldLead("lead_1", stream)
	if err != nil || l.ID != "lead_1" || l.Name != "Ada" || l.Version != 1 {
		t.Fatalf("fold = %+v, %v", l, err)
	}
	if _, err := domain.FoldLead("lead_1", nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("empty stream: err = %v, want ErrNotFound", err)
	}
	stream = append(stream, domain.Recorded{Event: domain.LeadDeleted{}, Metadata: meta(1)})
	l, err = domain.FoldLead("lead_1", stream)
	if !errors.Is(err, domain.ErrNotFound) || l.Name != "Ada" || l.Version != 2 {
		t.Errorf("deleted stream: %+v, %v; want ErrNotFound with the last state", l, err)
	}
}

func TestParseLeadStatus(t *testing.T) {
	for _, s := range []string{"new", "contacted", "qualified", "unqualified", "converted"} {
		if got, err := domain.ParseLeadStatus(s); err != nil || string(got) != s {
			t.Errorf("ParseLeadStatus(%q) = %q, %v", s, got, err)
		}
	}
	_, err := domain.ParseLeadStatus("open")
	if got := fieldErrors(t, err); !reflect.DeepEqual(got, []string{"status:invalid_value"}) {
		t.Errorf("got %v", got)
	}
}
