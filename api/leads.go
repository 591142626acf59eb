package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/projections"
)

func (s *Server) createLead(c echo.Context) error {
	var in domain.LeadInput
	if err := decodeJSON(c, &in, false); err != nil {
		return err
	}
	res, err := s.d.Commands.CreateLead(c.Request().Context(), meta(c), in)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/leads/"+res.Record.ID)
	return writeRecord(c, http.StatusCreated, res.Record, res.Record.Version, res.Position)
}

func (s *Server) getLead(c echo.Context) error {
	ctx := c.Request().Context()
	org, id := principal(c).OrgID, c.Param("id")
	at, err := timeParam(c, "as_of")
	if err != nil {
		return err
	}
	if at != nil {
		lead, err := projections.LeadAsOf(ctx, s.d.Streams, org, id, *at)
		if err != nil {
			return err
		}
		return writeRecord(c, http.StatusOK, lead, lead.Version, 0)
	}
	if err := s.awaitConsistency(c, projections.LeadsName); err != nil {
		return err
	}
	lead, err := s.currentLead(ctx, org, id)
	if err != nil {
		return err
	}
	return writeRecord(c, http.StatusOK, lead, lead.Version, 0)
}

func (s *Server) listLeads(c echo.Context) error {
	limit, cur, err := listParams(c)
	if err != nil {
		return err
	}
	after, err := timeParam(c, "created_after")
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	if status != "" {
		if _, err := domain.ParseLeadStatus(status); err != nil {
			return errValidation(domain.FieldError{Field: "status", Code: domain.CodeInvalidValue, Message: "status must be one of new, contacted, qualified, unqualified, converted"})
		}
	}
	if err := s.awaitConsistency(c, projections.LeadsName); err != nil {
		return err
	}
	page, err := s.d.Queries.ListLeads(c.Request().Context(), principal(c).OrgID, projections.LeadFilter{
		Status: status, OwnerID: c.QueryParam("owner_id"), Q: c.QueryParam("q"), CreatedAfter: after, Limit: limit, After: cur,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, listResponse(page))
}

func (s *Server) updateLead(c echo.Context) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	var patch domain.LeadPatch
	if err := decodeJSON(c, &patch, false); err != nil {
		return err
	}
	res, err := s.d.Commands.UpdateLead(c.Request().Context(), meta(c), c.Param("id"), patch, expected)
	if err != nil {
		return err
	}
	return writeRecord(c, http.StatusOK, res.Record, res.Record.Version, res.Position)
}

func (s *Server) deleteLead(c echo.Context) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	res, err := s.d.Commands.DeleteLead(c.Request().Context(), meta(c), c.Param("id"), expected)
	if err != nil {
		return err
	}
	setConsistencyToken(c, res.Position)
	return c.NoContent(http.StatusNoContent)
}

// convertBody is the optional body of POST /v1/leads/{id}/convert.
type convertBody struct {
	Deal domain.ConvertDealInput `json:"deal"`
}

func (s *Server) convertLead(c echo.Context) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	var in convertBody
	if err := decodeJSON(c, &in, true); err != nil {
		return err
	}
	conv, err := s.d.Commands.ConvertLead(c.Request().Context(), meta(c), c.Param("id"), in.Deal, expected)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/deals/"+conv.Deal.ID)
	setConsistencyToken(c, conv.Position)
	return c.JSON(http.StatusCreated, map[string]any{"lead": conv.Lead, "deal": conv.Deal})
}

func (s *Server) leadHistory(c echo.Context) error {
	h, err := projections.LeadHistory(c.Request().Context(), s.d.Streams, principal(c).OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"data": h})
}

// writeRecord answers with a record, its ETag and, after a write, the
// consistency token.
func writeRecord(c echo.Context, status int, record any, version int64, pos uint64) error {
	c.Response().Header().Set("ETag", etag(version))
	setConsistencyToken(c, pos)
	return c.JSON(status, record)
}
