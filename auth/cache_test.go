package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/salesos/salesos/auth/authtest"
)

// A verified token is served from the cache, but never past its expiry,
// and the issuer's keys are not fetched again for it.
func TestVerifiedTokensAreCachedUntilTheyExpire(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v, clock := newTestVerifier(t, iss)
	tok := iss.TokenWith(t, authtest.Claims{"org_id": "org_c", "scope": "read:leads", "iat": clock.Now(), "exp": clock.Now().Add(2 * time.Minute)})
	first := mustVerify(t, v, tok)
	fetches := iss.JWKSCalls()
	for range 5 {
		if p := mustVerify(t, v, tok); p.OrgID != first.OrgID || p.Sub != first.Sub {
			t.Fatalf("cached principal %+v differs from %+v", p, first)
		}
	}
	if iss.JWKSCalls() != fetches {
		t.Fatalf("the key set was fetched again for a cached token")
	}
	clock.Advance(2*time.Minute + time.Second)
	if _, err := v.Verify(ctxT(t), tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("an expired token was accepted from the cache: %v", err)
	}
}

// Entries also lapse after cacheTTL, whatever the token's expiry, and
// failures are never cached.
func TestTokenCacheBounds(t *testing.T) {
	var c tokenCache
	now := time.Date(2026, 3, 15, 14, 30, 0, 0, time.UTC)
	c.put("a.b.c", Principal{OrgID: "o"}, now.Add(24*time.Hour), now)
	if _, ok := c.get("a.b.c", now.Add(cacheTTL-time.Second)); !ok {
		t.Fatal("entry missing before its TTL")
	}
	if _, ok := c.get("a.b.c", now.Add(cacheTTL)); ok {
		t.Fatal("entry served after its TTL")
	}
	for i := range cacheEntries + 10 {
		c.put(string(rune(i))+".x.y", Principal{}, now.Add(time.Hour), now)
	}
	if len(c.entries) > cacheEntries {
		t.Fatalf("cache grew to %d entries", len(c.entries))
	}
}
