package multihost_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/pki"
	"tandem/backend/testenv"
)

// Ports inside the namespaces: each host is fresh, so fixed ports are free.
const (
	adminPort = 9736
	nmPort    = 9740
	wsPort    = 8080
	cluster   = "c1"
	hbTimeout = 1500 * time.Millisecond
)

// waitFor polls check every 100 ms until it returns nil or timeout
// passes, and returns the last error (nil: met).
func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// topo is the topology now: the cluster's servers by name and the node
// managers and web servers by name.
type topo struct {
	servers map[string]domain.TopologyServer
	nodes   map[string]domain.TopologyNode
	cluster domain.TopologyCluster
}

func topology(api *client.Client) (topo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	top, err := api.Topology(ctx)
	if err != nil {
		return topo{}, err
	}
	tp := topo{servers: map[string]domain.TopologyServer{}, nodes: map[string]domain.TopologyNode{}}
	for _, c := range top.Clusters {
		if c.Name != cluster {
			continue
		}
		tp.cluster = c
		for _, s := range c.Servers {
			tp.servers[s.Name] = s
		}
		for _, w := range c.WebServers {
			tp.nodes[w.Name] = w
		}
	}
	for _, n := range top.NodeManagers {
		tp.nodes[n.Name] = n
	}
	return tp, nil
}

// settled says why the domain is not settled yet: the cluster as
// testenv.Settled has it (every server running, applied, with a live
// backup, no unprotected session), and every node manager and the web
// server connected.
func settled(api *client.Client) error {
	tp, err := topology(api)
	if err != nil {
		return err
	}
	if err := testenv.Settled(tp.cluster); err != nil {
		return err
	}
	if len(tp.servers) != 4 {
		return fmt.Errorf("%d servers", len(tp.servers))
	}
	for _, n := range []string{"nm-a", "nm-b", "ws1"} {
		if st := tp.nodes[n].State; st != domain.StateRunning {
			return fmt.Errorf("%s is %q", n, st)
		}
	}
	return nil
}

// plainGet GETs url over plain HTTP and returns the status and body (0
// and the error when nothing answered).
func plainGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

