package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/route"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

var four = []wire.Member{
	{Name: "ms1", Route: "a", Listen: "127.0.0.1:9741"},
	{Name: "ms2", Route: "b", Listen: "127.0.0.1:9742"},
	{Name: "ms3", Route: "c", Listen: "127.0.0.1:9743"},
	{Name: "ms4", Route: "d", Listen: "127.0.0.1:9744"},
}

func TestRenderRejectsInjection(t *testing.T) {
	t.Parallel()
	c := wire.ClusterSettings{Name: "c1"}
	bad := func(mut func(m []wire.Member) []wire.Member) []wire.Member {
		m := append([]wire.Member(nil), four...)
		return mut(m)
	}
	tests := []struct {
		name    string
		listen  string
		cluster wire.ClusterSettings
		cookies []string
		members []wire.Member
	}{
		{"listen newline", "127.0.0.1:80\n    stats enable", c, nil, four},
		{"listen no port", "127.0.0.1", c, nil, four},
		{"cluster name", "127.0.0.1:80", wire.ClusterSettings{Name: "c1\nglobal"}, nil, four},
		{"cookie with space", "127.0.0.1:80", c, []string{"JSESSIONID }"}, four},
		{"cookie with paren", "127.0.0.1:80", c, []string{"a)"}, four},
		{"member name", "127.0.0.1:80", c, nil, bad(func(m []wire.Member) []wire.Member { m[0].Name = "ms1 check"; return m })},
		{"member route", "127.0.0.1:80", c, nil, bad(func(m []wire.Member) []wire.Member { m[1].Route = "b }"; return m })},
		{"duplicate route", "127.0.0.1:80", c, nil, bad(func(m []wire.Member) []wire.Member { m[1].Route = "a"; return m })},
		{"member listen", "127.0.0.1:80", c, nil, bad(func(m []wire.Member) []wire.Member { m[2].Listen = "evil host:1"; return m })},
		{"no members", "127.0.0.1:80", c, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if out, err := Render(tt.listen, tt.cluster, tt.cookies, tt.members); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Render = %q, %v; want ErrInvalid", out, err)
			}
		})
	}
}

func TestRenderContents(t *testing.T) {
	t.Parallel()
	out, err := Render("0.0.0.0:8080", wire.ClusterSettings{Name: "c1", HeartbeatIntervalMS: 500}, []string{"JSESSIONID", "APPSESSION"}, four)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bind 0.0.0.0:8080",
		"balance leastconn",
		"option httpchk GET /healthz",
		"option redispatch",
		"retries 3",
		"req.cook(JSESSIONID)",
		"req.cook(APPSESSION)",
		";jsessionid=",
		"use-server ms3 if { var(txn.tandem_primary) -m str c }",
		"use-server ms3 if { var(txn.tandem_backup) -m str c }",
		"server ms4 127.0.0.1:9744 check inter 500ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered config lacks %q", want)
		}
	}
	// Primary rules come before backup rules.
	if strings.Index(out, "tandem_primary) -m str d") > strings.Index(out, "tandem_backup) -m str a") {
		t.Errorf("backup rules before primary rules")
	}
	again, _ := Render("0.0.0.0:8080", wire.ClusterSettings{Name: "c1", HeartbeatIntervalMS: 500}, []string{"JSESSIONID", "APPSESSION"}, four)
	if again != out {
		t.Errorf("Render is not deterministic")
	}
	// HAProxy itself accepts it.
	checkWithHAProxy(t, out)
}

const haproxyBin = "/usr/sbin/haproxy"

func haproxyPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat(haproxyBin); err != nil {
		t.Fatalf("haproxy is not installed (Debian package haproxy; .ci/run installs it): %v", err)
	}
	return haproxyBin
}

func checkWithHAProxy(t *testing.T, cfg string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(haproxyPath(t), "-c", "-f", f).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c rejects the rendered config: %v\n%s\n%s", err, out, cfg)
	}
}

// startHAProxy runs real HAProxy in the foreground with cfg until cleanup.
func startHAProxy(t *testing.T, cfg string) {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxyPath(t), "-db", "-f", f)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("---- haproxy log ----\n%s", b)
		}
	})
}

// stickyApp stands in for a managed server until tandem server exists:
// /counter keeps a per-session count and names the server.
type stickyApp struct {
	name string
	srv  *httptest.Server
}

func newStickyApp(t *testing.T, name string) *stickyApp {
	a := &stickyApp{name: name}
	var mu sync.Mutex
	counts := map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		id := "new"
		if c, err := r.Cookie("JSESSIONID"); err == nil {
			if v, err := route.Parse(c.Value); err == nil {
				id = v.ID
			}
		}
		mu.Lock()
		counts[id]++
		n := counts[id]
		mu.Unlock()
		w.Header().Set("X-Tandem-Server", name)
		fmt.Fprintf(w, `{"server":%q,"count":%d}`, name, n)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// TestHAProxyStickyAndFailover runs real HAProxy with the rendered config
// in front of four real HTTP servers: sessions stick to their primary
// route, go to their backup when the primary is gone, and no GET fails.
func TestHAProxyStickyAndFailover(t *testing.T) {
	t.Parallel()
	var apps []*stickyApp
	var members []wire.Member
	for i, r := range []string{"a", "b", "c", "d"} {
		app := newStickyApp(t, fmt.Sprintf("ms%d", i+1))
		apps = append(apps, app)
		members = append(members, wire.Member{Name: app.name, Route: r, Listen: app.srv.Listener.Addr().String()})
	}
	listen := testenv.FreeAddr(t)
	cfg, err := RenderWith(listen, wire.ClusterSettings{Name: "c1", HeartbeatIntervalMS: 200}, []string{"JSESSIONID"}, members, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	startHAProxy(t, cfg)
	base := "http://" + listen
	testenv.Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get(base + "/counter")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})

	type sess struct{ cookie, primary, backup string }
	routes := []string{"a", "b", "c", "d"}
	serverOf := map[string]string{"a": "ms1", "b": "ms2", "c": "ms3", "d": "ms4"}
	var sessions []sess
	for i := 0; i < 40; i++ {
		p, b := routes[i%4], routes[(i+1)%4]
		sessions = append(sessions, sess{"JSESSIONID=" + route.Value{ID: route.NewID(), Primary: p, Backup: b}.String(), p, b})
	}
	client := &http.Client{Timeout: 10 * time.Second}
	ask := func(s sess, url string) (int, string, error) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if s.cookie != "" {
			req.Header.Set("Cookie", s.cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Tandem-Server"), nil
	}
	for round := 0; round < 3; round++ {
		for _, s := range sessions {
			code, srv, err := ask(s, base+"/counter")
			if err != nil || code != 200 || srv != serverOf[s.primary] {
				t.Fatalf("session on %s: got %d from %q (%v)", s.primary, code, srv, err)
			}
		}
	}
	// URL rewriting form sticks too.
	v := route.Value{ID: route.NewID(), Primary: "c", Backup: "d"}
	if code, srv, err := ask(sess{}, base+"/counter;jsessionid="+v.String()); err != nil || code != 200 || srv != "ms3" {
		t.Fatalf(";jsessionid=: got %d from %q (%v)", code, srv, err)
	}

	// Loss of primary b (ms2): no request fails; HAProxy's redispatch of
	// the request that found ms2 dead goes to any server (leastconn), and
	// once ms2 is marked down (at once: observe layer4) every session of
	// b goes to its backup c.
	apps[1].srv.CloseClientConnections()
	apps[1].srv.Listener.Close()
	for _, s := range sessions {
		code, _, err := ask(s, base+"/counter")
		if err != nil || code != 200 {
			t.Fatalf("right after losing ms2: got %d (%v)", code, err)
		}
	}
	for round := 0; round < 3; round++ {
		for _, s := range sessions {
			code, srv, err := ask(s, base+"/counter")
			want := serverOf[s.primary]
			if s.primary == "b" {
				want = serverOf[s.backup]
			}
			if err != nil || code != 200 || srv != want {
				t.Fatalf("after losing ms2, session %s!%s: got %d from %q (%v), want %s", s.primary, s.backup, code, srv, err, want)
			}
		}
	}
}
