-- Asynchronous invocation: the durable event queue and the per-function event invoke configs.
CREATE TABLE async_events (
    request_id          TEXT PRIMARY KEY,
    function_name       TEXT NOT NULL,
    qualifier           TEXT,
    invoked_arn         TEXT NOT NULL,
    payload             TEXT NOT NULL,
    enqueued_at         BIGINT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    throttle_backoff_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX async_events_due ON async_events (next_attempt_at);
CREATE TABLE event_invoke_configs (
    function_name TEXT NOT NULL,
    qualifier     TEXT NOT NULL,
    config        TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);
