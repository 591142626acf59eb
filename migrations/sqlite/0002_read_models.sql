-- Query side (SQLite dialect; the PostgreSQL twin is
-- postgres/0002_read_models.sql). Everything here is derived from the
-- events and can be rebuilt with `salesos projections rebuild`.
--
-- Conventions of the SQLite query tables (not STRICT, so that the declared
-- types below mean something to the driver):
-- - TIMESTAMP columns hold integer microseconds since the Unix epoch, UTC.
--   The connection converts Go time.Time values both ways, and integers
--   compare and sort chronologically.
-- - JSON documents are TEXT (custom_fields, webhook event patterns).
-- - BOOLEAN columns hold 0 or 1.
-- - Amounts are TEXT: the exact decimal the client sent, never a float.

CREATE TABLE projection_checkpoints (
    name       TEXT      PRIMARY KEY,
    position   INTEGER   NOT NULL DEFAULT 0,
    generation INTEGER   NOT NULL DEFAULT 0,
    updated_at TIMESTAMP NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
);

CREATE TABLE leads (
    id                TEXT      PRIMARY KEY,
    org_id            TEXT      NOT NULL,
    name              TEXT      NOT NULL,
    email             TEXT,
    phone             TEXT,
    company           TEXT,
    title             TEXT,
    source            TEXT,
    status            TEXT      NOT NULL,
    owner_id          TEXT,
    custom_fields     TEXT      NOT NULL DEFAULT '{}' CHECK (json_valid(custom_fields)),
    converted_deal_id TEXT,
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    version           INTEGER   NOT NULL,
    deleted_at        TIMESTAMP
) WITHOUT ROWID;

-- One index serves every lead list, where PostgreSQL has three. It walks an
-- organization's live leads in list order (keyset cursor included) and holds
-- status and owner_id, so those filters are checked on the index entry and
-- only matching rows are read from the table.
--
-- Why not an index per filter as on PostgreSQL: SQLite writes every page a
-- transaction dirties, whole, to the WAL and again at the checkpoint. An
-- index keyed by owner sends each new lead to a different page (one per
-- organization and owner), and a status index moves a changed lead between
-- two random pages; with them a batch of lead events dirtied three times as
-- many pages and a projection catch-up ran at half the speed. The price:
-- a page of one owner's leads reads past the other owners' index entries.
CREATE INDEX leads_org_created ON leads (org_id, created_at DESC, id DESC, status, owner_id) WHERE deleted_at IS NULL;

CREATE TABLE deals (
    id                  TEXT      PRIMARY KEY,
    org_id              TEXT      NOT NULL,
    name                TEXT      NOT NULL,
    amount              TEXT,
    currency            TEXT,
    stage               TEXT      NOT NULL,
    lead_id             TEXT,
    owner_id            TEXT,
    expected_close_date TEXT,     -- YYYY-MM-DD
    lost_reason         TEXT,
    custom_fields       TEXT      NOT NULL DEFAULT '{}' CHECK (json_valid(custom_fields)),
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL,
    closed_at           TIMESTAMP,
    version             INTEGER   NOT NULL,
    deleted_at          TIMESTAMP
) WITHOUT ROWID;

CREATE INDEX deals_org_created ON deals (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX deals_org_stage ON deals (org_id, stage, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX deals_org_owner ON deals (org_id, owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX deals_org_lead ON deals (org_id, lead_id) WHERE deleted_at IS NULL;
