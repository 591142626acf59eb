package api

import (
	"context"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// HeaderConsistencyToken carries read-your-writes tokens: writes return
// one, reads that send it back wait until the query side has caught up.
const HeaderConsistencyToken = "X-Consistency-Token"

// The token is the global position of the write's last event. The "c1."
// prefix versions the format, so it can change without breaking clients
// that treat it as opaque (as they must).
const tokenPrefix = "c1."

func setConsistencyToken(c echo.Context, pos uint64) {
	if pos > 0 {
		c.Response().Header().Set(HeaderConsistencyToken, tokenPrefix+strconv.FormatUint(pos, 10))
	}
}

// awaitConsistency honours X-Consistency-Token on a read served by the
// given projection.
func (s *Server) awaitConsistency(c echo.Context, projection string) error {
	tok := strings.TrimSpace(c.Request().Header.Get(HeaderConsistencyToken))
	if tok == "" {
		return nil
	}
	pos, ok := parseConsistencyToken(tok)
	if !ok {
		return errBadRequest("X-Consistency-Token is not a token this API returned")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.wait)
	defer cancel()
	return s.d.Waiter.WaitFor(ctx, projection, pos)
}

// parseConsistencyToken reads a token from setConsistencyToken.
func parseConsistencyToken(tok string) (uint64, bool) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return 0, false
	}
	pos, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		return 0, false
	}
	return pos, true
}
