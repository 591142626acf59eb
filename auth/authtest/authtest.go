// Package authtest provides a throwaway OIDC issuer for tests: an
// httptest.Server publishing a discovery document and a JWKS, plus helpers
// that mint Auth0-shaped access tokens, valid or deliberately broken.
//
// Configure the code under test with Issuer.URL as the issuer and
// Issuer.Audience as the audience. URL ends with "/", like an Auth0 tenant
// ("https://tenant.auth0.com/"); it is the exact "iss" of minted tokens.
//
// This package deliberately does not import package auth.
package authtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultAudience is the audience of an Issuer unless changed.
const DefaultAudience = "https://api.salesos.test"

// Default claim values used by the token helpers.
const (
	DefaultOrg      = "org-test"
	DefaultUserSub  = "auth0|user-1"
	DefaultClientID = "test-client-1"
)

// Claims is a JWT claim set. In TokenWith and friends a nil value removes
// the claim; a time.Time value is encoded as Unix seconds.
type Claims map[string]any

// Issuer is a test OIDC issuer with its own RSA key.
type Issuer struct {
	// URL is the issuer identifier (server URL plus "/").
	URL string
	// Audience is put in "aud" by default. Change it before minting if
	// needed.
	Audience string
	// Server is the underlying server, closed by t.Cleanup.
	Server *httptest.Server

	key *rsa.PrivateKey
	kid string

	mu             sync.Mutex
	down           bool
	discoveryCalls int
	jwksCalls      int
	otherKey       *rsa.PrivateKey
}

// NewIssuer starts an issuer. It is closed when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key := newKey(t)
	i := &Issuer{Audience: DefaultAudience, key: key, kid: thumbprint(t, key)}
	i.Server = httptest.NewServer(http.HandlerFunc(i.serve))
	t.Cleanup(i.Server.Close)
	i.URL = i.Server.URL + "/"
	return i
}

func (i *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	down := i.down
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		i.discoveryCalls++
	case "/.well-known/jwks.json":
		i.jwksCalls++
	}
	i.mu.Unlock()

	if down {
		http.Error(w, "issuer is down", http.StatusServiceUnavailable)
		return
	}
	var body any
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		body = map[string]any{
			"issuer":                                i.URL,
			"jwks_uri":                              i.Server.URL + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported":              []string{"code", "token", "id_token"},
			"subject_types_supported":               []string{"public"},
		}
	case "/.well-known/jwks.json":
		body = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: "RS256", Use: "sig",
		}}}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// SetDown makes the issuer answer 503 to every request (true) or serve
// normally again (false).
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	i.down = down
	i.mu.Unlock()
}

// DiscoveryCalls returns how many discovery requests the issuer received.
func (i *Issuer) DiscoveryCalls() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.discoveryCalls
}

// JWKSCalls returns how many JWKS requests the issuer received.
func (i *Issuer) JWKSCalls() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.jwksCalls
}

// KeyID returns the kid of the issuer's signing key.
func (i *Issuer) KeyID() string { return i.kid }

// Token mints a user token for org: sub "auth0|user-1", plan "starter",
// the given scopes (space-joined in "scope", omitted if none), valid for one
// hour.
func (i *Issuer) Token(t testing.TB, org string, scopes ...string) string {
	t.Helper()
	return i.TokenWith(t, Claims{
		"org_id": org,
		"plan":   "starter",
		"scope":  scopeClaim(scopes),
	})
}

func scopeClaim(scopes []string) any {
	if len(scopes) == 0 {
		return nil
	}
	return strings.Join(scopes, " ")
}

// ClientToken mints a client-credentials token for org: sub
// "test-client-1@clients", gty "client-credentials", scopes in "scope".
func (i *Issuer) ClientToken(t testing.TB, org string, scopes ...string) string {
	t.Helper()
	return i.TokenWith(t, Claims{
		"sub":    DefaultClientID + "@clients",
		"azp":    DefaultClientID,
		"gty":    "client-credentials",
		"org_id": org,
		"plan":   "starter",
		"scope":  scopeClaim(scopes),
	})
}

// TokenWith mints a token from the defaults (iss, aud, sub "auth0|user-1",
// iat now, exp in one hour, org_id "org-test") overridden by claims.
func (i *Issuer) TokenWith(t testing.TB, claims Claims) string {
	t.Helper()
	return sign(t, i.key, i.kid, i.claims(t, claims))
}

// SignedByOtherKey mints a token like TokenWith, but signed with a key the
// issuer does not publish. The header still names the issuer's kid, as a
// forger would.
func (i *Issuer) SignedByOtherKey(t testing.TB, claims Claims) string {
	t.Helper()
	i.mu.Lock()
	if i.otherKey == nil {
		i.otherKey = newKey(t)
	}
	other := i.otherKey
	i.mu.Unlock()
	return sign(t, other, i.kid, i.claims(t, claims))
}

// UnsignedAlgNone builds, by hand, a token with header {"alg":"none"} and
// an empty signature, carrying the same claims TokenWith would.
func (i *Issuer) UnsignedAlgNone(t testing.TB, claims Claims) string {
	t.Helper()
	payload, err := json.Marshal(i.claims(t, claims))
	if err != nil {
		t.Fatalf("authtest: marshal claims: %v", err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

func (i *Issuer) claims(t testing.TB, override Claims) map[string]any {
	t.Helper()
	now := time.Now()
	c := map[string]any{
		"iss":    i.URL,
		"aud":    i.Audience,
		"sub":    DefaultUserSub,
		"iat":    now.Unix(),
		"exp":    now.Add(time.Hour).Unix(),
		"org_id": DefaultOrg,
	}
	for k, v := range override {
		switch v := v.(type) {
		case nil:
			delete(c, k)
		case time.Time:
			c[k] = v.Unix()
		default:
			c[k] = v
		}
	}
	return c
}

func sign(t testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("authtest: marshal claims: %v", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		t.Fatalf("authtest: signer: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("authtest: sign: %v", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("authtest: serialize: %v", err)
	}
	return s
}

func newKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("authtest: generate key: %v", err)
	}
	return key
}

func thumbprint(t testing.TB, key *rsa.PrivateKey) string {
	t.Helper()
	jwk := jose.JSONWebKey{Key: &key.PublicKey}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatalf("authtest: thumbprint: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}
