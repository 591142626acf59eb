package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/projections"
)

// The routes every record kind has are in records.go; this is the deal's
// own list with its filters.

func (s *Server) listDeals(c echo.Context) error {
	limit, cur, after, err := listCommon(s, c, projections.DealsName)
	if err != nil {
		return err
	}
	stage := c.QueryParam("stage")
	if stage != "" {
		if _, err := domain.ParseDealStage(stage); err != nil {
			return errValidation(domain.FieldError{Field: "stage", Code: domain.CodeInvalidValue, Message: "stage must be one of qualification, needs_analysis, proposal, negotiation, won, lost"})
		}
	}
	page, err := s.d.Queries.ListDeals(c.Request().Context(), principal(c).OrgID, projections.DealFilter{
		Stage: stage, OwnerID: c.QueryParam("owner_id"), LeadID: c.QueryParam("lead_id"), Q: c.QueryParam("q"),
		CreatedAfter: after, Limit: limit, After: cur,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, listResponse(page))
}
