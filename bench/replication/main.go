// Command replication benchmarks Tandem's session replication with real
// `tandem server` processes on loopback (no admin server: each server boots
// from an applied-config.json written here):
//
//   - session requests/s and p50/p99 latency of GET /counter with
//     replication off (shared=false), async, sync, and sync over mutual TLS
//     between the servers (node certificates from a domain CA, as an https
//     domain runs), in the same run, with the ratios to "off" and of TLS to
//     plain sync;
//
//   - failover time: SIGKILL of a primary under load → the first
//     successful answer for its sessions through the backup, and errors;
//
//   - failback rate: sessions/s pushed home for -failback-sessions sessions.
//
//   - the web server → member hop: sync writes through a tandem webserver
//     in front of the servers, plain and with the cluster's member_tls (the
//     web server checks each server's certificate), same run;
//
//     go run ./bench/replication -duration 10s -clients 64 -failback-sessions 100000
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tandem/backend/agent"
	"tandem/backend/domain"
	"tandem/backend/pki"
	"tandem/backend/route"
	"tandem/backend/wire"
)

const token = "bench-node-token-0123456789"

func main() {
	duration := flag.Duration("duration", 10*time.Second, "load duration per replication mode")
	clients := flag.Int("clients", 64, "concurrent clients (one session each)")
	fbSessions := flag.Int("failback-sessions", 100000, "sessions for the failback rate")
	kills := flag.Int("kills", 5, "SIGKILLs for the failover time")
	flag.Parse()
	if err := run(*duration, *clients, *fbSessions, *kills); err != nil {
		fmt.Fprintln(os.Stderr, "bench/replication:", err)
		os.Exit(1)
	}
}

type bench struct {
	bin  string
	tmp  string
	http *http.Client
}

