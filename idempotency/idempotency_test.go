package idempotency

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/salesos/salesos/internal/testdb"
)

func newStore(t *testing.T) (*Store, context.Context) {
	t.Helper()
	s := testdb.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &Store{DB: s.DB, Driver: s.Driver}, ctx
}

// age moves a key's creation back in time, as if it had been claimed d ago.
func age(t *testing.T, ctx context.Context, s *Store, org, key string, d time.Duration) {
	t.Helper()
	res, err := s.DB.ExecContext(ctx, `UPDATE idempotency_keys SET created_at = $3 WHERE org_id = $1 AND key = $2`, org, key, time.Now().UTC().Add(-d))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("age %s/%s: %d rows", org, key, n)
	}
}

func mustClaim(t *testing.T, ctx context.Context, s *Store, org, key, fp string) Claim {
	t.Helper()
	c, err := s.Claim(ctx, org, key, fp)
	if err != nil || c.Replay != nil || c.Token == "" {
		t.Fatalf("Claim(%s, %s) = %+v, %v; want to own the key", org, key, c, err)
	}
	return c
}

// replay claims a key that should answer with a stored response (or an
// error): the stored response, nil if the caller got the key.
func replay(ctx context.Context, s *Store, org, key, fp string) (*Response, error) {
	c, err := s.Claim(ctx, org, key, fp)
	return c.Replay, err
}

func TestCompletedResponseIsReplayed(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	fp := Fingerprint("POST", "/v1/leads", []byte(`{"name":"Ada"}`))
	c1 := mustClaim(t, ctx, s, "org_a", "k1", fp)
	// A body that is not text: every byte must come back.
	body := []byte{'{', 0, 0xff, 0xfe, '\n', '}'}
	h := http.Header{"Content-Type": {"application/json"}, "Location": {"/v1/leads/lead_1"}, "Etag": {`"1"`}}
	if err := s.CompleteClaim(ctx, c1, Response{Status: 201, Header: h, Body: body}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := replay(ctx, s, "org_a", "k1", fp)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || got.Status != 201 || !bytes.Equal(got.Body, body) || !reflect.DeepEqual(got.Header, h) {
			t.Fatalf("replay = %+v", got)
		}
	}
	// A response without body or headers replays as such.
	c2 := mustClaim(t, ctx, s, "org_a", "k2", fp)
	if err := s.CompleteClaim(ctx, c2, Response{Status: 204}); err != nil {
		t.Fatal(err)
	}
	got, err := replay(ctx, s, "org_a", "k2", fp)
	if err != nil || got == nil || got.Status != 204 || len(got.Body) != 0 || len(got.Header) != 0 {
		t.Fatalf("empty replay = %+v, %v", got, err)
	}
}

func TestKeyReusedAndInProgress(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	fp := Fingerprint("POST", "/v1/leads", []byte(`{"name":"Ada"}`))
	other := Fingerprint("POST", "/v1/leads", []byte(`{"name":"Grace"}`))
	ca := mustClaim(t, ctx, s, "org_a", "k", fp)
	if _, err := replay(ctx, s, "org_a", "k", fp); !errors.Is(err, ErrInProgress) {
		t.Fatalf("retry while running: %v, want ErrInProgress", err)
	}
	if _, err := replay(ctx, s, "org_a", "k", other); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("other request while running: %v, want ErrKeyReused", err)
	}
	// Keys belong to an organization: the same key elsewhere is free.
	mustClaim(t, ctx, s, "org_b", "k", other)
	if err := s.CompleteClaim(ctx, ca, Response{Status: 201, Header: http.Header{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := replay(ctx, s, "org_a", "k", other); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("other request after completion: %v, want ErrKeyReused", err)
	}
	if _, err := replay(ctx, s, "org_b", "k", other); !errors.Is(err, ErrInProgress) {
		t.Fatalf("org_b's claim: %v, want ErrInProgress", err)
	}
}

func TestReleaseFreesOnlyAClaim(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	fp := Fingerprint("POST", "/v1/deals", []byte(`{}`))
	first := mustClaim(t, ctx, s, "org_a", "k", fp)
	if err := s.ReleaseClaim(ctx, first); err != nil {
		t.Fatal(err)
	}
	// Released: the retry really runs, even with another body.
	other := Fingerprint("POST", "/v1/deals", []byte(`{"name":"x"}`))
	second := mustClaim(t, ctx, s, "org_a", "k", other)
	if err := s.CompleteClaim(ctx, second, Response{Status: 201, Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// A completed key is not released, nor is a claim by a stale owner.
	if err := s.ReleaseClaim(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseClaim(ctx, first); err != nil {
		t.Fatal(err)
	}
	got, err := replay(ctx, s, "org_a", "k", other)
	if err != nil || got == nil || got.Status != 201 {
		t.Fatalf("after Release of a completed key: %+v, %v; want the replay", got, err)
	}
}

func TestExpiredKeysAreReclaimedAndPurged(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	fp := Fingerprint("POST", "/v1/leads", []byte(`{"name":"Ada"}`))
	other := Fingerprint("POST", "/v1/leads", []byte(`{"name":"Grace"}`))
	claims := map[string]Claim{}
	for _, k := range []string{"old-done", "old-running", "fresh", "nearly"} {
		claims[k] = mustClaim(t, ctx, s, "org_a", k, fp)
	}
	if err := s.CompleteClaim(ctx, claims["old-done"], Response{Status: 201}); err != nil {
		t.Fatal(err)
	}
	age(t, ctx, s, "org_a", "old-done", TTL+time.Minute)
	age(t, ctx, s, "org_a", "old-running", TTL+time.Minute)
	age(t, ctx, s, "org_a", "nearly", TTL-time.Minute)

	// An expired key is claimed afresh, whatever it held.
	mustClaim(t, ctx, s, "org_a", "old-done", other)
	if _, err := replay(ctx, s, "org_a", "nearly", other); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("a key within its TTL: %v, want ErrKeyReused", err)
	}

	age(t, ctx, s, "org_a", "old-done", TTL+time.Minute)
	n, err := s.Purge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("Purge deleted %d keys, want 2 (old-done, old-running)", n)
	}
	var left []string
	if err := s.DB.SelectContext(ctx, &left, `SELECT key FROM idempotency_keys ORDER BY key`); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(left, []string{"fresh", "nearly"}) {
		t.Fatalf("after Purge: %v", left)
	}
	if n, err := s.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("second Purge: %d, %v", n, err)
	}
}

// Concurrent first requests with one key: exactly one runs.
func TestConcurrentBeginOneOwner(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	fp := Fingerprint("POST", "/v1/leads", []byte(`{}`))
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	owners, running := 0, 0
	for range n {
		wg.Go(func() {
			r, err := replay(ctx, s, "org_a", "race", fp)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && r == nil:
				owners++
			case errors.Is(err, ErrInProgress):
				running++
			default:
				t.Errorf("Begin = %+v, %v", r, err)
			}
		})
	}
	wg.Wait()
	if owners != 1 || running != n-1 {
		t.Fatalf("%d owners and %d told in progress, want 1 and %d", owners, running, n-1)
	}
}

