package webhooks_test

// Black-box tests of the webhook management API, the deliveries API and the
// event feed. Every test starts a complete server (apptest.Start: its own
// database on the test backend, real signed tokens) and talks to it over
// HTTP; webhook endpoints are real HTTP servers on loopback, and signatures
// are checked with the Standard Webhooks library, not with our own code.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/auth/authtest"
	"github.com/salesos/salesos/internal/apptest"
	"github.com/salesos/salesos/webhooks"
)

// ---------------------------------------------------------------------------
// Helpers of this file (the ones of delivery_test.go are reused as they are).

var everyScope = []string{"read:leads", "write:leads", "read:deals", "write:deals", "manage:webhooks", "read:events"}

// planToken is a user token of org on the enterprise plan, so polling never
// runs into the starter plan's 100 requests a minute.
func planToken(t *testing.T, s *apptest.Server, org string, scopes ...string) string {
	t.Helper()
	return s.Issuer.TokenWith(t, authtest.Claims{"org_id": org, "plan": "enterprise", "scope": strings.Join(scopes, " ")})
}

// startAPI is start with an enterprise token holding every scope.
func startAPI(t *testing.T, opts ...func(*app.Config)) env {
	t.Helper()
	s := apptest.Start(t, opts...)
	return env{s: s, tok: planToken(t, s, "org_w", everyScope...)}
}

// as is the same server seen with another token.
func (e env) as(tok string) env { return env{s: e.s, tok: tok} }

// must sends a request and fails unless it answers want; it returns the
// body as an object (nil for an empty body).
func (e env) must(t *testing.T, method, path string, body any, want int) map[string]any {
	t.Helper()
	r := e.do(t, method, path, body)
	if r.Status != want {
		t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, r.Status, want, r.Body)
	}
	if len(r.Body) == 0 {
		return nil
	}
	return r.JSON(t)
}

// poll checks cond every 25 ms until it holds or d has passed. Conditions
// that call the API use it (rather than waitFor's 10 ms) to stay well inside
// the rate limit.
func poll(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// fannedOut waits until the webhook fan-out has processed the write that
// answered r: from then on its deliveries and feed items exist.
func fannedOut(t *testing.T, e env, r *apptest.Response) {
	t.Helper()
	var pos uint64
	if _, err := fmt.Sscanf(r.Header.Get("X-Consistency-Token"), "c1.%d", &pos); err != nil {
		t.Fatalf("write answered %d without a usable X-Consistency-Token (%q): %s", r.Status, r.Header.Get("X-Consistency-Token"), r.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.s.App.Runner.WaitFor(ctx, webhooks.FanOutName, pos); err != nil {
		t.Fatalf("fan-out did not reach position %d: %v", pos, err)
	}
}

// write sends a write, checks its status and waits for its fan-out.
func (e env) write(t *testing.T, method, path string, body any, want int) map[string]any {
	t.Helper()
	r := e.do(t, method, path, body)
	if r.Status != want {
		t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, r.Status, want, r.Body)
	}
	fannedOut(t, e, r)
	if len(r.Body) == 0 {
		return nil
	}
	return r.JSON(t)
}

// keysOf lists an object's keys, sorted and comma-joined.
func keysOf(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

const (
	webhookKeys       = "active,consecutive_failures,created_at,deactivated_at,deactivation_reason,description,events,id,updated_at,url"
	webhookKeysSecret = "active,consecutive_failures,created_at,deactivated_at,deactivation_reason,description,events,id,secret,updated_at,url"
	deliveryKeys      = "attempts,created_at,delivered_at,event_id,event_type,id,last_error,last_status_code,next_attempt_at,status,webhook_id"
	attemptKeys       = "attempted_at,duration_ms,error,response,status_code"
)

// apiError checks a contract error body (status, code, exactly code,
// message, details and request_id, details an array) and returns details.
func apiError(t *testing.T, r *apptest.Response, status int, code string) []map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s); body: %s", r.Status, status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	m := r.JSON(t)
	if k := keysOf(m); k != "code,details,message,request_id" {
		t.Errorf("error body keys %s, want code,details,message,request_id; body: %s", k, r.Body)
	}
	if m["code"] != code {
		t.Errorf("code %v, want %s; body: %s", m["code"], code, r.Body)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("empty message: %s", r.Body)
	}
	if rid, _ := m["request_id"].(string); rid == "" || rid != r.Header.Get("X-Request-Id") {
		t.Errorf("request_id %q vs X-Request-Id %q", rid, r.Header.Get("X-Request-Id"))
	}
	arr, ok := m["details"].([]any)
	if !ok {
		t.Fatalf("details is not an array: %s", r.Body)
	}
	if code != "validation_failed" && len(arr) != 0 {
		t.Errorf("details of a %s error: %v, want []", code, arr)
	}
	out := make([]map[string]any, 0, len(arr))
	for _, d := range arr {
		dm, ok := d.(map[string]any)
		if !ok {
			t.Fatalf("details element is not an object: %s", r.Body)
		}
		out = append(out, dm)
	}
	return out
}

// wantInvalid checks a 422 validation_failed naming field with code ("" is
// any code).
func wantInvalid(t *testing.T, r *apptest.Response, field, code string) {
	t.Helper()
	details := apiError(t, r, http.StatusUnprocessableEntity, "validation_failed")
	for _, d := range details {
		if d["field"] == field && (code == "" || d["code"] == code) {
			if msg, _ := d["message"].(string); msg == "" {
				t.Errorf("detail for %s has no message: %v", field, d)
			}
			return
		}
	}
	t.Errorf("details %v do not name field %q with code %q", details, field, code)
}

// utc checks an RFC 3339 UTC timestamp with a Z and returns it.
func utc(t *testing.T, what string, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s = %v, want an RFC 3339 string", what, v)
	}
	if !strings.HasSuffix(s, "Z") {
		t.Errorf("%s = %q, want UTC with a Z", what, s)
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s = %q: %v", what, s, err)
	}
	return ts
}

// sameJSON compares two values as JSON.
func sameJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	gb, _ := json.Marshal(got)
	var g, w any
	_ = json.Unmarshal(gb, &g)
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	gn, _ := json.Marshal(g)
	wn, _ := json.Marshal(w)
	if !bytes.Equal(gn, wn) {
		t.Errorf("%s = %s, want %s", what, gn, wn)
	}
}

// sink is a webhook endpoint whose answer can be switched while it runs.
// It answers status (default 200) unless failIf says the body must fail;
// hold, when set, blocks every request until it is closed.
type sink struct {
	*httptest.Server
	status atomic.Int32
	failIf func(body []byte) bool
	hold   chan struct{}
	mu     sync.Mutex
	reqs   []received
}

func newSink(t *testing.T, failIf func(body []byte) bool) *sink {
	s := &sink{failIf: failIf}
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, received{ID: req.Header.Get("webhook-id"), Header: req.Header.Clone(), Body: body})
	n := len(s.reqs)
	s.mu.Unlock()
	if s.hold != nil {
		<-s.hold
	}
	code := int(s.status.Load())
	if s.failIf != nil && s.failIf(body) {
		code = http.StatusInternalServerError
	}
	w.WriteHeader(code)
	fmt.Fprintf(w, "sink answer %d", n)
}

func (s *sink) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.reqs...)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// types lists the event types received, sorted.
func (s *sink) types(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range s.all() {
		out = append(out, payloadOf(t, r.Body).Type)
	}
	sort.Strings(out)
	return out
}

// find returns the last request with the webhook-id.
func (s *sink) find(id string) (received, bool) {
	all := s.all()
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].ID == id {
			return all[i], true
		}
	}
	return received{}, false
}

type payloadHead struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	OccurredAt string          `json:"occurred_at"`
	OrgID      string          `json:"org_id"`
	Data       json.RawMessage `json:"data"`
}

func payloadOf(t *testing.T, raw []byte) payloadHead {
	t.Helper()
	var p payloadHead
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("payload is not JSON: %v: %s", err, raw)
	}
	return p
}

// verify checks a received request with the Standard Webhooks library.
func verify(secret string, r received) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	return wh.Verify(r.Body, r.Header)
}

// feedPage is one answer of GET /v1/events.
type feedPage struct {
	Data       []json.RawMessage `json:"data"`
	HasMore    bool              `json:"has_more"`
	NextCursor *string           `json:"next_cursor"`
}

func (e env) feed(t *testing.T, query string) feedPage {
	t.Helper()
	r := e.do(t, "GET", "/v1/events"+query, nil)
	if r.Status != 200 {
		t.Fatalf("GET /v1/events%s: %d %s", query, r.Status, r.Body)
	}
	if k := keysOf(r.JSON(t)); k != "data,has_more,next_cursor" {
		t.Errorf("feed envelope keys %s", k)
	}
	var p feedPage
	r.Decode(t, &p)
	if p.Data == nil {
		t.Fatalf("feed data is not an array: %s", r.Body)
	}
	return p
}

