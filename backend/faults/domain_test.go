package faults_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// tdomain is a whole Tandem domain of real processes on loopback: a
// `tandem admin`, a `tandem nodemanager` supervising the managed servers
// (it restarts the ones the nemesis kills), and a `tandem webserver`.
// Everything is defined through the typed REST client.
type tdomain struct {
	t         *testing.T
	adminAddr string
	adminDir  string
	nmDir     string
	env       []string
	token     string
	admin     *testenv.Proc
	adminRuns int
	api       *client.Client
	wsAddr    string
	servers   []string
	listen    map[string]string // by server name (= route)
	cluster   domain.Cluster
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func startDomain(t *testing.T, n int, mode string) *tdomain {
	t.Helper()
	d := &tdomain{t: t, adminAddr: testenv.FreeAddr(t), adminDir: t.TempDir(), nmDir: t.TempDir(),
		token: randHex(t, 24), listen: map[string]string{}, wsAddr: testenv.FreeAddr(t)}
	d.env = []string{"TANDEM_ADMIN_TOKEN=" + d.token, "TANDEM_NODE_TOKEN=" + randHex(t, 24),
		"TANDEM_ADMIN_TOKEN_FILE=", "TANDEM_NODE_TOKEN_FILE="}
	d.startAdmin()
	d.api = client.New("http://"+d.adminAddr, d.token)
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	nmAddr := testenv.FreeAddr(t)
	d.cluster = domain.Cluster{Name: "c1", FailoverMode: mode, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 1000}
	must(d.api.CreateCluster(ctx, d.cluster))
	must(d.api.CreateNodeManager(ctx, domain.NodeManager{Name: "nm1", Listen: nmAddr}))
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("ms%d", i)
		d.servers = append(d.servers, name)
		d.listen[name] = testenv.FreeAddr(t)
		must(d.api.CreateServer(ctx, domain.Server{Name: name, Cluster: "c1", Listen: d.listen[name], NodeManager: "nm1"}))
	}
	must(d.api.CreateWebServer(ctx, domain.WebServer{Name: "ws1", Cluster: "c1", Listen: d.wsAddr}))

	testenv.Start(t, "nm1", d.env, "nodemanager", "--name", "nm1", "--admin", "http://"+d.adminAddr,
		"--data-dir", d.nmDir, "--listen", nmAddr, "--stop-processes-on-exit",
		"--restart-max", "100000", "--restart-interval", "1m", "--restart-delay", "200ms", "--restart-max-delay", "1s")
	t.Cleanup(func() {
		if t.Failed() {
			// Keep every log of the node manager's processes (rotated ones
			// too) for the post-mortem; the temp dir goes at cleanup.
			if keep, err := os.MkdirTemp("", "tandem-faults-logs-*"); err == nil {
				_ = filepath.WalkDir(d.nmDir, func(path string, de os.DirEntry, err error) error {
					if err != nil || de.IsDir() || !strings.Contains(de.Name(), ".log") {
						return nil
					}
					if b, err := os.ReadFile(path); err == nil {
						_ = os.WriteFile(filepath.Join(keep, de.Name()), b, 0o600)
					}
					return nil
				})
				t.Logf("process logs kept in %s", keep)
			}
			for _, s := range d.servers {
				b, _ := os.ReadFile(filepath.Join(d.nmDir, s, s+".log"))
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("---- %s.log ----\n%s", s, b)
			}
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		top, err := d.api.Topology(ctx)
		if err != nil {
			return err
		}
		for _, nm := range top.NodeManagers {
			if nm.Name == "nm1" && nm.State == domain.StateRunning {
				return nil
			}
		}
		return fmt.Errorf("node manager not connected: %+v", top.NodeManagers)
	})
	for _, s := range d.servers {
		if res, err := d.api.StartServer(ctx, s); err != nil {
			t.Fatalf("start %s: %+v %v", s, res, err)
		}
	}
	testenv.Start(t, "ws1", d.env, "webserver", "--name", "ws1", "--admin", "http://"+d.adminAddr,
		"--data-dir", t.TempDir(), "--probe-interval", "200ms", "--access-log-every", "0")
	testenv.WaitHTTP(t, "http://"+d.wsAddr+"/_tandem/healthz", 30*time.Second)
	if err := d.settle(ctx, time.Now(), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

// startAdmin starts (or restarts, on the same folder and address) the admin server.
func (d *tdomain) startAdmin() {
	d.t.Helper()
	d.adminRuns++
	d.admin = testenv.Start(d.t, fmt.Sprintf("admin-%d", d.adminRuns), d.env, "admin", "--listen", d.adminAddr, "--data-dir", d.adminDir, "--plain-http")
	testenv.WaitHTTP(d.t, "http://"+d.adminAddr+"/healthz", 30*time.Second)
}

// cluster1 returns c1 from the topology.
func (d *tdomain) cluster1(ctx context.Context) (client.TopologyCluster, error) {
	top, err := d.api.Topology(ctx)
	if err != nil {
		return client.TopologyCluster{}, err
	}
	for _, c := range top.Clusters {
		if c.Name == "c1" {
			return c, nil
		}
	}
	return client.TopologyCluster{}, errors.New("no cluster c1 in the topology")
}

// healthy says why c1 is not settled: every server running, heard from
// after `after`, with a backup and no unprotected session.
func healthy(c client.TopologyCluster, after time.Time) error {
	for _, s := range c.Servers {
		switch {
		case s.State != domain.StateRunning:
			return fmt.Errorf("%s is %s", s.Name, s.State)
		case s.LastSeen.Before(after):
			return fmt.Errorf("%s last seen %s, before %s", s.Name, s.LastSeen.Format(time.StampMilli), after.Format(time.StampMilli))
		case s.Backup == "":
			return fmt.Errorf("%s has no backup", s.Name)
		case s.Unprotected != 0:
			return fmt.Errorf("%s has %d unprotected sessions", s.Name, s.Unprotected)
		}
	}
	return nil
}

// settle waits until c1 is healthy in two observations at least a
// heartbeat timeout apart (so a fault not yet detected when the first
// one was taken shows in the second), or the timeout passes.
func (d *tdomain) settle(ctx context.Context, after time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	window := time.Duration(d.cluster.HeartbeatTimeoutMS) * time.Millisecond
	var firstOK time.Time
	var last error
	for time.Now().Before(deadline) {
		c, err := d.cluster1(ctx)
		if err == nil {
			err = healthy(c, after)
		}
		switch {
		case err != nil:
			last, firstOK = err, time.Time{}
		case firstOK.IsZero():
			firstOK = time.Now()
		case time.Since(firstOK) >= window:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("domain did not settle in %s: last seen %v", timeout, last)
}

// pidOf returns a running server's pid from the topology.
func (d *tdomain) pidOf(ctx context.Context, name string) (int, error) {
	c, err := d.cluster1(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range c.Servers {
		if s.Name == name && s.PID > 0 {
			return s.PID, nil
		}
	}
	return 0, fmt.Errorf("no pid for %s", name)
}

// cutProxy is a TCP proxy in front of one member: cut refuses new
// connections and closes open ones while the member stays alive and its
// peers still reach it directly; heal listens again on the same address.
type cutProxy struct {
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	p := &cutProxy{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = struct{}{}, struct{}{}
			p.mu.Unlock()
			p.wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
				p.mu.Lock()
				delete(p.conns, dst)
				delete(p.conns, src)
				p.mu.Unlock()
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
}

// cut closes the listener and every open connection.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// heal listens on the same address again.
func (p *cutProxy) heal(ctx context.Context) error {
	var last error
	for range 50 {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(ln)
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("proxy: listen again on %s: %w", p.addr, last)
}

// signal sends sig to a process the node manager started for this test.
func signal(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %v to %d: %w", sig, pid, err)
	}
	return nil
}
