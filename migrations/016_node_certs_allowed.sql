-- +goose Up
-- A revoked certificate stays revoked (its serial keeps being sent to the
-- nodes, which refuse it) after an admin lets its node enrol again, or
-- after the node was deleted: allowed_at only lifts the enrolment block.
ALTER TABLE node_certs ADD COLUMN allowed_at DATETIME;

-- +goose Down
ALTER TABLE node_certs DROP COLUMN allowed_at;
