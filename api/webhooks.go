package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/webhooks"
)

func (s *Server) createWebhook(c echo.Context) error {
	var in webhooks.CreateInput
	if err := decodeJSON(c, &in, false); err != nil {
		return err
	}
	ctx, org := c.Request().Context(), principal(c).OrgID
	// Under an Idempotency-Key the id is derived from the key, so a retry
	// that takes over an abandoned attempt finds the subscription that
	// attempt inserted (with its secret) instead of making a second one.
	id, _ := commands.KeyedID(ctx, org, "wh")
	w, err := s.d.Webhooks.CreateWithID(ctx, org, id, in)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/webhooks/"+w.ID)
	return c.JSON(http.StatusCreated, w)
}

func (s *Server) listWebhooks(c echo.Context) error {
	limit, cur, err := listParams(c)
	if err != nil {
		return err
	}
	page, err := s.d.Webhooks.List(c.Request().Context(), principal(c).OrgID, limit, cur)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, listResponse(page))
}

func (s *Server) getWebhook(c echo.Context) error {
	w, err := s.d.Webhooks.Get(c.Request().Context(), principal(c).OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, w)
}

func (s *Server) updateWebhook(c echo.Context) error {
	var p webhooks.Patch
	if err := decodeJSON(c, &p, false); err != nil {
		return err
	}
	w, err := s.d.Webhooks.Update(c.Request().Context(), principal(c).OrgID, c.Param("id"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, w)
}

func (s *Server) deleteWebhook(c echo.Context) error {
	if err := s.d.Webhooks.Delete(c.Request().Context(), principal(c).OrgID, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) rotateWebhookSecret(c echo.Context) error {
	w, err := s.d.Webhooks.RotateSecret(c.Request().Context(), principal(c).OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, w)
}

func (s *Server) listDeliveries(c echo.Context) error {
	limit, cur, err := listParams(c)
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	switch status {
	case "", webhooks.StatusPending, webhooks.StatusDelivered, webhooks.StatusFailed:
	default:
		return errValidation(domain.FieldError{Field: "status", Code: domain.CodeInvalidValue, Message: "status must be pending, delivered or failed"})
	}
	page, err := s.d.Webhooks.ListDeliveries(c.Request().Context(), principal(c).OrgID, c.Param("id"), status, limit, cur)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, listResponse(page))
}

func (s *Server) getDelivery(c echo.Context) error {
	d, err := s.d.Webhooks.GetDelivery(c.Request().Context(), principal(c).OrgID, c.Param("id"), c.Param("delivery_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Server) retryDelivery(c echo.Context) error {
	d, err := s.d.Webhooks.Retry(c.Request().Context(), principal(c).OrgID, c.Param("id"), c.Param("delivery_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, d)
}

type recoverBody struct {
	Since *string `json:"since"`
}

func (s *Server) recoverDeliveries(c echo.Context) error {
	var in recoverBody
	if err := decodeJSON(c, &in, false); err != nil {
		return err
	}
	if in.Since == nil {
		return errValidation(domain.FieldError{Field: "since", Code: domain.CodeRequired, Message: "since is required: re-queue failed deliveries created at or after this time"})
	}
	since, err := time.Parse(time.RFC3339Nano, *in.Since)
	if err != nil {
		return errValidation(domain.FieldError{Field: "since", Code: domain.CodeInvalidFormat, Message: "since must be an RFC 3339 timestamp such as 2026-03-15T14:30:00Z"})
	}
	n, err := s.d.Webhooks.Recover(c.Request().Context(), principal(c).OrgID, c.Param("id"), since)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]int64{"requeued": n})
}

func (s *Server) testWebhook(c echo.Context) error {
	d, err := s.d.Webhooks.SendTest(c.Request().Context(), s.d.WebhookSender, principal(c).OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// Event-feed cursors wrap the global position, versioned like the other
// opaque tokens.
func encodeFeedCursor(pos int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("f1." + strconv.FormatInt(pos, 10)))
}

func decodeFeedCursor(s string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(string(raw), "f1."), 10, 64)
	if err != nil || !strings.HasPrefix(string(raw), "f1.") || n < 0 {
		return 0, false
	}
	return n, true
}

// listEvents is the organization's event feed, oldest first. next_cursor is
// always set once there is a position to continue from, so a polling client
// keeps it and asks again later for what came since.
func (s *Server) listEvents(c echo.Context) error {
	limit, _, err := listParams(c)
	if err != nil {
		return err
	}
	var after int64
	if a := c.QueryParam("after"); a != "" {
		var ok bool
		if after, ok = decodeFeedCursor(a); !ok {
			return errBadRequest("after is not a cursor this API returned")
		}
	}
	var patterns []string
	if t := c.QueryParam("types"); t != "" {
		for _, p := range strings.Split(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				patterns = append(patterns, p)
			}
		}
	}
	items, more, err := s.d.Webhooks.Feed(c.Request().Context(), principal(c).OrgID, after, patterns, limit)
	if err != nil {
		return err
	}
	data := make([]any, 0, len(items))
	last := after
	for _, it := range items {
		data = append(data, json.RawMessage(it.Payload))
		last = it.Position
	}
	var next *string
	if last > 0 {
		cur := encodeFeedCursor(last)
		next = &cur
	}
	return c.JSON(http.StatusOK, map[string]any{"data": data, "has_more": more, "next_cursor": next})
}
