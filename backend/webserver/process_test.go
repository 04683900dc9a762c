package webserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/route"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

func writeCache(t *testing.T, dir string, cfg wire.Config) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, CacheFile)); err != nil {
		t.Fatal(err)
	}
}

func askServer(url, cookie string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Tandem-Server"), nil
}

// TestProcessBootsFromCacheWithAdminDown runs the real binary with an
// unreachable admin server: it routes with its cached table, keeps
// routing under load while members come and go, and stops cleanly on
// SIGTERM.
func TestProcessBootsFromCacheWithAdminDown(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", nil)
	b := newUpstream(t, "ms2", "b", nil)
	dir := t.TempDir()
	listen := testenv.FreeAddr(t)
	writeCache(t, dir, wire.Config{Revision: 3, Checksum: "c3", WebServer: &wire.WebServerConfig{
		Name: "ws1", Listen: listen, Cluster: wire.ClusterSettings{Name: "c1"},
		CookieNames: []string{"JSESSIONID"}, Members: []wire.Member{a.member(), b.member()},
	}})
	adminListen := testenv.FreeAddr(t)
	p := testenv.Start(t, "ws1", []string{"TANDEM_NODE_TOKEN=test-node-token"},
		"webserver", "--name", "ws1", "--admin", "http://"+testenv.FreeAddr(t), "--data-dir", dir,
		"--admin-listen", adminListen, "--probe-interval", "100ms")
	base := "http://" + listen
	testenv.WaitHTTP(t, base+"/_tandem/healthz", 20*time.Second)
	testenv.WaitHTTP(t, "http://"+adminListen+"/healthz", 5*time.Second)

	cookieB := "JSESSIONID=" + route.Value{ID: route.NewID(), Primary: "b", Backup: "a"}.String()
	for i := 0; i < 10; i++ {
		code, srv, err := askServer(base+"/counter", cookieB)
		if err != nil || code != 200 || srv != "ms2" {
			t.Fatalf("sticky to ms2: %d %q %v", code, srv, err)
		}
	}
	// /ping is forwarded, /metrics is the application's.
	if code, srv, err := askServer(base+"/ping", ""); err != nil || code != 200 || !strings.HasPrefix(srv, "ms") {
		t.Fatalf("/ping not forwarded: %d %q %v", code, srv, err)
	}
	resp, err := http.Get("http://" + adminListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `tandem_webserver_requests_total{code="200",upstream="ms2"}`) ||
		!strings.Contains(string(body), "tandem_webserver_upstream_duration_seconds_bucket") {
		t.Fatalf("metrics lack per-upstream counters: %.500s", body)
	}

	// A running client keeps going while ms2 disappears: only 2xx.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Int64
	var lastBad atomic.Value
	var n atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _, err := askServer(base+"/counter", cookieB)
				n.Add(1)
				if err != nil || code != 200 {
					bad.Add(1)
					lastBad.Store(fmt.Sprintf("%d %v", code, err))
				}
			}
		}()
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n.Load() < 50 {
			return fmt.Errorf("%d requests so far", n.Load())
		}
		return nil
	})
	b.srv.CloseClientConnections()
	b.srv.Close()
	before := n.Load()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n.Load() < before+200 {
			return fmt.Errorf("%d requests since ms2 went away", n.Load()-before)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d requests failed while ms2 went away; last: %v", bad.Load(), n.Load(), lastBad.Load())
	}
	if code, srv, _ := askServer(base+"/counter", cookieB); code != 200 || srv != "ms1" {
		t.Fatalf("after ms2 left: %d from %q, want ms1 (backup)", code, srv)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("web server did not stop on SIGTERM")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// TestProcessAppliesNewTableLive: without an admin server, a new table in
// the data folder is applied without a restart.
func TestProcessAppliesNewTableLive(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", nil)
	b := newUpstream(t, "ms2", "b", nil)
	dir := t.TempDir()
	listen := testenv.FreeAddr(t)
	table := func(rev int64, members ...wire.Member) wire.Config {
		return wire.Config{Revision: rev, Checksum: fmt.Sprint("sum", rev), WebServer: &wire.WebServerConfig{
			Name: "ws1", Listen: listen, Cluster: wire.ClusterSettings{Name: "c1"},
			CookieNames: []string{"JSESSIONID", "APPSESSION"}, Members: members,
		}}
	}
	writeCache(t, dir, table(1, a.member()))
	p := testenv.Start(t, "ws1", nil, "webserver", "--name", "ws1", "--data-dir", dir, "--access-log-every", "1")
	base := "http://" + listen
	testenv.WaitHTTP(t, base+"/_tandem/healthz", 20*time.Second)
	cookieB := "APPSESSION=" + route.Value{ID: route.NewID(), Primary: "b"}.String()
	if code, srv, err := askServer(base+"/counter", cookieB); err != nil || code != 200 || srv != "ms1" {
		t.Fatalf("before ms2 is in the table: %d %q %v", code, srv, err)
	}
	writeCache(t, dir, table(2, a.member(), b.member()))
	testenv.Eventually(t, 10*time.Second, func() error {
		code, srv, err := askServer(base+"/counter", cookieB)
		if err != nil || code != 200 || srv != "ms2" {
			return fmt.Errorf("got %d from %q (%v)", code, srv, err)
		}
		return nil
	})
	// One access log line per request, with route, upstream and status,
	// and never the session id.
	v := route.Value{ID: route.NewID(), Primary: "b"}
	if code, _, err := askServer(base+"/secret;jsessionid="+v.String()+"?token=x", ""); err != nil || code != 200 {
		t.Fatalf("url rewriting: %d %v", code, err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		logb, _ := os.ReadFile(p.LogPath)
		if !strings.Contains(string(logb), "path=/secret route=b upstream=ms2 status=200") {
			return fmt.Errorf("no access log line for /secret")
		}
		if strings.Contains(string(logb), v.ID) || strings.Contains(string(logb), "token=x") {
			return fmt.Errorf("session id or query in the log")
		}
		return nil
	})
}

// TestProcessTableFromAdminSurvivesAdminDeath: the routing table comes
// from a real admin server over the control channel (the agent), a new
// member is pushed live, SIGKILL of the admin changes nothing for
// traffic, and a restart with the admin still dead boots from the
// agent's cache.
func TestProcessTableFromAdminSurvivesAdminDeath(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", nil)
	b := newUpstream(t, "ms2", "b", nil)
	const adminToken = "ws-test-admin-token-0123456789abcdef"
	const nodeToken = "ws-test-node-token-0123456789abcdef"
	adminAddr := testenv.FreeAddr(t)
	admin := testenv.Start(t, "admin", []string{"TANDEM_ADMIN_TOKEN=" + adminToken, "TANDEM_NODE_TOKEN=" + nodeToken},
		"admin", "--listen", adminAddr, "--data-dir", t.TempDir(), "--plain-http")
	testenv.WaitHTTP(t, "http://"+adminAddr+"/healthz", 30*time.Second)
	cl := client.New("http://"+adminAddr, adminToken)
	ctx := context.Background()
	if _, err := cl.CreateCluster(ctx, domain.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateServer(ctx, domain.Server{Name: "ms1", Cluster: "c1", Route: "a", Listen: a.member().Listen}); err != nil {
		t.Fatal(err)
	}
	listen := testenv.FreeAddr(t)
	if _, err := cl.CreateWebServer(ctx, domain.WebServer{Name: "ws1", Cluster: "c1", Listen: listen}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"webserver", "--name", "ws1", "--admin", "http://" + adminAddr, "--data-dir", dir, "--probe-interval", "100ms"}
	ws := testenv.Start(t, "ws1", []string{"TANDEM_NODE_TOKEN=" + nodeToken}, args...)
	base := "http://" + listen
	testenv.WaitHTTP(t, base+"/_tandem/healthz", 30*time.Second)
	cookieB := "JSESSIONID=" + route.Value{ID: route.NewID(), Primary: "b", Backup: "a"}.String()
	if code, srv, err := askServer(base+"/counter", cookieB); err != nil || code != 200 || srv != "ms1" {
		t.Fatalf("before ms2 exists: %d %q %v", code, srv, err)
	}
	if _, err := cl.CreateServer(ctx, domain.Server{Name: "ms2", Cluster: "c1", Route: "b", Listen: b.member().Listen}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if code, srv, err := askServer(base+"/counter", cookieB); err != nil || code != 200 || srv != "ms2" {
			return fmt.Errorf("pushed table not applied yet: %d %q %v", code, srv, err)
		}
		return nil
	})
	admin.Kill()
	for i := 0; i < 50; i++ {
		if code, srv, err := askServer(base+"/counter", cookieB); err != nil || code != 200 || srv != "ms2" {
			t.Fatalf("with the admin dead: %d %q %v", code, srv, err)
		}
	}
	if err := ws.Stop(10 * time.Second); err != nil {
		t.Fatalf("web server exit: %v", err)
	}
	testenv.Start(t, "ws1-restarted", []string{"TANDEM_NODE_TOKEN=" + nodeToken}, args...)
	testenv.WaitHTTP(t, base+"/_tandem/healthz", 30*time.Second)
	if code, srv, err := askServer(base+"/counter", cookieB); err != nil || code != 200 || srv != "ms2" {
		t.Fatalf("restarted with the admin dead: %d %q %v", code, srv, err)
	}
}
