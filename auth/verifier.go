package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// maxTokenSize rejects absurdly large bearer tokens before any parsing.
const maxTokenSize = 64 << 10

// MaxClockSkew is how far a token's "iat" may lie in our future. Issuer
// and API clocks differ by a little; a token issued further ahead comes
// from a broken or forged clock, and would otherwise stretch its own
// validity window past what the issuer meant.
const MaxClockSkew = 60 * time.Second

// Config configures a Verifier.
type Config struct {
	// Issuer is the exact issuer string, as it appears in the "iss" claim
	// and in the discovery document (Auth0: "https://tenant.auth0.com/",
	// trailing slash included). Required.
	Issuer string
	// Audience is the API identifier the token must be issued for. Required.
	Audience string
	// TenantClaim names the claim carrying the organization id.
	// Default "org_id".
	TenantClaim string
	// PlanClaim names the claim carrying the plan. Default "plan".
	PlanClaim string
	// HTTPClient is used for discovery and JWKS requests. Default: a
	// client with a 10s timeout.
	HTTPClient *http.Client
}

// Verifier checks bearer tokens against one OIDC issuer. It is safe for
// concurrent use. The issuer is contacted lazily: discovery happens on the
// first Verify or Ready call; a success is cached for the Verifier's
// lifetime, a failure is retried on a later call after a short backoff
// (1s doubling up to 30s), during which calls fail fast with ErrUnavailable.
type Verifier struct {
	cfg    Config
	client *http.Client
	now    func() time.Time // replaceable in tests

	flight flight
	cache  tokenCache

	mu       sync.Mutex
	idv      *oidc.IDTokenVerifier // nil until discovery succeeded
	err      error                 // last discovery failure
	failures int
	retryAt  time.Time
}

// NewVerifier validates cfg and returns a Verifier. It does not contact the
// issuer.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("auth: issuer is required")
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth: issuer %q is not an absolute http(s) URL", cfg.Issuer)
	}
	if strings.TrimSpace(cfg.Audience) == "" {
		return nil, errors.New("auth: audience is required")
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = "org_id"
	}
	if cfg.PlanClaim == "" {
		cfg.PlanClaim = "plan"
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Verifier{cfg: cfg, client: client, now: time.Now}, nil
}

// Ready reports whether discovery has succeeded, attempting it if it has
// not (subject to the retry backoff). The error wraps ErrUnavailable.
func (v *Verifier) Ready(ctx context.Context) error {
	_, err := v.verifier(ctx)
	return err
}

// Verify checks rawToken (the bearer token, without the "Bearer " prefix)
// and returns the Principal it carries. Errors wrap ErrUnauthorized (the
// token is not acceptable) or ErrUnavailable (the issuer could not be
// reached to check it).
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Principal, error) {
	if rawToken == "" {
		return Principal{}, unauthorized("missing token")
	}
	if len(rawToken) > maxTokenSize {
		return Principal{}, unauthorized("token too large")
	}
	if strings.Count(rawToken, ".") != 2 {
		// Not a compact JWS; don't bother the issuer with it.
		return Principal{}, unauthorized("malformed token")
	}
	now := time.Now()
	if v.now != nil {
		now = v.now()
	}
	if p, ok := v.cache.get(rawToken, now); ok {
		return p, nil
	}
	idv, err := v.verifier(ctx)
	if err != nil {
		return Principal{}, err
	}

	marker := &unavailableMarker{}
	tok, err := idv.Verify(context.WithValue(ctx, markerKey{}, marker), rawToken)
	if err != nil {
		if uerr := marker.get(); uerr != nil {
			return Principal{}, fmt.Errorf("%w: %s", ErrUnavailable, shorten(uerr.Error()))
		}
		return Principal{}, unauthorized(reasonFor(err))
	}

	// go-oidc checks exp and nbf but not iat.
	if tok.IssuedAt.After(now.Add(MaxClockSkew)) {
		return Principal{}, unauthorized("token issued in the future")
	}

	var claims claimSet
	if err := tok.Claims(&claims); err != nil {
		return Principal{}, unauthorized("malformed claims")
	}
	p, err := principalFromClaims(claims, tok.Subject, v.cfg.TenantClaim, v.cfg.PlanClaim)
	if err != nil {
		return Principal{}, err
	}
	v.cache.put(rawToken, p, tok.Expiry, now)
	return p, nil
}

// reasonFor maps a go-oidc verification error to a fixed, token-free reason.
func reasonFor(err error) string {
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		return "token expired"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "malformed jwt"):
		return "malformed token or unsupported algorithm"
	case strings.Contains(msg, "failed to verify signature"):
		return "bad signature"
	case strings.Contains(msg, "issued by a different provider"):
		return "wrong issuer"
	case strings.Contains(msg, "expected audience"):
		return "wrong audience"
	case strings.Contains(msg, "nbf"):
		return "token not yet valid"
	case strings.Contains(msg, "unmarshal claims"):
		return "malformed claims"
	}
	return "invalid token"
}

// verifier returns the go-oidc verifier, running discovery if needed.
func (v *Verifier) verifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	if idv, retry, err := v.state(); idv != nil {
		return idv, nil
	} else if err != nil && !retry {
		return nil, err
	}
	if err := v.flight.do(ctx, v.discover); err != nil {
		return nil, fmt.Errorf("%w: discovery: %v", ErrUnavailable, err)
	}
	idv, _, err := v.state()
	if idv != nil {
		return idv, nil
	}
	if err == nil {
		err = fmt.Errorf("%w: discovery did not complete", ErrUnavailable)
	}
	return nil, err
}

// state returns the discovered verifier, or the last discovery error and
// whether the backoff has elapsed so that a new attempt may be made.
func (v *Verifier) state() (idv *oidc.IDTokenVerifier, retry bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.idv != nil {
		return v.idv, false, nil
	}
	return nil, !v.now().Before(v.retryAt), v.err
}

func (v *Verifier) discover(ctx context.Context) {
	idv, err := v.tryDiscover(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		v.failures++
		v.err = fmt.Errorf("%w: discovery: %s", ErrUnavailable, shorten(err.Error()))
		v.retryAt = v.now().Add(backoff(v.failures))
		return
	}
	v.idv, v.err, v.failures = idv, nil, 0
}

func (v *Verifier) tryDiscover(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, v.client), v.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, err
	}
	if meta.JWKSURI == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	keys := &remoteKeys{url: meta.JWKSURI, client: v.client, now: v.now}
	return oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: []string{oidc.RS256},
		Now:                  v.now,
	}), nil
}

// shorten keeps upstream error text (which may include a response body)
// to a log-friendly size.
func shorten(s string) string {
	const limit = 200
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "…"
	}
	return s
}
