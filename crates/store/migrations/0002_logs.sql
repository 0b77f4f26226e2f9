-- Function logs, kept like CloudWatch Logs: groups, streams, events.
-- (SQLite's INTEGER PRIMARY KEY is the event's insertion order; PostgreSQL will use an identity column.)
CREATE TABLE log_groups (
    name           TEXT PRIMARY KEY,
    created_at     BIGINT NOT NULL,
    retention_days BIGINT
);
CREATE TABLE log_streams (
    log_group      TEXT NOT NULL,
    name           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    first_event    BIGINT,
    last_event     BIGINT,
    last_ingestion BIGINT,
    stored_bytes   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (log_group, name)
);
CREATE TABLE log_events (
    id             INTEGER PRIMARY KEY,
    log_group      TEXT NOT NULL,
    stream         TEXT NOT NULL,
    timestamp      BIGINT NOT NULL,
    ingestion_time BIGINT NOT NULL,
    message        TEXT NOT NULL
);
CREATE INDEX log_events_group_stream ON log_events (log_group, stream, id);
CREATE INDEX log_events_group_time ON log_events (log_group, timestamp);
