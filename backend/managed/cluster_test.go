package managed_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/replication"
	"tandem/backend/route"
	"tandem/backend/sampleapp"
	"tandem/backend/session"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

const testToken = "test-node-token-0123456789"

// cluster is a set of real `tandem server` processes on loopback, each
// booting from an applied-config.json the test writes (no admin server).
type cluster struct {
	t       *testing.T
	members []wire.Member
	dirs    map[string]string
	procs   map[string]*testenv.Proc
	sc      wire.ServerConfig
	addrOf  map[string]string // by route
}

func newCluster(t *testing.T, n int, mode string, sess domain.SessionConfig) *cluster {
	t.Helper()
	c := &cluster{t: t, dirs: map[string]string{}, procs: map[string]*testenv.Proc{}, addrOf: map[string]string{}}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("ms%d", i)
		m := wire.Member{Name: name, Route: name, Listen: testenv.FreeAddr(t)}
		m.Internal = domain.NextPort(m.Listen) // FreeAddr keeps it free
		c.members = append(c.members, m)
		c.addrOf[m.Route] = m.Listen
		c.dirs[name] = t.TempDir()
	}
	c.sc = wire.ServerConfig{
		Cluster: wire.ClusterSettings{Name: "c1", FailoverMode: mode, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 2000},
		Members: c.members,
		Session: sess,
	}
	for _, m := range c.members {
		c.writeConfig(m.Name, c.sc)
	}
	return c
}

func (c *cluster) member(name string) wire.Member {
	for _, m := range c.members {
		if m.Name == name {
			return m
		}
	}
	c.t.Fatalf("no member %s", name)
	return wire.Member{}
}

func (c *cluster) writeConfig(name string, sc wire.ServerConfig) {
	sc.Self = c.member(name)
	cfg := wire.Config{Revision: 1, Checksum: "test", Server: &sc}
	b, err := json.Marshal(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dirs[name], "applied-config.json"), b, 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) start(name string) *testenv.Proc {
	c.t.Helper()
	p := testenv.Start(c.t, name, []string{"TANDEM_NODE_TOKEN=" + testToken},
		"server", "--name", name, "--admin", "http://127.0.0.1:1", "--data-dir", c.dirs[name], "--log-level", "info")
	c.procs[name] = p
	testenv.WaitHTTP(c.t, "http://"+c.member(name).Listen+"/healthz", 20*time.Second)
	return p
}

func (c *cluster) startAll() {
	for _, m := range c.members {
		c.start(m.Name)
	}
	// Every server sees every other one (a backup chosen, peers running).
	for _, m := range c.members {
		c.waitStatus(m.Name, func(hb replication.StatusInfo) error {
			for _, p := range hb.Peers {
				if p.State != domain.StateRunning {
					return fmt.Errorf("peer %s is %s", p.Name, p.State)
				}
			}
			if hb.Backup == "" || len(hb.Peers) != len(c.members)-1 {
				return errors.New("no backup yet")
			}
			return nil
		})
	}
}

// status fetches a server's replication status.
func (c *cluster) status(name string) (replication.StatusInfo, error) {
	var hb replication.StatusInfo
	req, _ := http.NewRequest(http.MethodGet, "http://"+c.member(name).PeerAddr()+"/internal/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return hb, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return hb, fmt.Errorf("status: %d", resp.StatusCode)
	}
	return hb, json.NewDecoder(resp.Body).Decode(&hb)
}

func (c *cluster) waitStatus(name string, check func(replication.StatusInfo) error) {
	c.t.Helper()
	testenv.Eventually(c.t, 20*time.Second, func() error {
		hb, err := c.status(name)
		if err != nil {
			return err
		}
		return check(hb)
	})
}

// events fetches the events a server emitted.
func (c *cluster) events(name string) ([]domain.Event, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+c.member(name).PeerAddr()+"/internal/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("events: %d", resp.StatusCode)
	}
	var evs []domain.Event
	return evs, json.NewDecoder(resp.Body).Decode(&evs)
}

// sumEvents adds up the sessions of events of type typ with the given peer,
// over the named servers.
func (c *cluster) sumEvents(typ, peer string, servers ...string) (int, error) {
	total := 0
	for _, s := range servers {
		evs, err := c.events(s)
		if err != nil {
			return 0, err
		}
		for _, e := range evs {
			if e.Type == typ && (peer == "" || e.Peer == peer) {
				total += e.Sessions
			}
		}
	}
	return total, nil
}

// client routes as the web server will: to the primary in the cookie,
// then to the backup when the primary refuses the connection.
type client struct {
	c    *cluster
	name string
	http *http.Client
	// degradedOK accepts writes acknowledged as held by one server only.
	degradedOK bool
}

type sess struct {
	cookie string // cookie value
	count  int64
	server string
	rid    string // X-Tandem-Request-Id of the request in flight, the same on a resend
}

