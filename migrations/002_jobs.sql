-- +goose Up
-- Long-running jobs (rolling restarts), owned by backend/rolling. Times are
-- Unix milliseconds (UTC). The partial unique index lets one job of a type
-- run per cluster at a time: a second insert fails with a UNIQUE error,
-- which backend/rolling maps to ErrConflict (409).
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL,
    cluster     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    actor       TEXT NOT NULL DEFAULT '',
    step_timeout_ms INTEGER NOT NULL,
    steps       TEXT NOT NULL DEFAULT '[]', -- JSON array of steps, in order
    current     TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE UNIQUE INDEX jobs_one_running_per_cluster ON jobs (type, cluster) WHERE state = 'running';
CREATE INDEX jobs_by_cluster ON jobs (cluster, id);

-- +goose Down
DROP TABLE jobs;
