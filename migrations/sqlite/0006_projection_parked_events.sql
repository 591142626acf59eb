-- Events a projection could not apply (SQLite dialect; see
-- postgres/0006_projection_parked_events.sql).
CREATE TABLE projection_parked_events (
    projection       TEXT      NOT NULL,
    position         INTEGER   NOT NULL,
    stream_id        TEXT      NOT NULL,
    event_id         TEXT      NOT NULL,
    event_type       TEXT      NOT NULL,
    error            TEXT      NOT NULL,
    attempts         INTEGER   NOT NULL DEFAULT 0,
    first_attempt_at TIMESTAMP NOT NULL,
    last_attempt_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (projection, position)
);
CREATE INDEX projection_parked_events_stream ON projection_parked_events (projection, stream_id);
