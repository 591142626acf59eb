package authtest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTokenShapes(t *testing.T) {
	iss := NewIssuer(t)
	if iss.Audience != DefaultAudience || !strings.HasSuffix(iss.URL, "/") {
		t.Fatalf("issuer = %+v", iss)
	}

	c := payload(t, iss.Token(t, "org-9", "read:leads", "write:leads"))
	if c["iss"] != iss.URL || c["aud"] != DefaultAudience || c["sub"] != DefaultUserSub ||
		c["org_id"] != "org-9" || c["plan"] != "starter" || c["scope"] != "read:leads write:leads" {
		t.Fatalf("user token claims = %v", c)
	}
	if exp := int64(c["exp"].(float64)); exp < time.Now().Add(59*time.Minute).Unix() {
		t.Fatalf("exp = %d", exp)
	}
	if _, ok := payload(t, iss.Token(t, "o"))["scope"]; ok {
		t.Fatal("scope present without scopes")
	}

	c = payload(t, iss.ClientToken(t, "org-9", "write:imports"))
	if c["sub"] != DefaultClientID+"@clients" || c["gty"] != "client-credentials" {
		t.Fatalf("client token claims = %v", c)
	}

	at := time.Unix(1700000000, 0)
	c = payload(t, iss.TokenWith(t, Claims{"org_id": nil, "exp": at, "x": 1}))
	if _, ok := c["org_id"]; ok || c["exp"] != float64(1700000000) || c["x"] != float64(1) {
		t.Fatalf("TokenWith claims = %v", c)
	}

	none := iss.UnsignedAlgNone(t, Claims{})
	if !strings.HasSuffix(none, ".") {
		t.Fatalf("alg none token has a signature: %q", none)
	}
	h, _ := base64.RawURLEncoding.DecodeString(strings.Split(none, ".")[0])
	if !strings.Contains(string(h), `"alg":"none"`) {
		t.Fatalf("header = %s", h)
	}
}

func TestServerAndOutage(t *testing.T) {
	iss := NewIssuer(t)
	get := func(path string) int {
		resp, err := http.Get(iss.Server.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/.well-known/openid-configuration") != 200 || get("/.well-known/jwks.json") != 200 || get("/nope") != 404 {
		t.Fatal("unexpected status")
	}
	iss.SetDown(true)
	if get("/.well-known/openid-configuration") != 503 {
		t.Fatal("SetDown(true) did not take effect")
	}
	if iss.DiscoveryCalls() != 2 || iss.JWKSCalls() != 1 {
		t.Fatalf("calls = %d/%d", iss.DiscoveryCalls(), iss.JWKSCalls())
	}
}
