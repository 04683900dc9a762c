package store

import "database/sql"

// SQL returns the database handle for packages that keep their own tables
// in the same file (backend/rolling's jobs, from migrations/002_jobs.sql).
// Their writes do not take the store's in-process write lock; SQLite's
// busy timeout and immediate transactions serialise them.
func (s *Store) SQL() *sql.DB { return s.sqlDB }
