package api_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/internal/apptest"
)

func TestConsistencyToken(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *app.Config) { c.ConsistencyWait = 300 * time.Millisecond })
	tok := fullToken(t, s, newOrg("consistency"))
	lead, _ := createLead(t, s, tok, map[string]any{"name": "C"})
	leadID := lead["id"].(string)
	deal, _ := createDeal(t, s, tok, map[string]any{"name": "C"})
	dealID := deal["id"].(string)

	t.Run("future token times out", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{"/v1/leads/" + leadID, "/v1/leads", "/v1/deals/" + dealID, "/v1/deals"} {
			start := time.Now()
			r := call(t, s, http.MethodGet, path, tok, nil, "X-Consistency-Token", "c1.999999999")
			wantError(t, r, http.StatusServiceUnavailable, "unavailable")
			if ra := r.Header.Get("Retry-After"); ra != "1" {
				t.Errorf("%s: Retry-After %q, want 1", path, ra)
			}
			if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
				t.Errorf("%s: answered after %v, want about the 300ms wait", path, d)
			}
		}
	})
	t.Run("malformed token", func(t *testing.T) {
		t.Parallel()
		for _, bad := range []string{"garbage", "c1.", "c1.abc", "c2.5", "5", "c1.-1"} {
			wantError(t, call(t, s, http.MethodGet, "/v1/leads/"+leadID, tok, nil, "X-Consistency-Token", bad), http.StatusBadRequest, "bad_request")
		}
	})
	t.Run("write tokens", func(t *testing.T) {
		t.Parallel()
		// Every kind of write answers a token that makes the next read see it.
		m, ct := createLead(t, s, tok, map[string]any{"name": "RYW"})
		id := m["id"].(string)
		if g := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", ct), http.StatusOK); g["name"] != "RYW" {
			t.Errorf("read after create: %v", g)
		}
		for i := range 3 {
			r := call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, fmt.Sprintf(`{"name":"RYW %d"}`, i))
			wantStatus(t, r, http.StatusOK)
			g := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", consistencyToken(t, r)), http.StatusOK)
			if g["name"] != fmt.Sprintf("RYW %d", i) {
				t.Errorf("read after patch %d: name %v", i, g["name"])
			}
		}
		r := call(t, s, http.MethodPost, "/v1/leads/"+id+"/convert", tok, nil)
		out := wantStatus(t, r, http.StatusCreated)
		ct = consistencyToken(t, r)
		if g := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", ct), http.StatusOK); g["status"] != "converted" {
			t.Errorf("lead after convert: %v", g["status"])
		}
		dealID := out["deal"].(map[string]any)["id"].(string)
		wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+dealID, tok, nil, "X-Consistency-Token", ct), http.StatusOK)
		r = call(t, s, http.MethodDelete, "/v1/deals/"+dealID, tok, nil)
		wantStatus(t, r, http.StatusNoContent)
		wantError(t, call(t, s, http.MethodGet, "/v1/deals/"+dealID, tok, nil, "X-Consistency-Token", consistencyToken(t, r)), http.StatusNotFound, "not_found")
	})
}

// TestQuerySideCatchesUp polls (with a deadline, never sleeping blindly)
// until a write without a token becomes visible: the projection runs by
// itself, not only when a reader waits.
func TestQuerySideCatchesUp(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("catchup"))
	m, _ := createLead(t, s, tok, map[string]any{"name": "Eventually"})
	id := m["id"].(string)
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		r := call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil)
		if r.Status == http.StatusOK {
			break
		}
		wantError(t, r, http.StatusNotFound, "not_found")
		if time.Now().After(deadline) {
			t.Fatal("lead never became visible without a consistency token")
		}
		<-tick.C
	}
}

func TestConcurrentIfMatch(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("ifmatch-race"))
	for round := range 5 {
		m, _ := createLead(t, s, tok, map[string]any{"name": "Race"})
		id := m["id"].(string)
		var wg sync.WaitGroup
		start := make(chan struct{})
		resps := make([]*apptest.Response, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resps[i], errs[i] = send(t, s, http.MethodPatch, "/v1/leads/"+id, tok, fmt.Sprintf(`{"title":"writer %d"}`, i), "If-Match", `"1"`)
			}()
		}
		close(start)
		wg.Wait()
		ok, failed := 0, 0
		for i, r := range resps {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			switch r.Status {
			case http.StatusOK:
				ok++
			case http.StatusPreconditionFailed:
				wantError(t, r, http.StatusPreconditionFailed, "precondition_failed")
				failed++
			default:
				t.Errorf("round %d: unexpected %d %s", round, r.Status, r.Body)
			}
		}
		if ok != 1 || failed != 1 {
			t.Errorf("round %d: %d × 200 and %d × 412, want exactly one each", round, ok, failed)
		}
		h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil), http.StatusOK)
		if n := len(h["data"].([]any)); n != 2 {
			t.Errorf("round %d: %d history entries, want 2", round, n)
		}
	}
}

func TestConcurrentPatchesLoseNothing(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	tok := fullToken(t, s, newOrg("no-lost-update"))
	m, _ := createLead(t, s, tok, map[string]any{"name": "Hot"})
	id := m["id"].(string)
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := make([]int, n)
	bodies := make([]string, n)
	tokens := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := send(t, s, http.MethodPatch, "/v1/leads/"+id, tok, fmt.Sprintf(`{"custom_fields":{"k%02d":%d}}`, i, i))
			if err != nil {
				errs[i] = err
				return
			}
			statuses[i], bodies[i], tokens[i] = r.Status, string(r.Body), r.Header.Get("X-Consistency-Token")
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if statuses[i] != http.StatusOK {
			t.Errorf("patch %d: %d %s", i, statuses[i], bodies[i])
		}
	}
	// The event stream (as_of now) and the query side agree on the result.
	h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil), http.StatusOK)
	entries := h["data"].([]any)
	last := entries[len(entries)-1].(map[string]any)
	r := call(t, s, http.MethodPatch, "/v1/leads/"+id, tok, `{}`) // a no-op: reads the current state
	final := wantStatus(t, r, http.StatusOK)
	cf, _ := final["custom_fields"].(map[string]any)
	if len(cf) != n {
		t.Errorf("final custom_fields has %d keys, want %d: %v", len(cf), n, cf)
	}
	for i := range n {
		v, ok := cf[fmt.Sprintf("k%02d", i)]
		switch {
		case ok && fmt.Sprint(v) != fmt.Sprint(i):
			t.Errorf("custom field k%02d = %v, want %d", i, v, i)
		case !ok && statuses[i] == http.StatusOK:
			t.Errorf("lost update: patch %d was acknowledged with 200 but k%02d is missing", i, i)
		case !ok:
			t.Errorf("custom field k%02d missing (its patch answered %d)", i, statuses[i])
		}
	}
	jsonEq(t, "final version", final["version"], fmt.Sprint(n+1))
	jsonEq(t, "history length", len(entries), fmt.Sprint(n+1))
	jsonEq(t, "last history version", last["version"], fmt.Sprint(n+1))

	// The query side, once caught up with the last write, holds the same.
	latest := ""
	for _, tk := range tokens {
		if len(tk) > len(latest) || (len(tk) == len(latest) && tk > latest) {
			latest = tk
		}
	}
	g := call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", latest)
	jsonEq(t, "query side", wantStatus(t, g, http.StatusOK), mustJSON(t, final))
}
