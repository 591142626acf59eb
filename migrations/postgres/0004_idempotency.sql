-- Idempotency keys: the first response to a POST carrying an
-- Idempotency-Key, kept for 24 hours per organization and replayed for
-- retries with the same key and body.
CREATE TABLE idempotency_keys (
    org_id           TEXT        NOT NULL,
    key              TEXT        NOT NULL,
    request_hash     TEXT        NOT NULL, -- method, path and body of the first request
    status           TEXT        NOT NULL CHECK (status IN ('in_progress', 'done')),
    response_status  INTEGER,
    response_headers JSONB,
    response_body    BYTEA,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
