package drivertest

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/salesos/salesos/driver"
)

func init() { areas = append(areas, area{"Idempotency", runIdempotency}) }

func runIdempotency(t *testing.T, d driver.Driver, open Open) {
	claim := func(org, key, token string, at time.Time) driver.IdempotencyClaim {
		return driver.IdempotencyClaim{OrgID: org, Key: key, RequestHash: "h-" + key, CreatedAt: at, LeaseUntil: at.Add(time.Minute), Token: token}
	}
	t.Run("ClaimCompleteReplay", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		at := now()
		if ok, err := d.ClaimIdempotencyKey(ctx(t), s.DB, claim("org", "k", "t1", at)); err != nil || !ok {
			t.Fatalf("first claim = %v, %v", ok, err)
		}
		if ok, err := d.ClaimIdempotencyKey(ctx(t), s.DB, claim("org", "k", "t2", at)); err != nil || ok {
			t.Fatalf("second claim of the same key = %v, %v; want not claimed", ok, err)
		}
		// Keys belong to one organization.
		if ok, err := d.ClaimIdempotencyKey(ctx(t), s.DB, claim("other", "k", "t3", at)); err != nil || !ok {
			t.Fatalf("the same key in another organization = %v, %v", ok, err)
		}
		k, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "k")
		if err != nil {
			t.Fatal(err)
		}
		if k.Status != "in_progress" || k.Token != "t1" || k.RequestHash != "h-k" || !k.CreatedAt.Equal(at) ||
			!k.LeaseUntil.Valid || !k.LeaseUntil.Time.Equal(at.Add(time.Minute)) || k.Code.Valid {
			t.Fatalf("claimed key: %+v", k)
		}
		// Only the claim's own token completes it.
		resp := driver.IdempotencyResponse{Status: 201, Headers: `{"Location":["/v1/leads/l1"]}`, Body: []byte(`{"id":"l1"}`)}
		if err := d.CompleteIdempotencyClaim(ctx(t), s.DB, "org", "k", "t2", resp); err != nil {
			t.Fatal(err)
		}
		if k, _ := d.GetIdempotencyKey(ctx(t), s.DB, "org", "k"); k.Status != "in_progress" {
			t.Fatalf("another token completed the claim: %+v", k)
		}
		if err := d.CompleteIdempotencyClaim(ctx(t), s.DB, "org", "k", "t1", resp); err != nil {
			t.Fatal(err)
		}
		k, err = d.GetIdempotencyKey(ctx(t), s.Read, "org", "k")
		if err != nil {
			t.Fatal(err)
		}
		if k.Status != "done" || k.Code.Int64 != 201 || compactJSON(k.Headers) != resp.Headers || string(k.Body) != string(resp.Body) {
			t.Fatalf("completed key: %+v", k)
		}
		// A done key is not released.
		if err := d.ReleaseIdempotencyClaim(ctx(t), s.DB, "org", "k", "t1"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "k"); err != nil {
			t.Fatalf("ReleaseIdempotencyClaim removed a done key: %v", err)
		}
	})
	t.Run("Release", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if _, err := d.ClaimIdempotencyKey(ctx(t), s.DB, claim("org", "k", "t1", now())); err != nil {
			t.Fatal(err)
		}
		if err := d.ReleaseIdempotencyClaim(ctx(t), s.DB, "org", "k", "other"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "k"); err != nil {
			t.Fatalf("another token released the claim: %v", err)
		}
		if err := d.ReleaseIdempotencyClaim(ctx(t), s.DB, "org", "k", "t1"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "k"); !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("after release: %v; want sql.ErrNoRows", err)
		}
		if ok, err := d.ClaimIdempotencyKey(ctx(t), s.DB, claim("org", "k", "t2", now())); err != nil || !ok {
			t.Fatalf("claim after release = %v, %v", ok, err)
		}
	})
	t.Run("LeaseTakeOver", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		at := now()
		if _, err := d.ClaimIdempotencyKey(ctx(t), s.DB, claim("org", "k", "t1", at)); err != nil {
			t.Fatal(err)
		}
		// A lease that ran out is taken over once: the second taker
		// names a token that no longer holds the key.
		lease := at.Add(2 * time.Minute)
		if ok, err := d.TakeOverIdempotencyClaim(ctx(t), s.DB, "org", "k", "t1", "t2", lease); err != nil || !ok {
			t.Fatalf("take-over = %v, %v", ok, err)
		}
		if ok, err := d.TakeOverIdempotencyClaim(ctx(t), s.DB, "org", "k", "t1", "t3", lease); err != nil || ok {
			t.Fatalf("a second take-over from the old token = %v, %v", ok, err)
		}
		k, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "k")
		if err != nil || k.Token != "t2" || !k.LeaseUntil.Time.Equal(lease) {
			t.Fatalf("after take-over: %+v, %v", k, err)
		}
		// The first owner can no longer complete or release it.
		if err := d.ReleaseIdempotencyClaim(ctx(t), s.DB, "org", "k", "t1"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "k"); err != nil {
			t.Fatalf("the old token released a taken-over claim: %v", err)
		}
		// A done key is not taken over.
		if err := d.CompleteIdempotencyClaim(ctx(t), s.DB, "org", "k", "t2", driver.IdempotencyResponse{Status: 200, Headers: `{}`}); err != nil {
			t.Fatal(err)
		}
		if ok, err := d.TakeOverIdempotencyClaim(ctx(t), s.DB, "org", "k", "t2", "t4", lease); err != nil || ok {
			t.Fatalf("take-over of a done key = %v, %v", ok, err)
		}
	})
	t.Run("ForgetAndPurge", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		old, recent := now().Add(-48*time.Hour), now()
		for _, c := range []driver.IdempotencyClaim{claim("org", "old", "t1", old), claim("org", "old2", "t2", old), claim("org", "new", "t3", recent)} {
			if _, err := d.ClaimIdempotencyKey(ctx(t), s.DB, c); err != nil {
				t.Fatal(err)
			}
		}
		// Forget deletes the key only if it is still the one created then.
		if err := d.ForgetIdempotencyKey(ctx(t), s.DB, "org", "old", recent); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "old"); err != nil {
			t.Fatalf("Forget with another creation time removed the key: %v", err)
		}
		if err := d.ForgetIdempotencyKey(ctx(t), s.DB, "org", "old", old); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "old"); !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("after Forget: %v; want sql.ErrNoRows", err)
		}
		n, err := d.PurgeIdempotencyKeys(ctx(t), s.DB, recent.Add(-time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("PurgeIdempotencyKeys = %d, %v; want the one old key left", n, err)
		}
		if _, err := d.GetIdempotencyKey(ctx(t), s.DB, "org", "new"); err != nil {
			t.Fatalf("Purge removed a recent key: %v", err)
		}
	})
}
