package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pressly/goose/v3"

	"tandem/migrations"
)

// ErrNotADomain wraps every file Restore refuses.
var ErrNotADomain = errors.New("store: not a Tandem domain database")

// Backup writes a consistent copy of the database at dbPath to the file
// to, while an admin server may be reading and writing it: SQLite's
// VACUUM INTO reads one snapshot (WAL mode lets writers go on meanwhile)
// and writes a compact copy. The copy is written beside to, synced, made
// 0600 (it holds password and token hashes) and renamed into place, so to
// is either the old file or a whole backup.
func Backup(ctx context.Context, dbPath, to string) error {
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		return fmt.Errorf("store: backup: open: %w", err)
	}
	defer db.Close()
	return backupFrom(ctx, db, to)
}

// Backup is the package-level Backup through this store's own connection.
func (s *Store) Backup(ctx context.Context, to string) error {
	return backupFrom(ctx, s.sqlDB, to)
}

func backupFrom(ctx context.Context, db *sql.DB, to string) error {
	to, err := filepath.Abs(to)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	tmp := to + ".partial"
	_ = os.Remove(tmp) // VACUUM INTO refuses an existing file
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: backup: %w", err)
	}
	if err := syncFile(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: backup: %w", err)
	}
	if err := os.Rename(tmp, to); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: backup: %w", err)
	}
	syncDir(filepath.Dir(to))
	return nil
}

// Restore replaces the database at dbPath with the backup from, after
// checking that from is a whole Tandem domain database this binary can
// open (integrity check, schema version). The replaced database is kept
// as dbPath.before-restore-TIME; its WAL files are removed. The admin
// server must not be running on that folder (the caller holds its lock).
func Restore(ctx context.Context, from, dbPath string) (kept string, err error) {
	if err := checkBackup(ctx, from); err != nil {
		return "", err
	}
	tmp := dbPath + ".restoring"
	if err := copyFile(from, tmp); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("store: restore: %w", err)
	}
	if _, err := os.Stat(dbPath); err == nil {
		// Fold the WAL into the old file first, so the kept copy is whole.
		if old, err := sql.Open("sqlite3", "file:"+dbPath+"?_busy_timeout=10000"); err == nil {
			_, _ = old.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
			_ = old.Close()
		}
		kept = dbPath + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(dbPath, kept); err != nil {
			_ = os.Remove(tmp)
			return "", fmt.Errorf("store: restore: %w", err)
		}
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(dbPath + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return kept, fmt.Errorf("store: restore: %w", err)
		}
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return kept, fmt.Errorf("store: restore: %w", err)
	}
	syncDir(filepath.Dir(dbPath))
	return kept, nil
}

// checkBackup opens from read-only and checks that it is whole and a
// domain database of a schema this binary knows.
func checkBackup(ctx context.Context, from string) error {
	if _, err := os.Stat(from); err != nil {
		return fmt.Errorf("%w: %w", ErrNotADomain, err)
	}
	db, err := sql.Open("sqlite3", "file:"+from+"?mode=ro")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotADomain, err)
	}
	defer db.Close()
	var ok string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		return fmt.Errorf("%w: integrity check: %q %v", ErrNotADomain, ok, err)
	}
	var version int64
	if err := db.QueryRowContext(ctx, "SELECT MAX(version_id) FROM goose_db_version WHERE is_applied").Scan(&version); err != nil {
		return fmt.Errorf("%w: no schema version: %v", ErrNotADomain, err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.FS)
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	var latest int64
	for _, src := range p.ListSources() {
		latest = max(latest, src.Version)
	}
	if version > latest {
		return fmt.Errorf("%w: database at version %d, binary knows up to %d", ErrSchemaTooNew, version, latest)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('clusters', 'servers', 'users')").Scan(&n); err != nil || n != 3 {
		return fmt.Errorf("%w: tables missing", ErrNotADomain)
	}
	return nil
}

// copyFile copies from to a new file to (mode 0600), synced.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncFile(path string, mode os.FileMode) error {
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// syncDir makes a rename in dir durable; best effort, as some file
// systems refuse to sync a folder (the rename itself has happened).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
