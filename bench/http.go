package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/auth"
)

// The organization every HTTP request acts for.
const httpOrg = "org_bench"

// server is a SalesOS started through app.Open + Serve, the way
// `salesos serve` starts it, with the built-in development issuer.
type server struct {
	app     *app.App
	base    string
	token   string
	client  *http.Client
	dataDir string
	stop    context.CancelFunc
	done    chan error
}

// startServer runs a server on the database at dbURL.
func startServer(ctx context.Context, dbURL string, mods ...func(*app.Config)) (_ *server, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "salesos-bench-")
	if err != nil {
		ln.Close()
		return nil, err
	}
	cfg := app.Config{
		Addr:            ln.Addr().String(), // the dev issuer URL is derived from it
		DataDir:         dir,
		DatabaseURL:     dbURL,
		Env:             "development",
		TenantClaim:     "org_id",
		PlanClaim:       "plan",
		ConsistencyWait: 5 * time.Second,
		AutoMigrate:     true,
		ShutdownTimeout: 10 * time.Second,
		LogLevel:        "warn",
		// RateLimits is left empty on purpose: the bench measures capacity,
		// and one organization would otherwise be limited to its plan's
		// requests per minute (any 429 would show up as an error).
	}
	for _, m := range mods {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &server{
		app: a, base: "http://" + ln.Addr().String(), dataDir: dir, stop: stop, done: make(chan error, 1),
		client: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil, // loopback only, never through a proxy
				MaxIdleConns:        256,
				MaxIdleConnsPerHost: 128,
				IdleConnTimeout:     90 * time.Second,
				DisableCompression:  true,
			},
		},
	}
	go func() { s.done <- a.Serve(sctx, ln) }()
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.token, err = a.DevIssuer.Mint(auth.DevTokenRequest{
		OrgID: httpOrg, Audience: cfg.Audience(),
		Scopes: []string{"read:leads", "write:leads", "read:deals", "write:deals", "manage:webhooks"},
		TTL:    2 * time.Hour,
	})
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// startFresh starts a server on an empty database of target t and
// returns it with the database's URL.
func startFresh(ctx context.Context, t *target) (*server, string, error) {
	dbURL, err := t.freshURL(ctx)
	if err != nil {
		return nil, "", err
	}
	s, err := startServer(ctx, dbURL)
	if err != nil {
		return nil, "", fmt.Errorf("start server: %w", err)
	}
	return s, dbURL, nil
}

// closeLogged stops the server and logs what Serve returned, if anything.
func (s *server) closeLogged(what string) {
	if err := s.close(); err != nil {
		logf("%s: serve: %v", what, err)
	}
}

