package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/auth/authtest"
	"github.com/salesos/salesos/internal/apptest"
)

func TestAuthRejected(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("auth")
	valid := func(extra authtest.Claims) authtest.Claims {
		c := authtest.Claims{"org_id": org, "scope": strings.Join(apptest.AllScopes, " ")}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	iss := s.Issuer
	cases := []struct {
		name   string
		header string // whole Authorization header; "" sends none
	}{
		{"no header", ""},
		{"basic", "Basic x"},
		{"basic credentials", "Basic dXNlcjpwYXNz"},
		{"bearer without token", "Bearer "},
		{"garbage", "Bearer not-a-jwt"},
		{"garbage three parts", "Bearer abc.def.ghi"},
		{"expired", "Bearer " + iss.TokenWith(t, valid(authtest.Claims{"iat": time.Now().Add(-3 * time.Hour), "exp": time.Now().Add(-2 * time.Hour)}))},
		{"wrong audience", "Bearer " + iss.TokenWith(t, valid(authtest.Claims{"aud": "https://other.example"}))},
		{"wrong issuer", "Bearer " + iss.TokenWith(t, valid(authtest.Claims{"iss": "https://evil.example/"}))},
		{"issuer without trailing slash", "Bearer " + iss.TokenWith(t, valid(authtest.Claims{"iss": strings.TrimSuffix(iss.URL, "/")}))},
		{"other key", "Bearer " + iss.SignedByOtherKey(t, valid(nil))},
		{"alg none", "Bearer " + iss.UnsignedAlgNone(t, valid(nil))},
		{"missing org_id", "Bearer " + iss.TokenWith(t, valid(authtest.Claims{"org_id": nil}))},
		{"empty org_id", "Bearer " + iss.TokenWith(t, valid(authtest.Claims{"org_id": ""}))},
		{"tampered payload", "Bearer " + tamper(iss.TokenWith(t, valid(nil)))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, rq := range []struct{ method, path, body string }{
				{http.MethodGet, "/v1/leads", ""},
				{http.MethodPost, "/v1/leads", `{"name":"x"}`},
				{http.MethodGet, "/v1/deals/deal_x", ""},
			} {
				var body any
				if rq.body != "" {
					body = rq.body
				}
				var h []string
				if tc.header != "" {
					h = []string{"Authorization", tc.header}
				}
				r := call(t, s, rq.method, rq.path, "", body, h...)
				wantError(t, r, http.StatusUnauthorized, "unauthorized")
				if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s: WWW-Authenticate %q", rq.method, rq.path, r.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// Nothing was written by the refused POSTs.
	r := call(t, s, http.MethodGet, "/v1/leads", fullToken(t, s, org), nil)
	if got := listData(t, wantStatus(t, r, http.StatusOK)); len(got) != 0 {
		t.Errorf("leads created with rejected tokens: %v", got)
	}
}

// tamper changes the payload of a signed token, keeping its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	if p[len(p)-2] == 'A' {
		p[len(p)-2] = 'B'
	} else {
		p[len(p)-2] = 'A'
	}
	parts[1] = string(p)
	return strings.Join(parts, ".")
}

func TestAuthScopes(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("scopes")
	full := fullToken(t, s, org)
	lead, ct := createLead(t, s, full, map[string]any{"name": "Scoped"})
	leadID := lead["id"].(string)
	deal, _ := createDeal(t, s, full, map[string]any{"name": "Scoped"})
	dealID := deal["id"].(string)

	readLeads := s.Token(t, org, "read:leads")
	t.Run("read only cannot write", func(t *testing.T) {
		t.Parallel()
		wantStatus(t, call(t, s, http.MethodGet, "/v1/leads", readLeads, nil, "X-Consistency-Token", ct), http.StatusOK)
		wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+leadID, readLeads, nil, "X-Consistency-Token", ct), http.StatusOK)
		wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+leadID+"/history", readLeads, nil), http.StatusOK)
		wantError(t, call(t, s, http.MethodPost, "/v1/leads", readLeads, `{"name":"x"}`), http.StatusForbidden, "forbidden")
		wantError(t, call(t, s, http.MethodPatch, "/v1/leads/"+leadID, readLeads, `{"name":"x"}`), http.StatusForbidden, "forbidden")
		wantError(t, call(t, s, http.MethodDelete, "/v1/leads/"+leadID, readLeads, nil), http.StatusForbidden, "forbidden")
		wantError(t, call(t, s, http.MethodPost, "/v1/leads/"+leadID+"/convert", readLeads, nil), http.StatusForbidden, "forbidden")
	})
	t.Run("lead scopes do not grant deals", func(t *testing.T) {
		t.Parallel()
		wantError(t, call(t, s, http.MethodGet, "/v1/deals", readLeads, nil), http.StatusForbidden, "forbidden")
		wantError(t, call(t, s, http.MethodGet, "/v1/deals/"+dealID, readLeads, nil), http.StatusForbidden, "forbidden")
		wantError(t, call(t, s, http.MethodPost, "/v1/deals", s.Token(t, org, "read:leads", "write:leads"), `{"name":"x"}`), http.StatusForbidden, "forbidden")
	})
	t.Run("write does not imply read", func(t *testing.T) {
		t.Parallel()
		wantError(t, call(t, s, http.MethodGet, "/v1/leads", s.Token(t, org, "write:leads"), nil), http.StatusForbidden, "forbidden")
	})
	t.Run("no scopes", func(t *testing.T) {
		t.Parallel()
		none := s.Token(t, org)
		wantError(t, call(t, s, http.MethodGet, "/v1/leads", none, nil), http.StatusForbidden, "forbidden")
		wantError(t, call(t, s, http.MethodGet, "/v1/deals/"+dealID, none, nil), http.StatusForbidden, "forbidden")
	})
	t.Run("scope names are exact", func(t *testing.T) {
		t.Parallel()
		tok := s.Issuer.TokenWith(t, authtest.Claims{"org_id": org, "scope": "read:leads:all READ:LEADS read:lead"})
		wantError(t, call(t, s, http.MethodGet, "/v1/leads", tok, nil), http.StatusForbidden, "forbidden")
	})
	t.Run("permissions array", func(t *testing.T) {
		t.Parallel()
		tok := s.Issuer.TokenWith(t, authtest.Claims{"org_id": org, "permissions": []string{"read:leads", "write:leads"}})
		m, ct := createLead(t, s, tok, map[string]any{"name": "Via permissions"})
		wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+m["id"].(string), tok, nil, "X-Consistency-Token", ct), http.StatusOK)
		wantError(t, call(t, s, http.MethodGet, "/v1/deals", tok, nil), http.StatusForbidden, "forbidden")
	})
	t.Run("scope and permissions union", func(t *testing.T) {
		t.Parallel()
		tok := s.Issuer.TokenWith(t, authtest.Claims{"org_id": org, "scope": "openid read:leads", "permissions": []string{"write:leads"}})
		m, ct := createLead(t, s, tok, map[string]any{"name": "Union"})
		wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+m["id"].(string), tok, nil, "X-Consistency-Token", ct), http.StatusOK)
	})
	t.Run("bearer scheme is case-insensitive", func(t *testing.T) {
		t.Parallel()
		r := call(t, s, http.MethodGet, "/v1/leads", "", nil, "Authorization", "bearer "+readLeads)
		wantStatus(t, r, http.StatusOK)
	})
}