// feedTypes lists the types of feed items in order.
func feedTypes(t *testing.T, items []json.RawMessage) []string {
	t.Helper()
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = payloadOf(t, it).Type
	}
	return out
}

func feedIDs(t *testing.T, items []json.RawMessage) []string {
	t.Helper()
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = payloadOf(t, it).ID
	}
	return out
}

func eventTypesOf(ds []map[string]any) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i], _ = d["event_type"].(string)
	}
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------
// POST /v1/webhooks

func TestCreateWebhookAnswerAndSecretShownOnlyOnce(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	before := time.Now().Add(-time.Minute)
	r := e.do(t, "POST", "/v1/webhooks", map[string]any{
		"url": "https://hooks.example.com/salesos", "events": []string{"lead.created", "deal.*", "lead.created"}, "description": "CRM sync",
	})
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	w := r.JSON(t)
	if k := keysOf(w); k != webhookKeysSecret {
		t.Errorf("create answer keys %s, want %s", k, webhookKeysSecret)
	}
	id, _ := w["id"].(string)
	if id == "" {
		t.Fatalf("no id: %s", r.Body)
	}
	if loc := r.Header.Get("Location"); loc != "/v1/webhooks/"+id {
		t.Errorf("Location %q, want /v1/webhooks/%s", loc, id)
	}
	if w["url"] != "https://hooks.example.com/salesos" || w["description"] != "CRM sync" || w["active"] != true ||
		w["consecutive_failures"] != float64(0) || w["deactivated_at"] != nil || w["deactivation_reason"] != nil {
		t.Errorf("create answer: %s", r.Body)
	}
	sameJSON(t, "events (duplicates dropped)", w["events"], `["lead.created","deal.*"]`)
	if created := utc(t, "created_at", w["created_at"]); created.Before(before) || created.After(time.Now().Add(time.Minute)) {
		t.Errorf("created_at %v is not now", created)
	}
	utc(t, "updated_at", w["updated_at"])

	secret, _ := w["secret"].(string)
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		t.Fatalf("secret %q does not start with whsec_", secret)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(key) < 24 || len(key) > 64 {
		t.Errorf("secret key part %q: %d bytes, %v; want 24 to 64 bytes of base64", rest, len(key), err)
	}
	if _, err := standardwebhooks.NewWebhook(secret); err != nil {
		t.Errorf("the Standard Webhooks library refuses the secret: %v", err)
	}

	// A second webhook has its own id and secret; description is optional.
	w2 := e.must(t, "POST", "/v1/webhooks", map[string]any{"url": "http://hooks.example.com/other", "events": []string{"*"}}, 201)
	if w2["id"] == id || w2["secret"] == secret || w2["description"] != nil {
		t.Errorf("second webhook: %v", w2)
	}

	// Never again: not in GET, the list or a PATCH answer.
	noSecret := func(what string, r *apptest.Response) {
		t.Helper()
		if bytes.Contains(r.Body, []byte(rest)) || bytes.Contains(r.Body, []byte(`"secret"`)) {
			t.Errorf("%s shows the secret: %s", what, r.Body)
		}
	}
	g := e.do(t, "GET", "/v1/webhooks/"+id, nil)
	if g.Status != 200 {
		t.Fatalf("get: %d %s", g.Status, g.Body)
	}
	noSecret("GET", g)
	gw := g.JSON(t)
	if k := keysOf(gw); k != webhookKeys {
		t.Errorf("GET keys %s, want %s", k, webhookKeys)
	}
	for _, k := range []string{"id", "url", "description", "active", "created_at", "consecutive_failures"} {
		if gw[k] != w[k] {
			t.Errorf("GET %s = %v, create said %v", k, gw[k], w[k])
		}
	}
	sameJSON(t, "GET events", gw["events"], `["lead.created","deal.*"]`)
	noSecret("list", e.do(t, "GET", "/v1/webhooks", nil))
	p := e.do(t, "PATCH", "/v1/webhooks/"+id, map[string]any{"description": "renamed"})
	if p.Status != 200 {
		t.Fatalf("patch: %d %s", p.Status, p.Body)
	}
	noSecret("PATCH", p)
}

func TestCreateWebhookValidation(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	const ok = "https://hooks.example.com/h"
	long := strings.Repeat("d", 501)
	cases := []struct {
		name        string
		body        any
		field, code string
	}{
		{"missing url", map[string]any{"events": []string{"*"}}, "url", "required"},
		{"empty url", map[string]any{"url": "", "events": []string{"*"}}, "url", ""},
		{"ftp scheme", map[string]any{"url": "ftp://example.com/hook", "events": []string{"*"}}, "url", ""},
		{"file scheme", map[string]any{"url": "file:///etc/passwd", "events": []string{"*"}}, "url", ""},
		{"javascript scheme", map[string]any{"url": "javascript:alert(1)", "events": []string{"*"}}, "url", ""},
		{"no scheme", map[string]any{"url": "hooks.example.com/h", "events": []string{"*"}}, "url", ""},
		{"no host", map[string]any{"url": "https:///h", "events": []string{"*"}}, "url", ""},
		{"url not a string", map[string]any{"url": 42, "events": []string{"*"}}, "url", "invalid_type"},
		{"missing events", map[string]any{"url": ok}, "events", "required"},
		{"empty events", map[string]any{"url": ok, "events": []string{}}, "events", "required"},
		{"null events", map[string]any{"url": ok, "events": nil}, "events", "required"},
		{"events not an array", map[string]any{"url": ok, "events": "lead.created"}, "events", "invalid_type"},
		{"unknown event type", map[string]any{"url": ok, "events": []string{"lead.exploded"}}, "events[0]", "invalid_value"},
		{"pattern without dot", map[string]any{"url": ok, "events": []string{"lead*"}}, "events[0]", "invalid_value"},
		{"unknown prefix", map[string]any{"url": ok, "events": []string{"deal.created", "nope.*"}}, "events[1]", "invalid_value"},
		{"suffix wildcard", map[string]any{"url": ok, "events": []string{"*.created"}}, "events[0]", "invalid_value"},
		{"bare prefix wildcard", map[string]any{"url": ok, "events": []string{".*"}}, "events[0]", "invalid_value"},
		{"empty pattern", map[string]any{"url": ok, "events": []string{""}}, "events[0]", "invalid_value"},
		{"description over 500", map[string]any{"url": ok, "events": []string{"*"}, "description": long}, "description", "too_long"},
		{"unknown field secret", map[string]any{"url": ok, "events": []string{"*"}, "secret": "whsec_bWluZQ=="}, "secret", "unknown_field"},
		{"unknown field name", map[string]any{"url": ok, "events": []string{"*"}, "name": "x"}, "name", "unknown_field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantInvalid(t, e.do(t, "POST", "/v1/webhooks", c.body), c.field, c.code)
		})
	}
	// Every problem is reported at once.
	r := e.do(t, "POST", "/v1/webhooks", map[string]any{"url": "ftp://x", "events": []string{"lead.created", "bad"}, "description": long})
	details := apiError(t, r, 422, "validation_failed")
	var fields []string
	for _, d := range details {
		fields = append(fields, fmt.Sprint(d["field"]))
	}
	sort.Strings(fields)
	if strings.Join(fields, ",") != "description,events[1],url" {
		t.Errorf("details name %v, want description, events[1] and url", fields)
	}

	// Conventions of every JSON route.
	raw := `{"url":"https://hooks.example.com/h","events":["*"]}`
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/jsonx"} {
		r := e.s.Do(t, apptest.Request{Method: "POST", Path: "/v1/webhooks", Token: e.tok, Body: raw, ContentType: ct})
		apiError(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
	}
	for _, body := range []string{`{"url":`, `[]`, `"x"`, `{"url":"https://hooks.example.com/h","events":["*"]} {}`} {
		apiError(t, e.do(t, "POST", "/v1/webhooks", body), http.StatusBadRequest, "bad_request")
	}
	apiError(t, e.s.Do(t, apptest.Request{Method: "POST", Path: "/v1/webhooks", Token: e.tok, Body: []byte{}}), http.StatusBadRequest, "bad_request")

	// Accepted: a charset parameter, and exactly 500 characters (counted
	// as characters, not bytes).
	r = e.s.Do(t, apptest.Request{Method: "POST", Path: "/v1/webhooks", Token: e.tok, Body: raw, ContentType: "application/json; charset=utf-8"})
	if r.Status != 201 {
		t.Errorf("charset parameter: %d %s", r.Status, r.Body)
	}
	desc := strings.Repeat("é", 500)
	w := e.must(t, "POST", "/v1/webhooks", map[string]any{"url": ok, "events": []string{"lead.*", "deal.won", "*"}, "description": desc}, 201)
	if w["description"] != desc {
		t.Errorf("description of 500 characters did not round-trip")
	}
	// Nothing else was created.
	var list struct{ Data []map[string]any }
	e.do(t, "GET", "/v1/webhooks", nil).Decode(t, &list)
	if len(list.Data) != 2 {
		t.Errorf("%d webhooks exist after 2 successful creates", len(list.Data))
	}
}

