package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/salesos/salesos/domain"
)

// peer is the plain CRUD service SalesOS is compared with: Echo and pgx,
// one INSERT per POST (its own transaction) and one SELECT by primary key
// per GET, on a table of leads in the same database. It validates and
// shapes leads with the same domain code and answers with the same JSON,
// so what the comparison shows is the cost of SalesOS's event-sourced
// path (event store, projections, read-your-writes) and of its
// authentication; the peer checks no token.
type peer struct {
	srv  *http.Server
	base string
	pool *pgxpool.Pool
}

const peerSchema = `
CREATE TABLE IF NOT EXISTS peer_leads (
    id            TEXT        PRIMARY KEY,
    org_id        TEXT        NOT NULL,
    name          TEXT        NOT NULL,
    email         TEXT,
    phone         TEXT,
    company       TEXT,
    title         TEXT,
    source        TEXT,
    status        TEXT        NOT NULL,
    owner_id      TEXT,
    custom_fields JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    version       BIGINT      NOT NULL
)`

func startPeer(ctx context.Context, dbURL string, conns int32) (*peer, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, peerSchema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("peer schema: %w", err)
	}
	if _, err := pool.Exec(ctx, `TRUNCATE peer_leads`); err != nil {
		pool.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pool.Close()
		return nil, err
	}
	p := &peer{pool: pool, base: "http://" + ln.Addr().String()}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/v1/leads", p.create)
	e.GET("/v1/leads/:id", p.get)
	p.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *peer) close() {
	p.srv.Close()
	p.pool.Close()
}

func (p *peer) create(c echo.Context) error {
	var in domain.LeadInput
	if err := json.NewDecoder(c.Request().Body).Decode(&in); err != nil {
		return c.JSON(http.StatusBadRequest, map[string]string{"code": "bad_request", "message": err.Error()})
	}
	id, org, now := newLeadID(), httpOrg, time.Now().UTC().Truncate(time.Microsecond)
	evs, err := domain.CreateLead(id, org, in)
	if err != nil {
		return c.JSON(http.StatusUnprocessableEntity, map[string]string{"code": "validation_failed", "message": err.Error()})
	}
	lead := domain.Lead{ID: id}
	for _, e := range evs {
		lead.Apply(e, domain.Metadata{OccurredAt: now, OrgID: org})
	}
	custom, err := json.Marshal(lead.CustomFields)
	if err != nil {
		return err
	}
	if _, err := p.pool.Exec(c.Request().Context(), `INSERT INTO peer_leads (id, org_id, name, email, phone, company, title,
			source, status, owner_id, custom_fields, created_at, updated_at, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		lead.ID, lead.OrgID, lead.Name, lead.Email, lead.Phone, lead.Company, lead.Title, lead.Source,
		string(lead.Status), lead.OwnerID, custom, lead.CreatedAt, lead.UpdatedAt, lead.Version); err != nil {
		return err
	}
	c.Response().Header().Set("ETag", fmt.Sprintf(`"%d"`, lead.Version))
	return c.JSON(http.StatusCreated, lead)
}

func (p *peer) get(c echo.Context) error {
	var l domain.Lead
	var status string
	var custom []byte
	err := p.pool.QueryRow(c.Request().Context(), `SELECT id, org_id, name, email, phone, company, title, source, status,
			owner_id, custom_fields, created_at, updated_at, version FROM peer_leads WHERE id = $1`, c.Param("id")).
		Scan(&l.ID, &l.OrgID, &l.Name, &l.Email, &l.Phone, &l.Company, &l.Title, &l.Source, &status,
			&l.OwnerID, &custom, &l.CreatedAt, &l.UpdatedAt, &l.Version)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && l.OrgID != httpOrg) {
		return c.JSON(http.StatusNotFound, map[string]string{"code": "not_found", "message": "record not found"})
	}
	if err != nil {
		return err
	}
	l.Status = domain.LeadStatus(status)
	if err := json.Unmarshal(custom, &l.CustomFields); err != nil {
		return err
	}
	c.Response().Header().Set("ETag", fmt.Sprintf(`"%d"`, l.Version))
	return c.JSON(http.StatusOK, l)
}
