-- Query side. Everything here is derived from the events and can be rebuilt
-- with `salesos projections rebuild`.

-- One row per projection: the global position of the last event it applied.
-- It is updated in the same transaction as the projection's tables, so a
-- crash never applies an event twice or skips one. generation grows with
-- every rebuild, so a running instance notices that the tables were reset
-- under it and starts again from position 0.
CREATE TABLE projection_checkpoints (
    name       TEXT        PRIMARY KEY,
    position   BIGINT      NOT NULL DEFAULT 0,
    generation BIGINT      NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Leads as the API lists and reads them. Deleted leads stay (deleted_at set)
-- so that a rebuild and the history agree; reads filter them out.
CREATE TABLE leads (
    id                TEXT        PRIMARY KEY,
    org_id            TEXT        NOT NULL,
    name              TEXT        NOT NULL,
    email             TEXT,
    phone             TEXT,
    company           TEXT,
    title             TEXT,
    source            TEXT,
    status            TEXT        NOT NULL,
    owner_id          TEXT,
    custom_fields     JSONB       NOT NULL DEFAULT '{}',
    converted_deal_id TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    version           BIGINT      NOT NULL,
    deleted_at        TIMESTAMPTZ
);

-- The default list order (newest first) and its keyset cursor.
CREATE INDEX leads_org_created ON leads (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX leads_org_status ON leads (org_id, status, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX leads_org_owner ON leads (org_id, owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE deals (
    id                  TEXT        PRIMARY KEY,
    org_id              TEXT        NOT NULL,
    name                TEXT        NOT NULL,
    amount              NUMERIC,
    currency            TEXT,
    stage               TEXT        NOT NULL,
    lead_id             TEXT,
    owner_id            TEXT,
    expected_close_date DATE,
    lost_reason         TEXT,
    custom_fields       JSONB       NOT NULL DEFAULT '{}',
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    closed_at           TIMESTAMPTZ,
    version             BIGINT      NOT NULL,
    deleted_at          TIMESTAMPTZ
);

CREATE INDEX deals_org_created ON deals (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX deals_org_stage ON deals (org_id, stage, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX deals_org_owner ON deals (org_id, owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX deals_org_lead ON deals (org_id, lead_id) WHERE deleted_at IS NULL;