func TestWebhookRoutesNeedManageWebhooksScope(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	hookID, _ := e.createWebhook(t, "https://hooks.example.com/h", "*")
	// Every other scope, but not manage:webhooks.
	without := e.as(planToken(t, e.s, "org_w", "read:leads", "write:leads", "read:deals", "write:deals", "read:events"))
	hook := "/v1/webhooks/" + hookID
	routes := []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/webhooks", map[string]any{"url": "https://hooks.example.com/x", "events": []string{"*"}}},
		{"GET", "/v1/webhooks", nil},
		{"GET", hook, nil},
		{"PATCH", hook, map[string]any{"active": false}},
		{"DELETE", hook, nil},
		{"POST", hook + "/rotate-secret", nil},
		{"POST", hook + "/test", nil},
		{"POST", hook + "/recover", map[string]any{"since": "2026-01-01T00:00:00Z"}},
		{"GET", hook + "/deliveries", nil},
		{"GET", hook + "/deliveries/dlv_x", nil},
		{"POST", hook + "/deliveries/dlv_x/retry", nil},
	}
	for _, rt := range routes {
		apiError(t, without.do(t, rt.method, rt.path, rt.body), http.StatusForbidden, "forbidden")
		apiError(t, e.as("").do(t, rt.method, rt.path, rt.body), http.StatusUnauthorized, "unauthorized")
	}
	// Nothing changed.
	w := e.must(t, "GET", hook, nil, 200)
	if w["active"] != true {
		t.Errorf("webhook changed by forbidden requests: %v", w)
	}
	var list struct{ Data []any }
	e.do(t, "GET", "/v1/webhooks", nil).Decode(t, &list)
	if len(list.Data) != 1 {
		t.Errorf("%d webhooks, want 1", len(list.Data))
	}
	// The feed needs read:events, and only that.
	apiError(t, e.as(planToken(t, e.s, "org_w", "read:leads", "read:deals", "manage:webhooks")).do(t, "GET", "/v1/events", nil), http.StatusForbidden, "forbidden")
	e.as(planToken(t, e.s, "org_w", "read:events")).must(t, "GET", "/v1/events", nil, 200)
}

// ---------------------------------------------------------------------------
// GET, PATCH, DELETE

func TestListWebhooksNewestFirstWithPagination(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	var created []string // oldest first
	for i := range 5 {
		id, _ := e.createWebhook(t, fmt.Sprintf("https://hooks.example.com/%d", i), "*")
		created = append(created, id)
	}
	newestFirst := slices.Clone(created)
	slices.Reverse(newestFirst)

	all := e.must(t, "GET", "/v1/webhooks", nil, 200)
	var got []string
	for _, d := range all["data"].([]any) {
		m := d.(map[string]any)
		if k := keysOf(m); k != webhookKeys {
			t.Errorf("list item keys %s", k)
		}
		got = append(got, m["id"].(string))
	}
	if !slices.Equal(got, newestFirst) || all["has_more"] != false || all["next_cursor"] != nil {
		t.Fatalf("list %v has_more %v next %v, want %v, false, null", got, all["has_more"], all["next_cursor"], newestFirst)
	}

	got = nil
	cursor := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		m := e.must(t, "GET", "/v1/webhooks"+q, nil, 200)
		data := m["data"].([]any)
		if len(data) > 2 {
			t.Fatalf("page of %d for limit 2", len(data))
		}
		for _, d := range data {
			got = append(got, d.(map[string]any)["id"].(string))
		}
		if m["has_more"] != true {
			if m["next_cursor"] != nil || page != 2 {
				t.Fatalf("last page %d: next_cursor %v", page, m["next_cursor"])
			}
			break
		}
		cursor, _ = m["next_cursor"].(string)
		if cursor == "" {
			t.Fatalf("has_more without next_cursor: %v", m)
		}
	}
	if !slices.Equal(got, newestFirst) {
		t.Fatalf("paged list %v, want %v", got, newestFirst)
	}

	// A webhook created after a cursor was handed out does not disturb the
	// pages after it; a deleted one disappears.
	first := e.must(t, "GET", "/v1/webhooks?limit=2", nil, 200)
	cur := first["next_cursor"].(string)
	e.createWebhook(t, "https://hooks.example.com/new", "*")
	e.must(t, "DELETE", "/v1/webhooks/"+created[2], nil, 204)
	rest := e.must(t, "GET", "/v1/webhooks?limit=10&cursor="+url.QueryEscape(cur), nil, 200)
	got = nil
	for _, d := range rest["data"].([]any) {
		got = append(got, d.(map[string]any)["id"].(string))
	}
	if want := []string{created[1], created[0]}; !slices.Equal(got, want) {
		t.Errorf("after cursor: %v, want %v", got, want)
	}

	wantInvalid(t, e.do(t, "GET", "/v1/webhooks?limit=0", nil), "limit", "")
	wantInvalid(t, e.do(t, "GET", "/v1/webhooks?limit=201", nil), "limit", "")
	apiError(t, e.do(t, "GET", "/v1/webhooks?cursor=not-a-cursor", nil), http.StatusBadRequest, "bad_request")
	apiError(t, e.do(t, "GET", "/v1/webhooks/wh_doesnotexist", nil), http.StatusNotFound, "not_found")
}

func TestPatchWebhookFieldsWithValidation(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	w := e.must(t, "POST", "/v1/webhooks", map[string]any{"url": "https://hooks.example.com/one", "events": []string{"lead.created"}, "description": "first"}, 201)
	path := "/v1/webhooks/" + w["id"].(string)

	check := func(what string, got map[string]any, url, events string, desc any) {
		t.Helper()
		if got["url"] != url || got["description"] != desc {
			t.Errorf("%s: url %v description %v, want %s %v", what, got["url"], got["description"], url, desc)
		}
		sameJSON(t, what+": events", got["events"], events)
		if k := keysOf(got); k != webhookKeys {
			t.Errorf("%s: keys %s, want %s", what, k, webhookKeys)
		}
	}
	check("url", e.must(t, "PATCH", path, map[string]any{"url": "https://hooks.example.com/two"}, 200), "https://hooks.example.com/two", `["lead.created"]`, "first")
	check("events", e.must(t, "PATCH", path, map[string]any{"events": []string{"deal.*", "lead.deleted", "deal.*"}}, 200), "https://hooks.example.com/two", `["deal.*","lead.deleted"]`, "first")
	check("description", e.must(t, "PATCH", path, map[string]any{"description": "second"}, 200), "https://hooks.example.com/two", `["deal.*","lead.deleted"]`, "second")
	check("description null", e.must(t, "PATCH", path, map[string]any{"description": nil}, 200), "https://hooks.example.com/two", `["deal.*","lead.deleted"]`, nil)
	check("all at once", e.must(t, "PATCH", path, map[string]any{"url": "http://hooks.example.com/three", "events": []string{"*"}, "description": "third"}, 200),
		"http://hooks.example.com/three", `["*"]`, "third")
	check("empty patch", e.must(t, "PATCH", path, map[string]any{}, 200), "http://hooks.example.com/three", `["*"]`, "third")
	check("GET", e.must(t, "GET", path, nil, 200), "http://hooks.example.com/three", `["*"]`, "third")

	// Validation applies on PATCH too, and a refused PATCH changes nothing
	// (not even the valid fields beside the invalid one).
	cases := []struct {
		name        string
		body        any
		field, code string
	}{
		{"bad scheme", map[string]any{"url": "ftp://example.com/h"}, "url", ""},
		{"empty url", map[string]any{"url": ""}, "url", ""},
		{"url null", map[string]any{"url": nil}, "url", "required"},
		{"empty events", map[string]any{"events": []string{}}, "events", "required"},
		{"events null", map[string]any{"events": nil}, "events", "required"},
		{"bad pattern", map[string]any{"events": []string{"lead*"}}, "events[0]", "invalid_value"},
		{"unknown type", map[string]any{"events": []string{"lead.created", "lead.exploded"}}, "events[1]", "invalid_value"},
		{"description over 500", map[string]any{"description": strings.Repeat("x", 501)}, "description", "too_long"},
		{"active null", map[string]any{"active": nil}, "active", ""},
		{"active not a boolean", map[string]any{"active": "yes"}, "active", "invalid_type"},
		{"unknown field", map[string]any{"secret": "whsec_bWluZQ=="}, "secret", "unknown_field"},
		{"valid url beside invalid events", map[string]any{"url": "https://hooks.example.com/four", "events": []string{}}, "events", "required"},
		{"valid events beside invalid description", map[string]any{"events": []string{"deal.won"}, "description": strings.Repeat("x", 501)}, "description", "too_long"},
	}
	for _, c := range cases {
		wantInvalid(t, e.do(t, "PATCH", path, c.body), c.field, c.code)
		check("after refused PATCH "+c.name, e.must(t, "GET", path, nil, 200), "http://hooks.example.com/three", `["*"]`, "third")
	}
	apiError(t, e.do(t, "PATCH", path, `{"url":`), http.StatusBadRequest, "bad_request")
	apiError(t, e.s.Do(t, apptest.Request{Method: "PATCH", Path: path, Token: e.tok, Body: `{"active":false}`, ContentType: "text/plain"}), http.StatusUnsupportedMediaType, "unsupported_media_type")
	apiError(t, e.do(t, "PATCH", "/v1/webhooks/wh_doesnotexist", map[string]any{"description": "x"}), http.StatusNotFound, "not_found")
}

