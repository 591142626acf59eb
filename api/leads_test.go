package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/internal/apptest"
)

func TestLeadCreate(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)

	t.Run("full body", func(t *testing.T) {
		t.Parallel()
		tok := fullToken(t, s, newOrg("create"))
		r := call(t, s, http.MethodPost, "/v1/leads", tok, map[string]any{
			"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0958",
			"company": "Analytical Engines", "title": "CTO", "source": "web", "owner_id": "user-7",
			"custom_fields": map[string]any{"tier": "gold", "score": 0.1, "tags": []string{"a", "b"}},
		})
		m := wantStatus(t, r, http.StatusCreated)
		id, _ := m["id"].(string)
		if id == "" {
			t.Fatalf("no id: %s", r.Body)
		}
		if got := r.Header.Get("Location"); got != "/v1/leads/"+id {
			t.Errorf("Location %q, want /v1/leads/%s", got, id)
		}
		if got := r.Header.Get("ETag"); got != `"1"` {
			t.Errorf(`ETag %q, want "1"`, got)
		}
		if ct := consistencyToken(t, r); !strings.HasPrefix(ct, "c1.") {
			t.Errorf("X-Consistency-Token %q", ct)
		}
		for k, want := range map[string]any{
			"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0958",
			"company": "Analytical Engines", "title": "CTO", "source": "web", "owner_id": "user-7", "status": "new",
		} {
			if m[k] != want {
				t.Errorf("%s = %v, want %v", k, m[k], want)
			}
		}
		jsonEq(t, "version", m["version"], `1`)
		jsonEq(t, "custom_fields", m["custom_fields"], `{"tier":"gold","score":0.1,"tags":["a","b"]}`)
		if !strings.Contains(string(r.Body), `"score":0.1`) {
			t.Errorf("custom field number not kept exactly: %s", r.Body)
		}
		c := wantUTC(t, "created_at", m["created_at"])
		u := wantUTC(t, "updated_at", m["updated_at"])
		if !c.Equal(u) {
			t.Errorf("created_at %v != updated_at %v on a new lead", c, u)
		}
		if d := time.Since(c); d < -time.Minute || d > time.Minute {
			t.Errorf("created_at %v is not now", c)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		tok := fullToken(t, s, newOrg("create"))
		m, _ := createLead(t, s, tok, map[string]any{"name": "Grace"})
		for _, k := range []string{"email", "phone", "company", "title", "source", "owner_id"} {
			v, ok := m[k]
			if !ok || v != nil {
				t.Errorf("%s = %v (present %v), want null", k, v, ok)
			}
		}
		if m["status"] != "new" {
			t.Errorf("status %v, want new", m["status"])
		}
		jsonEq(t, "custom_fields", m["custom_fields"], `{}`)
		jsonEq(t, "version", m["version"], `1`)
	})

	t.Run("explicit status", func(t *testing.T) {
		t.Parallel()
		tok := fullToken(t, s, newOrg("create"))
		m, _ := createLead(t, s, tok, map[string]any{"name": "Grace", "status": "contacted"})
		if m["status"] != "contacted" {
			t.Errorf("status %v", m["status"])
		}
	})

	t.Run("validation", func(t *testing.T) {
		t.Parallel()
		tok := fullToken(t, s, newOrg("create"))
		for _, tc := range []struct {
			name  string
			body  string
			field string
			code  string
		}{
			{"missing name", `{"email":"a@example.com"}`, "name", "required"},
			{"blank name", `{"name":"   "}`, "name", "required"},
			{"long name", `{"name":"` + strings.Repeat("x", 201) + `"}`, "name", "too_long"},
			{"bad email", `{"name":"A","email":"not an email"}`, "email", "invalid_format"},
			{"bad status", `{"name":"A","status":"hot"}`, "status", "invalid_value"},
			{"converted status", `{"name":"A","status":"converted"}`, "status", "invalid_value"},
			{"unknown field", `{"name":"A","nickname":"x"}`, "nickname", "unknown_field"},
			{"wrong type", `{"name":123}`, "name", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantValidation(t, call(t, s, http.MethodPost, "/v1/leads", tok, tc.body), tc.field, tc.code)
			})
		}
		// Nothing was created by the refused requests.
		r := call(t, s, http.MethodGet, "/v1/leads", tok, nil)
		if n := len(listData(t, wantStatus(t, r, http.StatusOK))); n != 0 {
			t.Errorf("%d leads exist after only invalid creates", n)
		}
	})
}

