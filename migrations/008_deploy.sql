-- +goose Up
-- Deploy jobs (backend/rolling): what a job deploys (JSON, '' for a rolling
-- restart), and the application@version a server runs while a deploy moves
-- the cluster one server at a time (NULL: the cluster's).
ALTER TABLE jobs ADD COLUMN deploy TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN app_pin TEXT;

-- +goose Down
ALTER TABLE servers DROP COLUMN app_pin;
ALTER TABLE jobs DROP COLUMN deploy;