func TestDeactivateByPatchThenReactivateResetsCount(t *testing.T) {
	t.Parallel()
	e := startAPI(t) // default schedule: the failed delivery waits a minute
	snk := newSink(t, nil)
	snk.status.Store(http.StatusInternalServerError)
	hookID, _ := e.createWebhook(t, snk.URL, "*")
	path := "/v1/webhooks/" + hookID
	e.write(t, "POST", "/v1/leads", map[string]any{"name": "Failing"}, 201)
	poll(t, "one failed attempt counted", 15*time.Second, func() bool {
		return e.must(t, "GET", path, nil, 200)["consecutive_failures"] == float64(1)
	})

	before := time.Now().Add(-time.Minute)
	off := e.must(t, "PATCH", path, map[string]any{"active": false}, 200)
	if off["active"] != false || off["consecutive_failures"] != float64(1) {
		t.Fatalf("deactivated: %v", off)
	}
	at := utc(t, "deactivated_at", off["deactivated_at"])
	if at.Before(before) {
		t.Errorf("deactivated_at %v is not now", at)
	}
	if reason, _ := off["deactivation_reason"].(string); reason == "" {
		t.Errorf("no deactivation_reason: %v", off)
	}
	// Deactivating again keeps the first time and reason.
	again := e.must(t, "PATCH", path, map[string]any{"active": false}, 200)
	if again["deactivated_at"] != off["deactivated_at"] || again["deactivation_reason"] != off["deactivation_reason"] {
		t.Errorf("second deactivation changed %v to %v", off, again)
	}
	if g := e.must(t, "GET", path, nil, 200); g["active"] != false || g["deactivated_at"] != off["deactivated_at"] {
		t.Errorf("GET after deactivation: %v", g)
	}
	// While off, new events create no deliveries.
	e.write(t, "POST", "/v1/leads", map[string]any{"name": "While off"}, 201)
	if n := len(e.deliveries(t, hookID, "")); n != 1 {
		t.Errorf("%d deliveries, want the 1 from before deactivation", n)
	}

	on := e.must(t, "PATCH", path, map[string]any{"active": true}, 200)
	if on["active"] != true || on["consecutive_failures"] != float64(0) || on["deactivated_at"] != nil || on["deactivation_reason"] != nil {
		t.Fatalf("reactivated: %v", on)
	}
	// Active again: new events are delivered again.
	snk.status.Store(http.StatusOK)
	e.write(t, "POST", "/v1/leads", map[string]any{"name": "After"}, 201)
	if n := len(e.deliveries(t, hookID, "")); n != 2 {
		t.Errorf("%d deliveries after reactivation, want 2", n)
	}
}

func TestDeleteWebhook(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	gone, kept := newSink(t, nil), newSink(t, nil)
	goneID, _ := e.createWebhook(t, gone.URL, "*")
	keptID, _ := e.createWebhook(t, kept.URL, "*")
	e.createLead(t, "Before")
	waitFor(t, "both receive the first event", 15*time.Second, func() bool { return gone.count() == 1 && kept.count() == 1 })
	var dlv string
	poll(t, "delivery recorded", 10*time.Second, func() bool {
		ds := e.deliveries(t, goneID, "delivered")
		if len(ds) == 1 {
			dlv = ds[0]["id"].(string)
		}
		return dlv != ""
	})

	r := e.do(t, "DELETE", "/v1/webhooks/"+goneID, nil)
	if r.Status != 204 || len(r.Body) != 0 {
		t.Fatalf("delete: %d %q", r.Status, r.Body)
	}
	hook := "/v1/webhooks/" + goneID
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", hook, nil},
		{"PATCH", hook, map[string]any{"description": "x"}},
		{"PATCH", hook, map[string]any{"active": true}},
		{"DELETE", hook, nil},
		{"GET", hook + "/deliveries", nil},
		{"GET", hook + "/deliveries/" + dlv, nil},
		{"POST", hook + "/deliveries/" + dlv + "/retry", nil},
		{"POST", hook + "/rotate-secret", nil},
		{"POST", hook + "/test", nil},
		{"POST", hook + "/recover", map[string]any{"since": "2020-01-01T00:00:00Z"}},
	} {
		apiError(t, e.do(t, c.method, c.path, c.body), http.StatusNotFound, "not_found")
	}
	var list struct{ Data []map[string]any }
	e.do(t, "GET", "/v1/webhooks", nil).Decode(t, &list)
	if len(list.Data) != 1 || list.Data[0]["id"] != keptID {
		t.Errorf("list after delete: %v", list.Data)
	}

	// New events go to the remaining webhook only.
	lr := e.write(t, "POST", "/v1/leads", map[string]any{"name": "After"}, 201)
	waitFor(t, "the kept webhook receives the new event", 15*time.Second, func() bool { return kept.count() == 2 })
	var n int
	if err := e.s.Schema.DB.Get(&n, `SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1`, goneID); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("the deleted webhook has %d deliveries, want only the 1 from before", n)
	}
	if gone.count() != 1 {
		t.Errorf("the deleted webhook's endpoint got %d requests, want 1", gone.count())
	}
	if p := payloadOf(t, kept.all()[1].Body); p.Type != "lead.created" || !strings.Contains(string(p.Data), lr["id"].(string)) {
		t.Errorf("kept webhook got %s", kept.all()[1].Body)
	}
}

// ---------------------------------------------------------------------------
// rotate-secret and test