func TestLeadGet(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("get"))
	created, ct := createLead(t, s, tok, map[string]any{"name": "Ada", "email": "ada@example.com", "custom_fields": map[string]any{"n": json.Number("12345678901234567890")}})
	id := created["id"].(string)

	r := call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", ct)
	got := wantStatus(t, r, http.StatusOK)
	if et := r.Header.Get("ETag"); et != `"1"` {
		t.Errorf(`ETag %q, want "1"`, et)
	}
	jsonEq(t, "GET body", got, mustJSON(t, created))
	if !strings.Contains(string(r.Body), `"n":12345678901234567890`) {
		t.Errorf("custom field integer lost precision: %s", r.Body)
	}

	wantError(t, call(t, s, http.MethodGet, "/v1/leads/lead_doesnotexist", tok, nil), http.StatusNotFound, "not_found")
}

func TestLeadListFilters(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("list"))

	mk := func(body map[string]any) (string, string, time.Time) {
		m, ct := createLead(t, s, tok, body)
		return m["id"].(string), ct, wantUTC(t, "created_at", m["created_at"])
	}
	ada, _, _ := mk(map[string]any{"name": "Ada Lovelace", "email": "ada@engines.example", "company": "Analytical Engines", "owner_id": "u1"})
	grace, _, _ := mk(map[string]any{"name": "Grace Hopper", "email": "grace@navy.example", "company": "US Navy", "status": "contacted", "owner_id": "u2"})
	alan, _, alanAt := mk(map[string]any{"name": "Alan Turing", "email": "alan@bletchley.example", "company": "Bletchley Park", "status": "qualified"})
	edsger, _, _ := mk(map[string]any{"name": "Edsger Dijkstra", "email": "ewd@utexas.example", "status": "contacted", "owner_id": "u1"})
	katherine, ct, _ := mk(map[string]any{"name": "Katherine Johnson", "company": "NASA PERCENT_100%"})

	list := func(t *testing.T, query string) []string {
		t.Helper()
		r := call(t, s, http.MethodGet, "/v1/leads?"+query, tok, nil, "X-Consistency-Token", ct)
		m := wantStatus(t, r, http.StatusOK)
		if m["has_more"] != false || m["next_cursor"] != nil {
			t.Errorf("has_more %v next_cursor %v on a short list", m["has_more"], m["next_cursor"])
		}
		return ids(listData(t, m))
	}
	same := func(t *testing.T, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("got %v, want %v (newest first)", got, want)
		}
	}

	t.Run("all newest first", func(t *testing.T) { same(t, list(t, ""), katherine, edsger, alan, grace, ada) })
	t.Run("status", func(t *testing.T) { same(t, list(t, "status=contacted"), edsger, grace) })
	t.Run("status new", func(t *testing.T) { same(t, list(t, "status=new"), katherine, ada) })
	t.Run("owner_id", func(t *testing.T) { same(t, list(t, "owner_id=u1"), edsger, ada) })
	t.Run("owner_id none", func(t *testing.T) { same(t, list(t, "owner_id=nobody")) })
	t.Run("status and owner", func(t *testing.T) { same(t, list(t, "status=contacted&owner_id=u2"), grace) })
	t.Run("q name case-insensitive", func(t *testing.T) { same(t, list(t, "q=hOpPeR"), grace) })
	t.Run("q email", func(t *testing.T) { same(t, list(t, "q=BLETCHLEY.example"), alan) })
	t.Run("q company", func(t *testing.T) { same(t, list(t, "q=analytical"), ada) })
	t.Run("q substring across fields", func(t *testing.T) { same(t, list(t, "q=nA"), katherine, grace, ada) })
	t.Run("q like metacharacters are literal", func(t *testing.T) {
		same(t, list(t, "q="+url.QueryEscape("_100%")), katherine)
		same(t, list(t, "q="+url.QueryEscape("%")), katherine)
	})
	t.Run("created_after", func(t *testing.T) {
		same(t, list(t, "created_after="+url.QueryEscape(alanAt.Add(-time.Microsecond).Format(time.RFC3339Nano))), katherine, edsger, alan)
		same(t, list(t, "created_after="+url.QueryEscape(alanAt.Format(time.RFC3339Nano))), katherine, edsger)
		same(t, list(t, "created_after="+url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))))
	})
	t.Run("created_after malformed", func(t *testing.T) {
		wantValidation(t, call(t, s, http.MethodGet, "/v1/leads?created_after=yesterday", tok, nil), "created_after", "")
	})
	t.Run("status invalid", func(t *testing.T) {
		wantValidation(t, call(t, s, http.MethodGet, "/v1/leads?status=hot", tok, nil), "status", "")
	})
	t.Run("limit invalid", func(t *testing.T) {
		for _, l := range []string{"0", "201", "abc", "-1", "1.5"} {
			wantValidation(t, call(t, s, http.MethodGet, "/v1/leads?limit="+l, tok, nil), "limit", "")
		}
	})
	t.Run("limit bounds accepted", func(t *testing.T) {
		for _, l := range []string{"1", "200"} {
			wantStatus(t, call(t, s, http.MethodGet, "/v1/leads?limit="+l, tok, nil, "X-Consistency-Token", ct), http.StatusOK)
		}
	})
	t.Run("bad cursor", func(t *testing.T) {
		for _, c := range []string{"garbage!", "bm90LWEtY3Vyc29y", url.QueryEscape("@@@")} {
			wantError(t, call(t, s, http.MethodGet, "/v1/leads?cursor="+c, tok, nil), http.StatusBadRequest, "bad_request")
		}
	})
}

