package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/auth/authtest"
	"github.com/salesos/salesos/idempotency"
	"github.com/salesos/salesos/internal/apptest"
	"github.com/salesos/salesos/internal/testdb"
)

var publishedLimits = func(c *app.Config) { c.RateLimits = app.DefaultRateLimits }

func planToken(t testing.TB, s *apptest.Server, org, plan string) string {
	return s.Issuer.TokenWith(t, authtest.Claims{"org_id": org, "plan": plan, "scope": strings.Join(apptest.AllScopes, " ")})
}

func headerInt(t testing.TB, r *apptest.Response, name string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(r.Header.Get(name), 10, 64)
	if err != nil {
		t.Fatalf("%s = %q on a %d response", name, r.Header.Get(name), r.Status)
	}
	return v
}

// The starter plan: 100 requests a minute, every response says how many
// are left, errors included, and the 101st is refused with Retry-After.
func TestRateLimitStarterPlan(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, publishedLimits)
	org := newOrg("rl")
	tok := planToken(t, s, org, "starter")
	start := time.Now()
	for i := 1; i <= 100; i++ {
		path := "/v1/leads"
		if i%10 == 0 {
			path = "/v1/leads/lead_missing" // 404s spend budget and carry the headers too
		}
		r := call(t, s, "GET", path, tok, nil)
		if r.Status != 200 && r.Status != 404 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		if got := headerInt(t, r, "X-RateLimit-Limit"); got != 100 {
			t.Fatalf("limit %d", got)
		}
		checkRemaining(t, headerInt(t, r, "X-RateLimit-Remaining"), 100, i, start)
		reset := headerInt(t, r, "X-RateLimit-Reset")
		if now := time.Now().Unix(); reset < now || reset > now+61 {
			t.Fatalf("reset %d is not within the next minute of %d", reset, now)
		}
	}
	r := exhaust(t, s, tok, 100, start)
	wantError(t, r, http.StatusTooManyRequests, "rate_limited")
	if ra := headerInt(t, r, "Retry-After"); ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %d", ra)
	}
	if headerInt(t, r, "X-RateLimit-Remaining") != 0 {
		t.Fatal("a 429 must say 0 remaining")
	}
	if !regexp.MustCompile(`^"starter";q=100;w=60$`).MatchString(r.Header.Get("RateLimit-Policy")) ||
		!regexp.MustCompile(`^"starter";r=0;t=\d+$`).MatchString(r.Header.Get("RateLimit")) {
		t.Fatalf("draft headers: %q %q", r.Header.Get("RateLimit-Policy"), r.Header.Get("RateLimit"))
	}
	// Budgets are per organization: another one is unaffected.
	other := planToken(t, s, newOrg("rl-other"), "starter")
	wantStatus(t, call(t, s, "GET", "/v1/leads", other, nil), 200)
	// Unauthenticated requests are refused before any budget is spent.
	if r := call(t, s, "GET", "/v1/leads", "", nil); r.Status != 401 || r.Header.Get("X-RateLimit-Limit") != "" {
		t.Fatalf("anonymous: %d with limit header %q", r.Status, r.Header.Get("X-RateLimit-Limit"))
	}
}

// checkRemaining allows for the budget that refilled while the test ran
// (one request per minute/limit) and for Redis' rounding down by one.
func checkRemaining(t testing.TB, got int64, limit, spent int, start time.Time) {
	t.Helper()
	refilled := int64(time.Since(start) / (time.Minute / time.Duration(limit)))
	lo, hi := int64(limit-spent)-1, int64(limit-spent)+refilled
	if got < max(lo, 0) || got > hi {
		t.Fatalf("after %d requests: remaining %d, want %d..%d", spent, got, max(lo, 0), hi)
	}
}

// exhaust spends the rest of the budget and returns the first 429, failing
// if more requests pass than the budget plus what refilled meanwhile.
func exhaust(t testing.TB, s *apptest.Server, tok string, limit int, start time.Time) *apptest.Response {
	t.Helper()
	for range 50 {
		r := call(t, s, "GET", "/v1/leads", tok, nil)
		if r.Status == http.StatusTooManyRequests {
			return r
		}
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	t.Fatalf("no 429 after %d requests in %s", limit+50, time.Since(start))
	return nil
}

func TestRateLimitPerPlan(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, publishedLimits)
	for plan, want := range map[string]string{"starter": "100", "professional": "500", "enterprise": "2000", "": "100", "platinum": "100"} {
		r := call(t, s, "GET", "/v1/leads", planToken(t, s, newOrg("plan"), plan), nil)
		if r.Header.Get("X-RateLimit-Limit") != want {
			t.Errorf("plan %q: limit %q, want %s", plan, r.Header.Get("X-RateLimit-Limit"), want)
		}
	}
	// A 403 (valid token, missing scope) is authenticated and costs budget.
	tok := s.Issuer.TokenWith(t, authtest.Claims{"org_id": newOrg("scope"), "plan": "professional", "scope": "read:deals"})
	r := call(t, s, "GET", "/v1/leads", tok, nil)
	if r.Status != 403 || r.Header.Get("X-RateLimit-Remaining") != "499" {
		t.Fatalf("403: %d remaining %q", r.Status, r.Header.Get("X-RateLimit-Remaining"))
	}
}