func TestAuthClientCredentials(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	org := newOrg("client")
	tok := s.Issuer.ClientToken(t, org, apptest.AllScopes...)
	m, ct := createLead(t, s, tok, map[string]any{"name": "Machine made"})
	id := m["id"].(string)
	wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id, tok, nil, "X-Consistency-Token", ct), http.StatusOK)
	// A user of the same organization sees it, and then edits it.
	user := fullToken(t, s, org)
	wantStatus(t, call(t, s, http.MethodPatch, "/v1/leads/"+id, user, `{"title":"Bot"}`), http.StatusOK)

	h := wantStatus(t, call(t, s, http.MethodGet, "/v1/leads/"+id+"/history", tok, nil), http.StatusOK)
	entries := h["data"].([]any)
	if len(entries) != 2 {
		t.Fatalf("history: %v", entries)
	}
	jsonEq(t, "client actor", entries[0].(map[string]any)["actor"], `{"sub":"`+authtest.DefaultClientID+`@clients","type":"client"}`)
	jsonEq(t, "user actor", entries[1].(map[string]any)["actor"], `{"sub":"`+authtest.DefaultUserSub+`","type":"user"}`)

	d, _ := createDeal(t, s, tok, map[string]any{"name": "Machine deal"})
	dh := wantStatus(t, call(t, s, http.MethodGet, "/v1/deals/"+d["id"].(string)+"/history", tok, nil), http.StatusOK)
	jsonEq(t, "deal actor", dh["data"].([]any)[0].(map[string]any)["actor"], `{"sub":"`+authtest.DefaultClientID+`@clients","type":"client"}`)
}
