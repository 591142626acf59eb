-- Events a projection could not apply (a "poison" event: a value the
-- database refuses, an event that does not decode), kept aside so that the
-- projection goes on with every other stream instead of failing the same
-- batch forever. Once a stream has a parked event, its later events are
-- parked behind it (attempts = 0 until they are tried), so a record never
-- skips a change; `salesos projections retry` re-applies them in order.
-- The projection's checkpoint moves past parked events.
CREATE TABLE projection_parked_events (
    projection       TEXT        NOT NULL,
    position         BIGINT      NOT NULL,
    stream_id        TEXT        NOT NULL,
    event_id         TEXT        NOT NULL,
    event_type       TEXT        NOT NULL,
    error            TEXT        NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    first_attempt_at TIMESTAMPTZ NOT NULL,
    last_attempt_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (projection, position)
);
-- Every batch asks which streams of its projection are held back.
CREATE INDEX projection_parked_events_stream ON projection_parked_events (projection, stream_id);
