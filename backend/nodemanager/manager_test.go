package nodemanager

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/backend/supervise"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// The test binary stands in for `tandem server` (nomad's testtask pattern).
const taskEnv = "NODEMANAGER_TESTTASK"

func TestMain(m *testing.M) {
	if os.Getenv(taskEnv) != "" {
		fmt.Printf("child args=%q\n", os.Args[1:])
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		<-c
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func newManager(t *testing.T, dir string, stopOnExit bool) *Manager {
	t.Helper()
	m, err := NewManager(Config{
		Name: "nm1", AdminURL: "http://127.0.0.1:1", NodeToken: "node-secret-123", DataDir: dir,
		Executable: os.Args[0], extraEnv: []string{taskEnv + "=1"}, StopTimeout: 5 * time.Second,
		Policy:              supervise.Policy{MaxRestarts: 2, Interval: time.Minute, Delay: 20 * time.Millisecond},
		StopProcessesOnExit: stopOnExit,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func assign(names ...string) wire.Config {
	c := wire.Config{NodeManager: &wire.NodeManagerConfig{Name: "nm1", Processes: []wire.ProcessSpec{}}}
	for _, n := range names {
		kind := wire.KindServer
		if strings.HasPrefix(n, "ws") {
			kind = wire.KindWebServer
		}
		c.NodeManager.Processes = append(c.NodeManager.Processes, wire.ProcessSpec{Name: n, Kind: kind, Listen: "127.0.0.1:1"})
	}
	return c
}

func proc(hb wire.Heartbeat, name string) wire.ProcessState {
	for _, p := range hb.Processes {
		if p.Name == name {
			return p
		}
	}
	return wire.ProcessState{}
}

func TestManagerCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := newManager(t, dir, true)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	ctx := context.Background()
	if err := m.Apply(ctx, assign("ms1", "ws1")); err != nil {
		t.Fatal(err)
	}
	hb := m.Status()
	if hb.PID != os.Getpid() || len(hb.Processes) != 2 {
		t.Fatalf("heartbeat %+v", hb)
	}
	for _, n := range []string{"ms1", "ws1"} {
		if p := proc(hb, n); p.State != supervise.StateStopped || p.PID != 0 {
			t.Fatalf("assigned process %s must not start by itself: %+v", n, p)
		}
	}
	res := m.Command(ctx, wire.Command{ID: "c1", Action: wire.ActionStart, Target: "ms1"})
	if !res.OK || res.PID == 0 || res.ID != "c1" {
		t.Fatalf("start: %+v", res)
	}
	pid := res.PID
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")[1:]
	want := []string{"server", "--name", "ms1", "--data-dir", filepath.Join(dir, "ms1"), "--admin", "http://127.0.0.1:1"}
	if strings.Join(args, " ") != strings.Join(want, " ") {
		t.Fatalf("child args %q, want %q", args, want)
	}
	if bytes.Contains(cmdline, []byte("node-secret-123")) {
		t.Fatal("node token in the child's arguments")
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(environ, []byte("TANDEM_NODE_TOKEN=node-secret-123\x00")) {
		t.Fatal("node token not in the child's environment")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(dir, "ms1", "ms1.log"))
		if err != nil || !bytes.Contains(b, []byte("child args")) {
			return fmt.Errorf("log: %q %v", b, err)
		}
		return nil
	})
	if p := proc(m.Status(), "ms1"); p.State != supervise.StateRunning || p.PID != pid || p.Kind != wire.KindServer {
		t.Fatalf("status %+v", p)
	}

	res = m.Command(ctx, wire.Command{ID: "c2", Action: wire.ActionRestart, Target: "ms1"})
	if !res.OK || res.PID == 0 || res.PID == pid {
		t.Fatalf("restart: %+v (old pid %d)", res, pid)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("old pid %d still alive after restart", pid)
	}
	pid = res.PID

	// A crash is restarted by the policy, and reported.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		p := proc(m.Status(), "ms1")
		if p.State != supervise.StateRunning || p.PID == pid || p.Restarts != 1 {
			return fmt.Errorf("status %+v", p)
		}
		return nil
	})
	pid = proc(m.Status(), "ms1").PID

	res = m.Command(ctx, wire.Command{ID: "c3", Action: wire.ActionStop, Target: "ms1"})
	if !res.OK || res.PID != 0 {
		t.Fatalf("stop: %+v", res)
	}
	if p := proc(m.Status(), "ms1"); p.State != supervise.StateStopped {
		t.Fatalf("after stop %+v", p)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatal("stopped process still alive")
	}
	if res := m.Command(ctx, wire.Command{ID: "c4", Action: wire.ActionStart, Target: "ms9"}); res.OK || res.Error == "" {
		t.Fatalf("unknown target: %+v", res)
	}

	// Unassigning a running process stops it.
	res = m.Command(ctx, wire.Command{ID: "c5", Action: wire.ActionStart, Target: "ws1"})
	if !res.OK {
		t.Fatalf("start ws1: %+v", res)
	}
	if err := m.Apply(ctx, assign("ms1")); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(res.PID, 0) == nil {
		t.Fatal("unassigned process still running")
	}
	if p := proc(m.Status(), "ws1"); p.Name != "" {
		t.Fatalf("unassigned process still listed: %+v", p)
	}
	if err := m.Apply(ctx, wire.Config{Server: &wire.ServerConfig{}}); err == nil {
		t.Fatal("a server config must be refused")
	}
}

func TestManagerRestartKeepsProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	m1 := newManager(t, dir, false)
	if err := m1.Apply(ctx, assign("ms1", "ms2")); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, n := range []string{"ms1", "ms2"} {
		res := m1.Command(ctx, wire.Command{ID: n, Action: wire.ActionStart, Target: n})
		if !res.OK {
			t.Fatalf("start %s: %+v", n, res)
		}
		pids = append(pids, res.PID)
		t.Cleanup(func() { _ = syscall.Kill(-res.PID, syscall.SIGKILL) })
	}
	if err := m1.Close(ctx); err != nil { // the node manager stops: default keeps them
		t.Fatal(err)
	}
	for _, pid := range pids {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || bytes.Contains(st, []byte(") Z ")) {
			t.Fatalf("pid %d did not survive the node manager: %v", pid, err)
		}
	}
	// ms2 dies while no node manager runs: the next one reports it honestly.
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pids[1]) + "/stat")
		if err == nil && !bytes.Contains(st, []byte(") Z ")) {
			return fmt.Errorf("ms2 still alive")
		}
		return nil
	})
	m2 := newManager(t, dir, true)
	hb := m2.Status()
	if p := proc(hb, "ms1"); p.State != supervise.StateRunning || p.PID != pids[0] {
		t.Fatalf("ms1 not re-adopted: %+v", p)
	}
	if p := proc(hb, "ms2"); p.State != supervise.StateStopped || p.PID != 0 || !strings.Contains(p.Message, "exited") {
		t.Fatalf("ms2 not reported as gone: %+v", p)
	}
	// The assignment arrives; starting ms1 again does not duplicate it.
	if err := m2.Apply(ctx, assign("ms1", "ms2")); err != nil {
		t.Fatal(err)
	}
	if res := m2.Command(ctx, wire.Command{ID: "x", Action: wire.ActionStart, Target: "ms1"}); !res.OK || res.PID != pids[0] {
		t.Fatalf("start of re-adopted ms1: %+v, want pid %d", res, pids[0])
	}
	if err := m2.Close(ctx); err != nil { // StopProcessesOnExit
		t.Fatal(err)
	}
	if syscall.Kill(pids[0], 0) == nil {
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/stat")
		if !bytes.Contains(st, []byte(") Z ")) {
			t.Fatal("ms1 still running after Close with StopProcessesOnExit")
		}
	}
}