func TestLeadListDefaultLimit(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("limit"))
	var ct string
	for i := range 52 {
		_, ct = createLead(t, s, tok, map[string]any{"name": fmt.Sprintf("Lead %02d", i)})
	}
	r := call(t, s, http.MethodGet, "/v1/leads", tok, nil, "X-Consistency-Token", ct)
	m := wantStatus(t, r, http.StatusOK)
	if n := len(listData(t, m)); n != 50 {
		t.Errorf("default page has %d leads, want 50", n)
	}
	if m["has_more"] != true {
		t.Errorf("has_more %v, want true", m["has_more"])
	}
	all := listAll(t, s, tok, "/v1/leads", 200, ct)
	if len(all) != 52 {
		t.Errorf("limit=200 walk found %d leads, want 52", len(all))
	}
}

func TestLeadPagination(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("pages"))
	var want []string // newest first
	var ct string
	for i := range 7 {
		var m map[string]any
		m, ct = createLead(t, s, tok, map[string]any{"name": fmt.Sprintf("Lead %d", i)})
		want = append([]string{m["id"].(string)}, want...)
	}

	t.Run("walk", func(t *testing.T) {
		for _, limit := range []int{1, 2, 3, 7, 50} {
			got := listAll(t, s, tok, "/v1/leads", limit, ct)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("limit %d walk = %v, want %v", limit, got, want)
			}
		}
	})

	t.Run("stable under concurrent inserts", func(t *testing.T) {
		r := call(t, s, http.MethodGet, "/v1/leads?limit=3", tok, nil, "X-Consistency-Token", ct)
		m := wantStatus(t, r, http.StatusOK)
		seen := ids(listData(t, m))
		cursor, _ := m["next_cursor"].(string)
		if m["has_more"] != true || cursor == "" {
			t.Fatalf("first page: %s", r.Body)
		}
		// Records created between pages are newer than the cursor: they
		// neither shift the rest of the walk nor repeat anything.
		var ct2 string
		for i := range 4 {
			_, ct2 = createLead(t, s, tok, map[string]any{"name": fmt.Sprintf("Late %d", i)})
		}
		for cursor != "" {
			r := call(t, s, http.MethodGet, "/v1/leads?limit=3&cursor="+url.QueryEscape(cursor), tok, nil, "X-Consistency-Token", ct2)
			m := wantStatus(t, r, http.StatusOK)
			seen = append(seen, ids(listData(t, m))...)
			cursor, _ = m["next_cursor"].(string)
			if (m["has_more"] == true) != (cursor != "") {
				t.Fatalf("has_more %v with next_cursor %v", m["has_more"], m["next_cursor"])
			}
		}
		if strings.Join(seen, ",") != strings.Join(want, ",") {
			t.Errorf("walk with inserts = %v, want %v", seen, want)
		}
	})

	t.Run("cursor with filter", func(t *testing.T) {
		got := listAll(t, s, tok, "/v1/leads?q=lead", 2, ct)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("filtered walk = %v, want %v", got, want)
		}
	})
}