func TestRotateSecretSignsLaterDeliveriesWithTheNewSecret(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	snk := newSink(t, nil)
	hookID, oldSecret := e.createWebhook(t, snk.URL, "lead.created")
	e.createLead(t, "Before rotation")
	waitFor(t, "first delivery", 15*time.Second, func() bool { return snk.count() == 1 })
	if err := verify(oldSecret, snk.all()[0]); err != nil {
		t.Fatalf("first delivery does not verify with the original secret: %v", err)
	}

	r := e.do(t, "POST", "/v1/webhooks/"+hookID+"/rotate-secret", nil)
	if r.Status != 200 {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	w := r.JSON(t)
	if k := keysOf(w); k != webhookKeysSecret {
		t.Errorf("rotate answer keys %s, want %s", k, webhookKeysSecret)
	}
	newSecret, _ := w["secret"].(string)
	if !strings.HasPrefix(newSecret, "whsec_") || newSecret == oldSecret || w["id"] != hookID {
		t.Fatalf("rotate answer: %s (old secret %s)", r.Body, oldSecret)
	}
	if _, err := standardwebhooks.NewWebhook(newSecret); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	if g := e.do(t, "GET", "/v1/webhooks/"+hookID, nil); bytes.Contains(g.Body, []byte(strings.TrimPrefix(newSecret, "whsec_"))) {
		t.Errorf("GET shows the rotated secret: %s", g.Body)
	}

	e.createLead(t, "After rotation")
	waitFor(t, "second delivery", 15*time.Second, func() bool { return snk.count() == 2 })
	second := snk.all()[1]
	if err := verify(newSecret, second); err != nil {
		t.Errorf("delivery after rotation does not verify with the new secret: %v", err)
	}
	if err := verify(oldSecret, second); err == nil {
		t.Errorf("delivery after rotation still verifies with the old secret")
	}
	// Test sends use the new secret too.
	e.must(t, "POST", "/v1/webhooks/"+hookID+"/test", nil, 200)
	third := snk.all()[2]
	if err := verify(newSecret, third); err != nil {
		t.Errorf("test send after rotation does not verify with the new secret: %v", err)
	}
	if err := verify(oldSecret, third); err == nil {
		t.Errorf("test send after rotation verifies with the old secret")
	}
	// Rotating again invalidates the second secret.
	third2 := e.must(t, "POST", "/v1/webhooks/"+hookID+"/rotate-secret", nil, 200)["secret"].(string)
	if third2 == newSecret || third2 == oldSecret {
		t.Fatalf("second rotation returned an earlier secret")
	}
	apiError(t, e.do(t, "POST", "/v1/webhooks/wh_doesnotexist/rotate-secret", nil), http.StatusNotFound, "not_found")
}

func TestSendTestEvent(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	snk, other := newSink(t, nil), newSink(t, nil)
	hookID, secret := e.createWebhook(t, snk.URL+"/endpoint", "lead.created")
	otherID, _ := e.createWebhook(t, other.URL, "*")

	r := e.do(t, "POST", "/v1/webhooks/"+hookID+"/test", nil)
	if r.Status != 200 {
		t.Fatalf("test: %d %s", r.Status, r.Body)
	}
	d := r.JSON(t)
	if k := keysOf(d); k != "attempt_history,"+deliveryKeys {
		t.Errorf("test answer keys %s, want attempt_history,%s", k, deliveryKeys)
	}
	if d["event_type"] != "webhook.test" || d["status"] != "delivered" || d["attempts"] != float64(1) || d["webhook_id"] != hookID ||
		d["last_status_code"] != float64(200) || d["last_error"] != nil || d["next_attempt_at"] != nil {
		t.Errorf("test answer: %s", r.Body)
	}
	utc(t, "delivered_at", d["delivered_at"])
	utc(t, "created_at", d["created_at"])
	hist, _ := d["attempt_history"].([]any)
	if len(hist) != 1 {
		t.Fatalf("attempt_history %v, want one attempt", d["attempt_history"])
	}
	a := hist[0].(map[string]any)
	if k := keysOf(a); k != attemptKeys {
		t.Errorf("attempt keys %s, want %s", k, attemptKeys)
	}
	if a["status_code"] != float64(200) || a["error"] != nil || a["response"] != "sink answer 1" {
		t.Errorf("attempt: %v", a)
	}
	if ms, ok := a["duration_ms"].(float64); !ok || ms < 0 {
		t.Errorf("duration_ms %v", a["duration_ms"])
	}
	utc(t, "attempted_at", a["attempted_at"])

	// The endpoint got it, signed, synchronously.
	reqs := snk.all()
	if len(reqs) != 1 {
		t.Fatalf("endpoint got %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if err := verify(secret, got); err != nil {
		t.Errorf("the Standard Webhooks library rejects the test event: %v", err)
	}
	if ua := got.Header.Get("User-Agent"); ua != "SalesOS-Webhooks/1" {
		t.Errorf("User-Agent %q", ua)
	}
	p := payloadOf(t, got.Body)
	if p.Type != "webhook.test" || p.ID != got.ID || p.ID != d["event_id"] || p.OrgID != "org_w" {
		t.Errorf("test payload %s (webhook-id %s, delivery event_id %v)", got.Body, got.ID, d["event_id"])
	}
	var data struct {
		Object  map[string]any `json:"object"`
		Changes map[string]any `json:"changes"`
	}
	_ = json.Unmarshal(p.Data, &data)
	if data.Object["webhook_id"] != hookID || data.Changes == nil {
		t.Errorf("test payload data: %s", p.Data)
	}
	utc(t, "occurred_at", p.OccurredAt)

	// Only that endpoint, and it is not an event of the organization.
	if other.count() != 0 || len(e.deliveries(t, otherID, "")) != 0 {
		t.Errorf("another webhook of the organization got the test event")
	}
	if f := e.feed(t, ""); len(f.Data) != 0 {
		t.Errorf("the test event is in the event feed: %v", feedTypes(t, f.Data))
	}
	// It is listed among the webhook's deliveries, and GET shows the same.
	ds := e.deliveries(t, hookID, "delivered")
	if len(ds) != 1 || ds[0]["id"] != d["id"] || ds[0]["event_type"] != "webhook.test" {
		t.Errorf("deliveries after test: %v", ds)
	}
	detail := e.must(t, "GET", "/v1/webhooks/"+hookID+"/deliveries/"+d["id"].(string), nil, 200)
	sameJSON(t, "GET of the test delivery", detail, string(r.Body))

	// Another test is another event.
	d2 := e.must(t, "POST", "/v1/webhooks/"+hookID+"/test", nil, 200)
	if d2["event_id"] == d["event_id"] || d2["id"] == d["id"] || snk.count() != 2 {
		t.Errorf("second test: %v", d2)
	}
	apiError(t, e.do(t, "POST", "/v1/webhooks/wh_doesnotexist/test", nil), http.StatusNotFound, "not_found")
}

func TestSendTestEventToFailingEndpointDoesNotCount(t *testing.T) {
	t.Parallel()
	e := startAPI(t, fastRetries)
	snk := newSink(t, nil)
	snk.status.Store(http.StatusInternalServerError)
	hookID, _ := e.createWebhook(t, snk.URL, "*")
	path := "/v1/webhooks/" + hookID

	// More failed tests than the deactivation threshold (10).
	for i := range 11 {
		d := e.must(t, "POST", path+"/test", nil, 200)
		if d["status"] != "failed" || d["attempts"] != float64(1) || d["last_status_code"] != float64(500) || d["delivered_at"] != nil || d["next_attempt_at"] != nil {
			t.Fatalf("test %d against a failing endpoint: %v", i, d)
		}
		if msg, _ := d["last_error"].(string); msg == "" {
			t.Errorf("no last_error: %v", d)
		}
		hist := d["attempt_history"].([]any)
		if len(hist) != 1 {
			t.Fatalf("attempt_history %v", hist)
		}
		a := hist[0].(map[string]any)
		if a["status_code"] != float64(500) || a["error"] == nil || a["response"] != fmt.Sprintf("sink answer %d", i+1) {
			t.Errorf("attempt: %v", a)
		}
	}
	w := e.must(t, "GET", path, nil, 200)
	if w["consecutive_failures"] != float64(0) || w["active"] != true || w["deactivated_at"] != nil {
		t.Fatalf("failed test sends counted towards deactivation: %v", w)
	}

	// A real event is still attempted (the webhook is active), and test
	// sends were not retried: with the millisecond schedule a retried test
	// would have arrived long before the event's six attempts are over.
	e.createLead(t, "Real")
	poll(t, "the real event fails for good", 15*time.Second, func() bool {
		for _, d := range e.deliveries(t, hookID, "failed") {
			if d["event_type"] == "lead.created" {
				return true
			}
		}
		return false
	})
	tests := 0
	for _, r := range snk.all() {
		if payloadOf(t, r.Body).Type == "webhook.test" {
			tests++
		}
	}
	if tests != 11 {
		t.Errorf("the endpoint got %d test events, want 11 (tests are not retried)", tests)
	}

	// An endpoint that does not answer at all.
	down := newSink(t, nil)
	downID, _ := e.createWebhook(t, down.URL, "lead.deleted")
	down.Close()
	d := e.must(t, "POST", "/v1/webhooks/"+downID+"/test", nil, 200)
	if d["status"] != "failed" || d["last_status_code"] != nil || d["last_error"] == nil {
		t.Errorf("test against a closed port: %v", d)
	}
}

// ---------------------------------------------------------------------------
// Deliveries

func TestDeliveriesStatusFilterAndDetail(t *testing.T) {
	t.Parallel()
	e := startAPI(t) // default schedule: a failed first attempt waits a minute
	// Fails test events and leads named FailMe, accepts the rest.
	snk := newSink(t, func(b []byte) bool {
		return bytes.Contains(b, []byte(`"webhook.test"`)) || bytes.Contains(b, []byte("FailMe"))
	})
	hookID, _ := e.createWebhook(t, snk.URL, "lead.created")
	path := "/v1/webhooks/" + hookID

	e.createLead(t, "Accepted")
	poll(t, "the first delivery", 15*time.Second, func() bool { return len(e.deliveries(t, hookID, "delivered")) == 1 })
	e.createLead(t, "FailMe")
	poll(t, "the failed first attempt", 15*time.Second, func() bool {
		ds := e.deliveries(t, hookID, "pending")
		return len(ds) == 1 && ds[0]["attempts"] == float64(1)
	})
	testDlv := e.must(t, "POST", path+"/test", nil, 200)

	all := e.deliveries(t, hookID, "")
	if len(all) != 3 {
		t.Fatalf("%d deliveries, want 3: %v", len(all), all)
	}
	for _, d := range all {
		if k := keysOf(d); k != deliveryKeys {
			t.Errorf("list item keys %s, want %s", k, deliveryKeys)
		}
		if d["webhook_id"] != hookID {
			t.Errorf("delivery of webhook %v", d["webhook_id"])
		}
	}
	if all[0]["id"] != testDlv["id"] || all[1]["status"] != "pending" || all[2]["status"] != "delivered" {
		t.Errorf("deliveries are not newest first: %v", all)
	}

	delivered := e.deliveries(t, hookID, "delivered")
	if len(delivered) != 1 || delivered[0]["event_type"] != "lead.created" || delivered[0]["attempts"] != float64(1) ||
		delivered[0]["last_status_code"] != float64(200) || delivered[0]["last_error"] != nil || delivered[0]["next_attempt_at"] != nil {
		t.Errorf("delivered: %v", delivered)
	} else {
		utc(t, "delivered_at", delivered[0]["delivered_at"])
	}
	pending := e.deliveries(t, hookID, "pending")
	if len(pending) != 1 || pending[0]["last_status_code"] != float64(500) || pending[0]["delivered_at"] != nil || pending[0]["last_error"] == nil {
		t.Fatalf("pending: %v", pending)
	}
	if next := utc(t, "next_attempt_at", pending[0]["next_attempt_at"]); next.Before(time.Now().Add(30 * time.Second)) {
		t.Errorf("next_attempt_at %v, want about a minute after the failure", next)
	}
	failed := e.deliveries(t, hookID, "failed")
	if len(failed) != 1 || failed[0]["id"] != testDlv["id"] {
		t.Errorf("failed: %v", failed)
	}
	for _, bad := range []string{"bogus", "PENDING", "delivered,failed", "retrying"} {
		wantInvalid(t, e.do(t, "GET", path+"/deliveries?status="+url.QueryEscape(bad), nil), "status", "")
	}

	// Pagination.
	p1 := e.must(t, "GET", path+"/deliveries?limit=2", nil, 200)
	cur, _ := p1["next_cursor"].(string)
	if len(p1["data"].([]any)) != 2 || p1["has_more"] != true || cur == "" {
		t.Fatalf("first page: %v", p1)
	}
	p2 := e.must(t, "GET", path+"/deliveries?limit=2&cursor="+url.QueryEscape(cur), nil, 200)
	data2 := p2["data"].([]any)
	if len(data2) != 1 || data2[0].(map[string]any)["id"] != all[2]["id"] || p2["has_more"] != false || p2["next_cursor"] != nil {
		t.Errorf("second page: %v", p2)
	}
	pp := e.must(t, "GET", path+"/deliveries?status=pending&limit=1", nil, 200)
	if len(pp["data"].([]any)) != 1 || pp["has_more"] != false {
		t.Errorf("pending page: %v", pp)
	}

	// Detail of the pending one: every attempt.
	detail := e.must(t, "GET", path+"/deliveries/"+pending[0]["id"].(string), nil, 200)
	hist, _ := detail["attempt_history"].([]any)
	if len(hist) != 1 {
		t.Fatalf("attempt_history of the pending delivery: %v", detail)
	}
	a := hist[0].(map[string]any)
	if k := keysOf(a); k != attemptKeys {
		t.Errorf("attempt keys %s", k)
	}
	if a["status_code"] != float64(500) || a["response"] != "sink answer 2" {
		t.Errorf("attempt: %v", a)
	}
	if msg, _ := a["error"].(string); !strings.Contains(msg, "500") {
		t.Errorf("attempt error %v, want one naming the status", a["error"])
	}
	utc(t, "attempted_at", a["attempted_at"])
	delete(detail, "attempt_history")
	sameJSON(t, "detail without history", detail, mustJSON(pending[0]))

	// A delivery of another webhook is not found under this one.
	snk2 := newSink(t, nil)
	otherID, _ := e.createWebhook(t, snk2.URL, "lead.created")
	e.createLead(t, "Second hook")
	var otherDlv string
	poll(t, "the other webhook's delivery", 15*time.Second, func() bool {
		if ds := e.deliveries(t, otherID, ""); len(ds) == 1 {
			otherDlv = ds[0]["id"].(string)
		}
		return otherDlv != ""
	})
	apiError(t, e.do(t, "GET", path+"/deliveries/"+otherDlv, nil), http.StatusNotFound, "not_found")
	apiError(t, e.do(t, "POST", path+"/deliveries/"+otherDlv+"/retry", nil), http.StatusNotFound, "not_found")
	apiError(t, e.do(t, "GET", path+"/deliveries/dlv_doesnotexist", nil), http.StatusNotFound, "not_found")
	apiError(t, e.do(t, "GET", "/v1/webhooks/wh_doesnotexist/deliveries", nil), http.StatusNotFound, "not_found")
	e.must(t, "GET", "/v1/webhooks/"+otherID+"/deliveries/"+otherDlv, nil, 200)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// A delivery whose first attempt is still in flight has no attempts yet:
// its detail still carries attempt_history, as an empty array.
func TestDeliveryDetailBeforeTheFirstAttemptIsRecorded(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	snk := newSink(t, nil)
	snk.hold = make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(snk.hold) }) }
	t.Cleanup(release) // runs before the sink and the server are closed
	hookID, _ := e.createWebhook(t, snk.URL, "*")
	e.createLead(t, "Slow endpoint")
	waitFor(t, "the attempt to start", 15*time.Second, func() bool { return snk.count() == 1 })
	ds := e.deliveries(t, hookID, "pending")
	if len(ds) != 1 || ds[0]["attempts"] != float64(0) {
		t.Fatalf("in-flight delivery: %v", ds)
	}
	detail := e.must(t, "GET", "/v1/webhooks/"+hookID+"/deliveries/"+ds[0]["id"].(string), nil, 200)
	release()
	if h, ok := detail["attempt_history"].([]any); !ok || len(h) != 0 {
		t.Errorf("attempt_history of a delivery without attempts = %v (present: %v), want []", detail["attempt_history"], ok)
	}
	poll(t, "delivered once released", 15*time.Second, func() bool { return len(e.deliveries(t, hookID, "delivered")) == 1 })
}

