package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// The test binary doubles as the supervised child (nomad's testtask
// pattern): with SUPERVISE_TESTTASK set it runs that task instead of tests.
const taskEnv = "SUPERVISE_TESTTASK"

func TestMain(m *testing.M) {
	if task := os.Getenv(taskEnv); task != "" {
		os.Exit(runTask(task))
	}
	os.Exit(m.Run())
}

func runTask(task string) int {
	fmt.Printf("task %s pid %d token=%q admin=%q\n", task, os.Getpid(), os.Getenv("TANDEM_NODE_TOKEN"), os.Getenv("TANDEM_ADMIN_TOKEN"))
	switch task {
	case "crash":
		return 3
	case "sleep":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		<-c
		fmt.Println("got SIGTERM, exiting")
		return 0
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		if f := os.Getenv("READY_FILE"); f != "" {
			_ = os.WriteFile(f, []byte("ready"), 0o600)
		}
		select {}
	case "parent":
		// Start a grandchild that ignores SIGTERM, then wait for TERM.
		gc := exec.Command(os.Args[0])
		gc.Env = append(os.Environ(), taskEnv+"=ignoreterm")
		gc.Stdout = os.Stdout
		if err := gc.Start(); err != nil {
			return 4
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		_ = os.WriteFile(os.Getenv("GRANDCHILD_FILE"), []byte(strconv.Itoa(gc.Process.Pid)), 0o600)
		<-c
		return 0
	case "spam":
		line := strings.Repeat("x", 99) + "\n"
		for {
			fmt.Print(line)
			time.Sleep(time.Millisecond)
		}
	}
	return 5
}

type eventLog struct {
	mu  sync.Mutex
	evs []domain.Event
}

func (l *eventLog) add(e domain.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []domain.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]domain.Event(nil), l.evs...)
}

func (l *eventLog) count(typ string) int {
	n := 0
	for _, e := range l.all() {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func newSup(t *testing.T, dir string, cfg Config) (*Supervisor, *eventLog) {
	t.Helper()
	el := &eventLog{}
	cfg.Dir = dir
	cfg.OnEvent = el.add
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.StopAll(ctx)
		s.Close()
	})
	return s, el
}

func taskSpec(name, task string, env ...string) Spec {
	return Spec{Name: name, Kind: "server", Path: os.Args[0], Args: []string{"-test.run=^$"}, Env: append([]string{taskEnv + "=" + task}, env...)}
}

func statusOf(s *Supervisor, name string) Status {
	for _, st := range s.Status() {
		if st.Name == name {
			return st
		}
	}
	return Status{}
}

func readLog(t *testing.T, s *Supervisor, name string) string {
	t.Helper()
	b, _ := os.ReadFile(s.LogPath(name))
	return string(b)
}

