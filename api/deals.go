package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/projections"
)

func (s *Server) createDeal(c echo.Context) error {
	var in domain.DealInput
	if err := decodeJSON(c, &in, false); err != nil {
		return err
	}
	res, err := s.d.Commands.CreateDeal(c.Request().Context(), meta(c), in)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/deals/"+res.Record.ID)
	return writeRecord(c, http.StatusCreated, res.Record, res.Record.Version, res.Position)
}

func (s *Server) getDeal(c echo.Context) error {
	ctx := c.Request().Context()
	org, id := principal(c).OrgID, c.Param("id")
	at, err := timeParam(c, "as_of")
	if err != nil {
		return err
	}
	if at != nil {
		deal, err := projections.DealAsOf(ctx, s.d.Streams, org, id, *at)
		if err != nil {
			return err
		}
		return writeRecord(c, http.StatusOK, deal, deal.Version, 0)
	}
	if err := s.awaitConsistency(c, projections.DealsName); err != nil {
		return err
	}
	deal, err := s.currentDeal(ctx, org, id)
	if err != nil {
		return err
	}
	return writeRecord(c, http.StatusOK, deal, deal.Version, 0)
}

func (s *Server) listDeals(c echo.Context) error {
	limit, cur, err := listParams(c)
	if err != nil {
		return err
	}
	after, err := timeParam(c, "created_after")
	if err != nil {
		return err
	}
	stage := c.QueryParam("stage")
	if stage != "" {
		if _, err := domain.ParseDealStage(stage); err != nil {
			return errValidation(domain.FieldError{Field: "stage", Code: domain.CodeInvalidValue, Message: "stage must be one of qualification, needs_analysis, proposal, negotiation, won, lost"})
		}
	}
	if err := s.awaitConsistency(c, projections.DealsName); err != nil {
		return err
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

func (s *Server) updateDeal(c echo.Context) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	var patch domain.DealPatch
	if err := decodeJSON(c, &patch, false); err != nil {
		return err
	}
	res, err := s.d.Commands.UpdateDeal(c.Request().Context(), meta(c), c.Param("id"), patch, expected)
	if err != nil {
		return err
	}
	return writeRecord(c, http.StatusOK, res.Record, res.Record.Version, res.Position)
}

func (s *Server) deleteDeal(c echo.Context) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	res, err := s.d.Commands.DeleteDeal(c.Request().Context(), meta(c), c.Param("id"), expected)
	if err != nil {
		return err
	}
	setConsistencyToken(c, res.Position)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) dealHistory(c echo.Context) error {
	h, err := projections.DealHistory(c.Request().Context(), s.d.Streams, principal(c).OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"data": h})
}
