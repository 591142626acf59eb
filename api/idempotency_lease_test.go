package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/auth/authtest"
	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/idempotency"
	"github.com/salesos/salesos/internal/apptest"
)

// expireClaim ends the lease of an in-progress key and ages it (the first
// attempt's process died 25 minutes ago), as a real crash leaves it.
func expireClaim(t *testing.T, s *apptest.Server, org, key string) {
	t.Helper()
	past := time.Now().UTC().Add(-25 * time.Minute)
	res, err := s.App.DB.Exec(`UPDATE idempotency_keys SET created_at = $3 WHERE org_id = $1 AND key = $2`, org, key, past)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("key %s: %d rows", key, n)
	}
	// Without the lease column (the code before leases) only the age
	// counts; with it, the lease ran out too.
	s.App.DB.Exec(`UPDATE idempotency_keys SET lease_until = $3 WHERE org_id = $1 AND key = $2`, org, key, past)
}

func historyTypes(t *testing.T, s *apptest.Server, tok, path string) []string {
	t.Helper()
	var h struct {
		Data []struct {
			Type string `json:"type"`
		} `json:"data"`
	}
	res := call(t, s, http.MethodGet, path+"/history", tok, nil)
	wantStatus(t, res, http.StatusOK)
	res.Decode(t, &h)
	var types []string
	for _, e := range h.Data {
		types = append(types, e.Type)
	}
	return types
}

// A 201 whose stored response failed to write (or a process killed after
// its events committed) left the key in_progress: a retry with the same key
// and body got 409 for 24 hours. After the lease the retry takes over and
// answers 201 with the record the first attempt created — never a second.
func TestStuckKeyIsRecoveredAfterItsLease(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("lease")
	tok := fullToken(t, s, org)
	body := []byte(`{"name":"Ada Lovelace","email":"ada@example.com"}`)
	first := call(t, s, http.MethodPost, "/v1/leads", tok, body, "Idempotency-Key", "stuck-1")
	lead := wantStatus(t, first, http.StatusCreated)
	// The stored response is lost: the key is back in progress.
	if _, err := s.App.DB.Exec(`UPDATE idempotency_keys SET status = 'in_progress', response_status = NULL, response_headers = NULL, response_body = NULL WHERE org_id = $1 AND key = $2`, org, "stuck-1"); err != nil {
		t.Fatal(err)
	}
	expireClaim(t, s, org, "stuck-1")

	retry := call(t, s, http.MethodPost, "/v1/leads", tok, body, "Idempotency-Key", "stuck-1")
	got := wantStatus(t, retry, http.StatusCreated)
	if got["id"] != lead["id"] || got["created_at"] != lead["created_at"] || retry.Header.Get("Location") != first.Header.Get("Location") ||
		retry.Header.Get("ETag") != first.Header.Get("ETag") {
		t.Fatalf("retry answered %v (Location %s), want the first attempt's %v (%s)", got, retry.Header.Get("Location"), lead, first.Header.Get("Location"))
	}
	if types := historyTypes(t, s, tok, "/v1/leads/"+lead["id"].(string)); len(types) != 1 || types[0] != "lead.created" {
		t.Fatalf("history %v, want one lead.created", types)
	}
}