func (s *server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, _, err := s.do(ctx, http.MethodGet, "/readyz", nil, nil)
		if err == nil && st == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after 30s (status %d, %v)", st, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitProjections waits until every projection of the server has reached
// the head, so no backlog runs during a measurement.
func (s *server) waitProjections(ctx context.Context) error {
	start := time.Now()
	for {
		lag, err := s.app.Runner.Lag(ctx)
		if err != nil {
			return err
		}
		var total uint64
		for _, l := range lag {
			total += l
		}
		if total == 0 {
			logf("http: projections caught up (waited %s)", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Since(start) > 15*time.Minute {
			return fmt.Errorf("projections still behind after 15m: %v", lag)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *server) close() error {
	s.stop()
	err := <-s.done
	s.app.Close()
	s.client.CloseIdleConnections()
	os.RemoveAll(s.dataDir)
	return err
}

// do sends one request with the bench token (for /v1 paths) and reads the
// whole response.
func (s *server) do(ctx context.Context, method, path string, body []byte, hdr map[string]string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if strings.HasPrefix(path, "/v1/") {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, err
}

// leadBody is the JSON body of the n-th POST /v1/leads.
func leadBody(n int) ([]byte, error) { return json.Marshal(leadInput(n)) }

// createLead posts a lead and returns its id and consistency token.
func (s *server) createLead(ctx context.Context, n int) (string, string, error) {
	body, err := leadBody(n)
	if err != nil {
		return "", "", err
	}
	st, hdr, raw, err := s.do(ctx, http.MethodPost, "/v1/leads", body, nil)
	if err != nil {
		return "", "", err
	}
	if st != http.StatusCreated {
		return "", "", fmt.Errorf("POST /v1/leads: %d %s", st, raw)
	}
	var lead struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &lead); err != nil || lead.ID == "" {
		return "", "", fmt.Errorf("POST /v1/leads: no id in %s", raw)
	}
	return lead.ID, hdr.Get("X-Consistency-Token"), nil
}

func tokenPos(tok string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(tok, "c1."), 10, 64)
	return n
}

func runHTTP(ctx context.Context, o *options, t *target, refTPS float64) error {
	// An empty log: the server's projections (and the webhook fan-out)
	// start with no backlog from the catch-up bench.
	s, _, err := startFresh(ctx, t)
	if err != nil {
		return err
	}
	defer s.closeLogged("http")
	logf("http: server on %s (dev issuer %s)", s.base, s.app.DevIssuer.Issuer())
	if err := s.waitProjections(ctx); err != nil {
		return err
	}
	var counter atomic.Int64

	postName, getName := t.name(benchHTTPPost), t.name(benchHTTPGet)
	if o.runs(postName) {
		post := func(ctx context.Context, _ int) (bool, error) {
			body, err := leadBody(int(counter.Add(1)))
			if err != nil {
				return false, err
			}
			st, _, raw, err := s.do(ctx, http.MethodPost, "/v1/leads", body, nil)
			if err != nil {
				return false, err
			}
			if st != http.StatusCreated {
				return false, fmt.Errorf("status %d: %.200s", st, raw)
			}
			return true, nil
		}
		runLoad(ctx, o.concurrency, time.Second, post) // warm-up: connections, discovery, JWKS
		if err := s.waitProjections(ctx); err != nil {
			return err
		}
		logf("%s: %d clients for %s", postName, o.concurrency, o.duration)
		var res *loadResult
		_ = o.profile(postName, func() error {
			res = runLoad(ctx, o.concurrency, o.duration, post)
			return nil
		})
		if err := ctx.Err(); err != nil {
			return err
		}
		if res.firstErr != nil {
			logf("%s: %d errors, first: %v", postName, res.failed, res.firstErr)
		}
		r := result{
			Bench: postName, Backend: t.backend, Concurrency: o.concurrency,
			Ops: res.ok, Errors: res.failed, Seconds: res.elapsed.Seconds(), OpsPerSec: res.opsPerSec(),
			Note: "POST /v1/leads over loopback HTTP/1.1 keep-alive, RS256 bearer token; ops are 201 responses, errors are any other outcome",
		}
		r.setLatencies(&res.lat)
		r.against(benchPgbench, refTPS)
		emit(r)
	}

	if o.runs(getName) {
		ids, tok, err := seedLeads(ctx, s, o, &counter)
		if err != nil {
			return err
		}
		// Read-your-writes: this read waits until the leads projection has
		// applied the newest of the seeded leads.
		st, _, raw, err := s.do(ctx, http.MethodGet, "/v1/leads/"+ids[0], nil, map[string]string{"X-Consistency-Token": tok})
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("consistent read: %d %s %v", st, raw, err)
		}
		if err := s.waitProjections(ctx); err != nil {
			return err
		}
		rngs := make([]*rand.Rand, o.concurrency)
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(uint64(i), 7))
		}
		get := func(ctx context.Context, w int) (bool, error) {
			id := ids[rngs[w].IntN(len(ids))]
			st, _, raw, err := s.do(ctx, http.MethodGet, "/v1/leads/"+id, nil, nil)
			if err != nil {
				return false, err
			}
			if st != http.StatusOK {
				return false, fmt.Errorf("status %d: %.200s", st, raw)
			}
			return true, nil
		}
		runLoad(ctx, o.concurrency, time.Second, get) // warm-up
		logf("%s: %d clients for %s over %d leads", getName, o.concurrency, o.duration, len(ids))
		var res *loadResult
		_ = o.profile(getName, func() error {
			res = runLoad(ctx, o.concurrency, o.duration, get)
			return nil
		})
		if err := ctx.Err(); err != nil {
			return err
		}
		if res.firstErr != nil {
			logf("%s: %d errors, first: %v", getName, res.failed, res.firstErr)
		}
		r := result{
			Bench: getName, Backend: t.backend, Concurrency: o.concurrency,
			Ops: res.ok, Errors: res.failed, Seconds: res.elapsed.Seconds(), OpsPerSec: res.opsPerSec(),
			Note: fmt.Sprintf("GET /v1/leads/{id} over %d existing leads, read from the leads projection", len(ids)),
		}
		r.setLatencies(&res.lat)
		r.bar("p99_ms < 10", r.P99ms < 10)
		emit(r)
	}
	return nil
}

// seedLeads creates o.getLeads leads through the API and returns their ids
// and the consistency token of the last write.
func seedLeads(ctx context.Context, s *server, o *options, counter *atomic.Int64) ([]string, string, error) {
	logf("%s: creating %d leads", benchHTTPGet, o.getLeads)
	var (
		mu      sync.Mutex
		ids     []string
		maxPos  uint64
		maxTok  string
		next    atomic.Int64
		firstMu sync.Mutex
		first   error
		wg      sync.WaitGroup
	)
	for range min(o.concurrency, o.getLeads) {
		wg.Go(func() {
			for next.Add(1) <= int64(o.getLeads) && ctx.Err() == nil {
				id, tok, err := s.createLead(ctx, int(counter.Add(1)))
				if err != nil {
					firstMu.Lock()
					first = errors.Join(first, err)
					firstMu.Unlock()
					return
				}
				mu.Lock()
				ids = append(ids, id)
				if p := tokenPos(tok); p > maxPos {
					maxPos, maxTok = p, tok
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, "", first
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if len(ids) != o.getLeads || maxTok == "" {
		return nil, "", fmt.Errorf("created %d leads, want %d", len(ids), o.getLeads)
	}
	return ids, maxTok, nil
}
