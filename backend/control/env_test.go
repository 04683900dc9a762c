package control_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/agent"
	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/events"
	"tandem/backend/store"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

const nodeToken = "node-token-for-tests-0123456789"

// env is a real admin end: a SQLite store in t.TempDir(), the events
// recorder and hub, a control.Plane and an httptest server mounting it.
type env struct {
	t     *testing.T
	st    *store.Store
	hub   *events.Hub
	rec   *events.Recorder
	admin *admin
	log   *slog.Logger
	ping  time.Duration // PingInterval of admins started from now on; 0: default
	// reconcile is the ReconcileInterval of admins started from now on; 0: default.
	reconcile time.Duration
	// wrap, if set, wraps the store that admins started from now on read.
	wrap func(control.Store) control.Store
}

// admin is one run of the admin end (it can be stopped and started again
// on the same address, like a restarted admin server).
type admin struct {
	plane  *control.Plane
	srv    *httptest.Server
	url    string
	cancel context.CancelFunc
	done   chan struct{}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// newEnv opens a store with node manager nm1, cluster c1 (heartbeat
// 300 ms / 3 s) with servers ms1, ms2 and web server web1, and cluster
// fast (50 ms / 300 ms) with server fs1; and starts the admin end. All of
// it is closed at cleanup.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := newEnvNoCleanup(t)
	t.Cleanup(e.close)
	return e
}

// newEnvNoCleanup is newEnv whose caller calls close.
func newEnvNoCleanup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
	}
	must(st.CreateNodeManager(ctx, "test", domain.NodeManager{Name: "nm1", Listen: "127.0.0.1:9740"}))
	must(st.CreateCluster(ctx, "test", domain.Cluster{Name: "c1", HeartbeatIntervalMS: 300, HeartbeatTimeoutMS: 3000}))
	must(st.CreateCluster(ctx, "test", domain.Cluster{Name: "fast", HeartbeatIntervalMS: 50, HeartbeatTimeoutMS: 300}))
	must(st.CreateServer(ctx, "test", domain.Server{Name: "ms1", Cluster: "c1", Listen: "127.0.0.1:9741", NodeManager: "nm1"}))
	must(st.CreateServer(ctx, "test", domain.Server{Name: "ms2", Cluster: "c1", Listen: "127.0.0.1:9742", NodeManager: "nm1"}))
	must(st.CreateWebServer(ctx, "test", domain.WebServer{Name: "web1", Cluster: "c1", Listen: "127.0.0.1:8080", NodeManager: "nm1"}))
	must(st.CreateServer(ctx, "test", domain.Server{Name: "fs1", Cluster: "fast", Listen: "127.0.0.1:9751"}))
	hub := events.NewHub(events.HubConfig{})
	e := &env{t: t, st: st, hub: hub, rec: events.NewRecorder(st, hub), log: testLogger(t)}
	e.admin = e.startAdmin("")
	return e
}

// close stops the admin end and closes the hub and the store. Nodes are
// stopped by their own cleanup (or by the test).
func (e *env) close() {
	e.admin.stop()
	e.hub.Close()
	e.st.Close()
}

// startAdmin starts a plane and an HTTP server for it on addr ("" picks a
// free port).
func (e *env) startAdmin(addr string) *admin {
	e.t.Helper()
	var st control.Store = e.st
	if e.wrap != nil {
		st = e.wrap(st)
	}
	plane := control.New(control.Config{Store: st, Recorder: e.rec, NodeToken: nodeToken, Logger: e.log,
		PushTimeout: 5 * time.Second, PingInterval: e.ping, ReconcileInterval: e.reconcile})
	ctx, cancel := context.WithCancel(context.Background())
	a := &admin{plane: plane, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := plane.Run(ctx); err != nil {
			e.t.Errorf("plane.Run: %v", err)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agent.ConnectPath, plane.ServeNode)
	a.srv = httptest.NewUnstartedServer(mux)
	if addr != "" {
		a.srv.Listener.Close()
		testenv.Eventually(e.t, 10*time.Second, func() error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			a.srv.Listener = ln
			return nil
		})
	}
	a.srv.Start()
	a.url = a.srv.URL
	return a
}

// stop stops the plane (closing every node connection) and the server.
func (a *admin) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	a.cancel()
	<-a.done
	a.srv.Close()
}

func (a *admin) addr() string { return a.srv.Listener.Addr().String() }

// role is a test implementation of agent.Handler: the role behind a real
// agent. It remembers what it applied and ran.
type role struct {
	mu        sync.Mutex
	applied   []wire.Config
	failApply string // non-empty: Apply fails with this text
	hb        wire.Heartbeat
	commands  []wire.Command
	states    []wire.MemberStates
	sessions  []domain.SessionInfo
}

func (r *role) MemberStates(ms wire.MemberStates) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, ms)
}

// stateOf is the last state the admin server sent for member name.
func (r *role) stateOf(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.states) == 0 {
		return ""
	}
	for _, m := range r.states[len(r.states)-1].Members {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

func (r *role) Apply(ctx context.Context, cfg wire.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failApply != "" {
		return errors.New(r.failApply)
	}
	r.applied = append(r.applied, cfg)
	return nil
}

func (r *role) Status() wire.Heartbeat {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hb
}

func (r *role) Command(ctx context.Context, cmd wire.Command) wire.CommandResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commands = append(r.commands, cmd)
	if cmd.Target == "nope" {
		return wire.CommandResult{OK: false, Error: "no such process"}
	}
	return wire.CommandResult{OK: true, PID: 4242}
}

