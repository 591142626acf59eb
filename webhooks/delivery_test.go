package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/internal/apptest"
)

// receiver is a webhook endpoint on loopback. respond decides the status of
// the n-th request (1-based) it receives.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	respond  func(n int) int
	notify   chan struct{}
}

type received struct {
	ID     string
	Header http.Header
	Body   []byte
}

func newReceiver(t *testing.T, respond func(n int) int) *receiver {
	r := &receiver{respond: respond, notify: make(chan struct{}, 1000)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.requests = append(r.requests, received{ID: req.Header.Get("webhook-id"), Header: req.Header.Clone(), Body: body})
		n := len(r.requests)
		r.mu.Unlock()
		status := http.StatusOK
		r.mu.Lock()
		respond := r.respond
		r.mu.Unlock()
		if respond != nil {
			status = respond(n)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "attempt %d", n)
		r.notify <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.requests...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

var fastRetries = func(c *app.Config) {
	c.WebhookRetrySchedule = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond}
}

type env struct {
	s   *apptest.Server
	tok string
}

func start(t *testing.T, opts ...func(*app.Config)) env {
	s := apptest.Start(t, opts...)
	return env{s: s, tok: s.Token(t, "org_w", "read:leads", "write:leads", "read:deals", "write:deals", "manage:webhooks", "read:events")}
}

func (e env) do(t *testing.T, method, path string, body any) *apptest.Response {
	t.Helper()
	return e.s.Do(t, apptest.Request{Method: method, Path: path, Token: e.tok, Body: body})
}

func (e env) createWebhook(t *testing.T, url string, events ...string) (id, secret string) {
	t.Helper()
	r := e.do(t, "POST", "/v1/webhooks", map[string]any{"url": url, "events": events, "description": "test"})
	if r.Status != 201 {
		t.Fatalf("create webhook: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	return m["id"].(string), m["secret"].(string)
}

func (e env) createLead(t *testing.T, name string) string {
	t.Helper()
	r := e.do(t, "POST", "/v1/leads", map[string]any{"name": name})
	if r.Status != 201 {
		t.Fatalf("create lead: %d %s", r.Status, r.Body)
	}
	return r.JSON(t)["id"].(string)
}

func (e env) deliveries(t *testing.T, webhookID, status string) []map[string]any {
	t.Helper()
	path := "/v1/webhooks/" + webhookID + "/deliveries?limit=200"
	if status != "" {
		path += "&status=" + status
	}
	r := e.do(t, "GET", path, nil)
	if r.Status != 200 {
		t.Fatalf("deliveries: %d %s", r.Status, r.Body)
	}
	var out struct {
		Data []map[string]any `json:"data"`
	}
	r.Decode(t, &out)
	return out.Data
}

func TestDeliveredSignedWithThePayloadOfTheContract(t *testing.T) {
	t.Parallel()
	e := start(t)
	rcv := newReceiver(t, nil)
	hookID, secret := e.createWebhook(t, rcv.URL+"/hook", "lead.created")
	leadID := e.createLead(t, "Ada")
	waitFor(t, "the delivery", 15*time.Second, func() bool { return len(rcv.got()) == 1 })

	got := rcv.got()[0]
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.Body, got.Header); err != nil {
		t.Fatalf("the Standard Webhooks library rejects our signature: %v", err)
	}
	if ua := got.Header.Get("User-Agent"); ua != "SalesOS-Webhooks/1" {
		t.Errorf("User-Agent %q", ua)
	}
	var p struct {
		ID, Type, OrgID string
		OccurredAt      string `json:"occurred_at"`
		Data            struct {
			Object  map[string]any            `json:"object"`
			Changes map[string]map[string]any `json:"changes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(got.Body, &p); err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	_ = json.Unmarshal(got.Body, &top)
	if p.Type != "lead.created" || top["org_id"] != "org_w" || p.ID != got.ID || p.Data.Object["id"] != leadID || p.Data.Object["name"] != "Ada" {
		t.Fatalf("payload: %s", got.Body)
	}
	if p.Data.Changes["name"]["to"] != "Ada" || p.Data.Changes["name"]["from"] != nil {
		t.Fatalf("changes: %s", got.Body)
	}
	waitFor(t, "delivered status", 10*time.Second, func() bool { return len(e.deliveries(t, hookID, "delivered")) == 1 })
	// The event feed carries the same payload.
	r := e.do(t, "GET", "/v1/events?types=lead.*", nil)
	var feed struct {
		Data []json.RawMessage `json:"data"`
	}
	r.Decode(t, &feed)
	if len(feed.Data) != 1 || string(feed.Data[0]) != string(got.Body) {
		t.Fatalf("feed %s\nwebhook %s", r.Body, got.Body)
	}
}

func TestFailingThenSucceedingEndpointIsRetried(t *testing.T) {
	t.Parallel()
	e := start(t, fastRetries)
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	hookID, _ := e.createWebhook(t, rcv.URL, "*")
	e.createLead(t, "Grace")
	waitFor(t, "delivered", 15*time.Second, func() bool { return len(e.deliveries(t, hookID, "delivered")) == 1 })
	reqs := rcv.got()
	if len(reqs) != 3 || reqs[0].ID != reqs[2].ID {
		t.Fatalf("%d requests, ids %v; want 3 attempts with one webhook-id", len(reqs), reqs)
	}
	d := e.deliveries(t, hookID, "")[0]
	r := e.do(t, "GET", "/v1/webhooks/"+hookID+"/deliveries/"+d["id"].(string), nil)
	var detail struct {
		Attempts int `json:"attempts"`
		History  []struct {
			StatusCode *int    `json:"status_code"`
			Response   *string `json:"response"`
		} `json:"attempt_history"`
	}
	r.Decode(t, &detail)
	if detail.Attempts != 3 || len(detail.History) != 3 || *detail.History[0].StatusCode != 503 || *detail.History[2].StatusCode != 204 || *detail.History[1].Response != "attempt 2" {
		t.Fatalf("delivery detail: %s", r.Body)
	}
	// The webhook's failure count was reset by the success.
	if w := e.do(t, "GET", "/v1/webhooks/"+hookID, nil).JSON(t); w["consecutive_failures"].(float64) != 0 || w["active"] != true {
		t.Fatalf("webhook after recovery: %v", w)
	}
}

func TestSixAttemptsThenFailed(t *testing.T) {
	t.Parallel()
	e := start(t, fastRetries)
	rcv := newReceiver(t, func(int) int { return http.StatusInternalServerError })
	hookID, _ := e.createWebhook(t, rcv.URL, "lead.*")
	e.createLead(t, "Hopper")
	waitFor(t, "failed", 20*time.Second, func() bool { return len(e.deliveries(t, hookID, "failed")) == 1 })
	if n := len(rcv.got()); n != 6 {
		t.Fatalf("%d attempts, want 6 (the first and 5 retries)", n)
	}
	d := e.deliveries(t, hookID, "failed")[0]
	if d["attempts"].(float64) != 6 || d["last_status_code"].(float64) != 500 || d["next_attempt_at"] != nil {
		t.Fatalf("failed delivery: %v", d)
	}
	// Manual retry gives one more attempt; recover re-queues failed ones.
	rcv.mu.Lock()
	rcv.respond = func(int) int { return 200 }
	rcv.mu.Unlock()
	if r := e.do(t, "POST", "/v1/webhooks/"+hookID+"/deliveries/"+d["id"].(string)+"/retry", nil); r.Status != 202 {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	waitFor(t, "delivered after retry", 10*time.Second, func() bool { return len(e.deliveries(t, hookID, "delivered")) == 1 })
}

func TestDeactivatedAfterTenConsecutiveFailuresThenReactivated(t *testing.T) {
	t.Parallel()
	e := start(t, fastRetries)
	var mu sync.Mutex
	failing := true
	rcv := newReceiver(t, func(int) int {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	hookID, _ := e.createWebhook(t, rcv.URL, "*")
	// Three events: at most 18 attempts, but the 10th consecutive failure
	// switches the webhook off.
	for i := range 3 {
		e.createLead(t, fmt.Sprintf("Lead %d", i))
	}
	waitFor(t, "deactivation", 20*time.Second, func() bool {
		return e.do(t, "GET", "/v1/webhooks/"+hookID, nil).JSON(t)["active"] == false
	})
	w := e.do(t, "GET", "/v1/webhooks/"+hookID, nil).JSON(t)
	if w["consecutive_failures"].(float64) != 10 || w["deactivated_at"] == nil || w["deactivation_reason"] == nil {
		t.Fatalf("deactivated webhook: %v", w)
	}
	if n := len(rcv.got()); n != 10 {
		t.Fatalf("%d attempts before deactivation, want exactly 10", n)
	}
	// While inactive: no attempts, and new events create no deliveries.
	before := len(e.deliveries(t, hookID, ""))
	r := e.do(t, "POST", "/v1/leads", map[string]any{"name": "While off"})
	var pos uint64
	if _, err := fmt.Sscanf(r.Header.Get("X-Consistency-Token"), "c1.%d", &pos); err != nil {
		t.Fatal(err)
	}
	if err := e.s.App.Runner.WaitFor(context.Background(), "webhook_fanout", pos); err != nil {
		t.Fatal(err)
	}
	pending := len(e.deliveries(t, hookID, "pending"))
	if pending == 0 {
		t.Fatal("pending deliveries were dropped on deactivation")
	}
	if after := len(e.deliveries(t, hookID, "")); after != before {
		t.Fatalf("an inactive webhook got %d new deliveries", after-before)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	if r := e.do(t, "PATCH", "/v1/webhooks/"+hookID, map[string]any{"active": true}); r.Status != 200 || r.JSON(t)["consecutive_failures"].(float64) != 0 {
		t.Fatalf("reactivate: %d %s", r.Status, r.Body)
	}
	waitFor(t, "pending deliveries resumed", 20*time.Second, func() bool { return len(e.deliveries(t, hookID, "pending")) == 0 })
	if len(e.deliveries(t, hookID, "delivered")) != pending {
		t.Fatalf("not every pending delivery was delivered after reactivation")
	}
}

func TestTenantIsolationOfWebhooks(t *testing.T) {
	t.Parallel()
	e := start(t)
	rcv := newReceiver(t, nil)
	hookID, _ := e.createWebhook(t, rcv.URL, "*")
	e.createLead(t, "A's lead")
	waitFor(t, "delivery", 15*time.Second, func() bool { return len(rcv.got()) == 1 })
	d := e.deliveries(t, hookID, "")[0]["id"].(string)

	other := env{s: e.s, tok: e.s.Token(t, "org_other", "manage:webhooks", "read:events", "write:leads")}
	for _, p := range []string{"/v1/webhooks/" + hookID, "/v1/webhooks/" + hookID + "/deliveries", "/v1/webhooks/" + hookID + "/deliveries/" + d} {
		if r := other.do(t, "GET", p, nil); r.Status != 404 {
			t.Errorf("GET %s as another org: %d", p, r.Status)
		}
	}
	for _, p := range []string{"/v1/webhooks/" + hookID + "/test", "/v1/webhooks/" + hookID + "/rotate-secret", "/v1/webhooks/" + hookID + "/deliveries/" + d + "/retry"} {
		if r := other.do(t, "POST", p, nil); r.Status != 404 {
			t.Errorf("POST %s as another org: %d", p, r.Status)
		}
	}
	if r := other.do(t, "DELETE", "/v1/webhooks/"+hookID, nil); r.Status != 404 {
		t.Errorf("DELETE as another org: %d", r.Status)
	}
	var list struct{ Data []any }
	other.do(t, "GET", "/v1/webhooks", nil).Decode(t, &list)
	var feed struct{ Data []any }
	other.do(t, "GET", "/v1/events", nil).Decode(t, &feed)
	if len(list.Data) != 0 || len(feed.Data) != 0 {
		t.Fatalf("another org sees %d webhooks and %d events", len(list.Data), len(feed.Data))
	}
	// Its own lead does not go to org A's endpoint.
	other.do(t, "POST", "/v1/leads", map[string]any{"name": "B's lead"})
	e.createLead(t, "A's second lead")
	waitFor(t, "A's second delivery", 15*time.Second, func() bool { return len(rcv.got()) == 2 })
	for _, r := range rcv.got() {
		var p map[string]any
		_ = json.Unmarshal(r.Body, &p)
		if p["org_id"] != "org_w" {
			t.Fatalf("org A's endpoint received %s", r.Body)
		}
	}
}

func TestPrivateTargetsRefusedUnlessAllowed(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *app.Config) { c.WebhookAllowPrivate = false })
	for _, url := range []string{"http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data", "ftp://example.com/x"} {
		r := e.do(t, "POST", "/v1/webhooks", map[string]any{"url": url, "events": []string{"*"}})
		if r.Status != 422 {
			t.Errorf("%s: %d %s", url, r.Status, r.Body)
			continue
		}
		var body struct {
			Details []struct{ Field, Code string }
		}
		r.Decode(t, &body)
		if len(body.Details) == 0 || body.Details[0].Field != "url" {
			t.Errorf("%s: %s", url, r.Body)
		}
	}
	if r := e.do(t, "POST", "/v1/webhooks", map[string]any{"url": "https://93.184.216.34/hook", "events": []string{"lead.*", "nope.*"}}); r.Status != 422 {
		t.Errorf("unknown event pattern accepted: %d %s", r.Status, r.Body)
	}
}

// SIGTERM with an attempt in flight to an endpoint that does not answer:
// the server stops within SALESOS_SHUTDOWN_TIMEOUT instead of waiting for
// the attempt, and the attempt is recorded as interrupted — due again, not
// a failure of the customer's endpoint.
func TestShutdownInterruptsAttemptsInsteadOfWaiting(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release) // before Close, which waits for the handler
	e := start(t, func(c *app.Config) {
		c.ShutdownTimeout = time.Second
		c.WebhookTimeout = time.Hour // only the shutdown can end this attempt
	})
	hook, _ := e.createWebhook(t, hung.URL, "lead.created")
	e.createLead(t, "Ada")
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the attempt never reached the endpoint")
	}
	e.s.Stop() // returns only once Serve has: the endpoint is still holding the request

	db := e.s.Schema.DB
	var status string
	var attempts, failures int
	var lastErr *string
	if err := db.QueryRow(`SELECT status, attempts, last_error FROM webhook_deliveries WHERE webhook_id = $1`, hook).Scan(&status, &attempts, &lastErr); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT consecutive_failures FROM webhooks WHERE id = $1`, hook).Scan(&failures); err != nil {
		t.Fatal(err)
	}
	if status != "pending" || attempts != 0 || failures != 0 || lastErr == nil || !strings.Contains(*lastErr, "interrupted") {
		t.Fatalf("after shutdown: status %s, attempts %d, webhook failures %d, last error %v; want pending, 0, 0, interrupted", status, attempts, failures, lastErr)
	}
}
