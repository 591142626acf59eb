-- Outbound webhooks.
--
-- event_feed is the organization-scoped feed of every lead and deal event,
-- with the exact payload webhooks send (the record after the change and the
-- field changes). The webhook fan-out projection writes it, and the
-- deliveries it creates, in the same transaction as its checkpoint: no
-- event is lost or fanned out twice. GET /v1/events reads it too.
CREATE TABLE event_feed (
    position    BIGINT      PRIMARY KEY,
    event_id    TEXT        NOT NULL UNIQUE,
    org_id      TEXT        NOT NULL,
    type        TEXT        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    payload     TEXT        NOT NULL -- the JSON body, byte for byte as sent
);
CREATE INDEX event_feed_org ON event_feed (org_id, position);

-- Subscriptions. Configuration, not event-sourced: changed in place.
CREATE TABLE webhooks (
    id                   TEXT        PRIMARY KEY,
    org_id               TEXT        NOT NULL,
    url                  TEXT        NOT NULL,
    events               TEXT[]      NOT NULL, -- patterns: "lead.created", "deal.*", "*"
    description          TEXT,
    secret               TEXT        NOT NULL,
    active               BOOLEAN     NOT NULL DEFAULT true,
    -- failed attempts in a row across all the webhook's deliveries; any 2xx
    -- resets it, reaching the deactivation threshold switches active off.
    consecutive_failures INTEGER     NOT NULL DEFAULT 0,
    deactivated_at       TIMESTAMPTZ,
    deactivation_reason  TEXT,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    deleted_at           TIMESTAMPTZ
);
CREATE INDEX webhooks_org ON webhooks (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- One delivery per (webhook, event). Retry state lives here, never only in
-- memory: a dispatcher claims a due delivery by taking a lease; if it dies,
-- the lease expires and another dispatcher sends it again (at least once,
-- same webhook-id, so receivers can de-duplicate).
CREATE TABLE webhook_deliveries (
    id               TEXT        PRIMARY KEY,
    webhook_id       TEXT        NOT NULL REFERENCES webhooks (id),
    org_id           TEXT        NOT NULL,
    event_id         TEXT        NOT NULL, -- also the webhook-id header
    event_type       TEXT        NOT NULL,
    payload          TEXT        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    last_status_code INTEGER,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (webhook_id, created_at DESC, id DESC);

-- Every attempt, for the delivery detail view and support.
CREATE TABLE webhook_attempts (
    id               BIGSERIAL   PRIMARY KEY,
    delivery_id      TEXT        NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at     TIMESTAMPTZ NOT NULL,
    status_code      INTEGER,
    duration_ms      DOUBLE PRECISION NOT NULL,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