// A simulated crash mid-request: the key is claimed and the events are
// appended, but the response is never stored. A retry before the lease ends
// is told to come back (409, Retry-After); after it, the retry answers 201
// with the same id and the history holds one creation. Deals and
// conversions likewise.
func TestCrashMidRequestIsTakenOver(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("crash")
	tok := fullToken(t, s, org)
	h := &commands.Handler{Store: s.App.Store}
	meta := commands.Meta{OrgID: org, Actor: domain.Actor{Sub: "crashed", Type: domain.ActorUser}, RequestID: "req_crashed"}
	ctx := context.Background()
	// crash claims key for the request and runs run under it, never
	// completing the claim.
	crash := func(key, path string, body []byte, run func(context.Context) string) string {
		t.Helper()
		fp := idempotency.Fingerprint(http.MethodPost, path, body)
		c, err := s.App.Idempotency.Claim(ctx, org, key, fp)
		if err != nil || c.Replay != nil {
			t.Fatalf("claim %s: %+v %v", key, c, err)
		}
		return run(commands.WithIdempotency(ctx, commands.Idempotency{Key: key, Fingerprint: fp}))
	}

	leadBody := []byte(`{"name":"Grace Hopper"}`)
	leadID := crash("c-lead", "/v1/leads", leadBody, func(ctx context.Context) string {
		r, err := h.CreateLead(ctx, meta, domain.LeadInput{Name: "Grace Hopper"})
		if err != nil {
			t.Fatal(err)
		}
		return r.Record.ID
	})
	early := call(t, s, http.MethodPost, "/v1/leads", tok, leadBody, "Idempotency-Key", "c-lead")
	wantError(t, early, http.StatusConflict, "conflict")
	if early.Header.Get("Retry-After") == "" {
		t.Fatal("409 for a key in progress without Retry-After")
	}
	expireClaim(t, s, org, "c-lead")
	res := call(t, s, http.MethodPost, "/v1/leads", tok, leadBody, "Idempotency-Key", "c-lead")
	if got := wantStatus(t, res, http.StatusCreated); got["id"] != leadID || got["name"] != "Grace Hopper" {
		t.Fatalf("takeover answered %v, want lead %s", got, leadID)
	}
	if types := historyTypes(t, s, tok, "/v1/leads/"+leadID); len(types) != 1 {
		t.Fatalf("lead history %v, want one creation", types)
	}
	// The taken-over key completed: the next retry is a replay.
	again := call(t, s, http.MethodPost, "/v1/leads", tok, leadBody, "Idempotency-Key", "c-lead")
	if wantStatus(t, again, http.StatusCreated)["id"] != leadID || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after the takeover: %s", again.Body)
	}

	dealBody := []byte(`{"name":"Big deal","amount":1250.5,"currency":"EUR"}`)
	dealID := crash("c-deal", "/v1/deals", dealBody, func(ctx context.Context) string {
		var in domain.DealInput
		decodeInto(t, dealBody, &in)
		r, err := h.CreateDeal(ctx, meta, in)
		if err != nil {
			t.Fatal(err)
		}
		return r.Record.ID
	})
	expireClaim(t, s, org, "c-deal")
	res = call(t, s, http.MethodPost, "/v1/deals", tok, dealBody, "Idempotency-Key", "c-deal")
	if got := wantStatus(t, res, http.StatusCreated); got["id"] != dealID {
		t.Fatalf("deal takeover answered %v, want deal %s", got, dealID)
	}
	if types := historyTypes(t, s, tok, "/v1/deals/"+dealID); len(types) != 1 {
		t.Fatalf("deal history %v, want one creation", types)
	}

	toConvert, _ := createLead(t, s, tok, map[string]any{"name": "To convert"})
	convertMe := toConvert["id"].(string)
	convPath := "/v1/leads/" + convertMe + "/convert"
	convBody := []byte(`{"deal":{"name":"From lead"}}`)
	convDeal := crash("c-conv", convPath, convBody, func(ctx context.Context) string {
		c, err := h.ConvertLead(ctx, meta, convertMe, domain.ConvertDealInput{Name: ptr("From lead")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Deal.ID
	})
	expireClaim(t, s, org, "c-conv")
	res = call(t, s, http.MethodPost, convPath, tok, convBody, "Idempotency-Key", "c-conv")
	got := wantStatus(t, res, http.StatusCreated)
	deal, _ := got["deal"].(map[string]any)
	l, _ := got["lead"].(map[string]any)
	if deal["id"] != convDeal || l["status"] != "converted" || deal["lead_id"] != convertMe {
		t.Fatalf("convert takeover answered %v, want deal %s", got, convDeal)
	}
	if types := historyTypes(t, s, tok, "/v1/leads/"+convertMe); len(types) != 2 {
		t.Fatalf("converted lead history %v, want creation and one conversion", types)
	}
	if types := historyTypes(t, s, tok, "/v1/deals/"+convDeal); len(types) != 1 {
		t.Fatalf("converted deal history %v, want one creation", types)
	}
}

func ptr[T any](v T) *T { return &v }

func decodeInto(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// Webhook subscriptions are not event-sourced: the id derived from the key
// and the table's primary key play the part of the event ids. A retry that
// takes over an attempt which inserted the subscription answers with that
// subscription, secret included, and there is still one.
func TestCrashedWebhookCreateIsTakenOver(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("crash-wh")
	tok := s.Issuer.TokenWith(t, authtest.Claims{"org_id": org, "plan": "enterprise", "scope": "manage:webhooks"})
	body := []byte(`{"url":"http://127.0.0.1:9/hook","events":["lead.created"]}`)
	first := call(t, s, http.MethodPost, "/v1/webhooks", tok, body, "Idempotency-Key", "c-wh")
	created := wantStatus(t, first, http.StatusCreated)
	if _, err := s.App.DB.Exec(`UPDATE idempotency_keys SET status = 'in_progress', response_status = NULL, response_headers = NULL, response_body = NULL WHERE org_id = $1 AND key = $2`, org, "c-wh"); err != nil {
		t.Fatal(err)
	}
	expireClaim(t, s, org, "c-wh")
	retry := call(t, s, http.MethodPost, "/v1/webhooks", tok, body, "Idempotency-Key", "c-wh")
	got := wantStatus(t, retry, http.StatusCreated)
	if got["id"] != created["id"] || got["secret"] != created["secret"] || got["secret"] == nil {
		t.Fatalf("takeover answered %v, want the first attempt's %v", got, created)
	}
	list := wantStatus(t, call(t, s, http.MethodGet, "/v1/webhooks", tok, nil), http.StatusOK)
	if n := len(listData(t, list)); n != 1 {
		t.Fatalf("%d subscriptions after the takeover, want 1", n)
	}
}

// noDeals is an event store through which deal appends never arrive, like
// a process killed between a conversion's two appends.
type noDeals struct{ commands.Appender }

func (n noDeals) Append(ctx context.Context, stream string, expected int64, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	if strings.HasPrefix(stream, envelope.DealStream("")) {
		return eventstore.AppendResult{}, errors.New("killed before the deal was written")
	}
	return n.Appender.Append(ctx, stream, expected, evs...)
}

// A conversion whose lead event committed but whose deal was never written
// (the process died between the two appends): the retry that takes the key
// over writes the deal with the id the lead names, and answers 201.
func TestHalfDoneConversionIsCompletedByTheTakeover(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("half")
	tok := fullToken(t, s, org)
	lead, _ := createLead(t, s, tok, map[string]any{"name": "Half"})
	leadID := lead["id"].(string)
	path := "/v1/leads/" + leadID + "/convert"
	body := []byte(`{}`)
	fp := idempotency.Fingerprint(http.MethodPost, path, body)
	ctx := context.Background()
	if _, err := s.App.Idempotency.Claim(ctx, org, "half-1", fp); err != nil {
		t.Fatal(err)
	}
	h := &commands.Handler{Store: noDeals{s.App.Store}}
	meta := commands.Meta{OrgID: org, Actor: domain.Actor{Sub: "crashed", Type: domain.ActorUser}}
	_, err := h.ConvertLead(commands.WithIdempotency(ctx, commands.Idempotency{Key: "half-1", Fingerprint: fp}), meta, leadID, domain.ConvertDealInput{}, nil)
	if err == nil {
		t.Fatal("the conversion wrote its deal through a store that refuses deals")
	}
	expireClaim(t, s, org, "half-1")

	res := call(t, s, http.MethodPost, path, tok, body, "Idempotency-Key", "half-1")
	got := wantStatus(t, res, http.StatusCreated)
	l, _ := got["lead"].(map[string]any)
	d, _ := got["deal"].(map[string]any)
	if l["converted_deal_id"] != d["id"] || d["lead_id"] != leadID || d["id"] == nil {
		t.Fatalf("takeover answered %v, want the deal the lead names", got)
	}
	if types := historyTypes(t, s, tok, "/v1/deals/"+d["id"].(string)); len(types) != 1 {
		t.Fatalf("deal history %v, want one creation", types)
	}
	if types := historyTypes(t, s, tok, "/v1/leads/"+leadID); len(types) != 2 {
		t.Fatalf("lead history %v, want creation and one conversion", types)
	}
}
