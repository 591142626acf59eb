package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/projections"
)

// recordKind is what the routes every record kind has (create, list, get,
// patch, delete, history) need to know about one kind. Each kind fills one
// in (leads.go, deals.go) with what really differs: its input and patch
// types, its list filters, its commands; the handlers are written once.
type recordKind[R any, I any, P any] struct {
	// name is the path segment and the scope suffix: "leads" serves
	// /v1/leads under read:leads and write:leads.
	name string
	// projection is the query table that lists read from (for
	// X-Consistency-Token).
	projection string
	id         func(R) string
	version    func(R) int64
	stream     func(id string) string
	fold       func(id string, envs []envelope.Envelope) (R, error)
	get        func(ctx context.Context, orgID, id string) (R, error)
	asOf       func(ctx context.Context, orgID, id string, at time.Time) (R, error)
	history    func(ctx context.Context, orgID, id string) ([]projections.HistoryEntry, error)
	create     func(ctx context.Context, m commands.Meta, in I) (commands.Result[R], error)
	update     func(ctx context.Context, m commands.Meta, id string, patch P, ifMatch *int64) (commands.Result[R], error)
	remove     func(ctx context.Context, m commands.Meta, id string, ifMatch *int64) (commands.Result[R], error)
	list       func(s *Server, c echo.Context) error
}

// routes registers the kind's routes on v1; post registers a POST with
// Idempotency-Key handling.
func (k recordKind[R, I, P]) routes(s *Server, v1 *echo.Group, post func(string, echo.HandlerFunc, ...string)) {
	read, write := requireScope("read:"+k.name), requireScope("write:"+k.name)
	post("/"+k.name, func(c echo.Context) error { return k.createOne(c) }, "write:"+k.name)
	v1.GET("/"+k.name, func(c echo.Context) error { return k.list(s, c) }, read)
	v1.GET("/"+k.name+"/:id", func(c echo.Context) error { return k.getOne(s, c) }, read)
	v1.PATCH("/"+k.name+"/:id", func(c echo.Context) error { return k.updateOne(c) }, write)
	v1.DELETE("/"+k.name+"/:id", func(c echo.Context) error { return k.deleteOne(c) }, write)
	v1.GET("/"+k.name+"/:id/history", func(c echo.Context) error { return k.historyOf(c) }, read)
}

func (k recordKind[R, I, P]) createOne(c echo.Context) error {
	var in I
	if err := decodeJSON(c, &in, false); err != nil {
		return err
	}
	res, err := k.create(c.Request().Context(), meta(c), in)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/"+k.name+"/"+k.id(res.Record))
	return writeRecord(c, http.StatusCreated, res.Record, k.version(res.Record), res.Position)
}

// getOne answers with the record as of now (see currentRecord), or folded
// from its stream up to ?as_of=.
func (k recordKind[R, I, P]) getOne(s *Server, c echo.Context) error {
	ctx := c.Request().Context()
	org, id := principal(c).OrgID, c.Param("id")
	at, err := timeParam(c, "as_of")
	if err != nil {
		return err
	}
	var rec R
	if at != nil {
		rec, err = k.asOf(ctx, org, id, *at)
	} else if err = s.awaitConsistency(c, k.projection); err == nil {
		row, rowErr := k.get(ctx, org, id)
		rec, err = currentRecord(ctx, s.d.Streams, k.stream(id), row, k.version(row), rowErr,
			func(envs []envelope.Envelope) (R, error) { return k.fold(id, envs) }, org)
	}
	if err != nil {
		return err
	}
	return writeRecord(c, http.StatusOK, rec, k.version(rec), 0)
}

func (k recordKind[R, I, P]) updateOne(c echo.Context) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	var patch P
	if err := decodeJSON(c, &patch, false); err != nil {
		return err
	}
	res, err := k.update(c.Request().Context(), meta(c), c.Param("id"), patch, expected)
	if err != nil {
		return err
	}
	return writeRecord(c, http.StatusOK, res.Record, k.version(res.Record), res.Position)
}

func (k recordKind[R, I, P]) deleteOne(c echo.Context) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	res, err := k.remove(c.Request().Context(), meta(c), c.Param("id"), expected)
	if err != nil {
		return err
	}
	setConsistencyToken(c, res.Position)
	return c.NoContent(http.StatusNoContent)
}

func (k recordKind[R, I, P]) historyOf(c echo.Context) error {
	h, err := k.history(c.Request().Context(), principal(c).OrgID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"data": h})
}

// listCommon reads what every list takes (limit, cursor, created_after)
// and waits for X-Consistency-Token on the kind's projection.
func listCommon(s *Server, c echo.Context, projection string) (limit int, cur *projections.Cursor, after *time.Time, err error) {
	if limit, cur, err = listParams(c); err != nil {
		return
	}
	if after, err = timeParam(c, "created_after"); err != nil {
		return
	}
	err = s.awaitConsistency(c, projection)
	return
}

// leads is the lead kind.
func (s *Server) leads() recordKind[domain.Lead, domain.LeadInput, domain.LeadPatch] {
	return recordKind[domain.Lead, domain.LeadInput, domain.LeadPatch]{
		name: "leads", projection: projections.LeadsName,
		id:      func(l domain.Lead) string { return l.ID },
		version: domain.Lead.StreamVersion,
		stream:  envelope.LeadStream,
		fold: func(id string, envs []envelope.Envelope) (domain.Lead, error) {
			return domain.FoldLead(id, envelope.Recorded(envs))
		},
		get: s.d.Queries.GetLead,
		asOf: func(ctx context.Context, org, id string, at time.Time) (domain.Lead, error) {
			return projections.LeadAsOf(ctx, s.d.Streams, org, id, at)
		},
		history: func(ctx context.Context, org, id string) ([]projections.HistoryEntry, error) {
			return projections.LeadHistory(ctx, s.d.Streams, org, id)
		},
		create: s.d.Commands.CreateLead, update: s.d.Commands.UpdateLead, remove: s.d.Commands.DeleteLead,
		list: (*Server).listLeads,
	}
}

// deals is the deal kind.
func (s *Server) deals() recordKind[domain.Deal, domain.DealInput, domain.DealPatch] {
	return recordKind[domain.Deal, domain.DealInput, domain.DealPatch]{
		name: "deals", projection: projections.DealsName,
		id:      func(d domain.Deal) string { return d.ID },
		version: domain.Deal.StreamVersion,
		stream:  envelope.DealStream,
		fold: func(id string, envs []envelope.Envelope) (domain.Deal, error) {
			return domain.FoldDeal(id, envelope.Recorded(envs))
		},
		get: s.d.Queries.GetDeal,
		asOf: func(ctx context.Context, org, id string, at time.Time) (domain.Deal, error) {
			return projections.DealAsOf(ctx, s.d.Streams, org, id, at)
		},
		history: func(ctx context.Context, org, id string) ([]projections.HistoryEntry, error) {
			return projections.DealHistory(ctx, s.d.Streams, org, id)
		},
		create: s.d.Commands.CreateDeal, update: s.d.Commands.UpdateDeal, remove: s.d.Commands.DeleteDeal,
		list: (*Server).listDeals,
	}
}
