package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/auth"
	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/eventstore"
	"github.com/salesos/salesos/projections"
)

// Error is the contract's error body. It is the only shape a non-2xx
// response ever has.
type Error struct {
	Status    int                 `json:"-"`
	Code      string              `json:"code"`
	Message   string              `json:"message"`
	Details   []domain.FieldError `json:"details"`
	RequestID string              `json:"request_id"`
	// RetryAfter, when set, becomes the Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func newError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg, Details: []domain.FieldError{}}
}

func errBadRequest(msg string) *Error { return newError(http.StatusBadRequest, "bad_request", msg) }
func errPayloadTooLarge() *Error {
	return newError(http.StatusRequestEntityTooLarge, "payload_too_large", "the request body is larger than 1 MB")
}
func errNotFound(what string) *Error {
	return newError(http.StatusNotFound, "not_found", what+" not found")
}
func errRequestTimeout() *Error {
	return newError(http.StatusRequestTimeout, "request_timeout", "the request body did not arrive in time; send it again on a new connection")
}
func errValidation(details ...domain.FieldError) *Error {
	e := newError(http.StatusUnprocessableEntity, "validation_failed", "the request has invalid fields")
	e.Details = details
	return e
}

// toError is the single place where errors become HTTP statuses and codes.
func toError(err error) *Error {
	var apiErr *Error
	var he *echo.HTTPError
	var ve *domain.ValidationError
	switch {
	case errors.As(err, &apiErr):
		if apiErr.Details == nil {
			apiErr.Details = []domain.FieldError{}
		}
		return apiErr
	case errors.As(err, &ve):
		return errValidation(ve.Details...)
	case errors.Is(err, domain.ErrNotFound):
		return errNotFound("record")
	case errors.Is(err, commands.ErrPreconditionFailed):
		return newError(http.StatusPreconditionFailed, "precondition_failed", "the record has changed since the version given in If-Match")
	case errors.Is(err, domain.ErrConflict), errors.Is(err, commands.ErrConflict):
		return newError(http.StatusConflict, "conflict", conflictMessage(err))
	case errors.Is(err, auth.ErrUnauthorized):
		return newError(http.StatusUnauthorized, "unauthorized", "missing or invalid access token")
	case errors.Is(err, auth.ErrUnavailable):
		e := newError(http.StatusServiceUnavailable, "unavailable", "the identity provider cannot be reached; retry shortly")
		e.RetryAfter = 5
		return e
	case errors.Is(err, projections.ErrNotCaughtUp):
		e := newError(http.StatusServiceUnavailable, "unavailable", "the query side has not caught up with your write yet; retry shortly")
		e.RetryAfter = 1
		return e
	case eventstore.IsUnavailable(err):
		// A database or the event store is away (refused or lost
		// connections, a lock held past the busy timeout, EventStoreDB
		// not answering): the request itself is fine and may be retried.
		e := newError(http.StatusServiceUnavailable, "unavailable", "a database or the event store cannot be reached right now; retry shortly")
		e.RetryAfter = 2
		return e
	case errors.As(err, &he):
		return fromEchoError(he)
	case errors.Is(err, context.DeadlineExceeded):
		e := newError(http.StatusServiceUnavailable, "unavailable", "a dependency did not answer in time; retry shortly")
		e.RetryAfter = 1
		return e
	}
	return newError(http.StatusInternalServerError, "internal_error", "something went wrong on our side; include the request_id if you contact support")
}

func conflictMessage(err error) string {
	if errors.Is(err, domain.ErrConflict) {
		// Domain conflicts carry a message written for clients
		// ("conflict: lead is already converted").
		return err.Error()
	}
	return "the request conflicts with the current state of the record"
}

// fromEchoError maps Echo's own errors (routing, body limit, binding) so its
// default body shape never reaches a client.
func fromEchoError(he *echo.HTTPError) *Error {
	switch he.Code {
	case http.StatusNotFound:
		return newError(http.StatusNotFound, "not_found", "no such route")
	case http.StatusMethodNotAllowed:
		return newError(http.StatusMethodNotAllowed, "method_not_allowed", "this route does not support that method")
	case http.StatusRequestEntityTooLarge:
		return errPayloadTooLarge()
	case http.StatusUnsupportedMediaType:
		return newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "request bodies must be application/json")
	case http.StatusUnauthorized:
		return newError(http.StatusUnauthorized, "unauthorized", "missing or invalid access token")
	case http.StatusBadRequest:
		return errBadRequest(fmt.Sprint(he.Message))
	}
	if he.Code >= 500 {
		return newError(http.StatusInternalServerError, "internal_error", "something went wrong on our side; include the request_id if you contact support")
	}
	return newError(he.Code, http.StatusText(he.Code), fmt.Sprint(he.Message))
}

// errorHandler is Echo's HTTPErrorHandler: every error, from handlers,
// middleware or the router, leaves through here.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := toError(err)
	e.RequestID = requestID(c)
	if e.Status >= 500 {
		s.log.Error("request failed", "request_id", e.RequestID, "method", c.Request().Method, "route", c.Path(), "error", err)
	}
	if e.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(e.Status)
	} else {
		werr = c.JSON(e.Status, e)
	}
	if werr != nil {
		s.log.Warn("writing error response", "request_id", e.RequestID, "error", werr)
	}
}