func TestLeadPatch(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("patch"))

	t.Run("merge semantics", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{
			"name": "Ada", "email": "ada@example.com", "phone": "+1 555", "company": "AE",
			"custom_fields": map[string]any{"tier": "gold", "nested": map[string]any{"a": 1, "b": 2}, "keep": true},
		})
		id := m["id"].(string)
		r := call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{
			"phone": null, "title": "CTO",
			"custom_fields": {"tier": null, "region": "EU", "nested": {"b": null, "c": 3}}}`)
		p := wantStatus(t, r, http.StatusOK)
		if et := r.Header.Get("ETag"); et != `"2"` {
			t.Errorf(`ETag %q, want "2"`, et)
		}
		ct := consistencyToken(t, r)
		if p["phone"] != nil || p["title"] != "CTO" || p["email"] != "ada@example.com" || p["company"] != "AE" || p["name"] != "Ada" {
			t.Errorf("patched lead: %s", r.Body)
		}
		jsonEq(t, "custom_fields", p["custom_fields"], `{"region":"EU","nested":{"a":1,"c":3},"keep":true}`)
		jsonEq(t, "version", p["version"], `2`)
		if p["created_at"] != m["created_at"] {
			t.Errorf("created_at changed: %v -> %v", m["created_at"], p["created_at"])
		}
		if !wantUTC(t, "updated_at", p["updated_at"]).After(wantUTC(t, "created_at", m["created_at"])) {
			t.Errorf("updated_at %v not after created_at %v", p["updated_at"], m["created_at"])
		}

		// The query side answers the same state once caught up.
		g := call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", ct)
		jsonEq(t, "GET after PATCH", wantStatus(t, g, http.StatusOK), mustJSON(t, p))
		if et := g.Header.Get("ETag"); et != `"2"` {
			t.Errorf(`GET ETag %q, want "2"`, et)
		}

		// custom_fields: null clears them all; email: null clears.
		r = call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"custom_fields": null, "email": null}`)
		p = wantStatus(t, r, http.StatusOK)
		jsonEq(t, "custom_fields", p["custom_fields"], `{}`)
		if p["email"] != nil {
			t.Errorf("email %v, want null", p["email"])
		}
		jsonEq(t, "version", p["version"], `3`)
	})

	t.Run("no-op patch", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Ada", "title": "CTO"})
		id := m["id"].(string)
		for _, body := range []string{`{}`, `{"title":"CTO","name":"Ada"}`, `{"phone":null}`, `{"custom_fields":{}}`} {
			r := call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, body)
			p := wantStatus(t, r, http.StatusOK)
			jsonEq(t, "version after no-op "+body, p["version"], `1`)
			if p["updated_at"] != m["updated_at"] {
				t.Errorf("no-op %s changed updated_at", body)
			}
			if et := r.Header.Get("ETag"); et != `"1"` {
				t.Errorf(`ETag %q after no-op, want "1"`, et)
			}
		}
		h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil), http.StatusOK)
		if n := len(h["data"].([]any)); n != 1 {
			t.Errorf("history has %d entries after no-op patches, want 1", n)
		}
	})

	t.Run("if-match", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Ada"})
		id := m["id"].(string)
		r := call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"title":"A"}`, "If-Match", `"1"`)
		jsonEq(t, "version", wantStatus(t, r, http.StatusOK)["version"], `2`)

		wantError(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"title":"B"}`, "If-Match", `"1"`), http.StatusPreconditionFailed, "precondition_failed")
		wantError(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"title":"B"}`, "If-Match", `"3"`), http.StatusPreconditionFailed, "precondition_failed")
		for _, bad := range []string{`abc`, `"x"`, `"0"`, `"-1"`} {
			wantError(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"title":"B"}`, "If-Match", bad), http.StatusBadRequest, "bad_request")
		}
		// The refused requests changed nothing.
		r = call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"title":"C"}`, "If-Match", `W/"2"`)
		p := wantStatus(t, r, http.StatusOK)
		jsonEq(t, "version", p["version"], `3`)
		if p["title"] != "C" {
			t.Errorf("title %v", p["title"])
		}
	})

	t.Run("validation", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Ada"})
		id := m["id"].(string)
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"name":null}`), "name", "required")
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"name":""}`), "name", "required")
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"email":"nope"}`), "email", "invalid_format")
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"status":"converted"}`), "status", "invalid_value")
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"status":"bogus"}`), "status", "invalid_value")
		wantValidation(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"id":"other"}`), "id", "unknown_field")
		r := call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"status":"qualified"}`)
		if p := wantStatus(t, r, http.StatusOK); p["status"] != "qualified" {
			t.Errorf("status %v", p["status"])
		}
		wantError(t, call(t, s, http.MethodPatch, "/v1/leads/lead_nope", tok, `{"title":"x"}`), http.StatusNotFound, "not_found")
		wantError(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, nil), http.StatusBadRequest, "bad_request")
	})
}