// Two instances with one Redis share one budget.
func TestRateLimitSharedThroughRedis(t *testing.T) {
	t.Parallel()
	schema := testdb.NewEmpty(t)
	iss := authtest.NewIssuer(t)
	redisURL := "redis://127.0.0.1:6379/0"
	var servers []*apptest.Server
	for range 2 {
		servers = append(servers, apptest.StartWithSchema(t, schema, iss, publishedLimits, func(c *app.Config) { c.RedisURL = redisURL }))
	}
	org := newOrg(fmt.Sprintf("redis-%d", time.Now().UnixNano()))
	tok := planToken(t, servers[0], org, "starter")
	start := time.Now()
	for i := range 100 {
		r := call(t, servers[i%2], "GET", "/v1/leads", tok, nil)
		wantStatus(t, r, 200)
		checkRemaining(t, headerInt(t, r, "X-RateLimit-Remaining"), 100, i+1, start)
	}
	// The budget is spent on both instances at once.
	wantError(t, exhaust(t, servers[0], tok, 100, start), http.StatusTooManyRequests, "rate_limited")
	wantError(t, exhaust(t, servers[1], tok, 100, start), http.StatusTooManyRequests, "rate_limited")
}

// Redis down: requests keep flowing on per-instance budgets; readiness
// says Redis is unavailable without taking the instance out of service.
func TestRateLimitFailsOpenWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, publishedLimits, func(c *app.Config) { c.RedisURL = "redis://127.0.0.1:1/0" })
	tok := planToken(t, s, newOrg("redis-down"), "starter")
	start := time.Now()
	for i := range 5 {
		r := call(t, s, "GET", "/v1/leads", tok, nil)
		wantStatus(t, r, 200)
		checkRemaining(t, headerInt(t, r, "X-RateLimit-Remaining"), 100, i+1, start)
	}
	r := call(t, s, "GET", "/readyz", "", nil)
	body := wantStatus(t, r, 200)
	checks, _ := body["checks"].(map[string]any)
	if body["status"] != "degraded" || checks["redis"] != "unavailable" || checks["database"] != "ok" {
		t.Fatalf("readyz with Redis down: %s", r.Body)
	}
	if m := scrape(t, s); !strings.Contains(m, "salesos_rate_limit_store_errors_total") || strings.Contains(m, "salesos_rate_limit_store_errors_total 0\n") {
		t.Fatalf("the Redis failures were not counted:\n%s", grepLines(m, "rate_limit"))
	}
}

