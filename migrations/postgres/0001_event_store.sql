-- The event store: the source of truth of SalesOS.
--
-- position is the global order. It is assigned by the appender while it
-- holds a transaction-scoped advisory lock, so positions are handed out in
-- commit order and a reader can never see position p+1 before p has become
-- visible (no BIGSERIAL visibility gaps). Rolled-back appends leave no hole.
--
-- data and metadata are JSON kept byte for byte as the writer produced them
-- (json, not jsonb: jsonb would reorder keys and drop duplicate ones).
CREATE TABLE events (
    position    BIGINT      PRIMARY KEY,
    event_id    UUID        NOT NULL UNIQUE,
    stream_id   TEXT        NOT NULL,
    version     BIGINT      NOT NULL CHECK (version > 0),
    type        TEXT        NOT NULL,
    data        JSON        NOT NULL,
    metadata    JSON        NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);