func TestLeadDelete(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("delete"))
	keep, _ := createLead(t, s, tok, map[string]any{"name": "Keep"})
	m, _ := createLead(t, s, tok, map[string]any{"name": "Gone", "email": "gone@example.com"})
	id := m["id"].(string)

	wantError(t, call(t, s, http.MethodDelete, "/v1/leads/"+id, tok, nil, "If-Match", `"7"`), http.StatusPreconditionFailed, "precondition_failed")

	r := call(t, s, http.MethodDelete, "/v1/leads/"+id, tok, nil)
	wantStatus(t, r, http.StatusNoContent)
	if len(r.Body) != 0 {
		t.Errorf("204 with a body: %q", r.Body)
	}
	ct := consistencyToken(t, r)

	wantError(t, call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", ct), http.StatusNotFound, "not_found")
	l := call(t, s, http.MethodGet, "/v1/leads", tok, nil, "X-Consistency-Token", ct)
	got := ids(listData(t, wantStatus(t, l, http.StatusOK)))
	if contains(got, id) || !contains(got, keep["id"].(string)) || len(got) != 1 {
		t.Errorf("list after delete = %v, want only %v", got, keep["id"])
	}

	h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil), http.StatusOK)
	entries := h["data"].([]any)
	if len(entries) != 2 {
		t.Fatalf("history after delete: %v", h)
	}
	last := entries[len(entries)-1].(map[string]any)
	if last["type"] != "lead.deleted" {
		t.Errorf("last history entry type %v, want lead.deleted", last["type"])
	}
	jsonEq(t, "deletion version", last["version"], `2`)

	wantError(t, call(t, s, http.MethodDelete, "/v1/leads/"+id, tok, nil), http.StatusNotFound, "not_found")
	wantError(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"name":"Back"}`), http.StatusNotFound, "not_found")
	wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, nil), http.StatusNotFound, "not_found")
	wantError(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"?as_of="+url.QueryEscape(time.Now().UTC().Add(time.Hour).Format(time.RFC3339)), tok, nil), http.StatusNotFound, "not_found")
	// Before the deletion the lead is still visible in time travel.
	created := wantUTC(t, "created_at", m["created_at"])
	r = call(t, s, http.MethodGet, "/v1/leads/"+id+"?as_of="+url.QueryEscape(created.Format(time.RFC3339Nano)), tok, nil)
	if p := wantStatus(t, r, http.StatusOK); p["name"] != "Gone" {
		t.Errorf("as_of before deletion: %s", r.Body)
	}
	wantError(t, call(t, s, http.MethodDelete, "/v1/leads/lead_never", tok, nil), http.StatusNotFound, "not_found")
}

func TestLeadConvert(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("convert"))

	t.Run("with deal body", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Ada", "company": "Analytical Engines", "owner_id": "u9"})
		id := m["id"].(string)
		r := call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"amount":1250.5,"currency":"EUR"}}`)
		out := wantStatus(t, r, http.StatusCreated)
		if len(out) != 2 {
			t.Errorf("convert body keys: %s", r.Body)
		}
		lead, _ := out["lead"].(map[string]any)
		deal, _ := out["deal"].(map[string]any)
		if lead == nil || deal == nil {
			t.Fatalf("convert body: %s", r.Body)
		}
		if lead["id"] != id || lead["status"] != "converted" {
			t.Errorf("lead: %v", lead)
		}
		jsonEq(t, "lead version", lead["version"], `2`)
		dealID, _ := deal["id"].(string)
		if dealID == "" || deal["lead_id"] != id || deal["currency"] != "EUR" || deal["stage"] != "qualification" {
			t.Errorf("deal: %v", deal)
		}
		if deal["name"] != "Analytical Engines" || deal["owner_id"] != "u9" {
			t.Errorf("deal defaults from the lead: name %v owner %v", deal["name"], deal["owner_id"])
		}
		if !strings.Contains(string(r.Body), `"amount":1250.5,`) {
			t.Errorf("amount not exact: %s", r.Body)
		}
		if loc := r.Header.Get("Location"); loc != "/v1/deals/"+dealID {
			t.Errorf("Location %q", loc)
		}
		ct := consistencyToken(t, r)

		g := call(t, s, http.MethodGet, "/v1/deals/"+dealID, tok, nil, "X-Consistency-Token", ct)
		gd := wantStatus(t, g, http.StatusOK)
		if gd["lead_id"] != id || !strings.Contains(string(g.Body), `"amount":1250.5,`) {
			t.Errorf("GET converted deal: %s", g.Body)
		}
		gl := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", ct), http.StatusOK)
		if gl["status"] != "converted" {
			t.Errorf("GET converted lead status %v", gl["status"])
		}
		dl := call(t, s, http.MethodGet, "/v1/deals?lead_id="+id, tok, nil, "X-Consistency-Token", ct)
		if got := ids(listData(t, wantStatus(t, dl, http.StatusOK))); len(got) != 1 || got[0] != dealID {
			t.Errorf("deals of the lead: %v", got)
		}

		wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, nil), http.StatusConflict, "conflict")
		wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"name":"Again"}}`), http.StatusConflict, "conflict")
		// A converted lead cannot go back.
		wantStatusIn(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"status":"new"}`), http.StatusConflict, http.StatusUnprocessableEntity)

		h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil), http.StatusOK)
		entries := h["data"].([]any)
		if last := entries[len(entries)-1].(map[string]any); last["type"] != "lead.converted" || len(entries) != 2 {
			t.Errorf("history after convert: %v", entries)
		}
		// Only one deal was ever created.
		dl = call(t, s, http.MethodGet, "/v1/deals?lead_id="+id, tok, nil, "X-Consistency-Token", ct)
		if got := listData(t, wantStatus(t, dl, http.StatusOK)); len(got) != 1 {
			t.Errorf("%d deals for the lead after a refused second convert", len(got))
		}
	})

	t.Run("without body", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Grace Hopper"})
		id := m["id"].(string)
		out := wantStatus(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, nil), http.StatusCreated)
		deal := out["deal"].(map[string]any)
		if deal["name"] != "Grace Hopper" || deal["amount"] != nil || deal["currency"] != nil || deal["lead_id"] != id {
			t.Errorf("default deal: %v", deal)
		}
		if out["lead"].(map[string]any)["status"] != "converted" {
			t.Errorf("lead: %v", out["lead"])
		}
	})

	t.Run("empty object body", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Alan"})
		out := wantStatus(t, call(t, s, http.MethodPost, "/v1/leads/"+m["id"].(string)+"/convert", tok, `{}`), http.StatusCreated)
		if out["deal"].(map[string]any)["name"] != "Alan" {
			t.Errorf("deal: %v", out["deal"])
		}
	})

	t.Run("invalid deal", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Edsger"})
		id := m["id"].(string)
		wantValidation(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"amount":10,"currency":"usd"}}`), "deal.currency", "invalid_format")
		wantValidation(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"amount":10,"currency":"ZZZ"}}`), "deal.currency", "invalid_value")
		wantValidation(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"amount":10}}`), "deal.currency", "required")
		wantValidation(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"amount":-1,"currency":"USD"}}`), "deal.amount", "must_be_non_negative")
		wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"amount":"10.00","currency":"USD"}}`), http.StatusUnprocessableEntity, "validation_failed")
		wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"stage":"won"}}`), http.StatusUnprocessableEntity, "validation_failed")
		// Nothing was written: the lead is still new and converts fine.
		g := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"?as_of="+url.QueryEscape(time.Now().UTC().Add(time.Hour).Format(time.RFC3339)), tok, nil), http.StatusOK)
		if g["status"] != "new" {
			t.Errorf("status after refused converts: %v", g["status"])
		}
		jsonEq(t, "version", g["version"], `1`)
		wantStatus(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, `{"deal":{"amount":0.1,"currency":"USD"}}`), http.StatusCreated)
	})

	t.Run("if-match", func(t *testing.T) {
		t.Parallel()
		m, _ := createLead(t, s, tok, map[string]any{"name": "Katherine"})
		id := m["id"].(string)
		wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, nil, "If-Match", `"2"`), http.StatusPreconditionFailed, "precondition_failed")
		wantStatus(t, call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, nil, "If-Match", `"1"`), http.StatusCreated)
	})

	t.Run("needs write:deals", func(t *testing.T) {
		t.Parallel()
		org := newOrg("convert-scope")
		m, _ := createLead(t, s, fullToken(t, s, org), map[string]any{"name": "Scoped"})
		leadsOnly := s.Token(t, org, "read:leads", "write:leads")
		wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+m["id"].(string)+"/convert", leadsOnly, nil), http.StatusForbidden, "forbidden")
	})

	t.Run("unknown lead", func(t *testing.T) {
		t.Parallel()
		wantError(t, call(t, s, http.MethodPost, "/v1/leads/lead_nope/convert", tok, nil), http.StatusNotFound, "not_found")
	})
}

