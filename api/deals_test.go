package api_test

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/internal/apptest"
)

func TestDealCreate(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("deal-create"))

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		r := call(t, s, http.MethodPost, "/v1/deals", tok, `{"name":"Big deal"}`)
		m := wantStatus(t, r, http.StatusCreated)
		id, _ := m["id"].(string)
		if id == "" {
			t.Fatalf("no id: %s", r.Body)
		}
		if loc := r.Header.Get("Location"); loc != "/v1/deals/"+id {
			t.Errorf("Location %q", loc)
		}
		if et := r.Header.Get("ETag"); et != `"1"` {
			t.Errorf("ETag %q", et)
		}
		consistencyToken(t, r)
		wantKeys := "amount closed_at created_at currency custom_fields expected_close_date id lead_id lost_reason name owner_id stage updated_at version"
		if got := strings.Join(slices.Sorted(maps.Keys(m)), " "); got != wantKeys {
			t.Errorf("deal keys %q, want %q", got, wantKeys)
		}
		for _, k := range []string{"amount", "currency", "lead_id", "owner_id", "expected_close_date", "lost_reason", "closed_at"} {
			if m[k] != nil {
				t.Errorf("%s = %v, want null", k, m[k])
			}
		}
		if m["stage"] != "qualification" || m["name"] != "Big deal" {
			t.Errorf("deal: %s", r.Body)
		}
		jsonEq(t, "custom_fields", m["custom_fields"], `{}`)
		jsonEq(t, "version", m["version"], `1`)
		wantUTC(t, "created_at", m["created_at"])
		wantUTC(t, "updated_at", m["updated_at"])
	})

	t.Run("full", func(t *testing.T) {
		t.Parallel()
		m, ct := createDeal(t, s, tok, map[string]any{
			"name": "Full", "amount": 99, "currency": "USD", "stage": "proposal", "owner_id": "u1",
			"expected_close_date": "2026-03-15", "custom_fields": map[string]any{"k": "v"},
		})
		if m["stage"] != "proposal" || m["currency"] != "USD" || m["expected_close_date"] != "2026-03-15" || m["owner_id"] != "u1" || m["closed_at"] != nil {
			t.Errorf("deal: %v", m)
		}
		jsonEq(t, "amount", m["amount"], `99`)
		g := wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+m["id"].(string), tok, nil, "X-Consistency-Token", ct), http.StatusOK)
		jsonEq(t, "GET", g, mustJSON(t, m))
	})

	t.Run("created won", func(t *testing.T) {
		t.Parallel()
		m, _ := createDeal(t, s, tok, map[string]any{"name": "Won", "stage": "won"})
		if c := wantUTC(t, "closed_at", m["closed_at"]); !c.Equal(wantUTC(t, "created_at", m["created_at"])) {
			t.Errorf("closed_at %v, want created_at", c)
		}
		m, _ = createDeal(t, s, tok, map[string]any{"name": "Lost", "stage": "lost", "lost_reason": "budget"})
		wantUTC(t, "closed_at", m["closed_at"])
		if m["lost_reason"] != "budget" {
			t.Errorf("lost_reason %v", m["lost_reason"])
		}
	})

	t.Run("lead_id", func(t *testing.T) {
		t.Parallel()
		lead, _ := createLead(t, s, tok, map[string]any{"name": "L"})
		m, _ := createDeal(t, s, tok, map[string]any{"name": "For lead", "lead_id": lead["id"]})
		if m["lead_id"] != lead["id"] {
			t.Errorf("lead_id %v", m["lead_id"])
		}
		wantValidation(t, call(t, s, http.MethodPost, "/v1/deals", tok, `{"name":"x","lead_id":"lead_doesnotexist"}`), "lead_id", "")
		wantStatus(t, call(t, s, http.MethodDelete, "/v1/leads/"+lead["id"].(string), tok, nil), http.StatusNoContent)
		wantValidation(t, call(t, s, http.MethodPost, "/v1/deals", tok, map[string]any{"name": "x", "lead_id": lead["id"]}), "lead_id", "")
	})
}

