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
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/auth"
	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/projections"
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
}

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
	e.Use(s.requestIDMiddleware, s.accessLog, s.recoverMiddleware, bodyLimit(MaxBodyBytes))

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if d.DevIssuer != nil {
		e.Any("/_dev/oidc/*", echo.WrapHandler(d.DevIssuer))
	}

	v1 := e.Group("/v1", s.authenticate, requireJSON)
	v1.POST("/leads", s.createLead, requireScope("write:leads"))
	v1.GET("/leads", s.listLeads, requireScope("read:leads"))
	v1.GET("/leads/:id", s.getLead, requireScope("read:leads"))
	v1.PATCH("/leads/:id", s.updateLead, requireScope("write:leads"))
	v1.DELETE("/leads/:id", s.deleteLead, requireScope("write:leads"))
	v1.POST("/leads/:id/convert", s.convertLead, requireScope("write:leads", "write:deals"))
	v1.GET("/leads/:id/history", s.leadHistory, requireScope("read:leads"))

	v1.POST("/deals", s.createDeal, requireScope("write:deals"))
	v1.GET("/deals", s.listDeals, requireScope("read:deals"))
	v1.GET("/deals/:id", s.getDeal, requireScope("read:deals"))
	v1.PATCH("/deals/:id", s.updateDeal, requireScope("write:deals"))
	v1.DELETE("/deals/:id", s.deleteDeal, requireScope("write:deals"))
	v1.GET("/deals/:id/history", s.dealHistory, requireScope("read:deals"))

	hooks := requireScope("manage:webhooks")
	v1.POST("/webhooks", s.createWebhook, hooks)
	v1.GET("/webhooks", s.listWebhooks, hooks)
	v1.GET("/webhooks/:id", s.getWebhook, hooks)
	v1.PATCH("/webhooks/:id", s.updateWebhook, hooks)
	v1.DELETE("/webhooks/:id", s.deleteWebhook, hooks)
	v1.POST("/webhooks/:id/rotate-secret", s.rotateWebhookSecret, hooks)
	v1.POST("/webhooks/:id/test", s.testWebhook, hooks)
	v1.POST("/webhooks/:id/recover", s.recoverDeliveries, hooks)
	v1.GET("/webhooks/:id/deliveries", s.listDeliveries, hooks)
	v1.GET("/webhooks/:id/deliveries/:delivery_id", s.getDelivery, hooks)
	v1.POST("/webhooks/:id/deliveries/:delivery_id/retry", s.retryDelivery, hooks)
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
	var failed []string
	for _, ch := range s.d.Checks {
		if err := ch.Run(ctx); err != nil {
			results[ch.Name] = "unavailable"
			failed = append(failed, ch.Name)
			s.log.Warn("readiness check failed", "check", ch.Name, "error", err)
			continue
		}
		results[ch.Name] = "ok"
	}
	if len(failed) > 0 {
		e := newError(http.StatusServiceUnavailable, "unavailable", "not ready: "+joinNames(failed))
		e.RetryAfter = 5
		return e
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ok", "checks": results})
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
