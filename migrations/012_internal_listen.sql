-- +goose Up
-- A managed server's replication and peer endpoints get their own
-- listener, apart from the application port; empty: the next port after
-- listen (filled in when the server is read).
ALTER TABLE servers ADD COLUMN internal_listen TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE servers DROP COLUMN internal_listen;