func TestDealValidation(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("deal-valid"))
	for _, tc := range []struct {
		name, body, field, code string
	}{
		{"missing name", `{"amount":1,"currency":"USD"}`, "name", "required"},
		{"negative amount", `{"name":"x","amount":-0.01,"currency":"USD"}`, "amount", "must_be_non_negative"},
		{"amount without currency", `{"name":"x","amount":10}`, "currency", "required"},
		{"lowercase currency", `{"name":"x","amount":10,"currency":"usd"}`, "currency", "invalid_format"},
		{"long currency", `{"name":"x","amount":10,"currency":"USDD"}`, "currency", "invalid_format"},
		{"unknown currency", `{"name":"x","amount":10,"currency":"ABC"}`, "currency", "invalid_value"},
		{"amount as string", `{"name":"x","amount":"10.00","currency":"USD"}`, "amount", ""},
		{"amount too precise", `{"name":"x","amount":0.1234567,"currency":"USD"}`, "amount", "too_precise"},
		{"bad stage", `{"name":"x","stage":"closed"}`, "stage", "invalid_value"},
		{"lost without reason", `{"name":"x","stage":"lost"}`, "lost_reason", "required"},
		{"lost with blank reason", `{"name":"x","stage":"lost","lost_reason":"  "}`, "lost_reason", "required"},
		{"bad date", `{"name":"x","expected_close_date":"15/03/2026"}`, "expected_close_date", "invalid_format"},
		{"unknown field", `{"name":"x","value":10}`, "value", "unknown_field"},
		{"missing lead", `{"name":"x","lead_id":"lead_missing"}`, "lead_id", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantValidation(t, call(t, s, http.MethodPost, "/v1/deals", tok, tc.body), tc.field, tc.code)
		})
	}
}

