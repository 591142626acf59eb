// Package apptest starts a complete SalesOS (the same wiring as
// `salesos serve`) on a loopback port for end-to-end tests: its own
// migrated PostgreSQL schema, a test OIDC issuer, real signed tokens.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/salesos/salesos/api"
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
	stop   func()
}

// Start runs a server until the test ends. opts may adjust the config.
func Start(t testing.TB, opts ...func(*app.Config)) *Server {
	t.Helper()
	return StartWithSchema(t, testdb.NewEmpty(t), authtest.NewIssuer(t), opts...)
}

// StartWithSchema runs a server on an existing schema and issuer: several
// calls with the same ones are several instances of one deployment.
func StartWithSchema(t testing.TB, schema *testdb.Schema, iss *authtest.Issuer, opts ...func(*app.Config)) *Server {
	t.Helper()
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
		// Many servers run at once in a test binary; PostgreSQL allows 100
		// connections in all.
		DBMaxConns: 10,
	}
	useBackend(t, &cfg)
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
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("apptest: serve: %v", err)
			}
			a.Close()
		})
	}
	t.Cleanup(stop)
	return &Server{URL: "http://" + ln.Addr().String(), App: a, Issuer: iss, Schema: schema, Client: &http.Client{Timeout: 30 * time.Second}, stop: stop}
}

// Stop shuts the server down as SIGTERM does and returns when Serve has
// returned (the test's cleanup does the same if Stop was not called).
func (s *Server) Stop() { s.stop() }

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
	// SkipOpenAPI turns off validation against the OpenAPI document. Use it
	// only for traffic that is outside the API on purpose (such as the
	// development issuer under /_dev/oidc/), with a comment saying why.
	SkipOpenAPI bool
}

// Do sends a request and reads the whole response.
func (s *Server) Do(t testing.TB, r Request) *Response {
	t.Helper()
	var raw []byte
	switch b := r.Body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	var body io.Reader
	if r.Body != nil {
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
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: respBody}
	if !r.SkipOpenAPI {
		checkOpenAPI(t, req, raw, r.Body != nil, out)
	}
	return out
}

// Token is a user token of org with the given scopes.
func (s *Server) Token(t testing.TB, org string, scopes ...string) string {
	return s.Issuer.Token(t, org, scopes...)
}

// AllScopes of the lead and deal routes.
var AllScopes = []string{"read:leads", "write:leads", "read:deals", "write:deals"}

// openAPIValidator holds what checking traffic against the OpenAPI document
// needs; it is built once per test binary.
type openAPIValidator struct {
	router      routers.Router
	errorSchema *openapi3.Schema
}

var loadOpenAPIValidator = sync.OnceValues(func() (*openAPIValidator, error) {
	doc, err := api.OpenAPIDocument()
	if err != nil {
		return nil, err
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi router: %w", err)
	}
	ref := doc.Components.Schemas["Error"]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("openapi: the document has no Error schema")
	}
	return &openAPIValidator{router: router, errorSchema: ref.Value}, nil
})

// checkOpenAPI validates one exchange against the OpenAPI document and
// reports every mismatch with t.Errorf.
//
// The response must always match the document: a documented status of the
// operation, its headers and its body schema. The request is validated too,
// but a request the document does not allow is not itself a failure, since
// many tests send invalid requests on purpose (malformed JSON, unknown
// fields, wrong content types, oversized bodies, bad parameters). For such a
// request the server must answer with a 4xx error the operation documents.
// Requests to routes the document does not have (unknown paths or methods)
// must likewise be answered with a 4xx error body.
func checkOpenAPI(t testing.TB, sent *http.Request, body []byte, hasBody bool, resp *Response) {
	t.Helper()
	where := fmt.Sprintf("%s %s -> %d", sent.Method, sent.URL.RequestURI(), resp.Status)
	v, err := loadOpenAPIValidator()
	if err != nil {
		t.Errorf("openapi: %s: cannot validate: %v", where, err)
		return
	}
	var rb io.Reader
	if hasBody {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequest(sent.Method, sent.URL.String(), rb)
	if err != nil {
		t.Errorf("openapi: %s: %v", where, err)
		return
	}
	req.Header = sent.Header.Clone()
	ctx := context.Background()

	route, params, err := v.router.FindRoute(req)
	if err != nil {
		if resp.Status < 400 || resp.Status > 499 {
			t.Errorf("openapi: %s: the document has no such operation (%v), yet the server answered %d instead of a 4xx error", where, err, resp.Status)
			return
		}
		if err := v.checkErrorBody(sent.Method, resp); err != nil {
			t.Errorf("openapi: %s: undocumented route: %v", where, err)
		}
		return
	}

	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			// Authentication is tested on its own; here only the shape of
			// the traffic matters.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	reqErr := openapi3filter.ValidateRequest(ctx, in)

	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.Status,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(resp.Body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("openapi: %s: the response does not match the document: %v", where, err)
	}
	if reqErr != nil {
		if resp.Status < 400 || resp.Status > 499 {
			t.Errorf("openapi: %s: the request does not match the document (%v), yet the server answered %d instead of a 4xx error", where, reqErr, resp.Status)
		} else if err := v.checkErrorBody(sent.Method, resp); err != nil {
			t.Errorf("openapi: %s: invalid request answered without the error body: %v", where, err)
		}
	}
}

// CheckOpenAPI validates an exchange made without Do (a hand-built request,
// or one sent from a goroutine) like Do validates its own: body is the
// request body that was sent, nil for none. It is safe for concurrent use.
func CheckOpenAPI(t testing.TB, req *http.Request, body []byte, resp *Response) {
	t.Helper()
	checkOpenAPI(t, req, body, body != nil, resp)
}

// checkErrorBody checks that an error response has the contract's error
// body (HEAD answers have no body).
func (v *openAPIValidator) checkErrorBody(method string, resp *Response) error {
	if resp.Header.Get("X-Request-Id") == "" {
		return fmt.Errorf("no X-Request-Id header")
	}
	if method == http.MethodHead {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return fmt.Errorf("Content-Type %q, want application/json", resp.Header.Get("Content-Type"))
	}
	var doc any
	if err := json.Unmarshal(resp.Body, &doc); err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	if err := v.errorSchema.VisitJSON(doc, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("body does not match the Error schema: %v", err)
	}
	return nil
}
