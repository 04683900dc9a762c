-- +goose Up
-- The host other machines reach a managed server at, as the server said
-- (--advertise) or as the admin server saw its control connection come
-- from, when it binds every address; empty: its listen host.
ALTER TABLE servers ADD COLUMN advertise TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE servers DROP COLUMN advertise;