// ---------------------------------------------------------------------------
// recover

func TestRecoverFailedDeliveries(t *testing.T) {
	t.Parallel()
	e := startAPI(t, fastRetries, func(c *app.Config) { c.WebhookDeactivateAfter = 100 })
	snk := newSink(t, nil)
	snk.status.Store(http.StatusServiceUnavailable)
	w := e.must(t, "POST", "/v1/webhooks", map[string]any{"url": snk.URL, "events": []string{"lead.created"}}, 201)
	hookID := w["id"].(string)
	path := "/v1/webhooks/" + hookID
	since := w["created_at"].(string) // server time, before every delivery

	e.createLead(t, "One")
	e.createLead(t, "Two")
	poll(t, "both deliveries failed", 20*time.Second, func() bool { return len(e.deliveries(t, hookID, "failed")) == 2 })
	if n := snk.count(); n != 12 {
		t.Errorf("%d attempts, want 2×6", n)
	}
	failed := e.deliveries(t, hookID, "failed")
	var latest time.Time
	for _, d := range failed {
		if c := utc(t, "created_at", d["created_at"]); c.After(latest) {
			latest = c
		}
	}

	// Since after both: nothing to do.
	r := e.do(t, "POST", path+"/recover", map[string]any{"since": latest.Add(time.Millisecond).Format(time.RFC3339Nano)})
	if r.Status != 202 {
		t.Fatalf("recover: %d %s", r.Status, r.Body)
	}
	sameJSON(t, "recover since after them", r.JSON(t), `{"requeued":0}`)
	if n := len(e.deliveries(t, hookID, "failed")); n != 2 {
		t.Fatalf("%d failed after an empty recover", n)
	}

	snk.status.Store(http.StatusNoContent)
	r = e.do(t, "POST", path+"/recover", map[string]any{"since": since})
	if r.Status != 202 {
		t.Fatalf("recover: %d %s", r.Status, r.Body)
	}
	sameJSON(t, "recover since before them", r.JSON(t), `{"requeued":2}`)
	poll(t, "both delivered", 15*time.Second, func() bool { return len(e.deliveries(t, hookID, "delivered")) == 2 })
	for _, d := range e.deliveries(t, hookID, "delivered") {
		if d["last_status_code"] != float64(204) || d["attempts"] != float64(7) || d["last_error"] != nil {
			t.Errorf("recovered delivery: %v", d)
		}
		utc(t, "delivered_at", d["delivered_at"])
		// One webhook-id for every attempt of an event.
		n := 0
		for _, rq := range snk.all() {
			if rq.ID == d["event_id"] {
				n++
			}
		}
		if n != 7 {
			t.Errorf("event %v arrived %d times with its webhook-id, want 7", d["event_id"], n)
		}
	}
	if n := snk.count(); n != 14 {
		t.Errorf("%d requests in all, want 12 failures and 2 successes", n)
	}
	if wh := e.must(t, "GET", path, nil, 200); wh["consecutive_failures"] != float64(0) {
		t.Errorf("the success did not reset the failure count: %v", wh)
	}
	// Delivered ones are not re-queued.
	sameJSON(t, "recover again", e.must(t, "POST", path+"/recover", map[string]any{"since": since}, 202), `{"requeued":0}`)

	wantInvalid(t, e.do(t, "POST", path+"/recover", map[string]any{}), "since", "required")
	wantInvalid(t, e.do(t, "POST", path+"/recover", map[string]any{"since": nil}), "since", "required")
	for _, bad := range []string{"", "yesterday", "2026-03-15", "2026-03-15 14:30:00", "1700000000"} {
		wantInvalid(t, e.do(t, "POST", path+"/recover", map[string]any{"since": bad}), "since", "invalid_format")
	}
	wantInvalid(t, e.do(t, "POST", path+"/recover", map[string]any{"since": 1700000000}), "since", "invalid_type")
	wantInvalid(t, e.do(t, "POST", path+"/recover", map[string]any{"since": since, "status": "failed"}), "status", "unknown_field")
	apiError(t, e.do(t, "POST", path+"/recover", nil), http.StatusBadRequest, "bad_request")
	apiError(t, e.do(t, "POST", path+"/recover", `{"since":`), http.StatusBadRequest, "bad_request")
	apiError(t, e.s.Do(t, apptest.Request{Method: "POST", Path: path + "/recover", Token: e.tok, Body: `{"since":"` + since + `"}`, ContentType: "text/plain"}),
		http.StatusUnsupportedMediaType, "unsupported_media_type")
	apiError(t, e.do(t, "POST", "/v1/webhooks/wh_doesnotexist/recover", map[string]any{"since": since}), http.StatusNotFound, "not_found")
}

