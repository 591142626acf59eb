package api_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/auth/authtest"
	"github.com/salesos/salesos/internal/apptest"
	"github.com/salesos/salesos/internal/testdb"
)

// dbProxy forwards loopback TCP to PostgreSQL and can be cut: Down closes
// every connection through it and refuses new ones (what clients see while
// the database restarts), Up listens again on the same address.
type dbProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newDBProxy(t *testing.T, target string) *dbProxy {
	p := &dbProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Down)
	return p
}

func (p *dbProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *dbProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *dbProxy) Up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// While PostgreSQL is unreachable every /v1 request that needs it answers
// 503 unavailable with Retry-After (never 500), and the server recovers by
// itself when the database is back.
func TestDatabaseOutageIs503AndRecovers(t *testing.T) {
	if apptest.Backend() != "postgres" {
		t.Skip("cuts the PostgreSQL connection; the SQLite and EventStoreDB outages are covered in eventstore")
	}
	schema := testdb.NewEmpty(t)
	u, err := url.Parse(schema.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newDBProxy(t, u.Host)
	u.Host = proxy.addr
	s := apptest.StartWithSchema(t, schema, authtest.NewIssuer(t), func(c *app.Config) { c.DatabaseURL = u.String() })
	tok := s.Issuer.TokenWith(t, authtest.Claims{
		"org_id": newOrg("outage"), "plan": "enterprise",
		"scope": strings.Join(append(apptest.AllScopes, "manage:webhooks", "read:events"), " "),
	})
	before, _ := createLead(t, s, tok, map[string]any{"name": "Before"})
	leadID := before["id"].(string)

	proxy.Down()
	requests := []struct{ method, path string }{
		{http.MethodPost, "/v1/leads"},
		{http.MethodGet, "/v1/leads/" + leadID},
		{http.MethodGet, "/v1/leads"},
		{http.MethodGet, "/v1/leads/" + leadID + "/history"},
		{http.MethodPatch, "/v1/leads/" + leadID},
		{http.MethodPost, "/v1/deals"},
		{http.MethodGet, "/v1/deals"},
		{http.MethodGet, "/v1/webhooks"},
		{http.MethodPost, "/v1/webhooks"},
		{http.MethodGet, "/v1/events"},
	}
	bodies := map[string]any{
		"/v1/leads": map[string]any{"name": "During"}, "/v1/deals": map[string]any{"name": "D"},
		"/v1/webhooks":        map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"lead.created"}},
		"/v1/leads/" + leadID: map[string]any{"title": "CEO"},
	}
	for _, r := range requests {
		var body any
		if r.method != http.MethodGet {
			body = bodies[r.path]
		}
		res := call(t, s, r.method, r.path, tok, body)
		wantError(t, res, http.StatusServiceUnavailable, "unavailable")
		if res.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", r.method, r.path)
		}
	}

	proxy.Up()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		res := call(t, s, http.MethodPost, "/v1/leads", tok, map[string]any{"name": "After"})
		if res.Status == http.StatusCreated {
			break
		}
		if res.Status != http.StatusServiceUnavailable {
			t.Fatalf("after the database came back: %d %s", res.Status, res.Body)
		}
		select {
		case <-deadline:
			t.Fatalf("still %d %s 30s after the database came back", res.Status, res.Body)
		case <-tick.C:
		}
	}
	wantStatus(t, call(t, s, http.MethodGet, "/v1/webhooks", tok, nil), http.StatusOK)
}
