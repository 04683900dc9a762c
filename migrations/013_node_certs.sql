-- +goose Up
-- Certificates the domain CA issued to nodes (enrolment and renewal). A
-- revoked certificate is refused by the admin server, and by the nodes
-- once the revocation reaches them.
CREATE TABLE node_certs (
    serial     TEXT PRIMARY KEY NOT NULL,
    node       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    issued_at  DATETIME NOT NULL,
    not_after  DATETIME NOT NULL,
    revoked_at DATETIME
);
CREATE INDEX node_certs_node ON node_certs (node);

-- +goose Down
DROP TABLE node_certs;