// Query answers session questions from sessions (a server's role).
func (r *role) Query(ctx context.Context, q wire.Query) wire.QueryResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q.Kind == wire.QuerySessions {
		return wire.QueryResult{OK: true, Sessions: r.sessions, Total: len(r.sessions)}
	}
	for _, s := range r.sessions {
		if s.ID == q.Session {
			return wire.QueryResult{OK: true, Sessions: []domain.SessionInfo{s}, Total: 1}
		}
	}
	return wire.QueryResult{OK: true}
}

func (r *role) lastApplied() (wire.Config, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return wire.Config{}, false
	}
	return r.applied[len(r.applied)-1], true
}

func (r *role) set(f func(r *role)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// node is a real agent running in this test process.
type node struct {
	agent  *agent.Agent
	role   *role
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

// startNode runs an agent for kind/name against adminURL with data in dir.
func (e *env) startNode(kind, name, adminURL, dir string, r *role) *node {
	e.t.Helper()
	if r == nil {
		r = &role{hb: wire.Heartbeat{State: domain.StateRunning}}
	}
	a := agent.New(agent.Config{AdminURL: adminURL, NodeToken: nodeToken, Kind: kind, Name: name, DataDir: dir}, r, e.log.With("node", name))
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{agent: a, role: r, dir: dir, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		if err := a.Run(ctx); err != nil {
			e.t.Errorf("agent %s: Run: %v", name, err)
		}
	}()
	e.t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

// subscribe returns a subscription to every event recorded from now on.
func (e *env) subscribe() *events.Subscription {
	s := e.hub.Subscribe(domain.EventFilter{})
	e.t.Cleanup(s.Close)
	return s
}

// waitEvent reads sub until an event of type typ about server arrives,
// failing the test after timeout; it returns the event.
func waitEvent(t *testing.T, sub *events.Subscription, typ, server string, timeout time.Duration) domain.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var seen []string
	for {
		select {
		case ev := <-sub.C():
			if ev.Type == typ && (server == "" || ev.Server == server) {
				return ev
			}
			seen = append(seen, ev.Type+"/"+ev.Server)
		case <-sub.Dropped():
			t.Fatalf("subscription dropped while waiting for %s %s", typ, server)
		case <-deadline.C:
			t.Fatalf("no %s event for %q within %s; saw %v", typ, server, timeout, seen)
		}
	}
}

// waitState polls the plane until node name is in state.
func waitState(t *testing.T, p *control.Plane, name, state string) domain.LiveState {
	t.Helper()
	var ls domain.LiveState
	testenv.Eventually(t, 15*time.Second, func() error {
		var ok bool
		ls, ok = p.Live(name)
		if !ok || ls.State != state {
			return fmt.Errorf("%s: live %+v (known %v), want state %s", name, ls, ok, state)
		}
		return nil
	})
	return ls
}

// raw is a hand-driven node connection, for what a real agent never sends.
type raw struct {
	t *testing.T
	c *websocket.Conn
}

func dialRaw(t *testing.T, adminURL, token string) (*raw, *http.Response, error) {
	t.Helper()
	u, err := agent.ConnectURL(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": []string{"Bearer " + token}}})
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { c.CloseNow() })
	return &raw{t: t, c: c}, resp, nil
}

func (r *raw) send(typ string, body any) {
	r.t.Helper()
	b, err := wire.Encode(typ, body)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendBytes(websocket.MessageText, b)
}

func (r *raw) sendBytes(typ websocket.MessageType, b []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.c.Write(ctx, typ, b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// read returns the next frame's envelope, or the read error.
func (r *raw) read() (wire.Envelope, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := r.c.Read(ctx)
	if err != nil {
		return wire.Envelope{}, err
	}
	env, err := wire.DecodeEnvelope(data)
	if err != nil {
		r.t.Fatalf("admin sent a bad frame %q: %v", data, err)
	}
	return env, nil
}

// expect reads the next frame and requires type typ, decoding it into out.
func (r *raw) expect(typ string, out any) {
	r.t.Helper()
	env, err := r.read()
	if err != nil {
		r.t.Fatalf("reading %s: %v", typ, err)
	}
	if env.Type != typ {
		r.t.Fatalf("got %s frame %s, want %s", env.Type, env.Body, typ)
	}
	if err := wire.DecodeBody(env, out); err != nil {
		r.t.Fatalf("decode %s: %v", typ, err)
	}
}

// hello says hello as kind/name and reads Welcome and the catch-up Config.
func (r *raw) hello(kind, name string) wire.Config {
	r.t.Helper()
	r.send(wire.TypeHello, wire.Hello{Kind: kind, Name: name, PID: 99, Incarnation: "raw"})
	var w wire.Welcome
	r.expect(wire.TypeWelcome, &w)
	var cfg wire.Config
	r.expect(wire.TypeConfig, &cfg)
	return cfg
}
