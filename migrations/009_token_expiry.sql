-- +goose Up
-- An API token may expire (NULL: never); an expired token is refused.
ALTER TABLE tokens ADD COLUMN expires_at DATETIME;

-- +goose Down
ALTER TABLE tokens DROP COLUMN expires_at;
