-- +goose Up
-- The version of its application a cluster runs (NULL: the application's
-- command as defined, no uploaded archive).
ALTER TABLE clusters ADD COLUMN app_version TEXT;

-- +goose Down
ALTER TABLE clusters DROP COLUMN app_version;
