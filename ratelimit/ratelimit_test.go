package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func allow(t *testing.T, l Limiter, key string, n int) Result {
	t.Helper()
	r, err := l.Allow(context.Background(), key, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Every plan: exactly its budget passes at once, then one request per
// minute/limit; a budget left alone refills completely within a minute.
func TestMemoryGCRAForEachPlan(t *testing.T) {
	for _, limit := range []int{100, 500, 2000} {
		c := &clock{t: time.Date(2026, 3, 15, 14, 30, 0, 0, time.UTC)}
		m := NewMemory()
		m.Now = c.now
		for i := 1; i <= limit; i++ {
			r := allow(t, m, "org", limit)
			if !r.Allowed || r.Remaining != limit-i || r.Limit != limit {
				t.Fatalf("limit %d, request %d: %+v", limit, i, r)
			}
		}
		interval := time.Minute / time.Duration(limit)
		r := allow(t, m, "org", limit)
		if r.Allowed || r.Remaining != 0 || r.RetryAfter != interval {
			t.Fatalf("limit %d: over budget: %+v (want retry after %s)", limit, r, interval)
		}
		if r.ResetAfter != time.Minute {
			t.Fatalf("limit %d: reset after %s, want a minute", limit, r.ResetAfter)
		}
		c.advance(interval - time.Nanosecond)
		if allow(t, m, "org", limit).Allowed {
			t.Fatalf("limit %d: allowed before the interval passed", limit)
		}
		c.advance(time.Nanosecond)
		if r := allow(t, m, "org", limit); !r.Allowed || r.Remaining != 0 {
			t.Fatalf("limit %d: after one interval: %+v", limit, r)
		}
		c.advance(time.Minute)
		if r := allow(t, m, "org", limit); !r.Allowed || r.Remaining != limit-1 {
			t.Fatalf("limit %d: after a quiet minute: %+v", limit, r)
		}
		// Other keys have their own budget.
		if r := allow(t, m, "other", limit); r.Remaining != limit-1 {
			t.Fatalf("limit %d: other key: %+v", limit, r)
		}
	}
}

type broken struct{ calls int }

func (b *broken) Allow(context.Context, string, int) (Result, error) {
	b.calls++
	return Result{}, errors.New("connection refused")
}

func TestFallbackUsesSecondaryAndBacksOff(t *testing.T) {
	primary := &broken{}
	errs := 0
	f := &Fallback{Primary: primary, Secondary: NewMemory(), OnError: func() { errs++ }, RetryAfter: time.Hour}
	for i := range 10 {
		r := allow(t, f, "org", 100)
		if !r.Allowed || r.Remaining != 99-i {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	if primary.calls != 1 || errs != 1 {
		t.Fatalf("primary tried %d times (%d errors counted); want once, then left alone", primary.calls, errs)
	}
}
