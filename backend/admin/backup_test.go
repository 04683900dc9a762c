package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/admin"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// runOnce runs `tandem args...` to its end and returns its exit code and
// output.
func runOnce(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	p := testenv.Start(t, name, nil, args...)
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not finish", name)
	}
	out, _ := os.ReadFile(p.LogPath)
	return p.Cmd.ProcessState.ExitCode(), string(out)
}

// TestBackupUnderWritesAndRestoreAfterKill: a backup taken with the CLI
// while config writes stream in holds every write acknowledged before it
// began; a restore is refused while the admin server runs; after SIGKILL
// of the admin server the data folder is restored from the backup, the
// admin server starts on it, the domain is whole and its node reconnects.
func TestBackupUnderWritesAndRestoreAfterKill(t *testing.T) {
	t.Parallel()
	a := testenv.StartAdmin(t, "")
	ctx := context.Background()
	if _, err := a.API.CreateCluster(ctx, domain.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	wsAddr := testenv.FreeAddr(t)
	if _, err := a.API.CreateWebServer(ctx, domain.WebServer{Name: "ws1", Cluster: "c1", Listen: wsAddr}); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, "ws1", a.NodeEnv(), "webserver", "--name", "ws1", "--admin", a.URL(), "--data-dir", t.TempDir())
	wsRunning := func(after time.Time) func() error {
		return func() error {
			top, err := a.API.Topology(ctx)
			if err != nil {
				return err
			}
			for _, c := range top.Clusters {
				for _, w := range c.WebServers {
					if w.Name == "ws1" && w.State == domain.StateRunning && w.LastSeen.After(after) {
						return nil
					}
				}
			}
			return fmt.Errorf("ws1 not running (since %s)", after)
		}
	}
	testenv.Eventually(t, 30*time.Second, wsRunning(time.Time{}))

	// A stream of config writes, each acknowledged or not.
	var (
		mu    sync.Mutex
		acked []string
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("w%d", i)
			if _, err := a.API.CreateCluster(ctx, domain.Cluster{Name: name}); err != nil {
				if errors.Is(err, domain.ErrConflict) {
					continue
				}
				return // the admin server was killed
			}
			mu.Lock()
			acked = append(acked, name)
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := count(); n < 20 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()
	backup := filepath.Join(t.TempDir(), "domain.db")
	if code, out := runOnce(t, "backup", "admin", "backup", "--data-dir", a.DataDir, "--to", backup); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, out)
	}
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	// More writes after the backup, then the admin server dies.
	n := count()
	testenv.Eventually(t, 30*time.Second, func() error {
		if count() < n+10 {
			return fmt.Errorf("%d writes", count())
		}
		return nil
	})
	// Restore is refused while the admin server runs.
	if code, out := runOnce(t, "restore-refused", "admin", "restore", "--data-dir", a.DataDir, "--from", backup); code == 0 || !strings.Contains(out, "in use") {
		t.Fatalf("restore while running: exit %d: %s", code, out)
	}
	a.Proc.Kill()
	close(stop)
	<-done
	// A file that is not a domain database is refused and changes nothing.
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, []byte("not sqlite"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runOnce(t, "restore-junk", "admin", "restore", "--data-dir", a.DataDir, "--from", junk); code == 0 {
		t.Fatalf("restore of junk: exit %d: %s", code, out)
	}
	if code, out := runOnce(t, "restore", "admin", "restore", "--data-dir", a.DataDir, "--from", backup); code != 0 || !strings.Contains(out, "before-restore") {
		t.Fatalf("restore: exit %d: %s", code, out)
	}
	restarted := time.Now()
	a.Restart()
	clusters, err := a.API.Clusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range clusters {
		have[c.Name] = true
	}
	for _, name := range append([]string{"c1"}, before...) {
		if !have[name] {
			t.Fatalf("cluster %s, acknowledged before the backup, is missing after the restore", name)
		}
	}
	t.Logf("%d writes acknowledged before the backup, %d after; the restored domain has %d clusters", len(before), count()-len(before), len(clusters))
	// The node reconnects to the restored domain.
	testenv.Eventually(t, 30*time.Second, wsRunning(restarted))
	// The restored domain takes writes.
	if _, err := a.API.CreateCluster(ctx, domain.Cluster{Name: "after-restore"}); err != nil {
		t.Fatalf("write after restore: %v", err)
	}
}

// TestPeriodicBackupsAndOneAdminPerFolder: with --backup-every the admin
// server writes backups into DATA_DIR/backups and keeps the newest ones
// only; a second admin server on the same folder is refused.
func TestPeriodicBackupsAndOneAdminPerFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- admin.Run(ctx, admin.Config{Listen: "127.0.0.1:0", DataDir: dir, AdminToken: "backup-test-admin-token", Stdout: io.Discard,
			BackupEvery: 30 * time.Millisecond, BackupKeep: 2, Ready: func(string) { close(ready) }}, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	<-ready
	err := admin.Run(context.Background(), admin.Config{Listen: "127.0.0.1:0", DataDir: dir, AdminToken: "backup-test-admin-token", Stdout: io.Discard}, nil)
	if !errors.Is(err, admin.ErrDataDirInUse) {
		t.Fatalf("second admin server on the folder: %v, want ErrDataDirInUse", err)
	}
	backups := filepath.Join(dir, admin.BackupDir)
	seen := map[string]bool{}
	testenv.Eventually(t, 30*time.Second, func() error {
		ents, err := os.ReadDir(backups)
		if err != nil {
			return err
		}
		if len(ents) > 2 {
			return fmt.Errorf("%d backups kept, want at most 2", len(ents))
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".db") {
				seen[e.Name()] = true
				if st, err := os.Stat(filepath.Join(backups, e.Name())); err == nil && st.Mode().Perm() != 0o600 {
					t.Fatalf("backup %s mode %v", e.Name(), st.Mode().Perm())
				}
			}
		}
		if len(seen) < 4 {
			return fmt.Errorf("%d backups written so far", len(seen))
		}
		return nil
	})
}
