-- +goose Up
-- The operator's applications (backend/apphost, sdk), and the one each
-- cluster runs (NULL: the built-in sample app). A cluster's application
-- cannot be deleted while the cluster uses it.
CREATE TABLE applications (
    name                    TEXT PRIMARY KEY,
    description             TEXT NOT NULL DEFAULT '',
    kind                    TEXT NOT NULL,
    command                 TEXT NOT NULL, -- JSON array of strings
    env                     TEXT NOT NULL DEFAULT '{}', -- JSON object
    health_path             TEXT NOT NULL,
    start_timeout_seconds   INTEGER NOT NULL,
    request_timeout_seconds INTEGER NOT NULL,
    created_at              DATETIME NOT NULL,
    updated_at              DATETIME NOT NULL
);
ALTER TABLE clusters ADD COLUMN application TEXT REFERENCES applications(name) ON DELETE RESTRICT;
-- The application of the server's cluster when the revision was made.
ALTER TABLE revisions ADD COLUMN application TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE revisions DROP COLUMN application;
ALTER TABLE clusters DROP COLUMN application;
DROP TABLE applications;
