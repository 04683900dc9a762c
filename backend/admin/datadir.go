package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"tandem/backend/store"
)

// ErrDataDirInUse is returned when another admin server (or a restore)
// holds the data folder.
var ErrDataDirInUse = errors.New("admin: the data folder is in use by a running admin server")

// LockFile is the lock an admin server holds on its data folder while it
// runs (flock; released by the kernel if the process dies).
const LockFile = "admin.lock"

// LockDataDir takes the data folder's lock without waiting: two admin
// servers on one database, or a restore under a running one, would lose
// writes. release gives it back.
func LockDataDir(dir string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("admin: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrDataDirInUse, dir)
		}
		return nil, fmt.Errorf("admin: lock: %w", err)
	}
	return func() { _ = f.Close() }, nil
}

// Restore replaces the data folder's database with the backup from; it
// refuses while an admin server runs on the folder. It returns where the
// replaced database was kept.
func Restore(ctx context.Context, dataDir, from string) (string, error) {
	release, err := LockDataDir(dataDir)
	if err != nil {
		return "", err
	}
	defer release()
	return store.Restore(ctx, from, filepath.Join(dataDir, DBFile))
}

// BackupDir is where periodic backups go, in the data folder.
const BackupDir = "backups"

// backupLoop writes a backup every `every` into DATA_DIR/backups and keeps
// the newest `keep`, until ctx ends. A failed backup is logged and tried
// again at the next period; it does not stop the admin server.
func backupLoop(ctx context.Context, st *store.Store, dataDir string, every time.Duration, keep int, logger *slog.Logger) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	dir := filepath.Join(dataDir, BackupDir)
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			to := filepath.Join(dir, "tandem-"+now.UTC().Format("20060102T150405Z")+".db")
			start := time.Now()
			if err := st.Backup(ctx, to); err != nil {
				logger.Error("admin: periodic backup failed", "err", err)
				continue
			}
			logger.Info("admin: backup written", "file", to, "took", time.Since(start).Round(time.Millisecond))
			pruneBackups(dir, keep, logger)
		}
	}
}

// pruneBackups removes all but the newest keep backups in dir (names sort
// by time).
func pruneBackups(dir string, keep int, logger *slog.Logger) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "tandem-") && strings.HasSuffix(n, ".db") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			logger.Warn("admin: old backup not removed", "file", names[0], "err", err)
		}
		names = names[1:]
	}
}