// TestDomainOnThreeHosts runs a domain on three simulated machines
// (network namespaces on one bridge, each with its own host name): the
// admin server on HTTPS on the admin host, a node manager with two
// managed servers on each of hosts A and B, and the web server on host A.
// Users click through the web server while a server of A is SIGKILLed and
// then host B is cut off the network for longer than the heartbeat
// timeout: no session is lost, no count goes back, no request fails.
// Nothing but the documented ports answers plain HTTP across hosts.
func TestDomainOnThreeHosts(t *testing.T) {
	began := time.Now()
	nw := testenv.NewNet(t, "admin", "host-a", "host-b")
	admHost, hostA, hostB := nw.Hosts[0], nw.Hosts[1], nw.Hosts[2]
	hostOf := map[string]*testenv.NetHost{"nm-a": hostA, "nm-b": hostB}

	// The admin server, on HTTPS with its own CA.
	token, nodeTok := testenv.RandomToken(t, 24), testenv.RandomToken(t, 24)
	adminAddr := admHost.Addr(adminPort)
	adminURL := "https://" + adminAddr
	adminDir := t.TempDir()
	admHost.Start(t, "admin", []string{"TANDEM_ADMIN_TOKEN=" + token, "TANDEM_ADMIN_TOKEN_FILE=", "TANDEM_NODE_TOKEN=" + nodeTok, "TANDEM_NODE_TOKEN_FILE="},
		"admin", "--listen", adminAddr, "--data-dir", adminDir)
	var pin string
	testenv.Eventually(t, 30*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(adminDir, "ca.fingerprint"))
		if err != nil {
			return err
		}
		pin = strings.TrimSpace(string(b))
		return nil
	})
	caPEM, err := os.ReadFile(filepath.Join(adminDir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	api := client.New(adminURL, token)
	api.HTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := api.HTTP.Get(adminURL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})

	// The domain: c1 with two servers on each of hosts A and B, their node
	// managers, and ws1 on host A.
	ctx := context.Background()
	// member_tls: ws1 reaches the servers of host B across the network.
	if _, err := api.CreateCluster(ctx, domain.Cluster{Name: cluster, HeartbeatIntervalMS: 500, HeartbeatTimeoutMS: int(hbTimeout.Milliseconds()), MemberTLS: true}); err != nil {
		t.Fatal(err)
	}
	for nm, h := range map[string]*testenv.NetHost{"nm-a": hostA, "nm-b": hostB} {
		if _, err := api.CreateNodeManager(ctx, domain.NodeManager{Name: nm, Listen: h.Addr(nmPort)}); err != nil {
			t.Fatal(err)
		}
	}
	defs := []struct {
		name, nm string
		port     int
	}{{"ms-a1", "nm-a", 9741}, {"ms-a2", "nm-a", 9743}, {"ms-b1", "nm-b", 9741}, {"ms-b2", "nm-b", 9743}}
	nmOf := map[string]string{}
	defined := map[string]domain.Server{}
	// Every server binds every address: host A's are reached at the host
	// its node manager advertises, host B's at the address their control
	// connection comes from.
	for _, d := range defs {
		s, err := api.CreateServer(ctx, domain.Server{Name: d.name, Cluster: cluster, Listen: net.JoinHostPort("0.0.0.0", strconv.Itoa(d.port)), NodeManager: d.nm})
		if err != nil {
			t.Fatal(err)
		}
		s.Listen, s.InternalListen = hostOf[d.nm].Addr(d.port), hostOf[d.nm].Addr(d.port+1) // as reached
		nmOf[d.name], defined[d.name] = d.nm, s
	}
	if _, err := api.CreateWebServer(ctx, domain.WebServer{Name: "ws1", Cluster: cluster, Listen: hostA.Addr(wsPort)}); err != nil {
		t.Fatal(err)
	}

	// The node managers pin the CA; each server's log is in its folder.
	nodeEnv := []string{"TANDEM_NODE_TOKEN=" + nodeTok, "TANDEM_NODE_TOKEN_FILE=", "TANDEM_CA_FINGERPRINT="}
	nmDir := map[string]string{"nm-a": t.TempDir(), "nm-b": t.TempDir()}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, d := range defs {
			p := filepath.Join(nmDir[d.nm], d.name, d.name+".log")
			b, _ := os.ReadFile(p)
			t.Logf("---- log of %s (%s) ----\n%s", d.name, p, b[max(0, len(b)-8000):])
		}
	})
	for _, nm := range []string{"nm-a", "nm-b"} {
		args := []string{"nodemanager", "--name", nm, "--admin", adminURL, "--ca-fingerprint", pin,
			"--data-dir", nmDir[nm], "--listen", hostOf[nm].Addr(nmPort), "--stop-processes-on-exit"}
		if nm == "nm-a" {
			args = append(args, "--advertise", hostA.IP)
		}
		hostOf[nm].Start(t, nm, nodeEnv, args...)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		tp, err := topology(api)
		if err != nil {
			return err
		}
		for _, nm := range []string{"nm-a", "nm-b"} {
			if st := tp.nodes[nm].State; st != domain.StateRunning {
				return fmt.Errorf("%s is %q", nm, st)
			}
		}
		return nil
	})
	for _, d := range defs {
		if _, err := api.StartServer(ctx, d.name); err != nil {
			t.Fatalf("start %s: %v", d.name, err)
		}
	}
	// No access log: its tail, printed on failure, shows the failovers.
	hostA.Start(t, "ws1", nodeEnv, "webserver", "--name", "ws1", "--admin", adminURL, "--ca-fingerprint", pin, "--data-dir", t.TempDir(), "--access-log-every", "0")
	if err := waitFor(60*time.Second, func() error { return settled(api) }); err != nil {
		t.Fatalf("domain not settled: %v", err)
	}
	tp, err := topology(api)
	if err != nil {
		t.Fatal(err)
	}
	// ringLayout: every server's backup is the ring's choice with all four
	// live: the k-th server of a host backs up to the k-th of the other.
	ringLayout := func() error {
		tp, err := topology(api)
		if err != nil {
			return err
		}
		want := map[string]string{"ms-a1": "ms-b1", "ms-a2": "ms-b2", "ms-b1": "ms-a1", "ms-b2": "ms-a2"}
		for s, b := range want {
			if got := tp.servers[s].Backup; got != b {
				return fmt.Errorf("backups %s", backups(tp))
			}
		}
		return nil
	}
	// crossHost: every server's backup is on the other host.
	crossHost := func() error {
		tp, err := topology(api)
		if err != nil {
			return err
		}
		for _, d := range defs {
			if b := tp.servers[d.name].Backup; nmOf[b] == d.nm || b == "" {
				return fmt.Errorf("backups %s", backups(tp))
			}
		}
		return nil
	}
	// Three machines as the domain sees them: each server on its node
	// manager's host.
	for _, d := range defs {
		if got, want := tp.servers[d.name].Host, hostOf[d.nm].Name; got != want {
			t.Fatalf("%s reported on host %q, want %q", d.name, got, want)
		}
	}
	for _, d := range defs {
		s, err := api.Server(ctx, d.name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Advertise != hostOf[d.nm].IP {
			t.Fatalf("%s advertised at %q, want %q", d.name, s.Advertise, hostOf[d.nm].IP)
		}
	}
	t.Logf("settled %s after start: backups %s", time.Since(began).Round(time.Millisecond), backups(tp))

	// Nothing speaks plain text between hosts but the documented ports.
	plainChecks(t, tp, defined, roots, admHost, hostA, hostB, nodeTok)

	// Users click through ws1 from the root namespace, one worker per
	// session: a user waiting on a lost host holds up no other user.
	const sessions = 40
	l := testenv.NewCounterLoad("http://"+hostA.Addr(wsPort), sessions)
	stop, loadDone := make(chan struct{}), make(chan struct{})
	go func() { l.Run(sessions, stop); close(loadDone) }()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-loadDone
	}
	t.Cleanup(stopLoad)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := l.Requests(); n < 3*sessions {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	l.Check(t, "under load")
	t.Logf("sessions by server: %v", l.Servers())

	// a. SIGKILL a server of host A whose backup is on host B: its
	// sessions are served by that backup, its node manager restarts it.
	// The backups first settle on the other host (a server takes a backup
	// of its own host while the other's have not answered yet, and hands
	// over to the ring's choice once its current backup knows).
	if err := waitFor(15*time.Second, ringLayout); err != nil {
		t.Fatalf("a. backups not in the ring's layout: %v", err)
	}
	if tp, err = topology(api); err != nil {
		t.Fatal(err)
	}
	var victim, backup string
	for _, d := range defs {
		s := tp.servers[d.name]
		if d.nm == "nm-a" && nmOf[s.Backup] == "nm-b" {
			victim, backup = d.name, s.Backup
			break
		}
	}
	if victim == "" {
		t.Fatalf("no server on host A has its backup on host B: %s", backups(tp))
	}
	oldPID := tp.servers[victim].PID
	spread := l.Servers()
	if spread[victim] == 0 {
		t.Fatalf("%s serves no session: %v", victim, spread)
	}
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", victim, oldPID, err)
	}
	killed := time.Now()
	_ = l.Worst()
	testenv.Eventually(t, 30*time.Second, func() error {
		now := l.Servers()
		if now[victim] > 0 || now[backup] < spread[backup]+spread[victim] {
			return fmt.Errorf("sessions by server %v (before the kill %v)", now, spread)
		}
		return nil
	})
	t.Logf("a. %s (pid %d) killed: its %d sessions served by its backup %s after %s (worst request %s)",
		victim, oldPID, spread[victim], backup, time.Since(killed).Round(time.Millisecond), l.Worst().Round(time.Millisecond))
	restarted := waitFor(15*time.Second, func() error {
		tp, err := topology(api)
		if err != nil {
			return err
		}
		if s := tp.servers[victim]; s.PID == oldPID || s.PID == 0 || s.State != domain.StateRunning {
			return fmt.Errorf("%s: %s pid %d", victim, s.State, s.PID)
		}
		return nil
	})
	if restarted != nil {
		t.Logf("a. %s not restarted by nm-a (%v): starting it over REST", victim, restarted)
		if _, err := api.StartServer(ctx, victim); err != nil {
			t.Fatalf("start %s: %v", victim, err)
		}
	}
	if err := waitFor(30*time.Second, func() error { return settled(api) }); err != nil {
		t.Fatalf("not settled after the kill of %s: %v", victim, err)
	}
	tp, _ = topology(api)
	t.Logf("a. settled %s after the kill: %s pid %d; backups %s", time.Since(killed).Round(time.Millisecond), victim, tp.servers[victim].PID, backups(tp))
	l.Check(t, "a. kill of "+victim)

	// b. Host B off the network for longer than the heartbeat timeout:
	// until the admin server sees none of its servers running, every
	// session is served on host A (its copy there took over), and at
	// least twice the timeout. Right after step a: the backups are still
	// moving back to the ring's layout (the restarted server's), so the cut
	// often falls in the middle of a backup handover, the second failure
	// soon after the first that finds sessions with one copy only.
	errsBefore := len(l.Errors())
	spread = l.Servers()
	lastEvent := newestEvent(t, api)
	reqsBefore := l.Requests()
	_ = l.Worst()
	hostB.SetLink(t, false)
	cut := time.Now()
	linkDown := true
	t.Cleanup(func() {
		if linkDown {
			hostB.SetLink(t, true)
		}
	})
	var bDown, takeover time.Duration
	if err := waitFor(40*time.Second, func() error {
		if bDown == 0 {
			tp, err := topology(api)
			if err != nil {
				return err
			}
			for _, d := range defs {
				if st := tp.servers[d.name].State; d.nm == "nm-b" && st == domain.StateRunning {
					return fmt.Errorf("%s still %s", d.name, st)
				}
			}
			bDown = time.Since(cut)
		}
		if takeover == 0 {
			now := l.Servers()
			for _, d := range defs {
				if d.nm == "nm-b" && now[d.name] > 0 {
					return fmt.Errorf("sessions by server %v (%d requests answered since the cut)", now, l.Requests()-reqsBefore)
				}
			}
			takeover = time.Since(cut)
		}
		if time.Since(cut) < 2*hbTimeout {
			return fmt.Errorf("cut for %s only", time.Since(cut))
		}
		return nil
	}); err != nil {
		t.Fatalf("b. host B cut off for %s (B's servers down in the admin's view after %s): %v", time.Since(cut).Round(time.Millisecond), bDown.Round(time.Millisecond), err)
	}
	t.Logf("b. host B cut off: its servers down in the admin's view after %s, all sessions served on host A after %s (worst request %s)",
		bDown.Round(time.Millisecond), takeover.Round(time.Millisecond), l.Worst().Round(time.Millisecond))
	tp, _ = topology(api)
	t.Logf("b. host B cut off for %s: states %s; sessions by server before %v, now %v",
		time.Since(cut).Round(time.Millisecond), states(tp), spread, l.Servers())
	hostB.SetLink(t, true)
	linkDown = false
	healed := time.Now()
	if err := waitFor(45*time.Second, func() error { return settled(api) }); err != nil {
		t.Fatalf("b. not settled after host B came back: %v", err)
	}
	tp, _ = topology(api)
	t.Logf("b. settled %s after host B came back; backups %s", time.Since(healed).Round(time.Millisecond), backups(tp))
	// Each server's backup is on the other host again.
	if err := waitFor(15*time.Second, crossHost); err != nil {
		t.Errorf("b. a backup stays on its server's own host after host B came back: %v", err)
	} else {
		t.Logf("b. every backup on the other host again %s after host B came back", time.Since(healed).Round(time.Millisecond))
	}
	// Who took over what, on either side of the cut (B's events arrive
	// once it is back).
	evs, err := api.Events(ctx, client.EventQuery{Cluster: cluster, AfterID: lastEvent, Limit: 1000,
		Types: []string{domain.EventFailover, domain.EventFailback, domain.EventSessionLost}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		t.Logf("b. event %s %s: %s", e.Time.Format("15:04:05.000"), e.Type, e.Message)
	}
	if errs := l.Errors(); len(errs) > errsBefore {
		during := errs[errsBefore:]
		t.Errorf("b. %d bad answers while host B was cut off or coming back, first:\n%s", len(during), strings.Join(during[:min(len(during), 15)], "\n"))
	}

	// c. The users saw nothing.
	stopLoad()
	l.Check(t, "c. end")
	t.Logf("sessions by server at the end: %v; test took %s", l.Servers(), time.Since(began).Round(time.Millisecond))
}