func run(duration time.Duration, clients, fbSessions, kills int) error {
	tmp, err := os.MkdirTemp("", "tandem-bench-repl-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{tmp: tmp, bin: filepath.Join(tmp, "tandem")}
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", b.bin, "./cmd/tandem")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	b.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 1024, IdleConnTimeout: time.Minute}}
	fmt.Printf("# Tandem replication benchmark, %d CPUs, %s per mode, %d clients\n\n", runtime.NumCPU(), duration, clients)

	type res struct {
		mode     string
		rps      []float64
		lat      []time.Duration
		errors   int64
		cpuPerOp []float64
	}
	modes := []string{"off", "async", "sync", "sync+tls", "sync+web", "sync+web+tls"}
	clusters := map[string]*cluster{}
	for _, mode := range modes {
		repl, _, _ := strings.Cut(mode, "+")
		withTLS, web := strings.HasSuffix(mode, "+tls"), strings.Contains(mode, "+web")
		c, err := b.cluster(2, sessionConfig(repl), withTLS, web && withTLS)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		defer c.stop()
		if web {
			if err := c.addWeb(); err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
		}
		clusters[mode] = c
	}
	results := map[string]*res{}
	// Interleaved rounds: load from other processes on the machine drifts,
	// and every mode sees the same drift.
	const rounds = 3
	for r := 0; r < rounds; r++ {
		for _, mode := range modes {
			rr := results[mode]
			if rr == nil {
				rr = &res{mode: mode}
				results[mode] = rr
			}
			rps, lat, errs, cpu, err := b.throughput(clusters[mode], duration/rounds, clients)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			rr.rps = append(rr.rps, rps)
			rr.lat = append(rr.lat, lat...)
			rr.errors += errs
			rr.cpuPerOp = append(rr.cpuPerOp, cpu)
		}
	}
	med := func(xs []float64) float64 {
		ys := append([]float64(nil), xs...)
		sort.Float64s(ys)
		return ys[len(ys)/2]
	}
	pct := func(l []time.Duration, p int) time.Duration {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return l[len(l)*p/100]
	}
	fmt.Printf("%d interleaved rounds of %s per mode; req/s is the median round; p50/p99 over all rounds; server CPU is the primary's and backup's CPU time per request.\n\n", rounds, duration/rounds)
	fmt.Println("| replication | req/s | p50 | p99 | errors | server CPU µs/req | req/s vs off | p99 vs off |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	off := results["off"]
	offRPS, offP99 := med(off.rps), pct(off.lat, 99)
	for _, mode := range modes {
		r := results[mode]
		p99 := pct(r.lat, 99)
		fmt.Printf("| %s | %.0f | %s | %s | %d | %.0f | %.2fx | %.2fx |\n", mode, med(r.rps), pct(r.lat, 50).Round(10*time.Microsecond), p99.Round(10*time.Microsecond), r.errors,
			med(r.cpuPerOp), med(r.rps)/offRPS, float64(p99)/float64(offP99))
	}
	fmt.Println()
	plain, mtls := results["sync"], results["sync+tls"]
	fmt.Printf("mutual TLS between the servers, sync writes: %.2fx the req/s of plain sync, p99 %.2fx (TLS %s vs plain %s); target ≥ 0.85x\n\n",
		med(mtls.rps)/med(plain.rps), float64(pct(mtls.lat, 99))/float64(pct(plain.lat, 99)), pct(mtls.lat, 99).Round(10*time.Microsecond), pct(plain.lat, 99).Round(10*time.Microsecond))
	plain, mtls = results["sync+web"], results["sync+web+tls"]
	fmt.Printf("web server → member hop over TLS (member_tls), sync writes through the web server: %.2fx the req/s of the plain hop, p99 %.2fx (TLS %s vs plain %s), CPU per request (servers + web server) %.2fx; target ≥ 0.85x\n\n",
		med(mtls.rps)/med(plain.rps), float64(pct(mtls.lat, 99))/float64(pct(plain.lat, 99)), pct(mtls.lat, 99).Round(10*time.Microsecond), pct(plain.lat, 99).Round(10*time.Microsecond),
		med(mtls.cpuPerOp)/med(plain.cpuPerOp))

	var times []time.Duration
	totalErrs := 0
	for i := 0; i < kills; i++ {
		d, errs, err := b.failover(clients)
		if err != nil {
			return fmt.Errorf("failover: %w", err)
		}
		times = append(times, d)
		totalErrs += errs
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("failover, SIGKILL → first good answer for a session of the dead primary (%d kills, %d sessions under load): median %s, max %s, errors on requests sent after the process was gone %d\n\n",
		kills, clients, times[len(times)/2].Round(100*time.Microsecond), times[len(times)-1].Round(100*time.Microsecond), totalErrs)

	msg, err := b.failback(fbSessions)
	if err != nil {
		return fmt.Errorf("failback: %w", err)
	}
	fmt.Printf("failback of %d sessions: %s\n", fbSessions, msg)
	return nil
}

type server struct {
	name, addr, peer, dir string
	cmd                   *exec.Cmd
	done                  chan struct{}
}

type cluster struct {
	b       *bench
	servers []*server
	byRoute map[string]string
	shared  bool
	// tls: the servers hold node certificates of a CA made here and talk
	// mutual TLS on their internal listeners; status calls use another
	// member's certificate.
	pin    string
	certs  map[string]tls.Certificate
	scheme string
	ca     *pki.CA
	// web, when set, is a tandem webserver in front of the servers: the
	// load goes through it.
	web     *server
	members []wire.Member
	sess    domain.SessionConfig
	mtls    bool // the cluster's member_tls
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (b *bench) cluster(n int, sess domain.SessionConfig, withTLS, memberTLS bool) (*cluster, error) {
	c := &cluster{b: b, byRoute: map[string]string{}, scheme: "http", sess: sess, mtls: memberTLS}
	var ca *pki.CA
	if withTLS {
		dir, err := os.MkdirTemp(b.tmp, "ca")
		if err != nil {
			return nil, err
		}
		if ca, err = pki.LoadOrCreateCA(dir); err != nil {
			return nil, err
		}
		c.pin, c.certs, c.scheme, c.ca = ca.Fingerprint(), map[string]tls.Certificate{}, "https", ca
	}
	var members []wire.Member
	for i := 1; i <= n; i++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		peer, err := freeAddr()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp(b.tmp, "ms")
		if err != nil {
			return nil, err
		}
		s := &server{name: fmt.Sprintf("ms%d", i), addr: addr, peer: peer, dir: dir}
		c.servers = append(c.servers, s)
		c.byRoute[s.name] = addr
		members = append(members, wire.Member{Name: s.name, Route: s.name, Listen: addr, Internal: peer})
		if ca != nil {
			if c.certs[s.name], err = writeNodeCert(ca, dir, s.name, wire.KindServer); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range c.servers {
		sc := wire.ServerConfig{Self: wire.Member{Name: s.name, Route: s.name, Listen: s.addr, Internal: s.peer},
			Cluster: c.settings(), Members: members, Session: sess}
		data, _ := json.Marshal(wire.Config{Revision: 1, Checksum: "bench", Server: &sc})
		if err := os.WriteFile(filepath.Join(s.dir, "applied-config.json"), data, 0o600); err != nil {
			return nil, err
		}
	}
	c.shared, c.members = sess.Shared, members
	for _, s := range c.servers {
		if err := c.launch(s); err != nil {
			c.stop()
			return nil, err
		}
	}
	for _, s := range c.servers {
		if err := c.ready(s); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) start(s *server) error {
	if err := c.launch(s); err != nil {
		return err
	}
	return c.ready(s)
}

func (c *cluster) launch(s *server) error {
	logf, err := os.Create(filepath.Join(s.dir, "log"))
	if err != nil {
		return err
	}
	admin := "http://127.0.0.1:1" // none: the servers boot from the applied config
	if c.pin != "" {
		admin = "https://127.0.0.1:1"
	}
	cmd := exec.Command(c.b.bin, "server", "--name", s.name, "--admin", admin, "--data-dir", s.dir, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "TANDEM_NODE_TOKEN="+token, "TANDEM_CA_FINGERPRINT="+c.pin)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(s.done) }()
	return nil
}

func (c *cluster) ready(s *server) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := c.status(s); err == nil && (st.Backup != "" || !c.shared) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up with a backup", s.name)
}

func (c *cluster) kill(s *server) {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func (c *cluster) stop() {
	servers := c.servers
	if c.web != nil {
		servers = append([]*server{c.web}, servers...)
	}
	for _, s := range servers {
		if s.cmd == nil {
			continue
		}
		select {
		case <-s.done:
			continue
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			c.kill(s)
		}
	}
}

type statusInfo struct {
	wire.Heartbeat
	Incarnation string `json:"incarnation"`
}

// peerClient calls s's internal listener: with the node token, or on
// mutual TLS with another member's certificate.
func (c *cluster) peerClient(s *server) *http.Client {
	if c.pin == "" {
		return c.b.http
	}
	for name, cert := range c.certs {
		if name != s.name {
			return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				InsecureSkipVerify: true, //nolint:gosec // a benchmark's own servers
				Certificates:       []tls.Certificate{cert}}}}
		}
	}
	return c.b.http
}

func (c *cluster) status(s *server) (statusInfo, error) {
	var st statusInfo
	req, _ := http.NewRequest(http.MethodGet, c.scheme+"://"+s.peer+"/internal/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.peerClient(s).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (c *cluster) events(s *server) ([]domain.Event, error) {
	req, _ := http.NewRequest(http.MethodGet, c.scheme+"://"+s.peer+"/internal/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.peerClient(s).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var evs []domain.Event
	return evs, json.NewDecoder(resp.Body).Decode(&evs)
}

// counter sends GET /counter with cookie (may be empty) to addr; it returns
// the new cookie value (or the old one) and whether the answer was 200.
func (b *bench) counter(addr, cookie string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/counter", nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: cookie})
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return cookie, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cookie, fmt.Errorf("status %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "JSESSIONID" {
			cookie = ck.Value
		}
	}
	return cookie, nil
}

// routed sends one request the way the web server routes: primary, then
// backup when the primary refuses the connection.
func (c *cluster) routed(cookie string) (string, error) {
	v, _ := route.Parse(cookie)
	out, err := c.b.counter(c.byRoute[v.Primary], cookie)
	if err != nil && dialFailed(err) && v.Backup != "" {
		return c.b.counter(c.byRoute[v.Backup], cookie)
	}
	return out, err
}

func sessionConfig(mode string) domain.SessionConfig {
	sess := domain.DefaultSessionConfig()
	switch mode {
	case "off":
		sess.Shared = false
	case "async":
		sess.Replication = domain.ReplicationAsync
	}
	return sess
}

// procCPU is the CPU time (user+system) of a process, from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

func (c *cluster) cpu() time.Duration {
	var t time.Duration
	for _, s := range c.servers {
		t += procCPU(s.cmd.Process.Pid)
	}
	if c.web != nil {
		t += procCPU(c.web.cmd.Process.Pid)
	}
	return t
}

func (c *cluster) settings() wire.ClusterSettings {
	return wire.ClusterSettings{Name: "bench", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing,
		HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 1000, MemberTLS: c.mtls}
}

// entry is where the load goes: the web server, else the first server.
func (c *cluster) entry() string {
	if c.web != nil {
		return c.web.addr
	}
	return c.servers[0].addr
}

// addWeb starts a tandem webserver in front of the servers, booting from
// its applied config (with a node certificate on a TLS cluster), and waits
// until it routes.
func (c *cluster) addWeb() error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(c.b.tmp, "ws")
	if err != nil {
		return err
	}
	if c.ca != nil {
		if _, err := writeNodeCert(c.ca, dir, "ws", wire.KindWebServer); err != nil {
			return err
		}
	}
	wc := wire.WebServerConfig{Name: "ws", Listen: addr, Cluster: c.settings(), CookieNames: []string{c.sess.Cookie.Name}, Members: c.members}
	data, _ := json.Marshal(wire.Config{Revision: 1, Checksum: "bench", WebServer: &wc})
	if err := os.WriteFile(filepath.Join(dir, "applied-config.json"), data, 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	admin := "http://127.0.0.1:1"
	if c.pin != "" {
		admin = "https://127.0.0.1:1"
	}
	cmd := exec.Command(c.b.bin, "webserver", "--name", "ws", "--admin", admin, "--data-dir", dir, "--access-log-every", "0", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "TANDEM_NODE_TOKEN="+token, "TANDEM_CA_FINGERPRINT="+c.pin)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	c.web = &server{name: "ws", addr: addr, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(c.web.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.b.counter(addr, ""); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the web server at %s does not route (log in %s)", addr, dir)
}

// writeNodeCert leaves in dir what enrolment would: the node's key and
// certificate from ca; it returns them.
func writeNodeCert(ca *pki.CA, dir, name, kind string) (tls.Certificate, error) {
	key, err := pki.NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := ca.Issue(name, kind, key.Public(), []string{"127.0.0.1"}, pki.LeafLifetime)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, _ := pki.EncodeKey(key)
	if err := os.WriteFile(filepath.Join(dir, agent.KeyFile), keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, agent.CertFile), leaf.CertPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(leaf.CertPEM, keyPEM)
}

// throughput runs clients against the cluster's first server for d and
// returns req/s, latencies, errors and server CPU µs per request.
func (b *bench) throughput(c *cluster, d time.Duration, clients int) (float64, []time.Duration, int64, float64, error) {
	addr := c.entry()
	var errs atomic.Int64
	lat := make([][]time.Duration, clients)
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	warm := time.Now().Add(300 * time.Millisecond)
	end := warm.Add(d)
	var cpu0 time.Duration
	var cpuOnce sync.Once
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cookie := ""
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				var err error
				cookie, err = b.counter(addr, cookie)
				if t0.Before(warm) {
					continue
				}
				cpuOnce.Do(func() { cpu0 = c.cpu() })
				if err != nil {
					errs.Add(1)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	cpu := c.cpu() - cpu0
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return 0, nil, errs.Load(), 0, errors.New("no successful request")
	}
	return float64(len(all)) / d.Seconds(), all, errs.Load(), float64(cpu.Microseconds()) / float64(len(all)), nil
}

// failover kills the primary of `clients` sessions under load and returns
// the time from the kill to the first good answer for one of its sessions.
func (b *bench) failover(clients int) (time.Duration, int, error) {
	c, err := b.cluster(3, domain.DefaultSessionConfig(), false, false)
	if err != nil {
		return 0, 0, err
	}
	defer c.stop()
	cookies := make([]string, clients)
	for i := range cookies {
		if cookies[i], err = b.counter(c.servers[0].addr, ""); err != nil {
			return 0, 0, err
		}
	}
	var killedAt, deadAt atomic.Int64
	var firstOK atomic.Int64
	var errs atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := range cookies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				t0 := time.Now()
				out, err := c.routed(cookies[i])
				if err != nil {
					// Requests sent before the process was gone may die with
					// their connection (ambiguous, not retried); only requests
					// sent after it count as errors.
					if k := deadAt.Load(); k != 0 && t0.UnixNano() > k {
						if errs.Add(1) <= 3 {
							fmt.Fprintf(os.Stderr, "failover error %.1f ms after the process was gone: %v\n", float64(t0.UnixNano()-k)/1e6, err)
						}
					}
					continue
				}
				cookies[i] = out
				if k := killedAt.Load(); k != 0 && t0.UnixNano() > k {
					firstOK.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	killedAt.Store(time.Now().UnixNano())
	c.kill(c.servers[0])
	deadAt.Store(time.Now().UnixNano())
	deadline := time.Now().Add(10 * time.Second)
	for firstOK.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if firstOK.Load() == 0 {
		return 0, int(errs.Load()), errors.New("no good answer within 10 s")
	}
	return time.Duration(firstOK.Load() - killedAt.Load()), int(errs.Load()), nil
}

// failback creates n sessions on ms1, kills it (ms2 takes them over),
// restarts it and reports ms2's failback event.
func (b *bench) failback(n int) (string, error) {
	c, err := b.cluster(2, domain.DefaultSessionConfig(), false, false)
	if err != nil {
		return "", err
	}
	defer c.stop()
	var wg sync.WaitGroup
	var errs atomic.Int64
	ch := make(chan struct{})
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ch {
				if _, err := b.counter(c.servers[0].addr, ""); err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	for range n {
		ch <- struct{}{}
	}
	close(ch)
	wg.Wait()
	if errs.Load() > 0 {
		return "", fmt.Errorf("%d session creations failed", errs.Load())
	}
	c.kill(c.servers[0])
	if err := waitEvent(c, c.servers[1], domain.EventFailover, n); err != nil {
		return "", err
	}
	if err := c.start(c.servers[0]); err != nil {
		return "", err
	}
	if err := waitEvent(c, c.servers[1], domain.EventFailback, n); err != nil {
		return "", err
	}
	evs, _ := c.events(c.servers[1])
	var msgs []string
	for _, e := range evs {
		if e.Type == domain.EventFailback {
			msgs = append(msgs, e.Message)
		}
	}
	if len(msgs) == 0 {
		return "", errors.New("no failback event")
	}
	if b, err := os.ReadFile(filepath.Join(c.servers[1].dir, "log")); err == nil && len(msgs) > 1 {
		fmt.Fprintf(os.Stderr, "%s\n", b)
	}
	return strings.Join(msgs, "; "), nil
}

func waitEvent(c *cluster, s *server, typ string, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := c.events(s)
		if err == nil {
			total := 0
			for _, e := range evs {
				if e.Type == typ {
					total += e.Sessions
				}
			}
			if total >= n {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no %s event for %d sessions on %s", typ, n, s.name)
}

// dialFailed reports whether the request never reached the server: the
// connection was refused, or reset while connecting (a dying process).
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) && op.Op == "dial"
}
