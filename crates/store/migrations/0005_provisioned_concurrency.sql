-- Provisioned concurrency configs per version or alias.
CREATE TABLE provisioned_concurrency_configs (
    function_name TEXT NOT NULL,
    qualifier     TEXT NOT NULL,
    requested     BIGINT NOT NULL,
    last_modified TEXT NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);
