-- The event store: the source of truth of SalesOS (SQLite dialect; the
-- PostgreSQL twin is postgres/0001_event_store.sql).
--
-- position is the global order. SQLite has a single writer per database
-- file, and the appender assigns max(position)+1.. inside its write
-- transaction (BEGIN IMMEDIATE), so positions are handed out in commit order
-- and a reader can never see position p+1 before p. Rolled-back appends
-- leave no hole. Events are never deleted, so a position is never reused.
--
-- STRICT makes SQLite enforce the declared column types: data bound as a
-- BLOB by mistake is refused instead of stored.
--
-- event_id is the UUID in its canonical lower-case text form (36 chars).
-- data and metadata are JSON kept byte for byte as the writer produced them
-- (TEXT, checked with json_valid; never re-encoded).
-- recorded_at is UTC text in RFC 3339 with exactly six fractional digits,
-- e.g. 2025-01-31T09:15:00.123456Z: readable in the sqlite3 shell, parsed by
-- time.RFC3339Nano, and, being fixed-width, sorts chronologically as text.
-- The store sets it (microseconds, like PostgreSQL's timestamptz); the
-- default, for rows written by hand, has milliseconds padded to six digits.
CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE CHECK (length(event_id) = 36),
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL CHECK (json_valid(data)),
    metadata    TEXT    NOT NULL CHECK (json_valid(metadata)),
    recorded_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
) STRICT;