func TestDealAmountsRoundTrip(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("amounts"))
	for _, amount := range []string{"1250.5", "0.1", "12345678901234.123456", "0", "999999999999999"} {
		t.Run(amount, func(t *testing.T) {
			t.Parallel()
			want := `"amount":` + amount + `,`
			// Bracketed, so no name is a substring of another ("Amount 0"
			// would also find "Amount 0.1" through q).
			name := "Amount [" + amount + "]"
			r := call(t, s, http.MethodPost, "/v1/deals", tok, `{"name":"`+name+`","amount":`+amount+`,"currency":"USD"}`)
			m := wantStatus(t, r, http.StatusCreated)
			if !strings.Contains(string(r.Body), want) {
				t.Errorf("POST body lacks %s: %s", want, r.Body)
			}
			if m["amount"].(fmt.Stringer).String() != amount {
				t.Errorf("POST amount %v", m["amount"])
			}
			ct := consistencyToken(t, r)
			id := m["id"].(string)
			g := call(t, s, http.MethodGet, "/v1/deals/"+id, tok, nil, "X-Consistency-Token", ct)
			wantStatus(t, g, http.StatusOK)
			if !strings.Contains(string(g.Body), want) {
				t.Errorf("GET body lacks %s: %s", want, g.Body)
			}
			l := call(t, s, http.MethodGet, "/v1/deals?q="+url.QueryEscape(name), tok, nil, "X-Consistency-Token", ct)
			items := listData(t, wantStatus(t, l, http.StatusOK))
			if len(items) != 1 || items[0]["id"] != id || !strings.Contains(string(l.Body), want) {
				t.Errorf("list body lacks %s: %s", want, l.Body)
			}
			h := call(t, s, http.MethodGet, "/v1/deals/"+id+"/history", tok, nil)
			if !strings.Contains(string(wantBody(t, h, http.StatusOK)), `"to":`+amount+`}`) {
				t.Errorf("history lacks the exact amount: %s", h.Body)
			}
			a := call(t, s, http.MethodGet, "/v1/deals/"+id+"?as_of="+url.QueryEscape(time.Now().UTC().Add(time.Hour).Format(time.RFC3339)), tok, nil)
			if !strings.Contains(string(wantBody(t, a, http.StatusOK)), want) {
				t.Errorf("as_of body lacks %s: %s", want, a.Body)
			}
			// Patching to the same amount is not a change.
			p := call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"amount":`+amount+`}`)
			jsonEq(t, "version after same amount", wantStatus(t, p, http.StatusOK)["version"], `1`)
		})
	}
	t.Run("patch amount", func(t *testing.T) {
		t.Parallel()
		m, _ := createDeal(t, s, tok, map[string]any{"name": "Patch amount"})
		id := m["id"].(string)
		r := call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"amount":0.1,"currency":"EUR"}`)
		wantStatus(t, r, http.StatusOK)
		g := call(t, s, http.MethodGet, "/v1/deals/"+id, tok, nil, "X-Consistency-Token", consistencyToken(t, r))
		if !strings.Contains(string(wantBody(t, g, http.StatusOK)), `"amount":0.1,`) {
			t.Errorf("GET after patch: %s", g.Body)
		}
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"amount":"10.00"}`), "amount", "")
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"amount":-5}`), "amount", "must_be_non_negative")
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"currency":null}`), "currency", "required")
	})
}

func TestDealStages(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("stages"))
	m, _ := createDeal(t, s, tok, map[string]any{"name": "Pipeline"})
	id := m["id"].(string)
	patch := func(body string) map[string]any {
		t.Helper()
		return wantStatus(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, body), http.StatusOK)
	}

	d := patch(`{"stage":"negotiation"}`)
	if d["stage"] != "negotiation" || d["closed_at"] != nil {
		t.Errorf("negotiation: %v", d)
	}
	d = patch(`{"stage":"won"}`)
	wonAt := wantUTC(t, "closed_at", d["closed_at"])
	if d["stage"] != "won" || !wonAt.Equal(wantUTC(t, "updated_at", d["updated_at"])) {
		t.Errorf("won: %v", d)
	}
	d = patch(`{"stage":"proposal"}`)
	if d["closed_at"] != nil {
		t.Errorf("reopened deal closed_at %v, want null", d["closed_at"])
	}
	wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"stage":"lost"}`), "lost_reason", "required")
	wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"stage":"done"}`), "stage", "invalid_value")
	wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"stage":null}`), "stage", "required")
	d = patch(`{"stage":"lost","lost_reason":"went with a competitor"}`)
	if d["stage"] != "lost" || d["lost_reason"] != "went with a competitor" {
		t.Errorf("lost: %v", d)
	}
	wantUTC(t, "closed_at", d["closed_at"])
	d = patch(`{"stage":"qualification"}`)
	if d["closed_at"] != nil || d["lost_reason"] != nil || d["stage"] != "qualification" {
		t.Errorf("reopened from lost: %v", d)
	}
	jsonEq(t, "version", d["version"], `6`)
	h := wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+id+"/history", tok, nil), http.StatusOK)
	var types []string
	for _, e := range h["data"].([]any) {
		types = append(types, e.(map[string]any)["type"].(string))
	}
	want := "deal.created deal.stage_changed deal.won deal.stage_changed deal.lost deal.stage_changed"
	if strings.Join(types, " ") != want {
		t.Errorf("history types %v, want %s", types, want)
	}

	t.Run("list by stage", func(t *testing.T) {
		won, ct := createDeal(t, s, tok, map[string]any{"name": "Already won", "stage": "won"})
		l := call(t, s, http.MethodGet, "/v1/deals?stage=won", tok, nil, "X-Consistency-Token", ct)
		if got := ids(listData(t, wantStatus(t, l, http.StatusOK))); len(got) != 1 || got[0] != won["id"] {
			t.Errorf("stage=won: %v", got)
		}
		wantValidation(t, call(t, s, http.MethodGet, "/v1/deals?stage=open", tok, nil), "stage", "")
	})
}

