-- Idempotency keys (SQLite dialect; see postgres/0004_idempotency.sql).
CREATE TABLE idempotency_keys (
    org_id           TEXT      NOT NULL,
    key              TEXT      NOT NULL,
    request_hash     TEXT      NOT NULL,
    status           TEXT      NOT NULL CHECK (status IN ('in_progress', 'done')),
    response_status  INTEGER,
    response_headers TEXT,     -- JSON
    response_body    BLOB,
    created_at       TIMESTAMP NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
