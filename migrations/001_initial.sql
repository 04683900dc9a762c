-- +goose Up
-- Resources are keyed by their name: names are fixed by the API path, so a
-- name is the natural key and foreign keys name their target directly.

CREATE TABLE node_managers (
    name       TEXT PRIMARY KEY NOT NULL,
    listen     TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE clusters (
    name                  TEXT PRIMARY KEY NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    failover_mode         TEXT NOT NULL,
    backup_policy         TEXT NOT NULL,
    heartbeat_interval_ms INTEGER NOT NULL,
    heartbeat_timeout_ms  INTEGER NOT NULL,
    created_at            DATETIME NOT NULL,
    updated_at            DATETIME NOT NULL
);

-- A cluster's session defaults: a partial SessionOverride as JSON.
CREATE TABLE cluster_session_defaults (
    cluster    TEXT PRIMARY KEY NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    override   TEXT NOT NULL DEFAULT '{}',
    updated_at DATETIME NOT NULL
);

CREATE TABLE servers (
    name         TEXT PRIMARY KEY NOT NULL,
    cluster      TEXT NOT NULL REFERENCES clusters(name) ON DELETE RESTRICT,
    listen       TEXT NOT NULL,
    route        TEXT NOT NULL,
    node_manager TEXT REFERENCES node_managers(name) ON DELETE RESTRICT,
    backup       TEXT REFERENCES servers(name) ON DELETE RESTRICT,
    created_at   DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL,
    UNIQUE (cluster, route)
);
CREATE INDEX servers_cluster ON servers(cluster);

-- A server's own override of its cluster's defaults (partial, JSON).
CREATE TABLE server_session_overrides (
    server     TEXT PRIMARY KEY NOT NULL REFERENCES servers(name) ON DELETE CASCADE,
    override   TEXT NOT NULL DEFAULT '{}',
    updated_at DATETIME NOT NULL
);

CREATE TABLE webservers (
    name         TEXT PRIMARY KEY NOT NULL,
    cluster      TEXT NOT NULL REFERENCES clusters(name) ON DELETE RESTRICT,
    listen       TEXT NOT NULL,
    node_manager TEXT REFERENCES node_managers(name) ON DELETE RESTRICT,
    created_at   DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL
);
CREATE INDEX webservers_cluster ON webservers(cluster);

-- Every version of a server's effective session config.
CREATE TABLE revisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    server     TEXT NOT NULL REFERENCES servers(name) ON DELETE CASCADE,
    number     INTEGER NOT NULL,
    checksum   TEXT NOT NULL,
    config     TEXT NOT NULL,
    override   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    UNIQUE (server, number)
);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    time   DATETIME NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT NOT NULL DEFAULT '',
    after  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    DATETIME NOT NULL
);

-- API tokens: only the SHA-256 of the secret is stored.
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at DATETIME NOT NULL,
    last_used  DATETIME
);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     DATETIME NOT NULL,
    type     TEXT NOT NULL,
    cluster  TEXT NOT NULL DEFAULT '',
    server   TEXT NOT NULL DEFAULT '',
    peer     TEXT NOT NULL DEFAULT '',
    sessions INTEGER NOT NULL DEFAULT 0,
    message  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_time ON events(time);

-- Console cookie sessions: only the SHA-256 of the cookie value is stored.
CREATE TABLE console_sessions (
    hash       TEXT PRIMARY KEY NOT NULL,
    user       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    expires_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE console_sessions;
DROP TABLE events;
DROP TABLE tokens;
DROP TABLE users;
DROP TABLE audit;
DROP TABLE revisions;
DROP TABLE webservers;
DROP TABLE server_session_overrides;
DROP TABLE servers;
DROP TABLE cluster_session_defaults;
DROP TABLE clusters;
DROP TABLE node_managers;
