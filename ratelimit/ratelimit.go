// Package ratelimit enforces the per-plan request budgets of the API.
//
// Budgets are per organization and use GCRA (the generic cell rate
// algorithm): a plan of N requests per minute allows a burst of N and then
// one request every minute/N, so a client that paces itself never sees a
// 429 and one that bursts learns exactly when to come back.
//
// With several API instances the budget must be shared: Redis keeps it
// (github.com/go-redis/redis_rate, the same algorithm in a Lua script).
// Without Redis, or while Redis is unreachable, each instance keeps its own
// budget in memory: the API fails open to per-instance limits rather than
// going down with Redis.
package ratelimit

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Window is the period every plan's budget refers to.
const Window = time.Minute

// Result of one request against a budget.
type Result struct {
	Allowed   bool
	Limit     int
	Remaining int
	// RetryAfter is how long to wait before a denied request would pass.
	RetryAfter time.Duration
	// ResetAfter is how long until the budget is full again.
	ResetAfter time.Duration
}

// Limiter takes one request from key's budget of perMinute requests.
type Limiter interface {
	Allow(ctx context.Context, key string, perMinute int) (Result, error)
}

// Memory is an in-process GCRA limiter.
type Memory struct {
	// Now is the clock; defaults to time.Now.
	Now func() time.Time

	mu    sync.Mutex
	tat   map[string]time.Time // theoretical arrival time per key
	calls int
}

// NewMemory returns an empty in-process limiter.
func NewMemory() *Memory { return &Memory{tat: map[string]time.Time{}} }

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, perMinute int) (Result, error) {
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	interval := Window / time.Duration(perMinute)
	burst := time.Duration(perMinute) * interval // the whole window

	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.calls%4096 == 0 {
		m.prune(now)
	}
	tat := m.tat[key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	allowAt := next.Add(-burst)
	if now.Before(allowAt) {
		return Result{
			Allowed: false, Limit: perMinute, Remaining: 0,
			RetryAfter: allowAt.Sub(now), ResetAfter: tat.Sub(now),
		}, nil
	}
	m.tat[key] = next
	remaining := int(math.Floor(float64(now.Sub(next.Add(-burst))) / float64(interval)))
	return Result{
		Allowed: true, Limit: perMinute, Remaining: max(0, min(remaining, perMinute-1)),
		ResetAfter: next.Sub(now),
	}, nil
}

// prune forgets keys whose budget is full again.
func (m *Memory) prune(now time.Time) {
	for k, t := range m.tat {
		if t.Before(now) {
			delete(m.tat, k)
		}
	}
}

// Redis is a limiter whose budgets live in Redis, shared by every instance.
type Redis struct {
	l *redis_rate.Limiter
}

// NewRedis returns a limiter on the given client.
func NewRedis(rdb *redis.Client) *Redis { return &Redis{l: redis_rate.NewLimiter(rdb)} }

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, perMinute int) (Result, error) {
	res, err := r.l.Allow(ctx, "salesos:ratelimit:"+key, redis_rate.PerMinute(perMinute))
	if err != nil {
		return Result{}, err
	}
	out := Result{Allowed: res.Allowed > 0, Limit: perMinute, Remaining: res.Remaining, ResetAfter: res.ResetAfter}
	if !out.Allowed {
		out.RetryAfter = res.RetryAfter
	}
	return out, nil
}

// Fallback uses Primary and, when it fails, Secondary: a broken Redis
// degrades to per-instance budgets instead of failing requests. After a
// failure the primary is left alone for RetryAfter (default 5s), so an
// unreachable Redis does not add a timeout to every request. OnError is
// called for every primary failure (a metric); warnings are logged at most
// once per minute.
type Fallback struct {
	Primary, Secondary Limiter
	Logger             *slog.Logger
	OnError            func()
	// Timeout of one primary call (default 250ms) and the pause after a
	// failure before trying the primary again (default 5s).
	Timeout, RetryAfter time.Duration

	mu        sync.Mutex
	warned    time.Time
	downUntil time.Time
}

// Allow implements Limiter.
func (f *Fallback) Allow(ctx context.Context, key string, perMinute int) (Result, error) {
	f.mu.Lock()
	down := time.Now().Before(f.downUntil)
	f.mu.Unlock()
	if !down {
		ctx2, cancel := context.WithTimeout(ctx, cmp.Or(f.Timeout, 250*time.Millisecond))
		res, err := f.Primary.Allow(ctx2, key, perMinute)
		cancel()
		if err == nil {
			return res, nil
		}
		if f.OnError != nil {
			f.OnError()
		}
		f.mu.Lock()
		f.downUntil = time.Now().Add(cmp.Or(f.RetryAfter, 5*time.Second))
		if time.Since(f.warned) > time.Minute {
			f.warned = time.Now()
			if f.Logger != nil {
				f.Logger.Warn("rate limiter: shared budget store unreachable; using per-instance budgets", "error", err)
			}
		}
		f.mu.Unlock()
	}
	return f.Secondary.Allow(ctx, key, perMinute)
}
