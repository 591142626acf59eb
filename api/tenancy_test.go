package api_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/salesos/salesos/internal/apptest"
)

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	orgA, orgB := newOrg("tenant-a"), newOrg("tenant-b")
	a, b := fullToken(t, s, orgA), fullToken(t, s, orgB)

	lead, _ := createLead(t, s, a, map[string]any{"name": "Secret Lead", "email": "secret@a.example", "company": "A Corp"})
	leadID := lead["id"].(string)
	deal, _ := createDeal(t, s, a, map[string]any{"name": "Secret Deal", "amount": 5, "currency": "USD", "lead_id": leadID})
	dealID := deal["id"].(string)
	mine, ctB := createLead(t, s, b, map[string]any{"name": "B Lead"})
	myDeal, ctB2 := createDeal(t, s, b, map[string]any{"name": "B Deal"})
	future := url.QueryEscape(time.Now().UTC().Add(time.Hour).Format(time.RFC3339))

	for _, rq := range []struct {
		name, method, path string
		body               any
	}{
		{"get lead", http.MethodGet, "/v1/leads/" + leadID, nil},
		{"patch lead", http.MethodPatch, "/v1/leads/" + leadID, `{"name":"Pwned"}`},
		{"patch lead if-match", http.MethodPatch, "/v1/leads/" + leadID, `{"name":"Pwned"}`},
		{"convert lead", http.MethodPost, "/v1/leads/" + leadID + "/convert", nil},
		{"lead history", http.MethodGet, "/v1/leads/" + leadID + "/history", nil},
		{"lead as_of", http.MethodGet, "/v1/leads/" + leadID + "?as_of=" + future, nil},
		{"delete lead", http.MethodDelete, "/v1/leads/" + leadID, nil},
		{"get deal", http.MethodGet, "/v1/deals/" + dealID, nil},
		{"patch deal", http.MethodPatch, "/v1/deals/" + dealID, `{"stage":"won"}`},
		{"deal history", http.MethodGet, "/v1/deals/" + dealID + "/history", nil},
		{"deal as_of", http.MethodGet, "/v1/deals/" + dealID + "?as_of=" + future, nil},
		{"delete deal", http.MethodDelete, "/v1/deals/" + dealID, nil},
	} {
		r := call(t, s, rq.method, rq.path, b, rq.body)
		wantError(t, r, http.StatusNotFound, "not_found")
		// The answer is exactly the one for a record that never existed.
		if got := obj(t, r.Body)["message"]; rq.method == http.MethodGet && rq.name == "get lead" {
			ghost := obj(t, call(t, s, http.MethodGet, "/v1/leads/lead_neverexisted", b, nil).Body)["message"]
			if got != ghost {
				t.Errorf("message for another org's lead %q differs from a missing one %q", got, ghost)
			}
		}
	}
	// Another organization's lead cannot be linked to a deal either.
	wantValidation(t, call(t, s, http.MethodPost, "/v1/deals", b, map[string]any{"name": "Link", "lead_id": leadID}), "lead_id", "")

	// B's lists hold only B's records, whatever the filter.
	for _, path := range []string{"/v1/leads", "/v1/leads?q=secret", "/v1/leads?q=A%20Corp", "/v1/leads?status=new"} {
		r := call(t, s, http.MethodGet, path, b, nil, "X-Consistency-Token", ctB)
		got := ids(listData(t, wantStatus(t, r, http.StatusOK)))
		if contains(got, leadID) {
			t.Errorf("%s for org B lists org A's lead", path)
		}
		if path == "/v1/leads" && (len(got) != 1 || got[0] != mine["id"]) {
			t.Errorf("org B leads = %v, want only its own", got)
		}
	}
	for _, path := range []string{"/v1/deals", "/v1/deals?q=secret", "/v1/deals?lead_id=" + leadID} {
		r := call(t, s, http.MethodGet, path, b, nil, "X-Consistency-Token", ctB2)
		got := ids(listData(t, wantStatus(t, r, http.StatusOK)))
		if contains(got, dealID) {
			t.Errorf("%s for org B lists org A's deal", path)
		}
		if path == "/v1/deals" && (len(got) != 1 || got[0] != myDeal["id"]) {
			t.Errorf("org B deals = %v, want only its own", got)
		}
	}
	// A cursor carries no tenancy: B's cursor never reveals A's records.
	if got := listAll(t, s, b, "/v1/leads", 1, ctB); len(got) != 1 {
		t.Errorf("org B walk: %v", got)
	}

	// A's records are unchanged.
	gl := call(t, s, http.MethodGet, "/v1/leads/"+leadID, a, nil, "X-Consistency-Token", ctB2)
	l := wantStatus(t, gl, http.StatusOK)
	jsonEq(t, "A's lead", l, mustJSON(t, lead))
	gd := call(t, s, http.MethodGet, "/v1/deals/"+dealID, a, nil, "X-Consistency-Token", ctB2)
	jsonEq(t, "A's deal", wantStatus(t, gd, http.StatusOK), mustJSON(t, deal))
	h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+leadID+"/history", a, nil), http.StatusOK)
	if n := len(h["data"].([]any)); n != 1 {
		t.Errorf("A's lead has %d history entries, want 1", n)
	}
	h = wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+dealID+"/history", a, nil), http.StatusOK)
	if n := len(h["data"].([]any)); n != 1 {
		t.Errorf("A's deal has %d history entries, want 1", n)
	}
	r := call(t, s, http.MethodGet, "/v1/leads", a, nil, "X-Consistency-Token", ctB2)
	if got := ids(listData(t, wantStatus(t, r, http.StatusOK))); len(got) != 1 || got[0] != leadID {
		t.Errorf("org A leads = %v", got)
	}
}
