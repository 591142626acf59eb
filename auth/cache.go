package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCache remembers tokens that verified, so a client that sends the
// same token on every call (as integrations do for its whole lifetime) pays
// for the RSA signature check and the claim parsing once. An entry lives
// until the token expires or cacheTTL passes, whichever is first: cacheTTL
// bounds how long a token keeps working after its signing key was
// withdrawn from the issuer's key set. Only successes are cached; keys are
// SHA-256 digests, so the cache holds no tokens.
type tokenCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]cachedPrincipal
}

type cachedPrincipal struct {
	p     Principal
	until time.Time
}

const (
	cacheTTL     = 5 * time.Minute
	cacheEntries = 10_000
)

func (c *tokenCache) get(raw string, now time.Time) (Principal, bool) {
	k := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return Principal{}, false
	}
	if !now.Before(e.until) {
		delete(c.entries, k)
		return Principal{}, false
	}
	return e.p, true
}

func (c *tokenCache) put(raw string, p Principal, expiry, now time.Time) {
	until := now.Add(cacheTTL)
	if !expiry.IsZero() && expiry.Before(until) {
		until = expiry
	}
	if !now.Before(until) {
		return
	}
	k := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[[sha256.Size]byte]cachedPrincipal)
	}
	if len(c.entries) >= cacheEntries {
		// Full: drop expired entries, and if that frees nothing, an
		// arbitrary tenth (map order), so the cache stays bounded without
		// bookkeeping on the hot path.
		dropped := 0
		for key, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, key)
				dropped++
			}
		}
		for key := range c.entries {
			if dropped >= cacheEntries/10 {
				break
			}
			delete(c.entries, key)
			dropped++
		}
	}
	c.entries[k] = cachedPrincipal{p: p, until: until}
}
