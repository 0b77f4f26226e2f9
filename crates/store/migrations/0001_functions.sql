-- Functions and their $LATEST version. Portable SQL: the PostgreSQL backend runs the same file.
CREATE TABLE functions (
    name        TEXT PRIMARY KEY,
    revision_id TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size   BIGINT NOT NULL,
    latest      TEXT NOT NULL,
    tags        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX functions_code_sha256 ON functions (code_sha256);
