package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// rig is a scenario's server, its load organization's client, what the
// clients were told, and the healthy receiver.
type rig struct {
	srv     *server
	a       *api
	l       *ledger
	healthy *receiver
	others  []*receiver
	key     string // prefix of idempotency keys and request ids
}

func setup(ctx context.Context, sc *scope, behaviours []string, extra ...string) (*rig, error) {
	srv, err := newServer(sc, extra...)
	if err != nil {
		return nil, err
	}
	// Minted before the first start: dev-token creates the signing key
	// in the data directory, which the server then loads.
	tok, err := srv.devToken(ctx, "org_faults", "enterprise")
	if err != nil {
		return nil, err
	}
	if err := srv.start(ctx); err != nil {
		return nil, err
	}
	r := &rig{srv: srv, a: &api{base: srv.base(), token: tok}, l: newLedger(),
		key: strings.NewReplacer("/", "-").Replace(sc.name)}
	for _, b := range append([]string{"healthy"}, behaviours...) {
		rc, err := startReceiver(sc, b)
		if err != nil {
			return nil, err
		}
		if err := rc.subscribe(ctx, r.a); err != nil {
			return nil, err
		}
		if b == "healthy" {
			r.healthy = rc
		} else {
			r.others = append(r.others, rc)
		}
	}
	return r, nil
}

// finish runs the end-of-scenario invariants, with the server up and no
// restart in between.
func finish(ctx context.Context, h *harness, sc *scope, r *rig) []time.Duration {
	checkSettled(ctx, h, sc.name, r.a, r.l)
	checkProjections(ctx, h, sc.name, r.srv)
	checkWrites(ctx, h, sc.name, r.a, r.l)
	lat := checkDeliveries(ctx, h, sc.name, r.a, r.healthy)
	checkAnswers(h, sc.name, r.l)
	return lat
}

