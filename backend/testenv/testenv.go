// Package testenv helps tests run Tandem as real processes: it builds the
// tandem binary once per test binary, starts roles on free loopback ports
// with their own data folders and log files, and stops them at cleanup
// (SIGTERM, then SIGKILL). Logs are printed when a test fails.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/backend/serve"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/tandem once (per test binary) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tandem-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tandem")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/tandem")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("testenv: %v", buildErr)
	}
	return binPath
}

var (
	exampleMu   sync.Mutex
	exampleBins = map[string]string{}
)

// Example builds the Go example application in examples/NAME (its own
// module, importing this one through a replace) once per test binary and
// returns the executable's path.
func Example(t testing.TB, name string) string {
	t.Helper()
	exampleMu.Lock()
	defer exampleMu.Unlock()
	if p, ok := exampleBins[name]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "tandem-example-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(RepoRoot(), "examples", name)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: go build examples/%s: %v\n%s", name, err, b)
	}
	exampleBins[name] = out
	return out
}

// RepoRoot is the repository's top folder.
func RepoRoot() string { return repoRoot() }

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	portsMu sync.Mutex
	given   = map[string]bool{} // addresses FreeAddr handed out in this process
)

// FreeAddr returns a loopback host:port that was free a moment ago, below
// the ephemeral range (an outgoing connection of a parallel test cannot
// take it before the server binds it; that made "address already in use"
// flakes), and that it has not returned before in this process. The next
// port was free too and is not returned later: a managed server defined
// with this listen address takes it for its peers' listener.
func FreeAddr(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		port, err := serve.FreePorts(2)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		next := net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))
		if !given[addr] && !given[next] {
			given[addr], given[next] = true, true
			return addr
		}
	}
}

// Proc is a started process.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
	waitErr error
}

// Start runs the tandem binary with args and extra environment, logging to
// a file in t.TempDir(). The process is stopped at cleanup.
func Start(t testing.TB, name string, env []string, args ...string) *Proc {
	t.Helper()
	return StartPath(t, Binary(t), name, env, args...)
}

// StartPath is Start for another executable (an SDK-built application).
func StartPath(t testing.TB, bin, name string, env []string, args ...string) *Proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("---- log of %s (%s) ----\n%s", name, logPath, b)
		}
	})
	return p
}

// PID returns the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused), waits up to
// grace, then SIGKILLs the process group. It returns the exit error.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	_ = p.Cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.waitErr
}

// WaitHTTP polls url until it answers 200 or the deadline passes.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// Eventually calls check every 20 ms until it returns nil, failing the test
// with the last error when timeout passes.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: condition not met within %s; last: %v", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
