-- +goose Up
-- Every change of the application (and version) a cluster runs, for the
-- deployment history and rollback.
CREATE TABLE deployments (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster          TEXT NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    from_application TEXT NOT NULL,
    from_version     TEXT NOT NULL,
    to_application   TEXT NOT NULL,
    to_version       TEXT NOT NULL,
    kind             TEXT NOT NULL, -- set | rollback
    actor            TEXT NOT NULL,
    created_at       DATETIME NOT NULL
);
CREATE INDEX deployments_by_cluster ON deployments(cluster, id);

-- +goose Down
DROP TABLE deployments;
