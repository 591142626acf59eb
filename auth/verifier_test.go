package auth

import (
	"context"
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/salesos/salesos/auth/authtest"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestVerifier(t *testing.T, iss *authtest.Issuer, mods ...func(*Config)) (*Verifier, *fakeClock) {
	t.Helper()
	cfg := Config{Issuer: iss.URL, Audience: iss.Audience}
	for _, m := range mods {
		m(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	clock := newFakeClock()
	v.now = clock.Now
	return v, clock
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustVerify(t *testing.T, v *Verifier, tok string) Principal {
	t.Helper()
	p, err := v.Verify(ctxT(t), tok)
	if err != nil {
		t.Fatalf("Verify: unexpected error: %v", err)
	}
	return p
}

func TestVerifyUserToken(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)

	p := mustVerify(t, v, iss.Token(t, "org-42", "read:leads", "write:leads"))
	want := Principal{
		Sub:    "auth0|user-1",
		Type:   ActorUser,
		OrgID:  "org-42",
		Plan:   PlanStarter,
		Scopes: []string{"read:leads", "write:leads"},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("principal = %+v, want %+v", p, want)
	}
	if !p.HasScope("write:leads") || p.HasScope("read:deals") || p.HasScope("") {
		t.Fatalf("HasScope wrong for %v", p.Scopes)
	}
}

func TestVerifyClientToken(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)

	p := mustVerify(t, v, iss.ClientToken(t, "org-7", "manage:webhooks"))
	if p.Type != ActorClient || p.Sub != "test-client-1@clients" || p.OrgID != "org-7" {
		t.Fatalf("principal = %+v", p)
	}
	if !reflect.DeepEqual(p.Scopes, []string{"manage:webhooks"}) {
		t.Fatalf("scopes = %v", p.Scopes)
	}

	// Either signal alone is enough.
	p = mustVerify(t, v, iss.TokenWith(t, authtest.Claims{"sub": "abc@clients"}))
	if p.Type != ActorClient {
		t.Fatalf("sub @clients without gty: type = %q", p.Type)
	}
	p = mustVerify(t, v, iss.TokenWith(t, authtest.Claims{"sub": "machine", "gty": "client-credentials"}))
	if p.Type != ActorClient {
		t.Fatalf("gty without @clients: type = %q", p.Type)
	}
	p = mustVerify(t, v, iss.TokenWith(t, authtest.Claims{"gty": "password"}))
	if p.Type != ActorUser {
		t.Fatalf("gty password: type = %q", p.Type)
	}
}

func TestScopesUnionOfScopeAndPermissions(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)

	p := mustVerify(t, v, iss.TokenWith(t, authtest.Claims{
		"scope":       "openid read:leads  read:deals",
		"permissions": []any{"read:deals", "write:deals", "read:leads", "write:imports"},
	}))
	want := []string{"openid", "read:leads", "read:deals", "write:deals", "write:imports"}
	if !reflect.DeepEqual(p.Scopes, want) {
		t.Fatalf("scopes = %v, want %v", p.Scopes, want)
	}

	p = mustVerify(t, v, iss.TokenWith(t, authtest.Claims{"permissions": []string{"read:events"}}))
	if !reflect.DeepEqual(p.Scopes, []string{"read:events"}) {
		t.Fatalf("permissions only: scopes = %v", p.Scopes)
	}

	p = mustVerify(t, v, iss.TokenWith(t, authtest.Claims{}))
	if len(p.Scopes) != 0 {
		t.Fatalf("no scopes: got %v", p.Scopes)
	}
}

func TestPlan(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)

	for _, tc := range []struct {
		plan any
		want string
	}{
		{nil, PlanStarter}, // claim absent
		{"starter", PlanStarter},
		{"professional", PlanProfessional},
		{"enterprise", PlanEnterprise},
		{"Enterprise", PlanEnterprise},
		{"gold", PlanStarter},
		{"", PlanStarter},
		{42, PlanStarter},
		{[]string{"enterprise"}, PlanStarter},
		{map[string]any{"name": "enterprise"}, PlanStarter},
	} {
		p := mustVerify(t, v, iss.TokenWith(t, authtest.Claims{"plan": tc.plan}))
		if p.Plan != tc.want {
			t.Errorf("plan %#v → %q, want %q", tc.plan, p.Plan, tc.want)
		}
	}
}