// Test sends are "not retried and do not count towards deactivation"
// (README): recovering failed deliveries must leave failed test sends alone,
// or they are sent again by the dispatcher, whose failures do count.
func TestRecoverLeavesFailedTestSendsAlone(t *testing.T) {
	t.Parallel()
	e := startAPI(t, fastRetries)
	snk := newSink(t, nil)
	snk.status.Store(http.StatusInternalServerError)
	w := e.must(t, "POST", "/v1/webhooks", map[string]any{"url": snk.URL, "events": []string{"*"}}, 201)
	path := "/v1/webhooks/" + w["id"].(string)
	if d := e.must(t, "POST", path+"/test", nil, 200); d["status"] != "failed" {
		t.Fatalf("test: %v", d)
	}
	sameJSON(t, "recover with only a failed test send", e.must(t, "POST", path+"/recover", map[string]any{"since": w["created_at"]}, 202), `{"requeued":0}`)
}

// ---------------------------------------------------------------------------
// GET /v1/events

func TestEventFeed(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	other := e.as(planToken(t, e.s, "org_other", everyScope...))
	snk := newSink(t, nil)
	e.createWebhook(t, snk.URL, "*")

	empty := e.feed(t, "")
	if len(empty.Data) != 0 || empty.HasMore || empty.NextCursor != nil {
		t.Fatalf("empty feed: %+v", empty)
	}

	// Six events of org_w, with another organization's in between.
	leadA := e.write(t, "POST", "/v1/leads", map[string]any{"name": "Ada & <Co>"}, 201)["id"].(string)
	other.write(t, "POST", "/v1/leads", map[string]any{"name": "Other org"}, 201)
	e.write(t, "PATCH", "/v1/leads/"+leadA, map[string]any{"phone": "+44 20 7946 0958"}, 200)
	leadB := e.write(t, "POST", "/v1/leads", map[string]any{"name": "Babbage"}, 201)["id"].(string)
	conv := e.write(t, "POST", "/v1/leads/"+leadB+"/convert", map[string]any{"deal": map[string]any{"name": "Engine", "amount": 1250.5, "currency": "GBP"}}, 201)
	dealID := conv["deal"].(map[string]any)["id"].(string)
	other.write(t, "POST", "/v1/leads", map[string]any{"name": "Other org 2"}, 201)
	e.write(t, "PATCH", "/v1/deals/"+dealID, map[string]any{"stage": "won"}, 200)
	wantTypes := []string{"lead.created", "lead.updated", "lead.created", "lead.converted", "deal.created", "deal.won"}

	full := e.feed(t, "")
	if got := feedTypes(t, full.Data); !slices.Equal(got, wantTypes) {
		t.Fatalf("feed types %v, want %v (oldest first)", got, wantTypes)
	}
	if full.HasMore || full.NextCursor == nil || *full.NextCursor == "" {
		t.Errorf("full feed: has_more %v next_cursor %v; want false and a cursor", full.HasMore, full.NextCursor)
	}
	var lastAt time.Time
	for i, it := range full.Data {
		p := payloadOf(t, it)
		if p.OrgID != "org_w" {
			t.Errorf("item %d of org %s", i, p.OrgID)
		}
		at := utc(t, "occurred_at", p.OccurredAt)
		if at.Before(lastAt) {
			t.Errorf("item %d occurred before item %d", i, i-1)
		}
		lastAt = at
	}

	// The same bytes as the webhook receives, for every event.
	waitFor(t, "six deliveries", 15*time.Second, func() bool { return snk.count() == 6 })
	for _, it := range full.Data {
		id := payloadOf(t, it).ID
		got, ok := snk.find(id)
		if !ok {
			t.Errorf("event %s was not delivered", id)
			continue
		}
		if !bytes.Equal(got.Body, it) {
			t.Errorf("event %s\nfeed:    %s\nwebhook: %s", id, it, got.Body)
		}
	}

	// Payloads of the conversion and the won deal.
	var conv1, created, won struct {
		Data struct {
			Object  map[string]any            `json:"object"`
			Changes map[string]map[string]any `json:"changes"`
		} `json:"data"`
	}
	_ = json.Unmarshal(full.Data[3], &conv1)
	_ = json.Unmarshal(full.Data[4], &created)
	_ = json.Unmarshal(full.Data[5], &won)
	if conv1.Data.Object["id"] != leadB || conv1.Data.Object["status"] != "converted" || conv1.Data.Changes["status"]["to"] != "converted" {
		t.Errorf("lead.converted: %s", full.Data[3])
	}
	if created.Data.Object["id"] != dealID || created.Data.Object["lead_id"] != leadB || created.Data.Object["stage"] != "qualification" {
		t.Errorf("deal.created: %s", full.Data[4])
	}
	if !bytes.Contains(full.Data[4], []byte(`"amount":1250.5`)) {
		t.Errorf("deal.created amount is not the number 1250.5: %s", full.Data[4])
	}
	changed := slices.Sorted(func(yield func(string) bool) {
		for k := range won.Data.Changes {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(changed, []string{"closed_at", "stage"}) {
		t.Errorf("deal.won changes %v, want closed_at and stage: %s", changed, full.Data[5])
	}
	if won.Data.Changes["stage"]["from"] != "qualification" || won.Data.Changes["stage"]["to"] != "won" ||
		won.Data.Changes["closed_at"]["from"] != nil || won.Data.Changes["closed_at"]["to"] == nil || won.Data.Object["stage"] != "won" {
		t.Errorf("deal.won: %s", full.Data[5])
	}
	utc(t, "closed_at", won.Data.Changes["closed_at"]["to"])

	// Type filters.
	for _, c := range []struct {
		types string
		want  []string
	}{
		{"lead.*", []string{"lead.created", "lead.updated", "lead.created", "lead.converted"}},
		{"deal.*", []string{"deal.created", "deal.won"}},
		{"deal.won", []string{"deal.won"}},
		{"lead.created,deal.won", []string{"lead.created", "lead.created", "deal.won"}},
		{" lead.updated , deal.* ", []string{"lead.updated", "deal.created", "deal.won"}},
		{"*", wantTypes},
		{"lead.deleted", nil},
	} {
		f := e.feed(t, "?types="+url.QueryEscape(c.types))
		if got := feedTypes(t, f.Data); !slices.Equal(got, c.want) && (len(got) != 0 || len(c.want) != 0) {
			t.Errorf("types=%q: %v, want %v", c.types, got, c.want)
		}
		if f.HasMore {
			t.Errorf("types=%q: has_more", c.types)
		}
	}

	// limit and the after cursor.
	p1 := e.feed(t, "?limit=4")
	if len(p1.Data) != 4 || !p1.HasMore || p1.NextCursor == nil {
		t.Fatalf("limit=4: %d items has_more %v", len(p1.Data), p1.HasMore)
	}
	p2 := e.feed(t, "?limit=4&after="+url.QueryEscape(*p1.NextCursor))
	if len(p2.Data) != 2 || p2.HasMore || p2.NextCursor == nil {
		t.Fatalf("second page: %d items has_more %v next %v", len(p2.Data), p2.HasMore, p2.NextCursor)
	}
	if got, want := append(feedIDs(t, p1.Data), feedIDs(t, p2.Data)...), feedIDs(t, full.Data); !slices.Equal(got, want) {
		t.Errorf("pages %v, want %v", got, want)
	}
	if exact := e.feed(t, "?limit=6"); len(exact.Data) != 6 || exact.HasMore {
		t.Errorf("limit=6 of 6 events: %d has_more %v", len(exact.Data), exact.HasMore)
	}
	filtered := e.feed(t, "?types=lead.*&limit=1&after="+url.QueryEscape(*p1.NextCursor))
	if len(filtered.Data) != 0 || filtered.HasMore {
		t.Errorf("lead events after the 4th: %v", feedTypes(t, filtered.Data))
	}

	// Keep the cursor, make more events, ask again: only the new ones.
	kept := *p2.NextCursor
	leadC := e.write(t, "POST", "/v1/leads", map[string]any{"name": "Curie"}, 201)["id"].(string)
	other.write(t, "POST", "/v1/leads", map[string]any{"name": "Other org 3"}, 201)
	e.write(t, "DELETE", "/v1/leads/"+leadC, nil, 204)
	news := e.feed(t, "?after="+url.QueryEscape(kept))
	if got := feedTypes(t, news.Data); !slices.Equal(got, []string{"lead.created", "lead.deleted"}) || news.HasMore || news.NextCursor == nil || *news.NextCursor == kept {
		t.Fatalf("after the kept cursor: %v has_more %v next %v", got, news.HasMore, news.NextCursor)
	}
	if !strings.Contains(string(news.Data[0]), leadC) {
		t.Errorf("new event: %s", news.Data[0])
	}
	// Nothing new: no data, and the cursor is still there to keep polling.
	idle := e.feed(t, "?after="+url.QueryEscape(*news.NextCursor))
	if len(idle.Data) != 0 || idle.HasMore || idle.NextCursor == nil || *idle.NextCursor != *news.NextCursor {
		t.Errorf("polling with nothing new: %+v", idle)
	}

	// Another organization sees only its own events, also with our cursor.
	of := other.feed(t, "")
	if len(of.Data) != 3 {
		t.Errorf("other org's feed has %d events, want its 3", len(of.Data))
	}
	for _, it := range of.Data {
		if p := payloadOf(t, it); p.OrgID != "org_other" {
			t.Errorf("other org sees %s", it)
		}
	}
	if oa := other.feed(t, "?after="+url.QueryEscape(kept)); len(oa.Data) != 1 || payloadOf(t, oa.Data[0]).OrgID != "org_other" {
		t.Errorf("other org after org_w's cursor: %d items", len(oa.Data))
	}
	for _, it := range e.feed(t, "?limit=200").Data {
		if p := payloadOf(t, it); p.OrgID != "org_w" {
			t.Errorf("org_w sees %s", it)
		}
	}

	// Bad requests.
	enc := base64.RawURLEncoding.EncodeToString
	for _, bad := range []string{"garbage!", "f1.3", enc([]byte("f1.-1")), enc([]byte("x.5")), enc([]byte("f1.")), enc([]byte("f2.3"))} {
		apiError(t, e.do(t, "GET", "/v1/events?after="+url.QueryEscape(bad), nil), http.StatusBadRequest, "bad_request")
	}
	wantInvalid(t, e.do(t, "GET", "/v1/events?limit=0", nil), "limit", "")
	wantInvalid(t, e.do(t, "GET", "/v1/events?limit=201", nil), "limit", "")
	wantInvalid(t, e.do(t, "GET", "/v1/events?limit=ten", nil), "limit", "")
}

// ---------------------------------------------------------------------------
// Matching

func TestWebhookEventMatching(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	sDeal, sLead, sAll, sMix := newSink(t, nil), newSink(t, nil), newSink(t, nil), newSink(t, nil)
	hDeal, _ := e.createWebhook(t, sDeal.URL, "deal.*")
	hLead, _ := e.createWebhook(t, sLead.URL, "lead.created")
	hAll, _ := e.createWebhook(t, sAll.URL, "*")
	hMix, _ := e.createWebhook(t, sMix.URL, "lead.converted", "deal.won")

	lead := e.write(t, "POST", "/v1/leads", map[string]any{"name": "Matcher"}, 201)["id"].(string)
	e.write(t, "PATCH", "/v1/leads/"+lead, map[string]any{"status": "contacted"}, 200)
	deal := e.write(t, "POST", "/v1/deals", map[string]any{"name": "Direct", "amount": 10, "currency": "EUR"}, 201)["id"].(string)
	e.write(t, "PATCH", "/v1/deals/"+deal, map[string]any{"stage": "lost", "lost_reason": "budget"}, 200)
	e.write(t, "DELETE", "/v1/deals/"+deal, nil, 204)
	conv := e.write(t, "POST", "/v1/leads/"+lead+"/convert", map[string]any{}, 201)
	won := conv["deal"].(map[string]any)["id"].(string)
	e.write(t, "PATCH", "/v1/deals/"+won, map[string]any{"stage": "won"}, 200)

	allTypes := e.feed(t, "")
	everything := sorted(feedTypes(t, allTypes.Data)...)
	if want := sorted("lead.created", "lead.status_changed", "deal.created", "deal.lost", "deal.deleted", "lead.converted", "deal.created", "deal.won"); !slices.Equal(everything, want) {
		t.Fatalf("the writes made %v, want %v", everything, want)
	}
	cases := []struct {
		name string
		hook string
		snk  *sink
		want []string
	}{
		{"deal.*", hDeal, sDeal, sorted("deal.created", "deal.lost", "deal.deleted", "deal.created", "deal.won")},
		{"lead.created", hLead, sLead, []string{"lead.created"}},
		{"*", hAll, sAll, everything},
		{"lead.converted+deal.won", hMix, sMix, sorted("deal.won", "lead.converted")},
	}
	for _, c := range cases {
		if got := eventTypesOf(e.deliveries(t, c.hook, "")); !slices.Equal(got, c.want) {
			t.Errorf("webhook on %s has deliveries %v, want %v", c.name, got, c.want)
		}
	}
	for _, c := range cases {
		waitFor(t, "deliveries to "+c.name, 15*time.Second, func() bool { return c.snk.count() >= len(c.want) })
	}
	for _, c := range cases {
		if got := c.snk.types(t); !slices.Equal(got, c.want) {
			t.Errorf("endpoint of %s received %v, want %v", c.name, got, c.want)
		}
	}

	// Changing a webhook's events changes what it gets from then on.
	e.must(t, "PATCH", "/v1/webhooks/"+hLead, map[string]any{"events": []string{"deal.deleted"}}, 200)
	e.write(t, "POST", "/v1/leads", map[string]any{"name": "Not any more"}, 201)
	e.write(t, "DELETE", "/v1/deals/"+won, nil, 204)
	if got := eventTypesOf(e.deliveries(t, hLead, "")); !slices.Equal(got, []string{"deal.deleted", "lead.created"}) {
		t.Errorf("after the change the webhook has %v, want the old lead.created and the new deal.deleted", got)
	}
}

// The SSRF guard applies when a webhook's url is changed, not only when it
// is created.
func TestPatchWebhookRefusesPrivateTargets(t *testing.T) {
	t.Parallel()
	e := startAPI(t, func(c *app.Config) { c.WebhookAllowPrivate = false })
	w := e.must(t, "POST", "/v1/webhooks", map[string]any{"url": "https://93.184.216.34/hook", "events": []string{"*"}}, 201)
	path := "/v1/webhooks/" + w["id"].(string)
	for _, u := range []string{"http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]/hook", "http://100.64.0.1/hook"} {
		wantInvalid(t, e.do(t, "PATCH", path, map[string]any{"url": u}), "url", "forbidden_target")
	}
	if g := e.must(t, "GET", path, nil, 200); g["url"] != "https://93.184.216.34/hook" {
		t.Errorf("url changed by refused PATCHes: %v", g["url"])
	}
	e.must(t, "PATCH", path, map[string]any{"url": "https://93.184.216.35/other"}, 200)
}

// types takes event types and "prefix.*" patterns; the characters of a
// type are not wildcards ("_" and "%" are not SQL LIKE patterns here).
func TestEventFeedTypesAreNotSQLPatterns(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	e.write(t, "POST", "/v1/leads", map[string]any{"name": "Pattern"}, 201)
	if f := e.feed(t, "?types=lead.*"); len(f.Data) != 1 {
		t.Fatalf("types=lead.*: %d items, want 1", len(f.Data))
	}
	for _, types := range []string{"_ead.*", "lead_created", "lead.%", "%.*", "l%"} {
		r := e.do(t, "GET", "/v1/events?types="+url.QueryEscape(types), nil)
		if r.Status == http.StatusUnprocessableEntity {
			wantInvalid(t, r, "types", "")
			continue
		}
		if r.Status != 200 {
			t.Errorf("types=%s: %d %s", types, r.Status, r.Body)
			continue
		}
		var f feedPage
		r.Decode(t, &f)
		if len(f.Data) != 0 {
			t.Errorf("types=%s matches %v: the filter treats _ or %% as wildcards", types, feedTypes(t, f.Data))
		}
	}
}
