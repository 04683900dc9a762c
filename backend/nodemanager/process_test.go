package nodemanager_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/store"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

const nodeToken = "nm-test-node-token-0123456789"

type recorder struct{ s *store.Store }

func (r recorder) Record(ctx context.Context, e domain.Event) (domain.Event, error) {
	return r.s.AppendEvent(ctx, e)
}

// domainEnv is a real store and control plane (the admin server's parts)
// serving the control channel, for real node manager and server processes.
type domainEnv struct {
	st    *store.Store
	plane *control.Plane
	url   string
}

func newDomainEnv(t *testing.T) *domainEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	plane := control.New(control.Config{Store: st, Recorder: recorder{st}, NodeToken: nodeToken})
	done := make(chan struct{})
	go func() { defer close(done); _ = plane.Run(ctx) }()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/nodes/connect", plane.ServeNode)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		cancel()
		<-done
		ts.Close()
		st.Close()
	})
	return &domainEnv{st: st, plane: plane, url: ts.URL}
}

func (d *domainEnv) process(name string) wire.ProcessState {
	for _, p := range d.plane.Processes("nm1") {
		if p.Name == name {
			return p
		}
	}
	return wire.ProcessState{}
}

func startNM(t *testing.T, d *domainEnv, label, dir, listen string) *testenv.Proc {
	t.Helper()
	p := testenv.Start(t, label, []string{"TANDEM_NODE_TOKEN=" + nodeToken}, "nodemanager", "--name", "nm1",
		"--admin", d.url, "--data-dir", dir, "--listen", listen, "--restart-delay", "50ms", "--stop-timeout", "10s")
	testenv.WaitHTTP(t, "http://"+listen+"/healthz", 30*time.Second)
	testenv.Eventually(t, 30*time.Second, func() error {
		if !d.plane.Connected("nm1") {
			return errors.New("node manager not connected")
		}
		return nil
	})
	return p
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return !strings.Contains(string(st), ") Z ")
}

// TestNodeManagerProcess runs the built binary: `tandem nodemanager`
// starts `tandem server` on command, restarts it after a crash, and a
// restart of the node manager itself leaves the server serving and
// re-adopts it.
func TestNodeManagerProcess(t *testing.T) {
	d := newDomainEnv(t)
	ctx := context.Background()
	nmAddr, msAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	if _, err := d.st.CreateNodeManager(ctx, "test", domain.NodeManager{Name: "nm1", Listen: nmAddr}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.st.CreateCluster(ctx, "test", domain.Cluster{Name: "c1", HeartbeatIntervalMS: 100, HeartbeatTimeoutMS: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.st.CreateServer(ctx, "test", domain.Server{Name: "ms1", Cluster: "c1", Listen: msAddr, NodeManager: "nm1"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { // whatever a failed test left running
		if b, err := os.ReadFile(filepath.Join(dir, "ms1.pid")); err == nil {
			var pid int
			if _, err := fmt.Sscanf(strings.SplitN(string(b), `"pid":`, 2)[1], "%d", &pid); err == nil {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "ms1", "ms1.log"))
			t.Logf("---- ms1.log ----\n%s", b)
		}
	})
	nm := startNM(t, d, "nm1", dir, nmAddr)

	// Assigned, not started.
	testenv.Eventually(t, 30*time.Second, func() error {
		if p := d.process("ms1"); p.State != domain.StateStopped {
			return fmt.Errorf("ms1 process %+v", p)
		}
		return nil
	})
	res, err := d.plane.Command(ctx, "nm1", wire.Command{Action: wire.ActionStart, Target: "ms1"})
	if err != nil || !res.OK || res.PID == 0 {
		t.Fatalf("start: %+v %v", res, err)
	}
	pid := res.PID
	testenv.Eventually(t, 30*time.Second, func() error {
		l, ok := d.plane.Live("ms1")
		if !ok || l.State != domain.StateRunning || l.PID != pid {
			return fmt.Errorf("ms1 live %+v", l)
		}
		return nil
	})
	if code, body, err := get("http://" + msAddr + "/counter"); err != nil || code != 200 || !strings.Contains(body, `"server":"ms1"`) {
		t.Fatalf("ms1 /counter: %d %s %v", code, body, err)
	}
	if code, body, err := get("http://" + nmAddr + "/metrics"); err != nil || code != 200 ||
		!strings.Contains(body, `tandem_nodemanager_process_up{kind="server",process="ms1"} 1`) {
		t.Fatalf("metrics: %d %v\n%s", code, err, body)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ms1", "ms1.log")); err != nil || !strings.Contains(string(b), "ms1") {
		t.Fatalf("ms1's log: %v", err)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if strings.Contains(string(cmdline), nodeToken) {
		t.Fatal("node token in the server's arguments")
	}

	// A crash is restarted by the node manager.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		p := d.process("ms1")
		if p.State != domain.StateRunning || p.PID == pid || p.PID == 0 || p.Restarts != 1 {
			return fmt.Errorf("ms1 process %+v", p)
		}
		return nil
	})
	pid = d.process("ms1").PID
	testenv.Eventually(t, 30*time.Second, func() error {
		l, ok := d.plane.Live("ms1")
		if !ok || l.State != domain.StateRunning || l.PID != pid {
			return fmt.Errorf("ms1 live %+v, want running pid %d", l, pid)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		evs, err := d.st.Events(ctx, domain.EventFilter{Types: []string{domain.EventProcessExited, domain.EventProcessStarted}, Server: "ms1", Limit: 10})
		if err != nil || len(evs) < 3 {
			return fmt.Errorf("process events %+v %v", evs, err)
		}
		return nil
	})

	// The node manager stops; the server keeps serving.
	if err := nm.Stop(20 * time.Second); err != nil {
		t.Fatalf("node manager exit: %v", err)
	}
	if !alive(pid) {
		t.Fatal("the server died with its node manager")
	}
	if code, _, err := get("http://" + msAddr + "/ping"); err != nil || code != 200 {
		t.Fatalf("ms1 not serving without its node manager: %d %v", code, err)
	}

	// A new node manager re-adopts it instead of starting another.
	startNM(t, d, "nm1-again", dir, nmAddr)
	testenv.Eventually(t, 30*time.Second, func() error {
		if p := d.process("ms1"); p.State != domain.StateRunning || p.PID != pid {
			return fmt.Errorf("ms1 process %+v, want running pid %d", p, pid)
		}
		return nil
	})
	res, err = d.plane.Command(ctx, "nm1", wire.Command{Action: wire.ActionStart, Target: "ms1"})
	if err != nil || !res.OK || res.PID != pid {
		t.Fatalf("start of the re-adopted server: %+v %v, want pid %d", res, err, pid)
	}
	res, err = d.plane.Command(ctx, "nm1", wire.Command{Action: wire.ActionStop, Target: "ms1"})
	if err != nil || !res.OK {
		t.Fatalf("stop: %+v %v", res, err)
	}
	if alive(pid) {
		t.Fatal("stopped server still alive")
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if l, _ := d.plane.Live("ms1"); l.State == domain.StateRunning {
			return fmt.Errorf("ms1 live %+v", l)
		}
		return nil
	})
	if res, err := d.plane.Command(ctx, "nm1", wire.Command{Action: wire.ActionStart, Target: "nope"}); err != nil || res.OK {
		t.Fatalf("unknown target: %+v %v", res, err)
	}
}
