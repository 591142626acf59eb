-- Outbound webhooks (SQLite dialect; see postgres/0003_webhooks.sql for
-- what each table is for, and 0002_read_models.sql for the conventions).

CREATE TABLE event_feed (
    position    INTEGER   PRIMARY KEY,
    event_id    TEXT      NOT NULL UNIQUE,
    org_id      TEXT      NOT NULL,
    type        TEXT      NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    payload     TEXT      NOT NULL -- the JSON body, byte for byte as sent
);
CREATE INDEX event_feed_org ON event_feed (org_id, position);

CREATE TABLE webhooks (
    id                   TEXT      PRIMARY KEY,
    org_id               TEXT      NOT NULL,
    url                  TEXT      NOT NULL,
    events               TEXT      NOT NULL CHECK (json_valid(events)), -- JSON array of patterns
    description          TEXT,
    secret               TEXT      NOT NULL,
    active               BOOLEAN   NOT NULL DEFAULT 1,
    consecutive_failures INTEGER   NOT NULL DEFAULT 0,
    deactivated_at       TIMESTAMP,
    deactivation_reason  TEXT,
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    deleted_at           TIMESTAMP
);
CREATE INDEX webhooks_org ON webhooks (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    id               TEXT      PRIMARY KEY,
    webhook_id       TEXT      NOT NULL REFERENCES webhooks (id),
    org_id           TEXT      NOT NULL,
    event_id         TEXT      NOT NULL, -- also the webhook-id header
    event_type       TEXT      NOT NULL,
    payload          TEXT      NOT NULL,
    status           TEXT      NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER   NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMP,
    last_status_code INTEGER,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMP,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    delivered_at     TIMESTAMP,
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (webhook_id, created_at DESC, id DESC);

CREATE TABLE webhook_attempts (
    id               INTEGER   PRIMARY KEY,
    delivery_id      TEXT      NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at     TIMESTAMP NOT NULL,
    status_code      INTEGER,
    duration_ms      REAL      NOT NULL,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