func TestCrashRestartWithBackoffAndLimit(t *testing.T) {
	t.Parallel()
	s, el := newSup(t, t.TempDir(), Config{Policy: Policy{MaxRestarts: 2, Interval: time.Minute, Delay: 50 * time.Millisecond, MaxDelay: time.Second}})
	if err := s.Register(taskSpec("crasher", "crash")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(context.Background(), "crasher"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		st := statusOf(s, "crasher")
		if st.State != StateFailed {
			return fmt.Errorf("state %s (%s), restarts %d", st.State, st.Message, st.Restarts)
		}
		return nil
	})
	st := statusOf(s, "crasher")
	if st.Restarts != 2 || st.PID != 0 || !strings.Contains(st.Message, "gave up") {
		t.Fatalf("status %+v, want failed after 2 restarts with 'gave up'", st)
	}
	if n := el.count(domain.EventProcessStarted); n != 3 {
		t.Fatalf("%d starts, want 3 (1 + 2 restarts): %+v", n, el.all())
	}
	var exits []string
	for _, e := range el.all() {
		if e.Type == domain.EventProcessExited {
			exits = append(exits, e.Message)
		}
	}
	want := []string{"restart 1 of 2", "restart 2 of 2", "gave up"}
	if len(exits) != 3 {
		t.Fatalf("exit events %q, want 3", exits)
	}
	for i, w := range want {
		if !strings.Contains(exits[i], w) || !strings.Contains(exits[i], "exit status 3") {
			t.Fatalf("exit event %d %q, want %q and exit status 3", i, exits[i], w)
		}
	}
	// The second restart waited twice as long as the first (backoff).
	if !strings.Contains(exits[0], "after 50ms") || !strings.Contains(exits[1], "after 100ms") {
		t.Fatalf("backoff not doubling: %q", exits)
	}
	if got := strings.Count(readLog(t, s, "crasher"), "task crash"); got != 3 {
		t.Fatalf("log has %d runs, want 3", got)
	}
	// A start by command resets the window and runs it again.
	if _, err := s.Start(context.Background(), "crasher"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := el.count(domain.EventProcessStarted); n != 6 {
			return fmt.Errorf("%d starts, want 6", n)
		}
		if st := statusOf(s, "crasher"); st.State != StateFailed {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
}

func TestGracefulStop(t *testing.T) { // not parallel: t.Setenv
	dir := t.TempDir()
	s, el := newSup(t, dir, Config{Policy: DefaultPolicy(), ScrubEnv: []string{"TANDEM_ADMIN_TOKEN"}})
	t.Setenv("TANDEM_ADMIN_TOKEN", "must-not-leak")
	if err := s.Register(taskSpec("ms1", "sleep", "TANDEM_NODE_TOKEN=node-secret")); err != nil {
		t.Fatal(err)
	}
	pid, err := s.Start(context.Background(), "ms1")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(readLog(t, s, "ms1"), "task sleep") {
			return errors.New("child has not written its first line")
		}
		return nil
	})
	log := readLog(t, s, "ms1")
	if !strings.Contains(log, `token="node-secret"`) || !strings.Contains(log, `admin=""`) {
		t.Fatalf("child env wrong: %s", log)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ms1.pid")); err != nil || !strings.Contains(string(b), strconv.Itoa(pid)) {
		t.Fatalf("pid file: %s %v", b, err)
	}
	if again, err := s.Start(context.Background(), "ms1"); err != nil || again != pid {
		t.Fatalf("second start: pid %d err %v, want the running %d", again, err, pid)
	}
	if err := s.Stop(context.Background(), "ms1"); err != nil {
		t.Fatal(err)
	}
	st := statusOf(s, "ms1")
	if st.State != StateStopped || st.PID != 0 || !strings.Contains(st.Message, "exit status 0") {
		t.Fatalf("status %+v, want stopped with exit status 0", st)
	}
	if !strings.Contains(readLog(t, s, "ms1"), "got SIGTERM") {
		t.Fatal("child did not see SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(dir, "ms1.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file left behind: %v", err)
	}
	if el.count(domain.EventProcessStarted) != 1 {
		t.Fatalf("a requested stop must not restart: %+v", el.all())
	}
	if err := s.Stop(context.Background(), "ms1"); err != nil {
		t.Fatalf("stopping a stopped process: %v", err)
	}
	if _, err := s.Start(context.Background(), "nope"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	s, _ := newSup(t, dir, Config{Policy: DefaultPolicy(), StopTimeout: 300 * time.Millisecond})
	if err := s.Register(taskSpec("stubborn", "ignoreterm", "READY_FILE="+ready)); err != nil {
		t.Fatal(err)
	}
	pid, err := s.Start(context.Background(), "stubborn")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := os.Stat(ready)
		return err
	})
	if err := s.Stop(context.Background(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	st := statusOf(s, "stubborn")
	if st.State != StateStopped || !strings.Contains(st.Message, "killed") {
		t.Fatalf("status %+v, want stopped by SIGKILL", st)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d still exists: %v", pid, err)
	}
}

func TestStopLeavesNoGrandchild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gcFile := filepath.Join(dir, "grandchild")
	s, _ := newSup(t, dir, Config{Policy: DefaultPolicy(), StopTimeout: 5 * time.Second})
	if err := s.Register(taskSpec("parent", "parent", "GRANDCHILD_FILE="+gcFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(context.Background(), "parent"); err != nil {
		t.Fatal(err)
	}
	var gc int
	testenv.Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(gcFile)
		if err != nil {
			return err
		}
		gc, err = strconv.Atoi(string(b))
		return err
	})
	if err := s.Stop(context.Background(), "parent"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		pi, err := readProc(gc)
		if errors.Is(err, errNoProcess) || (err == nil && pi.state == 'Z') {
			return nil
		}
		return fmt.Errorf("grandchild %d still running (state %c, err %v)", gc, pi.state, err)
	})
}