func newClient(c *cluster, cookieName string) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 200, MaxIdleConns: 1000, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	return &client{c: c, name: cookieName, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

var errRefused = errors.New("connection refused")

// do sends GET /counter for s to addr and updates s from the answer.
func (cl *client) do(s *sess, addr string) (sampleapp.Counter, error) {
	var out sampleapp.Counter
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/counter", nil)
	if s.cookie != "" {
		req.AddCookie(&http.Cookie{Name: cl.name, Value: s.cookie})
	}
	if s.rid != "" {
		req.Header.Set(session.HeaderRequestID, s.rid)
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) && op.Op == "dial" {
			return out, errRefused // never reached the server (refused, or reset while connecting)
		}
		return out, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return out, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("body %q: %w", body, err)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == cl.name {
			s.cookie = ck.Value
		}
	}
	if out.Server != resp.Header.Get(sampleapp.HeaderServer) {
		return out, fmt.Errorf("X-Tandem-Server %q but body says %q", resp.Header.Get(sampleapp.HeaderServer), out.Server)
	}
	if resp.Header.Get("X-Tandem-Replication") == "degraded" && !cl.degradedOK {
		return out, fmt.Errorf("degraded write on %s", out.Server)
	}
	s.server = out.Server
	return out, nil
}

// hit routes one request for s: primary, then backup on refusal. A 503
// ("retry": a session being handed over in a failover) is resent with the
// same request id for up to two seconds, as the web server does; the owner
// answers a resent write from its stored reply, so it is applied once.
func (cl *client) hit(s *sess) (sampleapp.Counter, error) {
	s.rid = route.NewID()
	defer func() { s.rid = "" }()
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, err := route.Parse(s.cookie)
		if err != nil {
			return sampleapp.Counter{}, fmt.Errorf("cookie %q: %w", s.cookie, err)
		}
		out, err := cl.do(s, cl.c.addrOf[v.Primary])
		if errors.Is(err, errRefused) && v.Backup != "" {
			out, err = cl.do(s, cl.c.addrOf[v.Backup])
		}
		if err == nil || !strings.HasPrefix(err.Error(), "status 503") || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(50 * time.Millisecond) // a handover takes a few round trips
	}
}

// step sends one request for each session concurrently and checks each
// count is exactly the previous + 1, in the same session.
func (cl *client) step(t *testing.T, ss []*sess, workers int) {
	t.Helper()
	var mu sync.Mutex
	var errs []string
	ch := make(chan *sess)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				id := strings.SplitN(s.cookie, "!", 2)[0]
				out, err := cl.hit(s)
				if err == nil && (out.Count != s.count+1 || out.Session != id) {
					err = fmt.Errorf("session %s… count %d (want %d) session %s… on %s", id[:8], out.Count, s.count+1, out.Session[:min(8, len(out.Session))], out.Server)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					continue
				}
				s.count = out.Count
			}
		}()
	}
	for _, s := range ss {
		ch <- s
	}
	close(ch)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", len(errs), len(ss), strings.Join(errs[:min(5, len(errs))], "; "))
	}
}

// create makes n sessions on server name, each with count 1.
func (cl *client) create(t *testing.T, name string, n, workers int) []*sess {
	t.Helper()
	ss := make([]*sess, n)
	var mu sync.Mutex
	var errs []string
	ch := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				s := &sess{}
				out, err := cl.do(s, cl.c.member(name).Listen)
				if err == nil && out.Count != 1 {
					err = fmt.Errorf("new session count %d", out.Count)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					continue
				}
				s.count = 1
				ss[i] = s
			}
		}()
	}
	for i := range n {
		ch <- i
	}
	close(ch)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("creating sessions on %s: %d failed; first: %s", name, len(errs), errs[0])
	}
	return ss
}

// killServing checks that victim's sessions (of all) are primary on victim
// with one common backup, runs kill, steps every session once and checks
// that the victim's ones were served by that backup, which it returns.
func (cl *client) killServing(t *testing.T, all, victims []*sess, victim string, kill func(), workers int) string {
	t.Helper()
	backup := backupOf(victims[0])
	for _, s := range victims {
		if primaryOf(s) != victim || backupOf(s) != backup {
			t.Fatalf("session of %s has cookie %s, want backup %s", victim, s.cookie, backup)
		}
	}
	kill()
	cl.step(t, all, workers)
	for _, s := range victims {
		if s.server != backup || primaryOf(s) != backup {
			t.Fatalf("after the kill, a session of %s was served by %s with cookie %s; want its backup %s", victim, s.server, s.cookie, backup)
		}
	}
	return backup
}

func primaryOf(s *sess) string {
	v, _ := route.Parse(s.cookie)
	return v.Primary
}

func backupOf(s *sess) string {
	v, _ := route.Parse(s.cookie)
	return v.Backup
}

var _ = context.Background