func TestCustomClaimNames(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss, func(c *Config) {
		c.TenantClaim = "https://salesos.io/org"
		c.PlanClaim = "https://salesos.io/plan"
	})

	p := mustVerify(t, v, iss.TokenWith(t, authtest.Claims{
		"org_id":                  "ignored",
		"plan":                    "starter",
		"https://salesos.io/org":  "org-custom",
		"https://salesos.io/plan": "enterprise",
	}))
	if p.OrgID != "org-custom" || p.Plan != PlanEnterprise {
		t.Fatalf("principal = %+v", p)
	}

	// The default org_id claim is not consulted when a custom one is set.
	_, err := v.Verify(ctxT(t), iss.TokenWith(t, authtest.Claims{"org_id": "org-1"}))
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("missing custom tenant claim: err = %v", err)
	}
}

func TestRejectsBadTokens(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)
	now := time.Now()

	hs256 := func() string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := signer.Sign([]byte(`{"iss":"` + iss.URL + `","aud":"` + iss.Audience + `","sub":"x","org_id":"o","exp":9999999999}`))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := jws.CompactSerialize()
		return s
	}()
	valid := iss.Token(t, "org-1")
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]

	cases := []struct {
		name, token, reason string
	}{
		{"expired", iss.TokenWith(t, authtest.Claims{"exp": now.Add(-time.Minute), "iat": now.Add(-time.Hour)}), "expired"},
		{"no exp", iss.TokenWith(t, authtest.Claims{"exp": nil}), "expired"},
		{"wrong audience", iss.TokenWith(t, authtest.Claims{"aud": "https://other.api"}), "audience"},
		{"wrong audience list", iss.TokenWith(t, authtest.Claims{"aud": []string{"a", "b"}}), "audience"},
		{"no audience", iss.TokenWith(t, authtest.Claims{"aud": nil}), "audience"},
		{"wrong issuer", iss.TokenWith(t, authtest.Claims{"iss": "https://evil.example/"}), "issuer"},
		{"issuer without trailing slash", iss.TokenWith(t, authtest.Claims{"iss": strings.TrimSuffix(iss.URL, "/")}), "issuer"},
		{"alg none", iss.UnsignedAlgNone(t, authtest.Claims{}), "malformed"},
		{"alg HS256", hs256, "malformed"},
		{"other key", iss.SignedByOtherKey(t, authtest.Claims{}), "signature"},
		{"tampered payload", tampered, ""},
		{"missing org_id", iss.TokenWith(t, authtest.Claims{"org_id": nil}), "tenant"},
		{"empty org_id", iss.TokenWith(t, authtest.Claims{"org_id": ""}), "tenant"},
		{"blank org_id", iss.TokenWith(t, authtest.Claims{"org_id": "  "}), "tenant"},
		{"numeric org_id", iss.TokenWith(t, authtest.Claims{"org_id": 12}), "tenant"},
		{"object org_id", iss.TokenWith(t, authtest.Claims{"org_id": map[string]any{"id": "o"}}), "tenant"},
		{"missing sub", iss.TokenWith(t, authtest.Claims{"sub": nil}), "sub"},
		{"numeric sub", iss.TokenWith(t, authtest.Claims{"sub": 7}), "claims"},
		{"string exp", iss.TokenWith(t, authtest.Claims{"exp": "tomorrow"}), "claims"},
		{"numeric aud", iss.TokenWith(t, authtest.Claims{"aud": 5}), "claims"},
		{"future nbf", iss.TokenWith(t, authtest.Claims{"nbf": now.Add(time.Hour)}), "not yet valid"},
		{"garbage", "not-a-token", "malformed"},
		{"garbage three parts", "aaa.bbb.ccc", "malformed"},
		{"empty", "", "missing"},
		{"bearer prefix", "Bearer " + valid, ""},
		{"huge", strings.Repeat("a.", 40000) + "a", "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(ctxT(t), tc.token)
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("err = %v (principal %+v), want ErrUnauthorized", err, p)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v also wraps ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %q, want reason containing %q", err, tc.reason)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error leaks the token: %q", err)
			}
			if !reflect.DeepEqual(p, Principal{}) {
				t.Errorf("principal not zero on error: %+v", p)
			}
		})
	}
}

func TestOddClaimTypesNeverPanic(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)

	p := mustVerify(t, v, iss.TokenWith(t, authtest.Claims{
		"scope":       12,
		"permissions": []any{"read:leads", 3, nil, map[string]any{}, []any{"x"}, true, "read:leads", " "},
		"gty":         []any{"client-credentials"},
		"plan":        false,
	}))
	if p.Type != ActorUser || p.Plan != PlanStarter || !reflect.DeepEqual(p.Scopes, []string{"read:leads"}) {
		t.Fatalf("principal = %+v", p)
	}

	p = mustVerify(t, v, iss.TokenWith(t, authtest.Claims{"scope": []any{"read:deals", 1}, "permissions": "write:deals"}))
	if !reflect.DeepEqual(p.Scopes, []string{"read:deals", "write:deals"}) {
		t.Fatalf("scopes = %v", p.Scopes)
	}

	for _, c := range []authtest.Claims{
		{"scope": map[string]any{"a": 1}, "permissions": map[string]any{}},
		{"_claim_names": "x"},
		{"iat": "yesterday"},
		{"nbf": []any{}},
	} {
		_, _ = v.Verify(ctxT(t), iss.TokenWith(t, c)) // must not panic
	}
}

func TestNewVerifierValidatesConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Audience: "a"},
		{Issuer: "https://tenant.auth0.com/"},
		{Issuer: "tenant.auth0.com", Audience: "a"},
		{Issuer: "ftp://tenant.auth0.com/", Audience: "a"},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("NewVerifier(%+v): want error", cfg)
		}
	}
	v, err := NewVerifier(Config{Issuer: "https://tenant.auth0.com/", Audience: "https://api"})
	if err != nil {
		t.Fatal(err)
	}
	if v.cfg.TenantClaim != "org_id" || v.cfg.PlanClaim != "plan" || v.client == nil || v.client.Timeout != 10*time.Second {
		t.Fatalf("defaults not applied: %+v", v.cfg)
	}
}

func TestLazyDiscovery(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)
	if n := iss.DiscoveryCalls(); n != 0 {
		t.Fatalf("NewVerifier contacted the issuer (%d calls)", n)
	}
	// Garbage is refused without contacting the issuer.
	if _, err := v.Verify(ctxT(t), "garbage"); !errors.Is(err, ErrUnauthorized) {
		t.Fatal(err)
	}
	if n := iss.DiscoveryCalls(); n != 0 {
		t.Fatalf("garbage token triggered discovery (%d calls)", n)
	}
	if err := v.Ready(ctxT(t)); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	mustVerify(t, v, iss.Token(t, "org-1"))
	mustVerify(t, v, iss.Token(t, "org-2"))
	if err := v.Ready(ctxT(t)); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if n, k := iss.DiscoveryCalls(), iss.JWKSCalls(); n != 1 || k != 1 {
		t.Fatalf("discovery calls = %d, jwks calls = %d; want 1 and 1 (cached)", n, k)
	}
}

func TestConcurrentFirstUseDiscoversOnce(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)
	tok := iss.Token(t, "org-1", "read:leads")

	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := iss.DiscoveryCalls(); n != 1 {
		t.Fatalf("discovery calls = %d, want 1", n)
	}
}

func TestIssuerDownThenRecovers(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, clock := newTestVerifier(t, iss)
	tok := iss.Token(t, "org-1", "read:leads")

	iss.SetDown(true)
	_, err := v.Verify(ctxT(t), tok)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("issuer down: err = %v, want ErrUnavailable only", err)
	}
	if strings.Contains(err.Error(), tok) {
		t.Fatalf("error leaks token: %v", err)
	}
	if err := v.Ready(ctxT(t)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready while down: %v", err)
	}

	// Within the backoff window nobody contacts the issuer again, even
	// once it is back.
	iss.SetDown(false)
	for range 5 {
		if _, err := v.Verify(ctxT(t), tok); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("during backoff: err = %v", err)
		}
	}
	if n := iss.DiscoveryCalls(); n != 1 {
		t.Fatalf("discovery calls during backoff = %d, want 1", n)
	}

	clock.Advance(1500 * time.Millisecond)
	p := mustVerify(t, v, tok)
	if p.OrgID != "org-1" {
		t.Fatalf("principal = %+v", p)
	}
	if err := v.Ready(ctxT(t)); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
	if n := iss.DiscoveryCalls(); n != 2 {
		t.Fatalf("discovery calls = %d, want 2", n)
	}

	// Once keys are cached, an outage does not affect known-key tokens.
	iss.SetDown(true)
	mustVerify(t, v, iss.Token(t, "org-2"))
}

func TestBackoffGrows(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, clock := newTestVerifier(t, iss)
	iss.SetDown(true)

	attempts := func() int { return iss.DiscoveryCalls() }
	_ = v.Ready(ctxT(t)) // failure 1 → wait 1s
	clock.Advance(time.Second)
	_ = v.Ready(ctxT(t)) // failure 2 → wait 2s
	clock.Advance(time.Second)
	_ = v.Ready(ctxT(t)) // still backing off
	if n := attempts(); n != 2 {
		t.Fatalf("attempts = %d, want 2", n)
	}
	clock.Advance(time.Second)
	_ = v.Ready(ctxT(t))
	if n := attempts(); n != 3 {
		t.Fatalf("attempts = %d, want 3", n)
	}
	for i := range 20 {
		clock.Advance(time.Hour)
		_ = v.Ready(ctxT(t))
		if n := attempts(); n != 4+i {
			t.Fatalf("after long wait: attempts = %d, want %d", n, 4+i)
		}
	}
	if d := backoff(100); d != 30*time.Second {
		t.Fatalf("backoff cap = %v", d)
	}
}

func TestIssuerUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	url := srv.URL + "/"
	srv.Close()

	v, err := NewVerifier(Config{Issuer: url, Audience: "https://api.salesos.test"})
	if err != nil {
		t.Fatal(err)
	}
	iss := authtest.NewIssuer(t)
	_, err = v.Verify(ctxT(t), iss.Token(t, "org-1"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if err := v.Ready(ctxT(t)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready: %v", err)
	}
}

func TestJWKSDownAfterDiscovery(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, clock := newTestVerifier(t, iss)
	if err := v.Ready(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	iss.SetDown(true)
	tok := iss.Token(t, "org-1")
	_, err := v.Verify(ctxT(t), tok)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("jwks down: err = %v, want ErrUnavailable", err)
	}
	// Backoff applies to the key set as well.
	_, _ = v.Verify(ctxT(t), tok)
	if n := iss.JWKSCalls(); n != 1 {
		t.Fatalf("jwks calls = %d, want 1", n)
	}
	iss.SetDown(false)
	clock.Advance(2 * time.Second)
	mustVerify(t, v, tok)
}

func TestForgedTokensDoNotHammerJWKS(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, clock := newTestVerifier(t, iss)
	mustVerify(t, v, iss.Token(t, "org-1"))

	for range 5 {
		_, err := v.Verify(ctxT(t), iss.SignedByOtherKey(t, authtest.Claims{}))
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("other key: %v", err)
		}
	}
	// A token naming an unknown kid may trigger one refresh per window.
	unknownKid := func() string {
		otherIss := authtest.NewIssuer(t)
		return otherIss.TokenWith(t, authtest.Claims{"iss": iss.URL})
	}()
	for range 5 {
		if _, err := v.Verify(ctxT(t), unknownKid); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := iss.JWKSCalls(); n != 1 {
		t.Fatalf("jwks calls = %d, want 1", n)
	}
	clock.Advance(minKeyRefresh)
	if _, err := v.Verify(ctxT(t), unknownKid); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("unknown kid: %v", err)
	}
	if n := iss.JWKSCalls(); n != 2 {
		t.Fatalf("jwks calls = %d, want 2 (one refresh after the window)", n)
	}
}

func TestCanceledContext(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := v.Verify(ctx, iss.Token(t, "org-1"))
	if err == nil {
		// The discovery may have completed before the select noticed the
		// cancellation; either outcome is fine, but it must not be 401.
		return
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	// A canceled caller does not poison discovery for others.
	mustVerify(t, v, iss.Token(t, "org-1"))
}

// TestIssuedInTheFuture: a token whose iat lies beyond the allowed clock
// skew was not issued by a working issuer (or was minted to outlive its
// exp window); it is refused. Within the skew it is accepted, since
// clocks of issuer and API differ by a little.
func TestIssuedInTheFuture(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, clock := newTestVerifier(t, iss)
	now := clock.Now()

	for _, tc := range []struct {
		name string
		iat  any
	}{
		{"an hour ahead", now.Add(time.Hour)},
		{"just past the skew", now.Add(MaxClockSkew + 2*time.Second)},
		{"far future", now.AddDate(10, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := iss.TokenWith(t, authtest.Claims{"iat": tc.iat, "exp": now.AddDate(11, 0, 0)})
			_, err := v.Verify(ctxT(t), tok)
			if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "issued in the future") {
				t.Fatalf("err = %v, want ErrUnauthorized: issued in the future", err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		iat  any
	}{
		{"within the skew", now.Add(MaxClockSkew - 5*time.Second)},
		{"in the past", now.Add(-time.Minute)},
		{"absent", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustVerify(t, v, iss.TokenWith(t, authtest.Claims{"iat": tc.iat}))
		})
	}
	// A non-numeric iat is a malformed token, not a free pass.
	if _, err := v.Verify(ctxT(t), iss.TokenWith(t, authtest.Claims{"iat": "soon"})); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("string iat: err = %v, want ErrUnauthorized", err)
	}
}

// TestUnstorableIdentityClaims: the organization and the subject of a
// token are stored with every event a request writes, so a token carrying
// NUL in them (which no supported database can store) is refused like any
// other malformed token, whoever signed it.
func TestUnstorableIdentityClaims(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, _ := newTestVerifier(t, iss)
	for name, claims := range map[string]authtest.Claims{
		"org_id": {"org_id": "org\x00evil"},
		"sub":    {"sub": "auth0|\x00"},
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := v.Verify(ctxT(t), iss.TokenWith(t, claims)); !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("Verify = %+v, %v; want ErrUnauthorized", p, err)
			}
		})
	}
}
