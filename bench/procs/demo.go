package procs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tandem/backend/client"
	"tandem/backend/demo"
	"tandem/backend/testenv"
)

// Demo is a running `tandem demo` started by a benchmark.
type Demo struct {
	Dir   string // its data folder
	Ports demo.Ports
	API   *client.Client
	Web   string // the web server's base URL
	cmd   *exec.Cmd
}

// StartDemo builds ./cmd/tandem into work, runs `tandem demo` with its
// data in work/demo on free loopback ports and waits until it is ready.
// Stop it with Stop.
func StartDemo(work string) (*Demo, error) {
	bin := filepath.Join(work, "tandem")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tandem")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	dir := filepath.Join(work, "demo")
	base, err := demo.FreePortBase()
	if err != nil {
		return nil, err
	}
	ports := demo.PortsFor(base)
	cmd := exec.Command(bin, "demo", "--data-dir", dir, "--port-base", strconv.Itoa(base), "--log-level", "warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &Demo{Dir: dir, Ports: ports, cmd: cmd, Web: fmt.Sprintf("http://127.0.0.1:%d", ports.WebServer)}
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("demo did not start:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond) // polling the demo's output
	}
	tok, err := os.ReadFile(filepath.Join(dir, demo.AdminTokenFile))
	if err != nil {
		d.Stop()
		return nil, err
	}
	d.API = client.New(fmt.Sprintf("http://127.0.0.1:%d", ports.Admin), strings.TrimSpace(string(tok)))
	return d, nil
}

// Stop interrupts the demo and waits (up to a minute, then kills its
// process group).
func (d *Demo) Stop() {
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	}
}
