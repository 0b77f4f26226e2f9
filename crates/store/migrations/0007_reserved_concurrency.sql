-- Reserved concurrency per function; a reservation goes with its function.
CREATE TABLE reserved_concurrency (
    function_name TEXT PRIMARY KEY REFERENCES functions (name) ON DELETE CASCADE,
    reserved      BIGINT NOT NULL
);
