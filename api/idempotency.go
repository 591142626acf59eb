package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/idempotency"
)

// HeaderIdempotencyKey makes a POST safe to retry.
const HeaderIdempotencyKey = "Idempotency-Key"

// replayedHeaders are kept with a stored response and sent again on replay.
var replayedHeaders = []string{echo.HeaderContentType, echo.HeaderLocation, "ETag", HeaderConsistencyToken}

// idempotent is route middleware for POSTs (after the scope check, so a
// token lacking the scope cannot read a stored response).
func (s *Server) idempotent(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := c.Request().Header.Get(HeaderIdempotencyKey)
		if key == "" || s.d.Idempotency == nil {
			return next(c)
		}
		if len(key) > 255 || !printableASCII(key) {
			return errBadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters")
		}
		body, err := readBody(c)
		if err != nil {
			return err
		}
		c.Request().Body = io.NopCloser(bytes.NewReader(body))

		ctx := c.Request().Context()
		org := principal(c).OrgID
		fp := idempotency.Fingerprint(c.Request().Method, c.Request().URL.Path, body)
		claim, err := s.d.Idempotency.Claim(ctx, org, key, fp)
		var inProgress *idempotency.InProgressError
		switch {
		case errors.Is(err, idempotency.ErrKeyReused):
			return newError(http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was already used with a different request; use a new key for a new request")
		case errors.As(err, &inProgress):
			e := newError(http.StatusConflict, "conflict", "a request with this Idempotency-Key is still being processed; retry shortly")
			e.RetryAfter = max(1, int(math.Ceil(inProgress.RetryAfter.Seconds())))
			return e
		case err != nil:
			return err
		case claim.Replay != nil:
			for k, v := range claim.Replay.Header {
				c.Response().Header()[k] = v
			}
			c.Response().Header().Set("Idempotent-Replayed", "true")
			c.Response().WriteHeader(claim.Replay.Status)
			_, err := c.Response().Write(claim.Replay.Body)
			return err
		}

		// We own the key: run the request, capturing what is written. The
		// commands derive the ids they create from the key (so a takeover
		// finds what an abandoned attempt committed; see
		// commands.Idempotency).
		c.SetRequest(c.Request().WithContext(commands.WithIdempotency(ctx, commands.Idempotency{
			Key: key, Fingerprint: fp, Recover: claim.TakeOver,
		})))
		rec := &captureWriter{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rec
		if err := next(c); err != nil {
			c.Error(err)
		}
		// Store even if the client went away: its retry must see this. If
		// storing fails, the claim's lease runs out and a retry recovers
		// the outcome from the events.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		status := c.Response().Status
		if status >= 500 {
			if err := s.d.Idempotency.ReleaseClaim(sctx, claim); err != nil {
				s.log.Error("idempotency: release key (the key's lease frees it)", "request_id", requestID(c), "error", err)
			}
			return nil
		}
		h := http.Header{}
		for _, name := range replayedHeaders {
			if v := c.Response().Header().Get(name); v != "" {
				h.Set(name, v)
			}
		}
		if err := s.d.Idempotency.CompleteClaim(sctx, claim, idempotency.Response{Status: status, Header: h, Body: rec.buf.Bytes()}); err != nil {
			s.log.Error("idempotency: store response (the key's lease frees it)", "request_id", requestID(c), "error", err)
		}
		return nil
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// captureWriter copies the body written through it.
type captureWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *captureWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	return w.ResponseWriter.Write(p)
}
