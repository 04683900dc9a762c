-- +goose Up
-- A cluster whose servers the web servers reach over TLS (servers on
-- other hosts), each checked against its domain certificate.
ALTER TABLE clusters ADD COLUMN member_tls INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE clusters DROP COLUMN member_tls;
