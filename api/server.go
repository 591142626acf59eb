// Package api is the HTTP face of SalesOS: Echo handlers for the public
// REST API, the authentication middleware, request ids, and the single
// mapping from errors to the contract's error body (errors.go).
//
// Handlers never touch storage directly: writes go through commands, list
// and get reads through the projections' query tables, history and as_of
// reads through the event store.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/salesos/salesos/auth"
	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/idempotency"
	"github.com/salesos/salesos/metrics"
	"github.com/salesos/salesos/projections"
	"github.com/salesos/salesos/ratelimit"
	"github.com/salesos/salesos/webhooks"
)

// MaxBodyBytes is the request body limit of every JSON route (1 MB).
const MaxBodyBytes = 1 << 20

// TokenVerifier checks bearer tokens.
type TokenVerifier interface {
	Verify(ctx context.Context, rawToken string) (auth.Principal, error)
}

// ProjectionWaiter blocks until a projection has applied a position.
type ProjectionWaiter interface {
	WaitFor(ctx context.Context, projection string, pos uint64) error
}

// Check is one readiness probe (database, event store, identity provider).
type Check struct {
	Name string
	Run  func(ctx context.Context) error
	// Optional checks report a failure without failing readiness: the
	// service works without them, degraded (Redis for shared rate limits).
	Optional bool
}

// CheckReport is an error a Check returns to say more than "unavailable":
// Reason is shown in the /readyz response (so it must be fit for any
// caller's eyes), and Degraded keeps the instance ready while reporting
// it (the projections with parked events, say).
type CheckReport struct {
	Degraded bool
	Reason   string
}

func (r *CheckReport) Error() string { return r.Reason }

// Deps are the server's collaborators, wired by the composition root.
type Deps struct {
	Commands *commands.Handler
	Queries  projections.Queries
	Streams  eventstore.StreamReader
	Waiter   ProjectionWaiter
	Verifier TokenVerifier
	Checks   []Check
	Logger   *slog.Logger
	// ConsistencyWait caps how long a read with X-Consistency-Token waits
	// for the query side. Default 5s.
	ConsistencyWait time.Duration
	// DevIssuer, when set, is mounted under /_dev/oidc/ (development only).
	DevIssuer http.Handler
	// Webhooks manages subscriptions, deliveries and the event feed.
	Webhooks *webhooks.Store
	// WebhookSender sends the test events of POST /v1/webhooks/{id}/test.
	WebhookSender *webhooks.Sender
	// Limiter and RateLimits enforce the per-plan budgets (nil: no limits).
	Limiter    ratelimit.Limiter
	RateLimits map[string]int
	// Idempotency stores responses of POSTs with an Idempotency-Key.
	Idempotency *idempotency.Store
	// Metrics, when set, records request metrics and serves GET /metrics.
	Metrics *metrics.Metrics
	// BodyTimeout bounds how long a request body may take to arrive
	// (408 request_timeout after it). Default DefaultBodyTimeout.
	BodyTimeout time.Duration
}

// Server is the Echo application.
type Server struct {
	e    *echo.Echo
	d    Deps
	log  *slog.Logger
	wait time.Duration
}

