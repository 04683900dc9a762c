package faults_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tandem/backend/agent"
	"tandem/backend/route"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// TestWebServerDoesNotApplyAWriteTwice is the focused reproduction of the
// harness's duplicate-apply anomaly (found with SIGKILL of a primary under
// load: "count 4 after 2 with 0 failed requests in between, answered by
// ms2 via webserver" at the moment ms1 was killed).
//
// A primary receives GET /counter, applies it (and, with sync replication,
// its backup holds the write), then dies before it answers. The real
// `tandem webserver` sees the connection reset after the request was sent
// and, because GET is idempotent in HTTP, sends it again to the backup,
// which applies it a second time: the client gets one 200 whose counter
// went up by two. The sample application's /counter (like most session
// writes in the field) is not idempotent, so a request already delivered
// to a member must not be re-sent elsewhere (HAProxy's default: retry on
// connection failure only); the client should get the 502 instead.
//
// The two members are stand-ins sharing one counter (the replicated
// session): the moment "applied, then killed before answering" cannot be
// hit reliably with real processes.
func TestWebServerDoesNotApplyAWriteTwice(t *testing.T) {
	t.Parallel()
	var count atomic.Int64 // the session's counter, as both copies hold it
	var dying atomic.Bool
	dying.Store(true)
	member := func(name string, dies bool) *httptest.Server {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
		mux.HandleFunc("GET /counter", func(w http.ResponseWriter, r *http.Request) {
			n := count.Add(1) // applied (and replicated)
			if dies && dying.Load() {
				// Killed before answering: the connection is reset.
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			w.Header().Set("X-Tandem-Server", name)
			_ = json.NewEncoder(w).Encode(map[string]any{"server": name, "count": n})
		})
		s := httptest.NewServer(mux)
		t.Cleanup(s.Close)
		return s
	}
	a, b := member("ms1", true), member("ms2", false)
	dir := t.TempDir()
	listen := testenv.FreeAddr(t)
	cfg := wire.Config{Revision: 1, Checksum: "t", WebServer: &wire.WebServerConfig{
		Name: "ws1", Listen: listen, Cluster: wire.ClusterSettings{Name: "c1"}, CookieNames: []string{cookieName},
		Members: []wire.Member{
			{Name: "ms1", Route: "ms1", Listen: strings.TrimPrefix(a.URL, "http://")},
			{Name: "ms2", Route: "ms2", Listen: strings.TrimPrefix(b.URL, "http://")},
		},
	}}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, agent.CacheFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, "ws1", []string{"TANDEM_NODE_TOKEN=resend-test-node-token"}, "webserver", "--name", "ws1",
		"--admin", "http://"+testenv.FreeAddr(t), "--data-dir", dir, "--probe-interval", "100ms")
	testenv.WaitHTTP(t, "http://"+listen+"/_tandem/healthz", 20*time.Second)

	cookie := route.Value{ID: route.NewID(), Primary: "ms1", Backup: "ms2"}.String()
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/counter", nil)
	req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	applied := count.Load()
	t.Logf("answer %d %s; the write was applied %d times", resp.StatusCode, strings.TrimSpace(string(body)), applied)
	if resp.StatusCode == http.StatusOK && applied != 1 {
		t.Fatalf("one acknowledged request applied %s: the web server re-sent GET /counter to %s after %s had received it",
			fmt.Sprint(applied, " times"), resp.Header.Get("X-Tandem-Server"), "ms1")
	}
}
