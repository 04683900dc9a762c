-- +goose Up
-- Uploaded versions of applications (backend/artifacts keeps the archive
-- as DATA_DIR/artifacts/<sha256>.tar.gz; several versions may share one).
CREATE TABLE app_versions (
    application TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
    version     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    created_at  DATETIME NOT NULL,
    PRIMARY KEY (application, version)
);
CREATE INDEX app_versions_sha256 ON app_versions(sha256);

-- +goose Down
DROP TABLE app_versions;