// New builds the server and its routes.
func New(d Deps) *Server {
	s := &Server{d: d, log: d.Logger, wait: d.ConsistencyWait}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.wait <= 0 {
		s.wait = 5 * time.Second
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	bodyWait := d.BodyTimeout
	if bodyWait <= 0 {
		bodyWait = DefaultBodyTimeout
	}
	e.Use(s.requestIDMiddleware, s.accessLog, s.recoverMiddleware, bodyTimeout(bodyWait), bodyLimit(MaxBodyBytes))
	if d.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{})))
	}

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/v1/openapi.json", s.openAPI)
	if d.DevIssuer != nil {
		e.Any("/_dev/oidc/*", contractErrors(d.DevIssuer))
	}

	v1 := e.Group("/v1", s.authenticate, s.rateLimit, requireJSON, s.refuseUnstorable)
	// Every POST honours Idempotency-Key, checked after the scope.
	post := func(path string, h echo.HandlerFunc, scopes ...string) {
		v1.POST(path, h, requireScope(scopes...), s.idempotent)
	}
	s.leads().routes(s, v1, post)
	post("/leads/:id/convert", s.convertLead, "write:leads", "write:deals")
	s.deals().routes(s, v1, post)

	hooks := requireScope("manage:webhooks")
	post("/webhooks", s.createWebhook, "manage:webhooks")
	v1.GET("/webhooks", s.listWebhooks, hooks)
	v1.GET("/webhooks/:id", s.getWebhook, hooks)
	v1.PATCH("/webhooks/:id", s.updateWebhook, hooks)
	v1.DELETE("/webhooks/:id", s.deleteWebhook, hooks)
	post("/webhooks/:id/rotate-secret", s.rotateWebhookSecret, "manage:webhooks")
	post("/webhooks/:id/test", s.testWebhook, "manage:webhooks")
	post("/webhooks/:id/recover", s.recoverDeliveries, "manage:webhooks")
	v1.GET("/webhooks/:id/deliveries", s.listDeliveries, hooks)
	v1.GET("/webhooks/:id/deliveries/:delivery_id", s.getDelivery, hooks)
	post("/webhooks/:id/deliveries/:delivery_id/retry", s.retryDelivery, "manage:webhooks")
	v1.GET("/events", s.listEvents, requireScope("read:events"))

	// Unknown /v1 paths answer 401 to anonymous callers and 404 to
	// authenticated ones, rather than telling strangers what exists.
	v1.Any("/*", func(echo.Context) error { return echo.ErrNotFound })

	s.e = e
	return s
}

// Handler is the server as an http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz runs every dependency check; any failure is 503 with the failing
// checks named in the message.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	results := map[string]string{}
	reasons := map[string]string{}
	var failed []string
	status := "ok"
	for _, ch := range s.d.Checks {
		if err := ch.Run(ctx); err != nil {
			var report *CheckReport
			if errors.As(err, &report) {
				reasons[ch.Name] = report.Reason
				if report.Degraded {
					results[ch.Name] = "degraded"
					status = "degraded"
					s.log.Warn("readiness check degraded", "check", ch.Name, "reason", report.Reason)
					continue
				}
			}
			results[ch.Name] = "unavailable"
			s.log.Warn("readiness check failed", "check", ch.Name, "error", err)
			if ch.Optional {
				status = "degraded"
			} else {
				failed = append(failed, ch.Name)
			}
			continue
		}
		results[ch.Name] = "ok"
	}
	if len(failed) > 0 {
		msg := "not ready: " + joinNames(failed)
		for _, n := range failed {
			if r := reasons[n]; r != "" {
				msg += " (" + n + ": " + r + ")"
			}
		}
		e := newError(http.StatusServiceUnavailable, "unavailable", msg)
		e.RetryAfter = 5
		return e
	}
	body := map[string]any{"status": status, "checks": results}
	if len(reasons) > 0 {
		body["reasons"] = reasons
	}
	return c.JSON(http.StatusOK, body)
}

func joinNames(ns []string) string {
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}

// contractErrors mounts a plain http.Handler (the development issuer) so
// that its error answers, written with http.Error as plain text, leave in
// the contract's JSON error body like every other error: its 4xx and 5xx
// bodies are dropped and the status goes through errorHandler.
func contractErrors(h http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Wrap Echo's response rather than its writer: an error status must
		// not reach Echo, which would then count the response as written.
		w := &errorCatcher{ResponseWriter: c.Response()}
		h.ServeHTTP(w, c.Request())
		if w.status == 0 {
			return nil
		}
		// http.Error set a text/plain type for its own body.
		c.Response().Header().Del(echo.HeaderContentType)
		c.Response().Header().Del("X-Content-Type-Options")
		return echo.NewHTTPError(w.status)
	}
}

// errorCatcher swallows an error status and its body.
type errorCatcher struct {
	http.ResponseWriter
	status int
}

func (w *errorCatcher) WriteHeader(code int) {
	if code >= 400 {
		w.status = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *errorCatcher) Write(p []byte) (int, error) {
	if w.status != 0 {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *errorCatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }
