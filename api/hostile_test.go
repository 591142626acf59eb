package api_test

// Hostile bytes: NUL and text that is not valid UTF-8 cannot be stored by
// PostgreSQL (and would make every later projection batch fail), so the
// API refuses them at the edge, wherever they hide: JSON values and keys at
// any depth, query parameters, path ids, decoded cursors and the headers we
// keep. Bodies answer 422 naming the field; query and path answer 400.

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/salesos/salesos/internal/apptest"
)

// everyScope is what a token needs to reach every route.
var everyScope = []string{"read:leads", "write:leads", "read:deals", "write:deals", "manage:webhooks", "read:events"}

func TestHostileBytesInBodies(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("hostile-body")
	tok := s.Token(t, org, everyScope...)
	lead, _ := createLead(t, s, tok, map[string]any{"name": "Ada"})
	deal, _ := createDeal(t, s, tok, map[string]any{"name": "Deal", "amount": 10, "currency": "EUR"})
	hook := wantStatus(t, call(t, s, http.MethodPost, "/v1/webhooks", tok,
		map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"*"}}), http.StatusCreated)
	leadPath := "/v1/leads/" + lead["id"].(string)
	dealPath := "/v1/deals/" + deal["id"].(string)
	hookPath := "/v1/webhooks/" + hook["id"].(string)

	cases := []struct {
		name, method, path string
		body               string // sent byte for byte
		field              string
	}{
		{"NUL escape in name", http.MethodPost, "/v1/leads", `{"name":"a\u0000b"}`, "name"},
		{"upper-case surrogate escape", http.MethodPost, "/v1/leads", `{"name":"ok","company":"x\uD800"}`, "company"},
		{"raw invalid byte", http.MethodPost, "/v1/leads", "{\"name\":\"a\xffb\"}", "name"},
		{"overlong encoding", http.MethodPost, "/v1/leads", "{\"name\":\"\xc0\xaf\"}", "name"},
		{"encoded surrogate", http.MethodPost, "/v1/leads", "{\"name\":\"\xed\xa0\x80\"}", "name"},
		{"truncated sequence", http.MethodPost, "/v1/leads", "{\"name\":\"ok\",\"title\":\"\xe2\x82\"}", "title"},
		{"lone high surrogate escape", http.MethodPost, "/v1/leads", `{"name":"\ud800"}`, "name"},
		{"lone low surrogate escape", http.MethodPost, "/v1/leads", `{"name":"x\udc00y"}`, "name"},
		{"high surrogate then text", http.MethodPost, "/v1/leads", `{"name":"\ud83dx"}`, "name"},
		{"two high surrogates", http.MethodPost, "/v1/leads", `{"name":"\ud83d\ud83d"}`, "name"},
		{"custom field value", http.MethodPost, "/v1/leads", `{"name":"ok","custom_fields":{"tier":"g\u0000ld"}}`, "custom_fields.tier"},
		{"nested custom field value", http.MethodPost, "/v1/leads", `{"name":"ok","custom_fields":{"a":{"b":["fine","\u0000"]}}}`, "custom_fields.a.b[1]"},
		{"custom field key", http.MethodPost, "/v1/leads", `{"name":"ok","custom_fields":{"t\u0000er":"gold"}}`, "custom_fields.t\uFFFDer"},
		{"custom field key raw byte", http.MethodPost, "/v1/leads", "{\"name\":\"ok\",\"custom_fields\":{\"t\xffer\":\"gold\"}}", "custom_fields.t\uFFFDer"},
		{"top-level key", http.MethodPost, "/v1/leads", `{"name":"ok","na\u0000me":"x"}`, "na\uFFFDme"},
		{"patch lead", http.MethodPatch, leadPath, `{"company":"\u0000"}`, "company"},
		{"patch lead custom fields", http.MethodPatch, leadPath, `{"custom_fields":{"tier":"\udfff"}}`, "custom_fields.tier"},
		{"convert", http.MethodPost, leadPath + "/convert", `{"deal":{"name":"a\u0000"}}`, "deal.name"},
		{"create deal", http.MethodPost, "/v1/deals", `{"name":"d","amount":1,"currency":"EUR","custom_fields":{"k":"\u0000"}}`, "custom_fields.k"},
		{"patch deal", http.MethodPatch, dealPath, "{\"lost_reason\":\"\xff\"}", "lost_reason"},
		{"create webhook", http.MethodPost, "/v1/webhooks", `{"url":"http://127.0.0.1:9/h","events":["*"],"description":"\u0000"}`, "description"},
		{"webhook event pattern", http.MethodPost, "/v1/webhooks", `{"url":"http://127.0.0.1:9/h","events":["lead.\u0000"]}`, "events[0]"},
		{"patch webhook", http.MethodPatch, hookPath, `{"url":"http://127.0.0.1:9/\u0000"}`, "url"},
		{"recover since", http.MethodPost, hookPath + "/recover", `{"since":"\u0000"}`, "since"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, s, tc.method, tc.path, tok, []byte(tc.body))
			wantValidation(t, r, tc.field, "invalid_characters")
		})
	}

	// What may be stored is still accepted: a proper surrogate pair, an
	// escaped backslash before "u0000" (the six characters, not NUL), and
	// non-ASCII text.
	created, _ := createLead(t, s, tok, []byte(`{"name":"\ud83d\ude00 Zoë","company":"a\\u0000b","custom_fields":{"k\u00e9y":"\u00e9"}}`))
	if created["name"] != "😀 Zoë" || created["company"] != `a\u0000b` {
		t.Errorf("lead stored as name %q company %q", created["name"], created["company"])
	}

	// Nothing unstorable got in: the projections still follow every write.
	_, ctok := createLead(t, s, tok, map[string]any{"name": "after"})
	wantStatus(t, call(t, s, http.MethodGet, "/v1/leads", tok, nil, "X-Consistency-Token", ctok), http.StatusOK)
	_, ctok = createDeal(t, s, tok, map[string]any{"name": "after", "amount": 1, "currency": "EUR"})
	wantStatus(t, call(t, s, http.MethodGet, "/v1/deals", tok, nil, "X-Consistency-Token", ctok), http.StatusOK)
}