func TestDealCRUD(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("deal-crud"))
	m, _ := createDeal(t, s, tok, map[string]any{"name": "Acme renewal", "amount": 10, "currency": "USD", "custom_fields": map[string]any{"a": 1, "b": 2}})
	id := m["id"].(string)

	r := call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"owner_id":"u5","custom_fields":{"a":null,"c":3},"expected_close_date":"2026-12-31"}`, "If-Match", `"1"`)
	p := wantStatus(t, r, http.StatusOK)
	if r.Header.Get("ETag") != `"2"` || p["owner_id"] != "u5" || p["expected_close_date"] != "2026-12-31" {
		t.Errorf("patch: %s (ETag %s)", r.Body, r.Header.Get("ETag"))
	}
	jsonEq(t, "custom_fields", p["custom_fields"], `{"b":2,"c":3}`)
	ct := consistencyToken(t, r)
	wantError(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"name":"x"}`, "If-Match", `"1"`), http.StatusPreconditionFailed, "precondition_failed")
	wantError(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"name":"x"}`, "If-Match", `one`), http.StatusBadRequest, "bad_request")

	g := call(t, s, http.MethodGet, "/v1/deals/"+id, tok, nil, "X-Consistency-Token", ct)
	jsonEq(t, "GET", wantStatus(t, g, http.StatusOK), mustJSON(t, p))
	if g.Header.Get("ETag") != `"2"` {
		t.Errorf("GET ETag %q", g.Header.Get("ETag"))
	}
	l := call(t, s, http.MethodGet, "/v1/deals?owner_id=u5&q=ACME", tok, nil, "X-Consistency-Token", ct)
	if got := ids(listData(t, wantStatus(t, l, http.StatusOK))); len(got) != 1 || got[0] != id {
		t.Errorf("filtered list: %v", got)
	}
	wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"lead_id":"lead_missing"}`), "lead_id", "")
	wantValidation(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"lost_reason":"why"}`), "lost_reason", "invalid_value")
	wantValidation(t, call(t, s, http.MethodGet, "/v1/deals?limit=0", tok, nil), "limit", "")
	wantError(t, call(t, s, http.MethodGet, "/v1/deals?cursor=nope", tok, nil), http.StatusBadRequest, "bad_request")

	// as_of: before creation, at version 1, now.
	created := wantUTC(t, "created_at", m["created_at"])
	wantError(t, call(t, s, http.MethodGet, "/v1/deals/"+id+"?as_of="+url.QueryEscape(created.Add(-time.Microsecond).Format(time.RFC3339Nano)), tok, nil), http.StatusNotFound, "not_found")
	a := wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+id+"?as_of="+url.QueryEscape(created.Format(time.RFC3339Nano)), tok, nil), http.StatusOK)
	if a["owner_id"] != nil {
		t.Errorf("as_of creation owner_id %v", a["owner_id"])
	}
	jsonEq(t, "as_of custom_fields", a["custom_fields"], `{"a":1,"b":2}`)
	wantValidation(t, call(t, s, http.MethodGet, "/v1/deals/"+id+"?as_of=now", tok, nil), "as_of", "")

	r = call(t, s, http.MethodDelete, "/v1/deals/"+id, tok, nil)
	wantStatus(t, r, http.StatusNoContent)
	ct = consistencyToken(t, r)
	wantError(t, call(t, s, http.MethodGet, "/v1/deals/"+id, tok, nil, "X-Consistency-Token", ct), http.StatusNotFound, "not_found")
	l = call(t, s, http.MethodGet, "/v1/deals", tok, nil, "X-Consistency-Token", ct)
	if got := listData(t, wantStatus(t, l, http.StatusOK)); len(got) != 0 {
		t.Errorf("list after delete: %v", got)
	}
	h := wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+id+"/history", tok, nil), http.StatusOK)
	entries := h["data"].([]any)
	if len(entries) != 3 || entries[2].(map[string]any)["type"] != "deal.deleted" {
		t.Errorf("history after delete: %v", entries)
	}
	wantError(t, call(t, s, http.MethodDelete, "/v1/deals/"+id, tok, nil), http.StatusNotFound, "not_found")
	wantError(t, call(t, s, http.MethodPatch, "/v1/deals/"+id, tok, `{"name":"back"}`), http.StatusNotFound, "not_found")
	wantError(t, call(t, s, http.MethodGet, "/v1/deals/deal_nope/history", tok, nil), http.StatusNotFound, "not_found")
}

func TestDealPagination(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("deal-pages"))
	var want []string
	var ct string
	for i := range 5 {
		var m map[string]any
		m, ct = createDeal(t, s, tok, map[string]any{"name": fmt.Sprintf("Deal %d", i)})
		want = append([]string{m["id"].(string)}, want...)
	}
	if got := listAll(t, s, tok, "/v1/deals", 2, ct); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("walk = %v, want %v", got, want)
	}
}

func wantBody(t testing.TB, r *apptest.Response, status int) []byte {
	t.Helper()
	wantStatus(t, r, status)
	return r.Body
}