// A claim that never completes (the process died mid-request, or its
// release or stored response failed to write) holds the key only for its
// lease: before it a retry is told to wait until the lease ends, after it
// the retry takes the request over, and the stale claim can no longer
// complete or release the key.
func TestLeaseRunsOutAndRetryTakesOver(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	now := time.Now().UTC()
	s.Lease = time.Minute
	s.Now = func() time.Time { return now }
	fp := Fingerprint("POST", "/v1/leads", []byte(`{"name":"Ada"}`))
	first, err := s.Claim(ctx, "org_a", "k", fp)
	if err != nil || first.Token == "" || first.TakeOver {
		t.Fatalf("first claim: %+v %v", first, err)
	}

	now = now.Add(45 * time.Second)
	_, err = s.Claim(ctx, "org_a", "k", fp)
	var ip *InProgressError
	if !errors.As(err, &ip) || !errors.Is(err, ErrInProgress) || ip.RetryAfter <= 0 || ip.RetryAfter > 15*time.Second {
		t.Fatalf("retry within the lease: %v (%+v), want ErrInProgress with about 15s left", err, ip)
	}

	now = now.Add(30 * time.Second)
	if _, err := s.Claim(ctx, "org_a", "k", Fingerprint("POST", "/v1/leads", []byte(`{}`))); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("other request after the lease: %v, want ErrKeyReused", err)
	}
	second, err := s.Claim(ctx, "org_a", "k", fp)
	if err != nil || !second.TakeOver || second.Token == first.Token {
		t.Fatalf("retry after the lease: %+v %v, want a takeover", second, err)
	}
	// The new owner holds a fresh lease.
	if _, err := s.Claim(ctx, "org_a", "k", fp); !errors.Is(err, ErrInProgress) {
		t.Fatalf("retry right after the takeover: %v, want ErrInProgress", err)
	}
	// The stale first attempt finishing late changes nothing.
	if err := s.ReleaseClaim(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteClaim(ctx, first, Response{Status: 500}); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteClaim(ctx, second, Response{Status: 201, Body: []byte(`{"id":"lead_1"}`)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, "org_a", "k", fp)
	if err != nil || got.Replay == nil || got.Replay.Status != 201 {
		t.Fatalf("after the new owner completed: %+v %v, want its 201 replayed", got, err)
	}
}

// A key claimed before leases existed (no lease_until) is leased from its
// creation, so it does not stay stuck either.
func TestClaimWithoutLeaseColumnIsLeasedFromCreation(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	fp := Fingerprint("POST", "/v1/leads", []byte(`{}`))
	mustClaim(t, ctx, s, "org_a", "legacy", fp)
	if _, err := s.DB.ExecContext(ctx, `UPDATE idempotency_keys SET lease_until = NULL, claim_token = '' WHERE key = 'legacy'`); err != nil {
		t.Fatal(err)
	}
	age(t, ctx, s, "org_a", "legacy", 25*time.Minute)
	c, err := s.Claim(ctx, "org_a", "legacy", fp)
	if err != nil || !c.TakeOver {
		t.Fatalf("a 25 minutes old claim without lease: %+v %v, want a takeover", c, err)
	}
}
