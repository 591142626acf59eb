package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// fetchTimeout bounds one discovery or JWKS request, whatever the
	// caller's HTTP client says.
	fetchTimeout = 15 * time.Second
	// minKeyRefresh is how long a successfully fetched key set is trusted
	// to be complete: a token with an unknown key id inside this window is
	// rejected without asking the issuer again, so a stream of forged
	// tokens cannot turn into a stream of JWKS requests.
	minKeyRefresh = 10 * time.Second
	// maxBodySize caps discovery and JWKS responses.
	maxBodySize = 1 << 20
)

// backoff returns the wait before the next attempt after n consecutive
// failures: 1s, 2s, 4s ... capped at 30s.
func backoff(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// flight runs at most one fetch at a time. The fetch runs detached from any
// single caller's context (so one impatient caller cannot fail it for
// everyone); each caller waits for it only as long as its own ctx allows.
type flight struct {
	mu sync.Mutex
	ch chan struct{}
}

func (f *flight) do(ctx context.Context, fn func(context.Context)) error {
	f.mu.Lock()
	ch := f.ch
	if ch == nil {
		ch = make(chan struct{})
		f.ch = ch
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
			defer cancel()
			fn(fctx)
			f.mu.Lock()
			f.ch = nil
			f.mu.Unlock()
			close(ch)
		}()
	}
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unavailableMarker travels in the context handed to go-oidc so that the
// key set can tell Verify "the JWKS could not be fetched" — go-oidc flattens
// key set errors into strings.
type unavailableMarker struct {
	mu  sync.Mutex
	err error
}

type markerKey struct{}

func markUnavailable(ctx context.Context, err error) {
	if m, ok := ctx.Value(markerKey{}).(*unavailableMarker); ok {
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
	}
}

func (m *unavailableMarker) get() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// remoteKeys is an oidc.KeySet backed by the issuer's jwks_uri. Keys are
// cached; the set is re-fetched when a token names a key we don't hold (key
// rotation), at most once per minKeyRefresh, and with backoff after failures.
// Cached keys keep working while the issuer is down.
type remoteKeys struct {
	url    string
	client *http.Client
	now    func() time.Time

	flight flight

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetchedAt time.Time // last success; zero if never
	err       error     // last failure, nil after a success
	failures  int
	retryAt   time.Time
}

var (
	errNoMatchingKey = errors.New("no matching key")
	errBadSignature  = errors.New("signature does not verify")
)

// VerifySignature implements oidc.KeySet.
func (k *remoteKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	// A JWT is always the compact serialization; the JSON one is refused.
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, errors.New("malformed jwt")
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("exactly one signature required")
	}
	kid := jws.Signatures[0].Header.KeyID

	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	payload, err := verifyWith(jws, kid, keys)
	if err == nil {
		return payload, nil
	}
	if kid != "" && errors.Is(err, errBadSignature) {
		// We hold the key this token claims to be signed with and it does
		// not verify: forged or corrupted. Issuers never reuse a kid for a
		// new key, so refreshing would not help.
		return nil, err
	}

	// Unknown key id (or a signature no cached key accepts): maybe the
	// issuer rotated keys. Ask it again, unless we just did.
	k.mu.Lock()
	now := k.now()
	if k.err != nil && now.Before(k.retryAt) {
		ferr := k.err
		k.mu.Unlock()
		markUnavailable(ctx, ferr)
		return nil, ferr
	}
	if k.err == nil && !k.fetchedAt.IsZero() && now.Sub(k.fetchedAt) < minKeyRefresh {
		k.mu.Unlock()
		return nil, err
	}
	k.mu.Unlock()

	if ferr := k.flight.do(ctx, k.fetch); ferr != nil {
		markUnavailable(ctx, ferr)
		return nil, ferr
	}
	k.mu.Lock()
	keys, ferr := k.keys, k.err
	k.mu.Unlock()
	if ferr != nil {
		markUnavailable(ctx, ferr)
		return nil, ferr
	}
	return verifyWith(jws, kid, keys)
}

func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, error) {
	err := errNoMatchingKey
	for i := range keys {
		key := &keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if payload, verr := jws.Verify(key); verr == nil {
			return payload, nil
		}
		err = errBadSignature
	}
	return nil, err
}

func (k *remoteKeys) fetch(ctx context.Context) {
	keys, err := fetchJWKS(ctx, k.client, k.url)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.failures++
		k.err = fmt.Errorf("jwks: %w", err)
		k.retryAt = k.now().Add(backoff(k.failures))
		return // keep serving the keys we already have
	}
	k.keys, k.err, k.failures, k.fetchedAt = keys, nil, 0, k.now()
}

func fetchJWKS(ctx context.Context, client *http.Client, url string) ([]jose.JSONWebKey, error) {
	body, err := getJSON(ctx, client, url)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("malformed key set")
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			continue // unsupported or broken key: ignore, as RFC 7517 suggests
		}
		if !key.IsPublic() || (key.Use != "" && key.Use != "sig") ||
			(key.Algorithm != "" && key.Algorithm != string(jose.RS256)) {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("key set has no usable RS256 keys")
	}
	return keys, nil
}

func getJSON(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}