func TestIdempotentRetries(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("idem")
	tok := fullToken(t, s, org)
	body := map[string]any{"name": "Ada", "email": "ada@example.com"}
	first := call(t, s, "POST", "/v1/leads", tok, body, "Idempotency-Key", "import-row-1")
	lead := wantStatus(t, first, 201)
	again := call(t, s, "POST", "/v1/leads", tok, body, "Idempotency-Key", "import-row-1")
	if again.Status != 201 || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s (replayed=%q)", again.Status, again.Body, again.Header.Get("Idempotent-Replayed"))
	}
	for _, h := range []string{"Location", "ETag", "X-Consistency-Token"} {
		if again.Header.Get(h) != first.Header.Get(h) {
			t.Errorf("replayed %s %q, first %q", h, again.Header.Get(h), first.Header.Get(h))
		}
	}
	// No second lead and no second event.
	list := wantStatus(t, call(t, s, "GET", "/v1/leads", tok, nil, "X-Consistency-Token", first.Header.Get("X-Consistency-Token")), 200)
	if n := len(listData(t, list)); n != 1 {
		t.Fatalf("%d leads after a replayed create", n)
	}
	hist := wantStatus(t, call(t, s, "GET", "/v1/leads/"+lead["id"].(string)+"/history", tok, nil), 200)
	if n := len(hist["data"].([]any)); n != 1 {
		t.Fatalf("%d events after a replayed create", n)
	}
	// Same key, different body.
	wantError(t, call(t, s, "POST", "/v1/leads", tok, map[string]any{"name": "Grace"}, "Idempotency-Key", "import-row-1"),
		http.StatusUnprocessableEntity, "idempotency_key_reused")
	// Same key on another route is another request too.
	wantError(t, call(t, s, "POST", "/v1/deals", tok, body, "Idempotency-Key", "import-row-1"),
		http.StatusUnprocessableEntity, "idempotency_key_reused")
	// Validation failures are answers too: replayed, not re-run.
	bad := map[string]any{"name": ""}
	r1 := call(t, s, "POST", "/v1/leads", tok, bad, "Idempotency-Key", "bad-1")
	r2 := call(t, s, "POST", "/v1/leads", tok, bad, "Idempotency-Key", "bad-1")
	if r1.Status != 422 || r2.Status != 422 || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("422 replay: %d %d %q", r1.Status, r2.Status, r2.Header.Get("Idempotent-Replayed"))
	}
	// Keys are per organization.
	otherTok := fullToken(t, s, newOrg("idem-other"))
	wantStatus(t, call(t, s, "POST", "/v1/leads", otherTok, map[string]any{"name": "Other"}, "Idempotency-Key", "import-row-1"), 201)
	// A malformed key is refused.
	wantError(t, call(t, s, "POST", "/v1/leads", tok, body, "Idempotency-Key", strings.Repeat("k", 256)), http.StatusBadRequest, "bad_request")
}

// A retry while the first request with the key is still running is a 409.
func TestIdempotencyKeyInFlight(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("inflight")
	tok := fullToken(t, s, org)
	raw := []byte(`{"name":"Ada"}`)
	store := &idempotency.Store{DB: s.App.DB, Driver: s.App.Driver()}
	// The first request has claimed the key and not finished yet.
	if c, err := store.Claim(context.Background(), org, "k1", idempotency.Fingerprint("POST", "/v1/leads", raw)); err != nil || c.Replay != nil {
		t.Fatalf("claim: %+v %v", c, err)
	}
	r := call(t, s, "POST", "/v1/leads", tok, raw, "Idempotency-Key", "k1")
	wantError(t, r, http.StatusConflict, "conflict")
	// Truly concurrent retries: exactly one runs, the others are replayed or
	// told it is in flight; one lead in all.
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := send(t, s, "POST", "/v1/leads", tok, map[string]any{"name": "Race"}, "Idempotency-Key", "race")
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.Status
		}()
	}
	wg.Wait()
	created := 0
	for _, st := range statuses {
		switch st {
		case 201:
			created++
		case 409:
		default:
			t.Fatalf("statuses %v", statuses)
		}
	}
	if created == 0 {
		t.Fatalf("statuses %v: nobody created the lead", statuses)
	}
	list := wantStatus(t, call(t, s, "GET", "/v1/leads?q=Race", tok, nil), 200)
	if n := len(listData(t, list)); n > 1 {
		t.Fatalf("%d leads created under one idempotency key", n)
	}
}

func scrape(t testing.TB, s *apptest.Server) string {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(b)
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func metricValue(t testing.TB, text, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, series)), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

func TestMetricsMove(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("metrics"))
	before := scrape(t, s)
	r := call(t, s, "POST", "/v1/leads", tok, map[string]any{"name": "Ada"})
	wantStatus(t, r, 201)
	wantStatus(t, call(t, s, "GET", "/v1/leads", tok, nil, "X-Consistency-Token", r.Header.Get("X-Consistency-Token")), 200)
	after := scrape(t, s)
	series := `salesos_http_requests_total{method="POST",route="/v1/leads",status="201"}`
	if metricValue(t, after, series)-metricValue(t, before, series) != 1 {
		t.Fatalf("%s did not move:\n%s", series, grepLines(after, "http_requests_total"))
	}
	if metricValue(t, after, "salesos_events_appended_total") < 1 {
		t.Fatalf("events appended:\n%s", grepLines(after, "events_appended"))
	}
	if metricValue(t, after, `salesos_projection_position{projection="leads"}`) < 1 {
		t.Fatalf("projection position:\n%s", grepLines(after, "projection"))
	}
	for _, name := range []string{"salesos_http_request_duration_seconds_bucket", `salesos_projection_lag_events{projection="webhook_fanout"}`, "salesos_webhook_queue_depth", "salesos_eventstore_head_position"} {
		if !strings.Contains(after, name) {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	// Logs and metrics never carry tokens.
	if strings.Contains(after, tok) {
		t.Fatal("a token leaked into /metrics")
	}
}