func TestSupervisorRestartReadoptsChild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pol := Policy{MaxRestarts: 1, Interval: time.Minute, Delay: 10 * time.Millisecond}
	s1, err := New(Config{Dir: dir, Policy: pol, PollInterval: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := taskSpec("ms1", "sleep")
	if err := s1.Register(spec); err != nil {
		t.Fatal(err)
	}
	pid, err := s1.Start(context.Background(), "ms1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	// A pid file of a process that is gone is reported, not adopted.
	if err := writePidFile(filepath.Join(dir, "ms2.pid"), pidFile{Name: "ms2", Kind: "server", PID: pid, StartTicks: 1}); err != nil {
		t.Fatal(err)
	}
	s1.Close() // the old supervisor goes away; the child must stay

	if pi, err := readProc(pid); err != nil || pi.state == 'Z' {
		t.Fatalf("child %d did not survive the supervisor: %v %c", pid, err, pi.state)
	}
	s2, el := newSup(t, dir, Config{Policy: pol})
	st := statusOf(s2, "ms1")
	if st.State != StateRunning || st.PID != pid || !st.Adopted {
		t.Fatalf("after restart: %+v, want running pid %d adopted", st, pid)
	}
	if st2 := statusOf(s2, "ms2"); st2.State != StateStopped || !strings.Contains(st2.Message, "exited while") {
		t.Fatalf("stale pid file: %+v", st2)
	}
	if _, err := os.Stat(filepath.Join(dir, "ms2.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("stale pid file not removed")
	}
	// Starting it again does not duplicate it.
	if again, err := s2.Start(context.Background(), "ms1"); err != nil || again != pid {
		t.Fatalf("start of adopted: %d %v, want %d", again, err, pid)
	}
	// The adopted process crashing is noticed and restarted with its spec.
	if err := s2.Register(spec); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		st := statusOf(s2, "ms1")
		if st.State != StateRunning || st.PID == pid || st.PID == 0 {
			return fmt.Errorf("status %+v", st)
		}
		// The started event follows the state change.
		if el.count(domain.EventProcessStarted) != 1 {
			return fmt.Errorf("events %+v", el.all())
		}
		return nil
	})
	if el.count(domain.EventProcessExited) != 1 || el.count(domain.EventProcessStarted) != 1 {
		t.Fatalf("events %+v", el.all())
	}
	// And an adopted process is stopped gracefully like an own one.
	if err := s2.Stop(context.Background(), "ms1"); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(s2, "ms1"); st.State != StateStopped {
		t.Fatalf("status %+v", st)
	}
}

func TestAdoptedStopEscalates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	s1, err := New(Config{Dir: dir, Policy: DefaultPolicy(), PollInterval: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Register(taskSpec("stubborn", "ignoreterm", "READY_FILE="+ready)); err != nil {
		t.Fatal(err)
	}
	pid, err := s1.Start(context.Background(), "stubborn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	testenv.Eventually(t, 10*time.Second, func() error { _, err := os.Stat(ready); return err })
	s1.Close()
	s2, _ := newSup(t, dir, Config{Policy: DefaultPolicy(), StopTimeout: 200 * time.Millisecond})
	if st := statusOf(s2, "stubborn"); st.PID != pid {
		t.Fatalf("not adopted: %+v", st)
	}
	if err := s2.Stop(context.Background(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	if alive(pid, 0) {
		t.Fatal("still alive")
	}
	pi, err := readProc(pid)
	if err == nil && pi.state != 'Z' {
		t.Fatalf("adopted stubborn process %d survived stop: %c", pid, pi.state)
	}
}

func TestLogRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := newSup(t, dir, Config{Policy: DefaultPolicy(), LogMaxBytes: 20 << 10, LogKeep: 2})
	if err := s.Register(taskSpec("chatty", "spam")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(context.Background(), "chatty"); err != nil {
		t.Fatal(err)
	}
	p := s.LogPath("chatty")
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, f := range []string{p + ".1", p + ".2"} {
			if _, err := os.Stat(f); err != nil {
				return err
			}
		}
		return nil
	})
	if _, err := os.Stat(p + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("kept more than 2 rotated files: %v", err)
	}
	st, err := os.Stat(p + ".1")
	if err != nil || st.Size() < 20<<10 {
		t.Fatalf("rotated file too small: %v %v", st, err)
	}
}
