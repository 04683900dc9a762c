package faults_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/agent"
	"tandem/backend/route"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// TestWebServerRetryCarriesTheSameRequestID is the web server's half of the
// fix for the harness's duplicate-apply anomaly (found with SIGKILL of a
// primary under load: "count 4 after 2 with 0 failed requests in between,
// answered by ms2 via webserver" at the moment ms1 was killed).
//
// A primary receives GET /counter, applies it (with sync replication its
// backup holds the write), then dies before it answers. The web server sees
// the connection reset after the request was sent and, GET being
// idempotent in HTTP, sends it again to the backup. The retry must carry
// the same X-Tandem-Request-Id as the first attempt: the owner keeps the
// reply of the write under that id in the session (replicated with it), so
// the backup answers the retry from the stored reply instead of applying
// it a second time (backend/session TestRetryWithSameRequestIDIsNotAppliedTwice
// is the other half). A request id sent by the client is not passed on.
//
// The members are stand-ins: the moment "applied, then killed before
// answering" cannot be hit reliably with real processes.
func TestWebServerRetryCarriesTheSameRequestID(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string // X-Tandem-Request-Id of every attempt, in order
	member := func(name string, dies bool) *httptest.Server {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
		mux.HandleFunc("GET /counter", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("X-Tandem-Request-Id"))
			mu.Unlock()
			if dies {
				// Applied, then killed before answering: the connection is reset.
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			w.Header().Set("X-Tandem-Server", name)
			_ = json.NewEncoder(w).Encode(map[string]any{"server": name, "count": 1})
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
	req.Header.Set("X-Tandem-Request-Id", "forged-by-client")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("answer %d %s; attempts carried request ids %q", resp.StatusCode, strings.TrimSpace(string(body)), seen)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Tandem-Server") != "ms2" {
		t.Fatalf("want the retry answered by ms2, got %d from %q", resp.StatusCode, resp.Header.Get("X-Tandem-Server"))
	}
	if len(seen) != 2 || seen[0] == "" || seen[0] != seen[1] {
		t.Fatalf("attempts carried request ids %q, want two equal non-empty ids", seen)
	}
	if seen[0] == "forged-by-client" {
		t.Fatalf("the client's X-Tandem-Request-Id was passed on")
	}
}
