-- +goose Up
-- The history the console draws: each server's state and load, sampled
-- from its heartbeats. res 0: full resolution (kept 24 hours); res 1:
-- 5-minute averages (kept 30 days).
CREATE TABLE series_samples (
    res             INTEGER NOT NULL,
    server          TEXT    NOT NULL,
    at_ms           INTEGER NOT NULL,
    cluster         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    sessions        REAL    NOT NULL,
    backup_sessions REAL    NOT NULL,
    rps             REAL    NOT NULL,
    lag_ms          INTEGER NOT NULL,
    unprotected     REAL    NOT NULL,
    PRIMARY KEY (res, server, at_ms)
) WITHOUT ROWID;
CREATE INDEX series_samples_cluster_at ON series_samples (cluster, at_ms);

-- A failed server stays marked on the dashboard until an operator
-- acknowledges its failures up to an event.
CREATE TABLE failure_acks (
    server   TEXT    PRIMARY KEY,
    event_id INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    at       DATETIME NOT NULL
);

-- +goose Down
DROP TABLE failure_acks;
DROP TABLE series_samples;
