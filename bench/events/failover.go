package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/serve"
)

// proc is a child process of the built tandem binary.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(bin, logPath string, env []string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// freeAddr is a loopback address whose next port is free too (a managed
// server takes it for its peers).
func freeAddr() (string, error) {
	p, err := serve.FreePorts(2)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

func secret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// poll calls f every 20 ms until it returns nil or the timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// benchFailover runs an admin server and two managed servers (ms1, ms2 in
// one cluster; default settings unless heartbeatMS > 0), then repeats: make sessions on ms1,
// SIGKILL ms1, time until a WebSocket client of the admin's event stream
// receives the failover event; restart ms1 and wait for failback.
func benchFailover(ctx context.Context, kills, heartbeatMS int) error {
	dir, err := os.MkdirTemp("", "bench-failover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "tandem")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tandem").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/tandem (run from the repository root): %w\n%s", err, out)
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return err
	}
	token := secret()
	env := []string{"TANDEM_ADMIN_TOKEN=" + token, "TANDEM_NODE_TOKEN=" + secret()}
	admin, err := start(bin, filepath.Join(dir, "admin.log"), env, "admin", "--listen", adminAddr, "--data-dir", filepath.Join(dir, "admin"), "--plain-http")
	if err != nil {
		return err
	}
	defer admin.stop()
	base := "http://" + adminAddr
	if err := poll(ctx, 30*time.Second, "admin healthz", func() error {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}); err != nil {
		return err
	}
	c := client.New(base, token)
	cl := domain.Cluster{Name: "c1"}
	if heartbeatMS > 0 {
		cl.HeartbeatIntervalMS, cl.HeartbeatTimeoutMS = heartbeatMS, 3*heartbeatMS
	}
	if _, err := c.CreateCluster(ctx, cl); err != nil {
		return err
	}
	addrs := map[string]string{}
	procs := map[string]*proc{}
	startServer := func(name string) error {
		p, err := start(bin, filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())), env,
			"server", "--name", name, "--admin", base, "--data-dir", filepath.Join(dir, name))
		if err != nil {
			return err
		}
		procs[name] = p
		return nil
	}
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for _, name := range []string{"ms1", "ms2"} {
		if addrs[name], err = freeAddr(); err != nil {
			return err
		}
		if _, err := c.CreateServer(ctx, domain.Server{Name: name, Cluster: "c1", Listen: addrs[name]}); err != nil {
			return err
		}
		if err := startServer(name); err != nil {
			return err
		}
	}
	running := func(names ...string) func() error {
		return func() error {
			t, err := c.Topology(ctx)
			if err != nil {
				return err
			}
			for _, cl := range t.Clusters {
				for _, s := range cl.Servers {
					if slices.Contains(names, s.Name) && (s.State != domain.StateRunning || s.Backup == "") {
						return fmt.Errorf("%s is %s, backup %q", s.Name, s.State, s.Backup)
					}
				}
			}
			return nil
		}
	}
	if err := poll(ctx, 60*time.Second, "servers running", running("ms1", "ms2")); err != nil {
		return err
	}

	ws, _, err := websocket.Dial(ctx, "ws://"+adminAddr+"/api/v1/events/stream", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": []string{"Bearer " + token}},
	})
	if err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	defer ws.CloseNow()
	// waitEvent reads the stream until an event of type typ about peer.
	waitEvent := func(typ, peer string, timeout time.Duration) (time.Time, error) {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		for {
			_, b, err := ws.Read(rctx)
			if err != nil {
				return time.Time{}, fmt.Errorf("waiting for %s of %s: %w", typ, peer, err)
			}
			now := time.Now()
			var e domain.Event
			if err := json.Unmarshal(b, &e); err != nil {
				return time.Time{}, err
			}
			if e.Type == typ && (e.Peer == peer || e.Server == peer) {
				return now, nil
			}
		}
	}

	var lat []time.Duration
	for i := 0; i < kills; i++ {
		// Sessions whose primary is ms1 (backed up on ms2).
		for j := 0; j < 20; j++ {
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Jar: jar, Timeout: 5 * time.Second}
			resp, err := hc.Get("http://" + addrs["ms1"] + "/counter")
			if err != nil {
				return fmt.Errorf("session on ms1: %w", err)
			}
			resp.Body.Close()
		}
		t0 := time.Now()
		procs["ms1"].kill()
		t1, err := waitEvent(domain.EventFailover, "ms1", 30*time.Second)
		if err != nil {
			return err
		}
		lat = append(lat, t1.Sub(t0))
		fmt.Printf("kill %2d: failover event after %s\n", i+1, t1.Sub(t0).Round(100*time.Microsecond))
		if err := startServer("ms1"); err != nil {
			return err
		}
		if _, err := waitEvent(domain.EventFailback, "ms1", 60*time.Second); err != nil {
			return err
		}
		if err := poll(ctx, 60*time.Second, "ms1 back", running("ms1", "ms2")); err != nil {
			return err
		}
	}
	if len(lat) == 0 {
		return errors.New("no kills")
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	settings := "default cluster settings (heartbeat 500 ms / timeout 1500 ms)"
	if heartbeatMS > 0 {
		settings = fmt.Sprintf("heartbeat %d ms / timeout %d ms", heartbeatMS, 3*heartbeatMS)
	}
	fmt.Printf("\nSIGKILL of a primary → failover event on a WebSocket client (%d kills, %s)\n", len(lat), settings)
	fmt.Printf("p50 %s  p99 %s  min %s  max %s\n", pct(0.5).Round(100*time.Microsecond), pct(0.99).Round(100*time.Microsecond),
		lat[0].Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
	return nil
}
