package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/auth"
	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
)

const (
	ctxRequestID = "salesos.request_id"
	ctxPrincipal = "salesos.principal"
)

// A client's X-Request-Id is kept only if it is safe to echo and log.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

func (s *Server) requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID.MatchString(id) {
			id = newRequestID()
		}
		c.Set(ctxRequestID, id)
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func requestID(c echo.Context) string {
	if id, ok := c.Get(ctxRequestID).(string); ok {
		return id
	}
	return ""
}

// recoverMiddleware turns a panic into a logged 500 with the contract's
// body; the stack goes to the log, never to the client.
func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic in handler", "request_id", requestID(c), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = newError(http.StatusInternalServerError, "internal_error", "something went wrong on our side; include the request_id if you contact support")
			}
		}()
		return next(c)
	}
}

// accessLog writes one structured line per request. It never logs headers,
// so tokens cannot leak into logs.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // write the error response now, so its status is logged
		}
		org := ""
		if p, ok := c.Get(ctxPrincipal).(auth.Principal); ok {
			org = p.OrgID
		}
		elapsed := time.Since(start)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		s.log.Info("request",
			"request_id", requestID(c), "method", c.Request().Method, "route", route,
			"status", c.Response().Status, "org_id", org, "latency_ms", float64(elapsed.Microseconds())/1000)
		if m := s.d.Metrics; m != nil {
			m.Requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(c.Response().Status)).Inc()
			m.RequestDuration.WithLabelValues(route, c.Request().Method).Observe(elapsed.Seconds())
		}
		return nil
	}
}

// bodyLimit refuses bodies over limit with 413: at once when Content-Length
// says so, otherwise when the reader crosses the limit (see decodeJSON).
func bodyLimit(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength > limit {
				return errPayloadTooLarge()
			}
			r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
			return next(c)
		}
	}
}

// requireJSON refuses request bodies that are not application/json.
func requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		hasBody := r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
		if !hasBody {
			return next(c)
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
		if err != nil || mt != echo.MIMEApplicationJSON {
			return newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "request bodies must be sent as Content-Type: application/json")
		}
		return next(c)
	}
}

// authenticate verifies the bearer token and stores the principal.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="salesos"`)
			return newError(http.StatusUnauthorized, "unauthorized", "send an access token: Authorization: Bearer <token>")
		}
		p, err := s.d.Verifier.Verify(c.Request().Context(), strings.TrimSpace(token))
		if err != nil {
			if errors.Is(err, auth.ErrUnauthorized) {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="salesos", error="invalid_token"`)
			}
			return err
		}
		c.Set(ctxPrincipal, p)
		return next(c)
	}
}

// requireScope lets the request through only with every named scope.
func requireScope(scopes ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := principal(c)
			var missing []string
			for _, sc := range scopes {
				if !p.HasScope(sc) {
					missing = append(missing, sc)
				}
			}
			if len(missing) > 0 {
				return newError(http.StatusForbidden, "forbidden", "the access token lacks the scope "+strings.Join(missing, " and "))
			}
			return next(c)
		}
	}
}

func principal(c echo.Context) auth.Principal {
	p, _ := c.Get(ctxPrincipal).(auth.Principal)
	return p
}

// meta is the command metadata of the current request.
func meta(c echo.Context) commands.Meta {
	p := principal(c)
	typ := domain.ActorUser
	if p.Type == auth.ActorClient {
		typ = domain.ActorClient
	}
	return commands.Meta{
		OrgID:     p.OrgID,
		Actor:     domain.Actor{Sub: p.Sub, Type: typ},
		RequestID: requestID(c),
	}
}