// plainChecks: from the root namespace, the admin server's port and every
// server's peers' port refuse plain HTTP; the node manager's port serves
// only its read-only /healthz and /metrics (it takes no command: its
// control channel is its own TLS connection to the admin server); an
// application port answers 404 for /internal/; and no host listens on any
// other address reachable from another host.
func plainChecks(t *testing.T, tp topo, servers map[string]domain.Server, roots *x509.CertPool, admHost, hostA, hostB *testenv.NetHost, nodeTok string) {
	t.Helper()
	adminAddr := admHost.Addr(adminPort)
	if st, body, err := plainGet("http://" + adminAddr + "/api/v1/topology"); err == nil && (st == http.StatusOK || strings.Contains(body, "clusters")) {
		t.Fatalf("the admin server answered plain HTTP: %d %s", st, body)
	}
	expected := map[string]bool{adminAddr: true}
	for name, s := range servers {
		if st, body, err := plainGet("http://" + s.InternalListen + "/internal/v1/status"); err == nil && st == http.StatusOK {
			t.Fatalf("%s's peers' port %s answered plain HTTP: %d %s", name, s.InternalListen, st, body)
		}
		// member_tls: the application port speaks TLS only, with the
		// server's own certificate, and serves no peer endpoint.
		if st, body, err := plainGet("http://" + s.Listen + "/ping"); err == nil {
			t.Fatalf("%s's application port %s answered plain HTTP: %d %s", name, s.Listen, st, body)
		}
		asMember := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: name}}}
		resp, err := asMember.Get("https://" + s.Listen + "/internal/v1/status")
		if err != nil {
			t.Fatalf("%s's application port %s over TLS: %v", name, s.Listen, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s's application port %s /internal/v1/status: %d, want 404", name, s.Listen, resp.StatusCode)
		}
		_, port, _ := net.SplitHostPort(s.Listen)
		_, iport, _ := net.SplitHostPort(s.InternalListen)
		for _, any := range []string{"0.0.0.0", "::"} { // binds every address
			expected[net.JoinHostPort(any, port)], expected[net.JoinHostPort(any, iport)] = true, true
		}
	}
	for _, h := range []*testenv.NetHost{hostA, hostB} {
		nm := "http://" + h.Addr(nmPort)
		if st, _, err := plainGet(nm + "/healthz"); err != nil || st != http.StatusOK {
			t.Fatalf("node manager %s /healthz: %d %v", nm, st, err)
		}
		for _, path := range []string{"/", "/api/v1/topology", "/api/v1/servers/ms-a1/start", "/internal/v1/status", "/start"} {
			if st, body, err := plainGet(nm + path); err == nil && st != http.StatusNotFound {
				t.Fatalf("node manager %s%s: %d %s, want 404", nm, path, st, body)
			}
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Post(nm+"/metrics", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("node manager POST /metrics: %d, want 405", resp.StatusCode)
			}
		}
		if _, body, err := plainGet(nm + "/metrics"); err != nil || strings.Contains(body, nodeTok) {
			t.Fatalf("node manager /metrics: %v (or it shows the node token)", err)
		}
		expected[h.Addr(nmPort)] = true
	}
	expected[tp.nodes["ws1"].Listen] = true
	// Every listener another host can reach is one of the above.
	for _, h := range []*testenv.NetHost{admHost, hostA, hostB} {
		ls := h.Listening(t)
		for _, a := range ls {
			ip, _, _ := net.SplitHostPort(a)
			if net.ParseIP(ip).IsLoopback() {
				continue
			}
			if !expected[a] {
				t.Fatalf("%s listens on %s, not a documented port (all: %v)", h.Name, a, ls)
			}
		}
		slices.Sort(ls)
		t.Logf("%s listens on %v", h.Name, ls)
	}
}

// newestEvent is the id of the newest stored event.
func newestEvent(t *testing.T, api *client.Client) int64 {
	t.Helper()
	evs, err := api.Events(context.Background(), client.EventQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[0].ID
}

// backups shows each server's live backup.
func backups(tp topo) string {
	return eachServer(tp, func(s domain.TopologyServer) string { return "->" + s.Backup })
}

// states shows each server's state.
func states(tp topo) string {
	return eachServer(tp, func(s domain.TopologyServer) string { return "=" + s.State })
}

// eachServer lists every server's name and what of it, in name order.
func eachServer(tp topo, what func(domain.TopologyServer) string) string {
	var out []string
	for n, s := range tp.servers {
		out = append(out, n+what(s))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
