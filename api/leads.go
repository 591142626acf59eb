package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/projections"
)

// The routes every record kind has are in records.go; these are the
// lead's own: its list filters and conversion.

func (s *Server) listLeads(c echo.Context) error {
	limit, cur, after, err := listCommon(s, c, projections.LeadsName)
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	if status != "" {
		if _, err := domain.ParseLeadStatus(status); err != nil {
			return errValidation(domain.FieldError{Field: "status", Code: domain.CodeInvalidValue, Message: "status must be one of new, contacted, qualified, unqualified, converted"})
		}
	}
	page, err := s.d.Queries.ListLeads(c.Request().Context(), principal(c).OrgID, projections.LeadFilter{
		Status: status, OwnerID: c.QueryParam("owner_id"), Q: c.QueryParam("q"), CreatedAfter: after, Limit: limit, After: cur,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, listResponse(page))
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

// writeRecord answers with a record, its ETag and, after a write, the
// consistency token.
func writeRecord(c echo.Context, status int, record any, version int64, pos uint64) error {
	c.Response().Header().Set("ETag", etag(version))
	setConsistencyToken(c, pos)
	return c.JSON(status, record)
}
