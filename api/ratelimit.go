package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/auth"
)

// rateLimit spends one request of the organization's per-plan budget and
// reports the budget on every authenticated response, errors included. It
// runs after authentication (the budget is the organization's, not the
// client IP's) and before scope checks, so a 403 costs budget too.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.d.Limiter == nil {
			return next(c)
		}
		p := principal(c)
		plan := p.Plan
		limit, ok := s.d.RateLimits[plan]
		if !ok {
			plan, limit = auth.PlanStarter, s.d.RateLimits[auth.PlanStarter]
		}
		if limit <= 0 {
			return next(c)
		}
		res, err := s.d.Limiter.Allow(c.Request().Context(), p.OrgID, limit)
		if err != nil {
			// Limiters fail over internally; an error here means even the
			// in-process budget failed, which must not take the API down.
			s.log.Warn("rate limiter failed; request allowed", "error", err)
			return next(c)
		}
		h := c.Response().Header()
		resetIn := int64(math.Ceil(res.ResetAfter.Seconds()))
		h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Unix()+resetIn, 10))
		// The IETF draft fields (draft-ietf-httpapi-ratelimit-headers).
		h.Set("RateLimit-Policy", fmt.Sprintf("%q;q=%d;w=%d", plan, res.Limit, int(windowSeconds)))
		h.Set("RateLimit", fmt.Sprintf("%q;r=%d;t=%d", plan, res.Remaining, resetIn))
		if !res.Allowed {
			if s.d.Metrics != nil {
				s.d.Metrics.RateLimited.WithLabelValues(plan).Inc()
			}
			e := newError(http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("the %s plan allows %d requests per minute; retry after the time in Retry-After", plan, res.Limit))
			e.RetryAfter = max(1, int(math.Ceil(res.RetryAfter.Seconds())))
			return e
		}
		return next(c)
	}
}

const windowSeconds = 60