// jitter is d ± 40%, so that faults do not line up with the server's
// own periodic work.
func jitter(d time.Duration) time.Duration {
	return d*6/10 + time.Duration(rand.Int64N(int64(d*8/10)+1))
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// 1. kill -9 of the server every few seconds under write load.
func runKill9(ctx context.Context, h *harness, sc *scope) error {
	r, err := setup(ctx, sc, nil)
	if err != nil {
		return err
	}
	ld := startLoad(ctx, r.key, r.a, r.l, h.plan.workers, 100000, 0)
	for range h.plan.kill9Cycles {
		pause(ctx, jitter(h.plan.kill9Every))
		r.srv.kill()
		if err := r.srv.start(ctx); err != nil {
			ld.stop()
			return fmt.Errorf("restart after kill -9: %w", err)
		}
	}
	pause(ctx, h.plan.tail)
	ld.stop()
	h.info(sc.name, "%d kill -9 + restart cycles under %d writers; %d creates and %d patches acknowledged; answers %s",
		h.plan.kill9Cycles, h.plan.workers, len(r.l.acked()), r.l.patches, r.l.tally)
	finish(ctx, h, sc, r)
	return nil
}

// 2. PostgreSQL restarted, then stopped for a while, under write load; the
// server itself is never restarted.
func runPGRestart(ctx context.Context, h *harness, sc *scope) error {
	r, err := setup(ctx, sc, nil)
	if err != nil {
		return err
	}
	ld := startLoad(ctx, r.key, r.a, r.l, h.plan.workers, 100000, 0)
	defer ld.stop()
	// Whatever happens here, the next scenarios find PostgreSQL running.
	defer func() {
		if ctx := context.WithoutCancel(ctx); !sc.pg.Running(ctx) {
			sc.pg.Start(ctx)
		}
	}()
	for range h.plan.pgRestarts {
		pause(ctx, jitter(h.plan.pgEvery))
		if err := sc.pg.Restart(ctx); err != nil {
			return err
		}
	}
	pause(ctx, jitter(h.plan.pgEvery))
	if err := sc.pg.Stop(ctx); err != nil {
		return err
	}
	stopped := time.Now()
	// While PostgreSQL is away, readiness must say so.
	readyDown := 0
	for time.Since(stopped) < h.plan.pgStop && ctx.Err() == nil {
		if status(ctx, r.srv.base()+"/readyz") == http.StatusServiceUnavailable {
			readyDown++
		}
		pause(ctx, 500*time.Millisecond)
	}
	if err := sc.pg.Start(ctx); err != nil {
		return err
	}
	h.check(sc.name, "/readyz reports PostgreSQL stopped", readyDown > 0, "503 on %d probes during the %s stop", readyDown, h.plan.pgStop)
	t0 := time.Now()
	ready := false
	for time.Since(t0) < 30*time.Second && ctx.Err() == nil {
		if status(ctx, r.srv.base()+"/readyz") == http.StatusOK {
			ready = true
			break
		}
		pause(ctx, 200*time.Millisecond)
	}
	h.check(sc.name, "/readyz ready again after PostgreSQL is back, without a restart", ready, "after %s", time.Since(t0).Round(100*time.Millisecond))
	pause(ctx, h.plan.tail)
	ld.stop()
	h.info(sc.name, "%d restarts (-m fast) and one %s stop under %d writers; %d creates and %d patches acknowledged; answers %s",
		h.plan.pgRestarts, h.plan.pgStop, h.plan.workers, len(r.l.acked()), r.l.patches, r.l.tally)
	finish(ctx, h, sc, r)
	return nil
}

// 3. Receivers that hang, reset, answer after 8 s, send 10 MB or always
// fail, next to a healthy one whose latency is reported.
func runWebhooks(ctx context.Context, h *harness, sc *scope) error {
	// The slow receiver answers within the timeout, so it must succeed.
	r, err := setup(ctx, sc, []string{"hang", "reset", "slow", "huge", "fail"},
		"SALESOS_WEBHOOK_TIMEOUT=10s", "SALESOS_WEBHOOK_LEASE=20s")
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	workers := 2
	ld := startLoad(lctx, r.key, r.a, r.l, workers, h.plan.hookOps/workers, 50*time.Millisecond)
	ld.wait()
	h.info(sc.name, "%d creates and %d patches acknowledged at a gentle pace; answers %s", len(r.l.acked()), r.l.patches, r.l.tally)
	lat := finish(ctx, h, sc, r)
	h.info(sc.name, "healthy receiver append→receipt latency over %d events: p50 %s, p99 %s, max %s (next to hostile receivers; no bar asserted yet, #8 sets one)",
		len(lat), percentile(lat, 0.5).Round(time.Millisecond), percentile(lat, 0.99).Round(time.Millisecond), percentile(lat, 1).Round(time.Millisecond))
	var parts []string
	for _, o := range r.others {
		parts = append(parts, fmt.Sprintf("%s=%d", o.behaviour, o.requestCount()))
	}
	h.info(sc.name, "requests received by the hostile receivers: %s", strings.Join(parts, " "))
	return nil
}

// 4. Redis killed with shared rate limits on.
func runRedis(ctx context.Context, h *harness, sc *scope) error {
	rd, err := newRedis(sc)
	if err != nil {
		return err
	}
	if err := rd.start(ctx); err != nil {
		return err
	}
	r, err := setup(ctx, sc, nil, "SALESOS_REDIS_URL="+rd.url())
	if err != nil {
		return err
	}
	// A starter organization has 20 requests a minute here: a burst of 30
	// must be cut.
	burst := func(org string) (ok, limited, other int, err error) {
		tok, err := r.srv.devToken(ctx, org, "starter")
		if err != nil {
			return 0, 0, 0, err
		}
		b := &api{base: r.srv.base(), token: tok}
		for range 30 {
			switch rep := b.do(ctx, http.MethodGet, "/v1/leads?limit=1", nil); rep.status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
			default:
				other++
			}
		}
		return ok, limited, other, nil
	}
	ok, limited, other, err := burst("org_burst_before")
	if err != nil {
		return err
	}
	h.check(sc.name, "limits apply with Redis up", limited > 0 && other == 0, "burst of 30 on a 20/min plan: %d passed, %d got 429, %d other", ok, limited, other)

	ld := startLoad(ctx, r.key, r.a, r.l, h.plan.workers, 100000, 0)
	defer ld.stop()
	pause(ctx, time.Second)
	before, beforeTr := r.l.tally.snapshot()
	rd.kill()
	downAt := time.Now()
	degraded := false
	var body string
	for time.Since(downAt) < h.plan.redisDown && ctx.Err() == nil {
		rep := r.a.do(ctx, http.MethodGet, "/readyz", nil)
		var rz struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		_ = json.Unmarshal(rep.body, &rz)
		if rep.status == http.StatusOK && rz.Status == "degraded" && rz.Checks["redis"] == "unavailable" {
			degraded = true
		}
		body = truncate(string(rep.body), 200)
		pause(ctx, 500*time.Millisecond)
	}
	after, afterTr := r.l.tally.snapshot()
	passed, failed5xx := 0, 0
	for code, n := range after {
		d := n - before[code]
		if code >= 200 && code < 300 {
			passed += d
		}
		if code >= 500 {
			failed5xx += d
		}
	}
	h.check(sc.name, "/readyz says degraded while Redis is down", degraded, "last answer %s", body)
	h.check(sc.name, "requests keep passing while Redis is down", passed > 0 && failed5xx == 0 && afterTr == beforeTr,
		"%d 2xx, %d 5xx, %d without an answer in %s", passed, failed5xx, afterTr-beforeTr, h.plan.redisDown)

	if err := rd.start(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	ready := false
	for time.Since(t0) < 30*time.Second && ctx.Err() == nil {
		rep := r.a.do(ctx, http.MethodGet, "/readyz", nil)
		if rep.status == http.StatusOK && strings.Contains(string(rep.body), `"status":"ok"`) {
			ready = true
			break
		}
		pause(ctx, 250*time.Millisecond)
	}
	h.check(sc.name, "/readyz ok again after Redis restarted", ready, "after %s", time.Since(t0).Round(100*time.Millisecond))
	// Limits come from Redis again: a fresh organization's burst is cut,
	// and the (empty, restarted) Redis holds budgets again.
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rd.port)})
	defer client.Close()
	var keys int64
	for i := range 10 {
		ok, limited, other, err = burst(fmt.Sprintf("org_burst_after_%d", i))
		if err != nil {
			return err
		}
		keys, _ = client.DBSize(ctx).Result()
		if limited > 0 && keys > 0 {
			break
		}
		pause(ctx, time.Second)
	}
	h.check(sc.name, "limits apply again from Redis after it restarted", limited > 0 && other == 0 && keys > 0,
		"burst of 30: %d passed, %d got 429, %d other; Redis holds %d keys", ok, limited, other, keys)
	pause(ctx, h.plan.tail)
	ld.stop()
	h.info(sc.name, "%d creates and %d patches acknowledged; answers %s", len(r.l.acked()), r.l.patches, r.l.tally)
	finish(ctx, h, sc, r)
	return nil
}

