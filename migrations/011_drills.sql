-- +goose Up
-- Failover drills: a fault applied to one server under live traffic, and
-- what it did (report: JSON of domain.DrillReport).
CREATE TABLE drills (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster     TEXT    NOT NULL,
    server      TEXT    NOT NULL,
    fault       TEXT    NOT NULL CHECK (fault IN ('kill', 'freeze')),
    seconds     INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('running', 'passed', 'failed')),
    phase       TEXT    NOT NULL DEFAULT '',
    report      TEXT    NOT NULL DEFAULT '{}',
    error       TEXT    NOT NULL DEFAULT '',
    started_at  DATETIME NOT NULL,
    finished_at DATETIME
);
CREATE UNIQUE INDEX drills_one_running_per_cluster ON drills (cluster) WHERE state = 'running';
CREATE INDEX drills_by_cluster ON drills (cluster, id);

-- +goose Down
DROP TABLE drills;
