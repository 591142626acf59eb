package api_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/salesos/salesos/internal/apptest"
)

// paddedLead is a valid JSON lead body of exactly size bytes: whitespace
// inside the object is insignificant, so only the size matters.
func paddedLead(size int) []byte {
	head, tail := `{"name":"Padded"`, `}`
	b := make([]byte, 0, size)
	b = append(b, head...)
	b = append(b, bytes.Repeat([]byte(" "), size-len(head)-len(tail))...)
	b = append(b, tail...)
	return b
}

func TestConventions(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("conv"))

	rawPost := func(t *testing.T, path string, body io.Reader, contentType string, chunked bool) *apptest.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, s.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(body)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		r, err := doRaw(t, s, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("415 text/plain", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, apptest.Request{Method: http.MethodPost, Path: "/v1/leads", Token: tok, Body: `{"name":"x"}`, ContentType: "text/plain"})
		wantError(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
	})
	t.Run("415 form on patch", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, apptest.Request{Method: http.MethodPatch, Path: "/v1/leads/lead_x", Token: tok, Body: `name=x`, ContentType: "application/x-www-form-urlencoded"})
		wantError(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
	})
	t.Run("415 missing content type", func(t *testing.T) {
		t.Parallel()
		wantError(t, rawPost(t, "/v1/leads", strings.NewReader(`{"name":"x"}`), "", false), http.StatusUnsupportedMediaType, "unsupported_media_type")
		wantError(t, rawPost(t, "/v1/leads", strings.NewReader(`{"name":"x"}`), "", true), http.StatusUnsupportedMediaType, "unsupported_media_type")
	})
	t.Run("charset accepted", func(t *testing.T) {
		t.Parallel()
		for _, ct := range []string{"application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"} {
			r := s.Do(t, apptest.Request{Method: http.MethodPost, Path: "/v1/leads", Token: tok, Body: `{"name":"Zoë"}`, ContentType: ct})
			if m := wantStatus(t, r, http.StatusCreated); m["name"] != "Zoë" {
				t.Errorf("%s: name %v", ct, m["name"])
			}
		}
	})
	t.Run("malformed JSON 400", func(t *testing.T) {
		t.Parallel()
		for _, body := range []string{`{"name":`, `{name:"x"}`, `{"name":"x"`, `{"name":"x"}}`, `{"name":"x"} {"name":"y"}`} {
			wantError(t, call(t, s, http.MethodPost, "/v1/leads", tok, body), http.StatusBadRequest, "bad_request")
		}
	})
	t.Run("unknown field 422", func(t *testing.T) {
		t.Parallel()
		r := call(t, s, http.MethodPost, "/v1/leads", tok, `{"name":"x","favourite_color":"blue"}`)
		d := wantError(t, r, http.StatusUnprocessableEntity, "validation_failed")
		if len(d) == 0 || d[0]["field"] != "favourite_color" {
			t.Errorf("details %v, want field favourite_color", d)
		}
		r = call(t, s, http.MethodPost, "/v1/deals", tok, `{"name":"x","Amount ":1}`)
		d = wantError(t, r, http.StatusUnprocessableEntity, "validation_failed")
		if len(d) == 0 || d[0]["field"] != "Amount " {
			t.Errorf("details %v, want field %q", d, "Amount ")
		}
	})
	t.Run("wrong type 422", func(t *testing.T) {
		t.Parallel()
		for _, body := range []string{`{"name":123}`, `{"name":"x","email":true}`, `{"name":"x","custom_fields":[1]}`} {
			d := wantError(t, call(t, s, http.MethodPost, "/v1/leads", tok, body), http.StatusUnprocessableEntity, "validation_failed")
			if len(d) == 0 || d[0]["field"] == "" {
				t.Errorf("%s: details %v do not name the field", body, d)
			}
		}
		d := wantError(t, call(t, s, http.MethodPost, "/v1/leads", tok, `{"name":123}`), http.StatusUnprocessableEntity, "validation_failed")
		if d[0]["field"] != "name" {
			t.Errorf("details %v, want field name", d)
		}
	})
	t.Run("413 over 1 MB", func(t *testing.T) {
		t.Parallel()
		body := paddedLead(1<<20 + 1)
		if len(body) != 1048577 {
			t.Fatalf("body is %d bytes", len(body))
		}
		wantError(t, call(t, s, http.MethodPost, "/v1/leads", tok, body), http.StatusRequestEntityTooLarge, "payload_too_large")
		wantError(t, rawPost(t, "/v1/leads", bytes.NewReader(body), "application/json", true), http.StatusRequestEntityTooLarge, "payload_too_large")
		wantError(t, s.Do(t, apptest.Request{Method: http.MethodPatch, Path: "/v1/leads/lead_x", Token: tok, Body: body}), http.StatusRequestEntityTooLarge, "payload_too_large")
		wantError(t, call(t, s, http.MethodPost, "/v1/deals", tok, body), http.StatusRequestEntityTooLarge, "payload_too_large")
	})
	t.Run("just under 1 MB accepted", func(t *testing.T) {
		t.Parallel()
		for _, size := range []int{1 << 20, 1<<20 - 100} {
			body := paddedLead(size)
			wantStatus(t, call(t, s, http.MethodPost, "/v1/leads", tok, body), http.StatusCreated)
			wantStatus(t, rawPost(t, "/v1/leads", bytes.NewReader(body), "application/json", true), http.StatusCreated)
		}
	})
	t.Run("request id", func(t *testing.T) {
		t.Parallel()
		valid := []string{"my-req.id_123", "A", strings.Repeat("a", 128)}
		for _, id := range valid {
			r := call(t, s, http.MethodGet, "/v1/leads", tok, nil, "X-Request-Id", id)
			if got := r.Header.Get("X-Request-Id"); got != id {
				t.Errorf("valid X-Request-Id %q answered as %q", id, got)
			}
			r = call(t, s, http.MethodGet, "/v1/leads/lead_missing", tok, nil, "X-Request-Id", id)
			wantError(t, r, http.StatusNotFound, "not_found")
			if obj(t, r.Body)["request_id"] != id {
				t.Errorf("error request_id %v, want %s", obj(t, r.Body)["request_id"], id)
			}
		}
		invalid := []string{strings.Repeat("a", 129), strings.Repeat("b", 200), "has space", "semi;colon", "ünïcode", "a/b", "<script>"}
		seen := map[string]bool{}
		for _, id := range invalid {
			r := call(t, s, http.MethodGet, "/v1/leads", tok, nil, "X-Request-Id", id)
			got := r.Header.Get("X-Request-Id")
			if got == "" || got == id || len(got) > 128 || seen[got] {
				t.Errorf("invalid X-Request-Id %q answered as %q", id, got)
			}
			seen[got] = true
			r = call(t, s, http.MethodGet, "/v1/leads/lead_missing", tok, nil, "X-Request-Id", id)
			wantError(t, r, http.StatusNotFound, "not_found") // request_id == the replacement header
		}
		// Without one, every response still carries a fresh id.
		a := call(t, s, http.MethodGet, "/healthz", "", nil)
		b := call(t, s, http.MethodGet, "/healthz", "", nil)
		if a.Header.Get("X-Request-Id") == "" || a.Header.Get("X-Request-Id") == b.Header.Get("X-Request-Id") {
			t.Errorf("generated request ids %q, %q", a.Header.Get("X-Request-Id"), b.Header.Get("X-Request-Id"))
		}
	})
	t.Run("unknown route 404", func(t *testing.T) {
		t.Parallel()
		wantError(t, call(t, s, http.MethodGet, "/nope", "", nil), http.StatusNotFound, "not_found")
		wantError(t, call(t, s, http.MethodGet, "/v1/nope", tok, nil), http.StatusNotFound, "not_found")
		wantError(t, call(t, s, http.MethodGet, "/v1/leads/x/y/z", tok, nil), http.StatusNotFound, "not_found")
		// Anonymous callers learn nothing about which /v1 routes exist.
		wantError(t, call(t, s, http.MethodGet, "/v1/nope", "", nil), http.StatusUnauthorized, "unauthorized")
	})
	t.Run("dates end in Z", func(t *testing.T) {
		t.Parallel()
		m, ct := createLead(t, s, tok, map[string]any{"name": "Dates"})
		wantUTC(t, "created_at", m["created_at"])
		wantUTC(t, "updated_at", m["updated_at"])
		g := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+m["id"].(string), tok, nil, "X-Consistency-Token", ct), http.StatusOK)
		wantUTC(t, "created_at", g["created_at"])
		wantUTC(t, "updated_at", g["updated_at"])
		d, ct := createDeal(t, s, tok, map[string]any{"name": "Dates", "stage": "won"})
		wantUTC(t, "closed_at", d["closed_at"])
		gd := wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+d["id"].(string), tok, nil, "X-Consistency-Token", ct), http.StatusOK)
		wantUTC(t, "closed_at", gd["closed_at"])
		wantUTC(t, "created_at", gd["created_at"])
		h := wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+d["id"].(string)+"/history", tok, nil), http.StatusOK)
		e := h["data"].([]any)[0].(map[string]any)
		wantUTC(t, "occurred_at", e["occurred_at"])
		wantUTC(t, "history closed_at", e["changes"].(map[string]any)["closed_at"].(map[string]any)["to"])
	})
}

func TestHealth(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	r := call(t, s, http.MethodGet, "/healthz", "", nil)
	if m := wantStatus(t, r, http.StatusOK); m["status"] != "ok" {
		t.Errorf("healthz: %s", r.Body)
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("healthz without X-Request-Id")
	}
	r = call(t, s, http.MethodGet, "/readyz", "", nil)
	m := wantStatus(t, r, http.StatusOK)
	checks, ok := m["checks"].(map[string]any)
	if m["status"] != "ok" || !ok || len(checks) == 0 {
		t.Fatalf("readyz: %s", r.Body)
	}
	for _, name := range []string{"database", "event_store"} {
		if checks[name] != "ok" {
			t.Errorf("readyz check %s = %v", name, checks[name])
		}
	}
	for name, v := range checks {
		if v != "ok" {
			t.Errorf("readyz check %s = %v", name, v)
		}
	}
}
