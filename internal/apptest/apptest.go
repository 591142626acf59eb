// Package apptest starts a complete SalesOS (the same wiring as
// `salesos serve`) on a loopback port for end-to-end tests: its own
// migrated PostgreSQL schema, a test OIDC issuer, real signed tokens.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/app"
	"github.com/salesos/salesos/auth/authtest"
	"github.com/salesos/salesos/internal/testdb"
	"github.com/salesos/salesos/webhooks"
)

// Server is a running SalesOS.
type Server struct {
	URL    string
	App    *app.App
	Issuer *authtest.Issuer
	Schema *testdb.Schema
	Client *http.Client
}

// Start runs a server until the test ends. opts may adjust the config.
func Start(t testing.TB, opts ...func(*app.Config)) *Server {
	t.Helper()
	schema := testdb.NewEmpty(t)
	iss := authtest.NewIssuer(t)
	cfg := app.Config{
		Addr:            "127.0.0.1:0",
		DataDir:         t.TempDir(),
		DatabaseURL:     schema.URL,
		Env:             "development",
		OIDCIssuer:      iss.URL,
		OIDCAudience:    iss.Audience,
		TenantClaim:     "org_id",
		PlanClaim:       "plan",
		ConsistencyWait: 5 * time.Second,
		AutoMigrate:     true,
		ShutdownTimeout: 5 * time.Second,
		LogLevel:        "warn",

		WebhookRetrySchedule:   webhooks.DefaultSchedule,
		WebhookDeactivateAfter: 10,
		WebhookAllowPrivate:    true, // test receivers listen on loopback
		WebhookTimeout:         10 * time.Second,
		WebhookConcurrency:     32,

		// Functional tests make many calls per organization; the
		// rate-limit tests set the published limits explicitly.
		RateLimits: map[string]int{"starter": 1_000_000, "professional": 1_000_000, "enterprise": 1_000_000},
	}
	for _, o := range opts {
		o(&cfg)
	}
	return StartWith(t, cfg, schema, iss)
}

// StartWith runs a server with a complete config.
func StartWith(t testing.TB, cfg app.Config, schema *testdb.Schema, iss *authtest.Issuer) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("apptest: open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("apptest: serve: %v", err)
		}
		a.Close()
	})
	return &Server{URL: "http://" + ln.Addr().String(), App: a, Issuer: iss, Schema: schema, Client: &http.Client{Timeout: 30 * time.Second}}
}

// testWriter sends server logs to the test log, shown only on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Response is a decoded response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object (%d): %s", r.Status, r.Body)
	}
	return m
}

// Decode decodes the body into v.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %d %s: %v", r.Status, r.Body, err)
	}
}

// Request describes a call. Body may be nil, a string or []byte (sent
// as-is), or any other value (sent as JSON). ContentType defaults to
// application/json when there is a body.
type Request struct {
	Method      string
	Path        string
	Token       string
	Body        any
	ContentType string
	Header      map[string]string
}

// Do sends a request and reads the whole response.
func (s *Server) Do(t testing.TB, r Request) *Response {
	t.Helper()
	var body io.Reader
	switch b := r.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(r.Method, s.URL+r.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Body != nil {
		ct := r.ContentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// Token is a user token of org with the given scopes.
func (s *Server) Token(t testing.TB, org string, scopes ...string) string {
	return s.Issuer.Token(t, org, scopes...)
}

// AllScopes of the lead and deal routes.
var AllScopes = []string{"read:leads", "write:leads", "read:deals", "write:deals"}
