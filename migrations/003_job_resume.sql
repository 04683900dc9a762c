-- +goose Up
-- Resuming rolling restarts after an admin restart (backend/rolling). A job
-- the admin server left running (SIGKILL, crash, shutdown) is resumed from
-- its persisted step at the next start. resumes counts those resumptions;
-- step_event_mark is the newest event ID recorded before the current step
-- stopped its server, so a resumed step checks again, from that point, that
-- every failover of the server's sessions was failed back.
ALTER TABLE jobs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN step_event_mark INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE jobs DROP COLUMN step_event_mark;
ALTER TABLE jobs DROP COLUMN resumes;
