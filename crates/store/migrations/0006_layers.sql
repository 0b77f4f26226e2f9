-- Layers: every layer name ever published (its last version number, so numbers are never
-- reused), its versions with their zips' digests, and the layer blobs each function uses (a
-- function keeps a layer version's copy after the version is deleted, as on Lambda).
CREATE TABLE layers (
    name           TEXT PRIMARY KEY,
    latest_version BIGINT NOT NULL
);
CREATE TABLE layer_versions (
    layer_name  TEXT NOT NULL,
    version     BIGINT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size   BIGINT NOT NULL,
    record      TEXT NOT NULL,
    policy      TEXT,
    PRIMARY KEY (layer_name, version)
);
CREATE INDEX layer_versions_code_sha256 ON layer_versions (code_sha256);
CREATE TABLE function_layers (
    function_name TEXT NOT NULL,
    position      BIGINT NOT NULL,
    code_sha256   TEXT NOT NULL,
    PRIMARY KEY (function_name, position)
);
CREATE INDEX function_layers_code_sha256 ON function_layers (code_sha256);