func TestHostileBytesInQueriesAndPaths(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("hostile-query")
	tok := s.Token(t, org, everyScope...)
	lead, leadToken := createLead(t, s, tok, map[string]any{"name": "Ada"})
	hook := wantStatus(t, call(t, s, http.MethodPost, "/v1/webhooks", tok,
		map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"*"}}), http.StatusCreated)
	hookPath := "/v1/webhooks/" + hook["id"].(string)
	leadPath := "/v1/leads/" + lead["id"].(string)

	nulCursor := "MXwA"     // "1|\x00"
	invalidCursor := "MXz_" // "1|\xff"
	feedCursor := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }

	cases := []struct{ method, path string }{
		{http.MethodGet, "/v1/leads?q=%00"},
		{http.MethodGet, "/v1/leads?q=%ff"},
		{http.MethodGet, "/v1/leads?owner_id=a%00b"},
		{http.MethodGet, "/v1/leads?status=new%00"},
		{http.MethodGet, "/v1/leads?%00=1"},
		{http.MethodGet, "/v1/leads?x=%c3"},
		{http.MethodGet, "/v1/deals?q=%c0%af"},
		{http.MethodGet, "/v1/deals?lead_id=%ed%a0%80"},
		{http.MethodGet, "/v1/events?types=lead.%00"},
		{http.MethodGet, "/v1/events?after=%ff"},
		{http.MethodGet, "/v1/events?after=" + feedCursor("f1.\x00")},
		{http.MethodGet, "/v1/leads/lead_%00"},
		{http.MethodGet, "/v1/leads/lead_%ff"},
		{http.MethodGet, "/v1/leads/lead_%00/history"},
		{http.MethodGet, "/v1/deals/%c0%af"},
		{http.MethodGet, "/v1/deals/deal_%00/history"},
		{http.MethodGet, leadPath + "?as_of=%00"},
		{http.MethodDelete, "/v1/leads/%00"},
		{http.MethodDelete, "/v1/deals/%ff"},
		{http.MethodGet, "/v1/leads?cursor=" + nulCursor},
		{http.MethodGet, "/v1/leads?cursor=" + invalidCursor},
		{http.MethodGet, "/v1/deals?cursor=" + nulCursor},
		{http.MethodGet, "/v1/deals?cursor=" + invalidCursor},
		{http.MethodGet, "/v1/webhooks?cursor=" + nulCursor},
		{http.MethodGet, "/v1/webhooks?cursor=" + invalidCursor},
		{http.MethodGet, "/v1/webhooks/wh_%00"},
		{http.MethodGet, "/v1/webhooks/%ff"},
		{http.MethodDelete, "/v1/webhooks/wh_%00"},
		{http.MethodGet, hookPath + "/deliveries?cursor=" + nulCursor},
		{http.MethodGet, hookPath + "/deliveries?cursor=" + invalidCursor},
		{http.MethodGet, hookPath + "/deliveries?status=%00"},
		{http.MethodGet, hookPath + "/deliveries/%00"},
		{http.MethodGet, hookPath + "/deliveries/dlv_%ff"},
		{http.MethodPost, hookPath + "/deliveries/%00/retry"},
		{http.MethodPost, "/v1/webhooks/%00/rotate-secret"},
		{http.MethodPost, "/v1/webhooks/%ff/test"},
		{http.MethodGet, "/v1/nowhere/%00"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := call(t, s, tc.method, tc.path, tok, nil)
			wantError(t, r, http.StatusBadRequest, "bad_request")
		})
	}

	// A write to a hostile path id with a harmless body is refused too.
	r := call(t, s, http.MethodPatch, "/v1/leads/lead_%00", tok, map[string]any{"name": "x"})
	wantError(t, r, http.StatusBadRequest, "bad_request")
	r = call(t, s, http.MethodPost, "/v1/leads/%ff/convert", tok, map[string]any{})
	wantError(t, r, http.StatusBadRequest, "bad_request")

	// Headers we keep: Idempotency-Key is stored with the response and
	// If-Match decides a write. (NUL in a header never arrives: net/http
	// refuses the request itself.)
	r = call(t, s, http.MethodPost, "/v1/leads", tok, map[string]any{"name": "x"}, "Idempotency-Key", "key-\xff")
	wantError(t, r, http.StatusBadRequest, "bad_request")
	r = call(t, s, http.MethodPatch, leadPath, tok, map[string]any{"name": "x"}, "If-Match", "\"1\xff\"")
	wantError(t, r, http.StatusBadRequest, "bad_request")
	// A request id that is not safe is replaced, as the contract says.
	r = call(t, s, http.MethodGet, leadPath, tok, nil, "X-Request-Id", "id-\xff", "X-Consistency-Token", leadToken)
	wantStatus(t, r, http.StatusOK)
	if id := r.Header.Get("X-Request-Id"); strings.Contains(id, "\xff") || id == "" {
		t.Errorf("X-Request-Id %q", id)
	}

	// The read side is unharmed.
	_, ctok := createLead(t, s, tok, map[string]any{"name": "after"})
	wantStatus(t, call(t, s, http.MethodGet, "/v1/leads?q=after", tok, nil, "X-Consistency-Token", ctok), http.StatusOK)
}
