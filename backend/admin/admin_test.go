package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/backend/admin"
	"tandem/backend/auth"
	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

var tokenLine = regexp.MustCompile(`(?m)^[0-9a-f]{64}$`)

func startAdmin(t *testing.T, name, dir, addr string) *testenv.Proc {
	t.Helper()
	p := testenv.Start(t, name, []string{"TANDEM_ADMIN_TOKEN=", "TANDEM_ADMIN_TOKEN_FILE=", "TANDEM_NODE_TOKEN=", "TANDEM_NODE_TOKEN_FILE="},
		"admin", "--listen", addr, "--data-dir", dir, "--plain-http", "--log-level", "debug")
	testenv.WaitHTTP(t, "http://"+addr+"/healthz", 30*time.Second)
	return p
}

func stopClean(t *testing.T, p *testenv.Proc) {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("admin did not stop after SIGTERM")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("admin exit: %v", err)
	}
}

// TestAdminProcessRestart runs the real binary: first start prints the
// bootstrap token once, SIGTERM stops it cleanly, and a second start on the
// same folder finds everything and prints nothing.
func TestAdminProcessRestart(t *testing.T) {
	dir := t.TempDir()
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	p1 := startAdmin(t, "admin-1", dir, addr)
	log1, _ := os.ReadFile(p1.LogPath)
	tokens := tokenLine.FindAllString(string(log1), -1)
	if len(tokens) != 1 {
		t.Fatalf("want the bootstrap token printed once, found %d", len(tokens))
	}
	tok := tokens[0]
	fi, err := os.Stat(filepath.Join(dir, auth.NodeTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node token file: %v %v", fi, err)
	}

	ctx := context.Background()
	c := client.New(base, tok)
	if _, err := c.CreateNodeManager(ctx, domain.NodeManager{Name: "nm1", Listen: "127.0.0.1:9740"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateCluster(ctx, domain.Cluster{Name: "prod", FailoverMode: domain.FailoverVerify}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateServer(ctx, domain.Server{Name: "ms1", Cluster: "prod", Listen: testenv.FreeAddr(t), NodeManager: "nm1"}); err != nil {
		t.Fatal(err)
	}
	name := "SID"
	if _, err := c.SetServerSessionConfig(ctx, "ms1", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: &name}}); err != nil {
		t.Fatal(err)
	}
	// Typed errors through the client.
	_, err = c.CreateCluster(ctx, domain.Cluster{Name: "prod"})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Field != "name" || !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := client.New(base, "").Clusters(ctx); !errors.Is(err, domain.ErrUnauthorized) {
		t.Fatalf("no token: %v", err)
	}
	// The console is mounted at /.
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(strings.ToLower(string(page)), "<html") {
		t.Fatalf("console: %d", resp.StatusCode)
	}
	// A real managed server connects over the control channel with the
	// node token, applies its desired config, and the topology shows it.
	ms1 := testenv.Start(t, "ms1", nil, "server", "--name", "ms1", "--admin", base, "--data-dir", filepath.Join(t.TempDir(), "ms1"),
		"--node-token-file", filepath.Join(dir, auth.NodeTokenFile))
	testenv.Eventually(t, 60*time.Second, func() error {
		topo, err := c.Topology(ctx)
		if err != nil {
			return err
		}
		s := topo.Clusters[0].Servers[0]
		if s.State != domain.StateRunning || s.PID != ms1.PID() || s.AppliedRevision != 2 || s.DesiredRevision != 2 {
			return fmt.Errorf("ms1 in topology: %+v", s)
		}
		return nil
	})
	if err := ms1.Stop(10 * time.Second); err != nil {
		t.Logf("ms1 exit: %v", err)
	}
	stopClean(t, p1)

	p2 := startAdmin(t, "admin-2", dir, addr)
	log2, _ := os.ReadFile(p2.LogPath)
	if tokenLine.MatchString(string(log2)) {
		t.Fatal("second start printed a token again")
	}
	cl, err := c.Cluster(ctx, "prod")
	if err != nil || cl.FailoverMode != domain.FailoverVerify {
		t.Fatalf("after restart: %+v %v", cl, err)
	}
	v, err := c.ServerSessionConfig(ctx, "ms1")
	if err != nil || v.Revision != 2 || v.Effective.Cookie.Name != "SID" {
		t.Fatalf("session config after restart: %+v %v", v, err)
	}
	topo, err := c.Topology(ctx)
	if err != nil || len(topo.Clusters) != 1 || topo.Clusters[0].Servers[0].State != domain.StateStopped || topo.Clusters[0].Servers[0].DesiredRevision != 2 {
		t.Fatalf("topology: %+v %v", topo, err)
	}
	stopClean(t, p2)
}

// TestRunStopsWhenALoopFails: an extension loop's failure ends Run with
// that error instead of leaving a half-working server.
func TestRunStopsWhenALoopFails(t *testing.T) {
	boom := errors.New("boom")
	release := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- admin.Run(context.Background(), admin.Config{
			Listen: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: "run-test-admin-token", Stdout: io.Discard,
			Ready: func(string) { close(release) },
			Extend: func(ctx context.Context, d admin.Deps) (admin.Extensions, error) {
				return admin.Extensions{Loops: []func(context.Context) error{func(ctx context.Context) error {
					select {
					case <-release:
					case <-ctx.Done():
						return nil
					}
					return boom
				}}}, nil
			},
		}, nil)
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want boom", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end after a loop failed")
	}
}
