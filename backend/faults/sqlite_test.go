package faults_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the driver gorm's sqlite driver uses

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// TestAdminDatabaseSurvivesSIGKILL: a real `tandem admin` takes heavy
// concurrent writes (servers created, cluster session defaults changed,
// which writes a revision per server) and is SIGKILLed in the middle,
// twice. Each time its SQLite file passes integrity_check and
// foreign_key_check, the admin server restarts on it, and every write it
// acknowledged is there.
func TestAdminDatabaseSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("real admin process killed under load")
	}
	ctx := context.Background()
	d := &tdomain{t: t, adminAddr: testenv.FreeAddr(t), adminDir: t.TempDir(), token: randHex(t, 24)}
	d.env = []string{"TANDEM_ADMIN_TOKEN=" + d.token, "TANDEM_NODE_TOKEN=" + randHex(t, 24),
		"TANDEM_ADMIN_TOKEN_FILE=", "TANDEM_NODE_TOKEN_FILE="}
	d.startAdmin()
	api := client.New("http://"+d.adminAddr, d.token)
	if _, err := api.CreateCluster(ctx, domain.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		created  []string // acknowledged server creations
		timeouts []int    // acknowledged cluster timeout values, in order
		tried    []int    // every timeout value sent, in order
		port     = 20000
	)
	for round := 1; round <= 2; round++ {
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var acked int
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; wctx.Err() == nil; n++ {
					mu.Lock()
					port++
					p := port
					mu.Unlock()
					name := fmt.Sprintf("r%d-w%d-%d", round, w, n)
					_, err := api.CreateServer(wctx, domain.Server{Name: name, Cluster: "c1", Listen: fmt.Sprintf("127.0.0.1:%d", p)})
					mu.Lock()
					if err == nil {
						created = append(created, name)
						acked++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Add(1)
		go func() { // one writer of cluster defaults: a revision for every server each time
			defer wg.Done()
			for v := 60 + round*10000; wctx.Err() == nil; v++ {
				mu.Lock()
				tried = append(tried, v)
				mu.Unlock()
				_, err := api.SetClusterSessionConfig(wctx, "c1", domain.SessionOverride{TimeoutSeconds: &v})
				if err == nil {
					mu.Lock()
					timeouts = append(timeouts, v)
					mu.Unlock()
				}
			}
		}()
		// Kill once enough writes of this round were acknowledged.
		err := waitFor(ctx, 60*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if acked < 100 {
				return fmt.Errorf("%d writes acknowledged", acked)
			}
			return nil
		})
		d.admin.Kill()
		stop()
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		checkSQLite(t, filepath.Join(d.adminDir, "tandem.db"))
		d.startAdmin()
		// Every acknowledged write is there.
		srvs, err := api.Servers(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, s := range srvs {
			have[s.Name] = true
		}
		mu.Lock()
		for _, n := range created {
			if !have[n] {
				t.Errorf("round %d: acknowledged server %s is gone after SIGKILL", round, n)
			}
		}
		view, err := api.ClusterSessionConfig(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if len(timeouts) > 0 {
			last := timeouts[len(timeouts)-1]
			got := view.Effective.TimeoutSeconds
			// The last acknowledged value, or one sent after it that the
			// kill cut short before its answer.
			if i := slices.Index(tried, last); got != last && !slices.Contains(tried[i+1:], got) {
				t.Errorf("round %d: cluster timeout %d after SIGKILL; last acknowledged %d", round, got, last)
			}
		}
		t.Logf("round %d: %d servers acknowledged in all, %d default changes; all present, integrity ok", round, len(created), len(timeouts))
		mu.Unlock()
	}
}

// checkSQLite opens the file as SQLite itself would after a crash (WAL
// recovery) and runs integrity_check and foreign_key_check.
func checkSQLite(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatal(err)
	}
	var res []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		res = append(res, s)
	}
	rows.Close()
	if len(res) != 1 || res[0] != "ok" {
		t.Fatalf("integrity_check: %q", res)
	}
	fk, err := db.Query("PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	defer fk.Close()
	if fk.Next() {
		t.Fatal(errors.New("foreign_key_check found violations"))
	}
}
