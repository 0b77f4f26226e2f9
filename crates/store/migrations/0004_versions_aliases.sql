-- Published function versions and aliases. Portable SQL: the PostgreSQL backend runs the same file.
CREATE TABLE function_versions (
    function_name TEXT NOT NULL,
    version       BIGINT NOT NULL,
    code_sha256   TEXT NOT NULL,
    code_size     BIGINT NOT NULL,
    config        TEXT NOT NULL,
    -- The revision of $LATEST it was published from: publishing again without a change of
    -- $LATEST returns this version.
    source_revision TEXT NOT NULL,
    PRIMARY KEY (function_name, version)
);
CREATE INDEX function_versions_code_sha256 ON function_versions (code_sha256);
-- The highest number ever published per function: numbers are never reused, even after a delete.
CREATE TABLE function_version_counters (
    function_name TEXT PRIMARY KEY,
    last_version  BIGINT NOT NULL
);
CREATE TABLE function_aliases (
    function_name TEXT NOT NULL,
    alias_name    TEXT NOT NULL,
    config        TEXT NOT NULL,
    PRIMARY KEY (function_name, alias_name)
);