func (r *redisServer) dbsize(ctx context.Context) (int64, error) {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port), MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.DBSize(ctx).Result()
}

// 5. SIGTERM under load, with requests provably in flight: each has sent
// its headers with "Expect: 100-continue" and been told to go on (so the
// server is reading it) before the signal, and sends its body after it.
func runSIGTERM(ctx context.Context, h *harness, sc *scope) error {
	r, err := setup(ctx, sc, nil)
	if err != nil {
		return err
	}
	ld := startLoad(ctx, r.key, r.a, r.l, h.plan.workers, 100000, 0)
	defer ld.stop()
	const inflight = 3
	answered, sent := 0, 0
	var notes []string
	var exits []string
	exitOK := true
	for cycle := range h.plan.sigtermCycles {
		pause(ctx, jitter(h.plan.sigtermEvery))
		var reqs []*slowCreate
		for i := range inflight {
			key := fmt.Sprintf("%s-inflight-%d-%d", r.key, cycle, i)
			sr, err := openSlowCreate(r.srv.addr, r.a.token, key)
			if err != nil {
				notes = append(notes, err.Error())
				continue
			}
			reqs = append(reqs, sr)
		}
		sent += len(reqs)
		if err := r.srv.signal(); err != nil {
			return err
		}
		// Let the shutdown begin (the listener closes) before the bodies go.
		pause(ctx, 300*time.Millisecond)
		for _, sr := range reqs {
			rec, err := sr.finish()
			if err != nil {
				if len(notes) < 3 {
					notes = append(notes, err.Error())
				}
				continue
			}
			answered++
			r.l.mu.Lock()
			r.l.records = append(r.l.records, rec)
			r.l.mu.Unlock()
		}
		took, err := r.srv.waitExit(30 * time.Second)
		if err != nil {
			exitOK = false
		}
		exits = append(exits, fmt.Sprintf("%s (%s)", took.Round(100*time.Millisecond), orOK(err)))
		if err := r.srv.start(ctx); err != nil {
			return fmt.Errorf("restart after SIGTERM: %w", err)
		}
	}
	h.check(sc.name, "requests in flight at SIGTERM are answered", answered == sent && sent > 0,
		"%d/%d answered 201%s", answered, sent, samples(notes))
	h.check(sc.name, "the server exits cleanly after SIGTERM", exitOK, "exits after %s", strings.Join(exits, ", "))
	pause(ctx, h.plan.tail)
	ld.stop()
	h.info(sc.name, "%d SIGTERM + restart cycles under %d writers; %d creates and %d patches acknowledged; answers %s",
		h.plan.sigtermCycles, h.plan.workers, len(r.l.acked()), r.l.patches, r.l.tally)
	finish(ctx, h, sc, r)
	return nil
}

func orOK(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

type slowCreate struct {
	conn net.Conn
	br   *bufio.Reader
	body []byte
	key  string
	rid  string
}

// openSlowCreate sends a create's headers and waits for 100 Continue.
func openSlowCreate(addr, token, key string) (*slowCreate, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(createBody("leads", key))
	rid := newRequestID("s")
	fmt.Fprintf(conn, "POST /v1/leads HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Idempotency-Key: %s\r\nX-Request-Id: %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", addr, token, key, rid, len(body))
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("in-flight create: no 100 Continue: %w", err)
	}
	if resp.StatusCode != http.StatusContinue {
		conn.Close()
		return nil, fmt.Errorf("in-flight create: %d instead of 100 Continue", resp.StatusCode)
	}
	return &slowCreate{conn: conn, br: br, body: body, key: key, rid: rid}, nil
}

func (s *slowCreate) finish() (*record, error) {
	defer s.conn.Close()
	s.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.conn.Write(s.body); err != nil {
		return nil, fmt.Errorf("in-flight create %s: body not accepted: %w", s.key, err)
	}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return nil, fmt.Errorf("in-flight create %s: no answer: %w", s.key, err)
	}
	defer resp.Body.Close()
	var obj struct {
		ID      string `json:"id"`
		Version int    `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&obj); err != nil || resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("in-flight create %s: %d", s.key, resp.StatusCode)
	}
	return &record{kind: "leads", id: obj.ID, key: s.key, version: obj.Version, created: []string{s.rid}}, nil
}