func TestLeadHistory(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("history"))

	r := call(t, s, http.MethodPost, "/v1/leads", tok, map[string]any{"name": "Ada", "email": "ada@example.com"}, "X-Request-Id", "req-create-1")
	m := wantStatus(t, r, http.StatusCreated)
	id := m["id"].(string)
	r = call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"name":"Ada L.","status":"contacted","email":null}`)
	patchRID := r.Header.Get("X-Request-Id")
	wantStatus(t, r, http.StatusOK)
	r = call(t, s, http.MethodDelete, "/v1/leads/"+id, tok, nil, "X-Request-Id", "req-delete-1")
	wantStatus(t, r, http.StatusNoContent)

	r = call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil)
	h := wantStatus(t, r, http.StatusOK)
	if len(h) != 1 {
		t.Errorf("history envelope: %s", r.Body)
	}
	raw := h["data"].([]any)
	wantTypes := []string{"lead.created", "lead.updated", "lead.status_changed", "lead.deleted"}
	wantRIDs := []string{"req-create-1", patchRID, patchRID, "req-delete-1"}
	if len(raw) != len(wantTypes) {
		t.Fatalf("history: %s", r.Body)
	}
	seen := map[string]bool{}
	var prev time.Time
	for i, e := range raw {
		e := e.(map[string]any)
		if len(e) != 7 {
			t.Errorf("entry %d keys: %v", i, e)
		}
		if e["type"] != wantTypes[i] {
			t.Errorf("entry %d type %v, want %s", i, e["type"], wantTypes[i])
		}
		jsonEq(t, fmt.Sprintf("entry %d version", i), e["version"], fmt.Sprint(i+1))
		eid, _ := e["event_id"].(string)
		if eid == "" || seen[eid] {
			t.Errorf("entry %d event_id %q empty or repeated", i, eid)
		}
		seen[eid] = true
		at := wantUTC(t, "occurred_at", e["occurred_at"])
		if at.Before(prev) {
			t.Errorf("entry %d occurred_at %v before previous %v", i, at, prev)
		}
		prev = at
		jsonEq(t, fmt.Sprintf("entry %d actor", i), e["actor"], `{"sub":"auth0|user-1","type":"user"}`)
		if e["request_id"] != wantRIDs[i] || wantRIDs[i] == "" {
			t.Errorf("entry %d request_id %v, want %s", i, e["request_id"], wantRIDs[i])
		}
		if _, ok := e["changes"].(map[string]any); !ok {
			t.Errorf("entry %d changes is not an object: %v", i, e["changes"])
		}
	}
	ch := func(i int) any { return raw[i].(map[string]any)["changes"] }
	created := ch(0).(map[string]any)
	jsonEq(t, "created name change", created["name"], `{"from":null,"to":"Ada"}`)
	jsonEq(t, "created email change", created["email"], `{"from":null,"to":"ada@example.com"}`)
	jsonEq(t, "created status change", created["status"], `{"from":null,"to":"new"}`)
	jsonEq(t, "update changes", ch(1), `{"name":{"from":"Ada","to":"Ada L."},"email":{"from":"ada@example.com","to":null}}`)
	jsonEq(t, "status changes", ch(2), `{"status":{"from":"new","to":"contacted"}}`)
	deleted := ch(3).(map[string]any)
	jsonEq(t, "deleted name change", deleted["name"], `{"from":"Ada L.","to":null}`)

	wantError(t, call(t, s, http.MethodGet, "/v1/leads/lead_nope/history", tok, nil), http.StatusNotFound, "not_found")
}

func TestLeadAsOf(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("asof"))
	m, _ := createLead(t, s, tok, map[string]any{"name": "First"})
	id := m["id"].(string)
	wantStatus(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"name":"Second"}`), http.StatusOK)
	wantStatus(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{"name":"Third"}`), http.StatusOK)

	h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil), http.StatusOK)
	var at []time.Time
	for _, e := range h["data"].([]any) {
		at = append(at, wantUTC(t, "occurred_at", e.(map[string]any)["occurred_at"]))
	}
	if len(at) != 3 {
		t.Fatalf("history: %v", h)
	}
	asOf := func(t *testing.T, ts string) *apptest.Response {
		t.Helper()
		return call(t, s, http.MethodGet, "/v1/leads/"+id+"?as_of="+url.QueryEscape(ts), tok, nil)
	}
	fmtT := func(ts time.Time) string { return ts.Format(time.RFC3339Nano) }

	t.Run("before creation", func(t *testing.T) {
		wantError(t, asOf(t, fmtT(at[0].Add(-time.Microsecond))), http.StatusNotFound, "not_found")
		wantError(t, asOf(t, "2000-01-01T00:00:00Z"), http.StatusNotFound, "not_found")
	})
	t.Run("at creation", func(t *testing.T) {
		r := asOf(t, fmtT(at[0]))
		l := wantStatus(t, r, http.StatusOK)
		if l["name"] != "First" || r.Header.Get("ETag") != `"1"` {
			t.Errorf("as_of creation: %s (ETag %s)", r.Body, r.Header.Get("ETag"))
		}
	})
	t.Run("between patches", func(t *testing.T) {
		r := asOf(t, fmtT(at[2].Add(-time.Microsecond)))
		l := wantStatus(t, r, http.StatusOK)
		if l["name"] != "Second" {
			t.Errorf("as_of between patches: name %v, want Second", l["name"])
		}
		jsonEq(t, "version", l["version"], `2`)
		if r.Header.Get("ETag") != `"2"` {
			t.Errorf("ETag %q", r.Header.Get("ETag"))
		}
	})
	t.Run("other offset", func(t *testing.T) {
		l := wantStatus(t, asOf(t, at[1].In(time.FixedZone("X", 2*3600)).Format(time.RFC3339Nano)), http.StatusOK)
		if l["name"] != "Second" {
			t.Errorf("as_of with +02:00 offset: name %v", l["name"])
		}
		wantUTC(t, "updated_at", l["updated_at"])
	})
	t.Run("after", func(t *testing.T) {
		l := wantStatus(t, asOf(t, fmtT(time.Now().UTC().Add(time.Hour))), http.StatusOK)
		if l["name"] != "Third" {
			t.Errorf("as_of now: name %v", l["name"])
		}
		jsonEq(t, "version", l["version"], `3`)
		if l["created_at"] != m["created_at"] {
			t.Errorf("created_at %v, want %v", l["created_at"], m["created_at"])
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, bad := range []string{"yesterday", "2026-03-15", "2026-13-01T00:00:00Z", "1700000000"} {
			wantValidation(t, asOf(t, bad), "as_of", "invalid_format")
		}
	})
	t.Run("unknown lead", func(t *testing.T) {
		wantError(t, call(t, s, http.MethodGet, "/v1/leads/lead_nope?as_of=2030-01-01T00:00:00Z", tok, nil), http.StatusNotFound, "not_found")
	})
}

// wantStatusIn fails unless r has one of the statuses; for errors it also
// checks the contract's error shape.
func wantStatusIn(t testing.TB, r *apptest.Response, statuses ...int) {
	t.Helper()
	for _, st := range statuses {
		if r.Status == st {
			if st >= 400 {
				m := obj(t, r.Body)
				if _, ok := m["code"].(string); !ok {
					t.Errorf("error without code: %s", r.Body)
				}
			}
			return
		}
	}
	t.Errorf("status %d, want one of %v; body: %s", r.Status, statuses, r.Body)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
