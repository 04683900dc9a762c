package haproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/pki"
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
		"http-request set-header X-Tandem-Request-Id %[unique-id]",
		"http-request del-header X-Tandem-Forwarded",
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

// With member_tls every server line speaks TLS to the server and checks
// its certificate against the domain CA and the server's own name; HAProxy
// accepts the file.
func TestRenderMemberTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := pki.LoadOrCreateCA(dir); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, pki.CACertFile)
	out, err := RenderWith("0.0.0.0:8080", wire.ClusterSettings{Name: "c1", HeartbeatIntervalMS: 500, MemberTLS: true}, nil, four, Options{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range four {
		if want := "ssl verify required ca-file " + caFile + " verifyhost " + m.Name; !strings.Contains(out, want) {
			t.Errorf("rendered config lacks %q", want)
		}
	}
	plain, _ := Render("0.0.0.0:8080", wire.ClusterSettings{Name: "c1", HeartbeatIntervalMS: 500}, nil, four)
	if strings.Contains(plain, " ssl ") {
		t.Error("ssl without member_tls")
	}
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

const nodeToken = "haproxy-test-node-token-0123456789"

// managedCluster starts 4 real `tandem server` processes booting from
// cached configs (no admin server) and waits until each has a backup.
func managedCluster(t *testing.T) ([]wire.Member, map[string]*testenv.Proc, map[string]string) {
	t.Helper()
	var members []wire.Member
	dirs := map[string]string{}
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("ms%d", i)
		members = append(members, wire.Member{Name: name, Route: name, Listen: testenv.FreeAddr(t)})
		dirs[name] = t.TempDir()
	}
	for _, m := range members {
		sc := wire.ServerConfig{
			Self:    m,
			Cluster: wire.ClusterSettings{Name: "c1", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 800},
			Members: members,
			Session: domain.DefaultSessionConfig(),
		}
		b, _ := json.Marshal(wire.Config{Revision: 1, Checksum: "t", Server: &sc})
		if err := os.WriteFile(filepath.Join(dirs[m.Name], "applied-config.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	procs := map[string]*testenv.Proc{}
	for _, m := range members {
		procs[m.Name] = startServer(t, m, dirs[m.Name])
	}
	for _, m := range members {
		testenv.Eventually(t, 30*time.Second, func() error {
			req, _ := http.NewRequest(http.MethodGet, "http://"+m.Listen+"/internal/v1/status", nil)
			req.Header.Set("Authorization", "Bearer "+nodeToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var hb wire.Heartbeat
			if err := json.NewDecoder(resp.Body).Decode(&hb); err != nil {
				return err
			}
			if hb.Backup == "" || len(hb.Peers) != len(members)-1 {
				return fmt.Errorf("%s: backup %q, %d peers", m.Name, hb.Backup, len(hb.Peers))
			}
			return nil
		})
	}
	return members, procs, dirs
}

func startServer(t *testing.T, m wire.Member, dir string) *testenv.Proc {
	t.Helper()
	p := testenv.Start(t, m.Name, []string{"TANDEM_NODE_TOKEN=" + nodeToken},
		"server", "--name", m.Name, "--admin", "http://127.0.0.1:1", "--data-dir", dir, "--log-level", "warn")
	testenv.WaitHTTP(t, "http://"+m.Listen+"/healthz", 20*time.Second)
	return p
}

type session struct {
	cookie string
	count  int
	server string
	home   string
}

// hit sends GET /counter with the session's cookie and checks: 2xx, count
// continuous (one skip tolerated per session while tolerate is set: a
// request cut off by the kill may have been counted), cookie updated.
func hit(client *http.Client, base string, s *session, tolerate bool) error {
	req, _ := http.NewRequest(http.MethodGet, base+"/counter", nil)
	if s.cookie != "" {
		req.Header.Set("Cookie", "JSESSIONID="+s.cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	var cb struct {
		Server string `json:"server"`
		Count  int    `json:"count"`
	}
	if err := json.Unmarshal(body, &cb); err != nil {
		return fmt.Errorf("body %q: %w", body, err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "JSESSIONID" {
			s.cookie = c.Value
		}
	}
	if cb.Count != s.count+1 && !(tolerate && cb.Count == s.count+2) {
		return fmt.Errorf("count %d from %s, want %d (last from %s): session lost or not continuous", cb.Count, cb.Server, s.count+1, s.server)
	}
	s.count, s.server = cb.Count, cb.Server
	return nil
}

// TestHAProxyStickyAndFailover runs real HAProxy with the rendered config
// in front of four real `tandem server` processes: sessions created
// through it stick to their primary; after SIGKILL of a primary no request
// fails and no session is lost (its backup serves them); the URL-rewriting
// form sticks too.
func TestHAProxyStickyAndFailover(t *testing.T) {
	t.Parallel()
	members, procs, _ := managedCluster(t)
	listen := testenv.FreeAddr(t)
	cfg, err := RenderWith(listen, wire.ClusterSettings{Name: "c1", HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 800}, []string{"JSESSIONID"}, members, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	startHAProxy(t, cfg)
	base := "http://" + listen
	testenv.WaitHTTP(t, base+"/ping", 20*time.Second)

	client := &http.Client{Timeout: 15 * time.Second}
	sessions := make([]*session, 80)
	for i := range sessions {
		sessions[i] = &session{}
		if err := hit(client, base, sessions[i], false); err != nil {
			t.Fatal(err)
		}
		sessions[i].home = sessions[i].server
		v, err := route.Parse(sessions[i].cookie)
		if err != nil || v.Primary != sessions[i].server || v.Backup == "" {
			t.Fatalf("cookie %q of a session created on %s", sessions[i].cookie, sessions[i].server)
		}
	}
	for round := 0; round < 3; round++ {
		for _, s := range sessions {
			if err := hit(client, base, s, false); err != nil {
				t.Fatal(err)
			}
			if s.server != s.home {
				t.Fatalf("session of %s served by %s: not sticky", s.home, s.server)
			}
		}
	}
	// URL rewriting form sticks too.
	s := sessions[0]
	req, _ := http.NewRequest(http.MethodGet, base+"/counter;jsessionid="+s.cookie, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Tandem-Server") != s.home {
		t.Fatalf(";jsessionid=: %d from %q, want %s", resp.StatusCode, resp.Header.Get("X-Tandem-Server"), s.home)
	}
	s.count++

	victim := sessions[0].home
	var victims int
	for _, s := range sessions {
		if s.home == victim {
			victims++
		}
	}
	procs[victim].Kill()
	for round := 0; round < 3; round++ {
		for _, s := range sessions {
			if err := hit(client, base, s, round == 0); err != nil {
				t.Fatalf("after SIGKILL of %s, session of %s: %v", victim, s.home, err)
			}
			if s.home == victim && s.server == victim {
				t.Fatalf("session served by the dead %s", victim)
			}
			if s.home != victim && s.server != s.home {
				t.Fatalf("session of %s moved to %s", s.home, s.server)
			}
		}
	}
	t.Logf("%d sessions of %s survived its SIGKILL", victims, victim)

	// A frozen server: its users' requests wait at most the session server
	// timeout (heartbeat timeout + 1 s), then HAProxy resends them; none
	// fails, none is lost or goes back. After SIGCONT, the cookies from
	// before the freeze (naming the frozen server) are replayed: the woken
	// server serves nothing stale.
	frozen := ""
	for _, s := range sessions {
		if s.home != victim {
			frozen = s.home
			break
		}
	}
	old := make([]string, len(sessions))
	for i, s := range sessions {
		old[i] = s.cookie
	}
	if err := procs[frozen].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		worst time.Duration
		errs  []string
	)
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				start := time.Now()
				err := hit(client, base, s, false)
				mu.Lock()
				worst = max(worst, time.Since(start))
				if err != nil {
					errs = append(errs, fmt.Sprintf("session of %s: %v", s.home, err))
				} else if s.server == frozen {
					errs = append(errs, "served by the frozen "+frozen)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := procs[frozen].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatalf("while %s was frozen: %d failures, first: %s", frozen, len(errs), errs[0])
	}
	t.Logf("%s frozen: every request answered, worst %s", frozen, worst.Round(time.Millisecond))
	testenv.WaitHTTP(t, "http://"+memberNamed(members, frozen).Listen+"/healthz", 20*time.Second)
	for i, s := range sessions {
		s.cookie = old[i]
		if err := hit(client, base, s, false); err != nil {
			t.Fatalf("old cookie of a session of %s replayed after SIGCONT: %v", s.home, err)
		}
	}
}

func memberNamed(ms []wire.Member, name string) wire.Member {
	for _, m := range ms {
		if m.Name == name {
			return m
		}
	}
	return wire.Member{}
}

func TestFromWebServerConfig(t *testing.T) {
	t.Parallel()
	wc := wire.WebServerConfig{Name: "ws1", Listen: "127.0.0.1:8080", Cluster: wire.ClusterSettings{Name: "c1"}, CookieNames: []string{"SID"}, Members: four}
	got, err := FromWebServerConfig("0.0.0.0:80", wc)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Render("0.0.0.0:80", wc.Cluster, wc.CookieNames, wc.Members)
	if got != want || !strings.Contains(got, "req.cook(SID)") {
		t.Fatalf("FromWebServerConfig differs from Render")
	}
}
