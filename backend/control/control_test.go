package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"tandem/backend/agent"
	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

const wait = 15 * time.Second

func ptr[T any](v T) *T { return &v }

func TestRegistrationHeartbeatAndCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.subscribe()
	r := &role{hb: wire.Heartbeat{State: domain.StateRunning, Sessions: 7, BackupSessions: 3, Backup: "ms2"}}
	dir := t.TempDir()
	n := e.startNode(wire.KindServer, "ms1", e.admin.url, dir, r)

	up := waitEvent(t, sub, domain.EventServerUp, "ms1", wait)
	if up.Cluster != "c1" {
		t.Errorf("server.up cluster = %q, want c1", up.Cluster)
	}
	desired, err := e.st.DesiredConfig(context.Background(), wire.KindServer, "ms1")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() error {
		ls, _ := e.admin.plane.Live("ms1")
		if ls.State != domain.StateRunning || ls.Sessions != 7 || ls.BackupSessions != 3 || ls.Backup != "ms2" ||
			ls.PID != os.Getpid() || ls.AppliedChecksum != desired.Checksum || ls.AppliedRevision != desired.Revision {
			return errors.New("live state not there yet: " + jsonString(ls))
		}
		return nil
	})
	got, ok := r.lastApplied()
	if !ok {
		t.Fatal("role applied nothing")
	}
	if diff := cmp.Diff(desired, got); diff != "" {
		t.Fatalf("applied config differs from desired (-want +got):\n%s", diff)
	}
	cached, err := agent.LoadCached(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(desired, cached); diff != "" {
		t.Fatalf("cached config differs from desired (-want +got):\n%s", diff)
	}
	if !e.admin.plane.Connected("ms1") || !n.agent.Connected() {
		t.Fatal("both ends should report the connection")
	}
	if _, ok := e.admin.plane.Live("ms2"); ok {
		t.Fatal("ms2 never connected but has a live state")
	}
	// A new agent on the same data folder says what it applied in Hello.
	n.stop()
	n2 := agent.New(agent.Config{AdminURL: e.admin.url, NodeToken: nodeToken, Kind: wire.KindServer, Name: "ms1", DataDir: dir}, r, e.log)
	if rev, sum := n2.Applied(); rev != desired.Revision || sum != desired.Checksum {
		t.Fatalf("new agent's applied = %d %q, want %d %q from the cache", rev, sum, desired.Revision, desired.Checksum)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestWrongTokenIs401(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, _ := agent.ConnectURL(e.admin.url)
	for name, hdr := range map[string]string{"none": "", "wrong": "Bearer not-the-token", "basic": "Basic " + nodeToken, "prefix": "Bearer " + nodeToken[:10]} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h := http.Header{}
			if hdr != "" {
				h.Set("Authorization", hdr)
			}
			_, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
			if err == nil {
				t.Fatal("dial succeeded without the right token")
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("resp = %v, want 401", resp)
			}
		})
	}
	// The body is the error envelope with a code.
	req, _ := http.NewRequest(http.MethodGet, e.admin.url+agent.ConnectPath, nil)
	req.Header.Set("Authorization", "Bearer wrong")
	client := &http.Client{}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 401 || body.Error.Code != wire.CodeUnauthorized {
		t.Fatalf("status %d body %+v err %v", resp.StatusCode, body, err)
	}
	if _, ok := e.admin.plane.Live("ms1"); ok {
		t.Fatal("a refused connection registered a node")
	}
}

func TestUnknownNodeRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, h := range []wire.Hello{
		{Kind: wire.KindServer, Name: "ms9"},
		{Kind: wire.KindWebServer, Name: "ms1"}, // ms1 is a server, not a web server
	} {
		r, _, err := dialRaw(t, e.admin.url, nodeToken)
		if err != nil {
			t.Fatal(err)
		}
		r.send(wire.TypeHello, h)
		var we wire.Error
		r.expect(wire.TypeError, &we)
		if we.Code != wire.CodeUnknownNode {
			t.Fatalf("error code %q, want %q", we.Code, wire.CodeUnknownNode)
		}
		if _, err := r.read(); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("after unknown_node: %v, want close 1008", err)
		}
	}
	if _, ok := e.admin.plane.Live("ms9"); ok {
		t.Fatal("unknown node registered")
	}
}

func TestPushAppliedAndFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sub := e.subscribe()
	ok := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	bad := e.startNode(wire.KindServer, "ms2", e.admin.url, t.TempDir(), nil)
	waitState(t, e.admin.plane, "ms1", domain.StateRunning)
	waitState(t, e.admin.plane, "ms2", domain.StateRunning)
	var before wire.Config
	testenv.Eventually(t, wait, func() error { // the catch-up config is applied
		var err error
		before, err = agent.LoadCached(bad.dir)
		return err
	})
	bad.role.set(func(r *role) { r.failApply = "listen 127.0.0.1:9742: address already in use" })

	// A domain write changes both servers' effective config.
	if _, err := e.st.SetClusterSessionDefaults(ctx, "test", "c1", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("TANDEMID")}, TimeoutSeconds: ptr(600)}); err != nil {
		t.Fatal(err)
	}
	want, err := e.st.DesiredConfig(ctx, wire.KindServer, "ms1")
	if err != nil {
		t.Fatal(err)
	}
	results, err := e.admin.plane.Push(ctx, "c1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	byNode := map[string]domain.PushResult{}
	for _, r := range results {
		byNode[r.Node] = r
	}
	if len(results) != 3 {
		t.Fatalf("results %+v, want ms1, ms2, web1", results)
	}
	if r := byNode["ms1"]; !r.OK || r.Revision != want.Revision || r.Kind != wire.KindServer {
		t.Errorf("ms1: %+v, want ok at revision %d", r, want.Revision)
	}
	if r := byNode["ms2"]; r.OK || !strings.Contains(r.Error, "address already in use") {
		t.Errorf("ms2: %+v, want the apply error", r)
	}
	if r := byNode["web1"]; r.OK || r.Error != "not connected" || r.Kind != wire.KindWebServer {
		t.Errorf("web1: %+v, want not connected", r)
	}

	pushed := waitEvent(t, sub, domain.EventConfigPushed, "", wait)
	if pushed.Cluster != "c1" || !strings.Contains(pushed.Message, "alice") {
		t.Errorf("config.pushed = %+v", pushed)
	}
	waitEvent(t, sub, domain.EventConfigApplied, "ms1", wait)
	failed := waitEvent(t, sub, domain.EventConfigFailed, "ms2", wait)
	if !strings.Contains(failed.Message, "address already in use") || failed.Cluster != "c1" {
		t.Errorf("config.failed = %+v, want the reason", failed)
	}
	// History agrees with the live view.
	stored, err := e.st.Events(ctx, domain.EventFilter{Types: []string{domain.EventConfigFailed}, Server: "web1"})
	if err != nil || len(stored) != 1 || !strings.Contains(stored[0].Message, "not connected") {
		t.Errorf("stored config.failed for web1 = %+v, %v", stored, err)
	}

	got, _ := ok.role.lastApplied()
	if got.Checksum != want.Checksum || got.Server.Session.Cookie.Name != "TANDEMID" || got.Server.Session.TimeoutSeconds != 600 {
		t.Errorf("ms1 applied %+v, want the new cookie and timeout", got.Server.Session)
	}
	if c, err := agent.LoadCached(ok.dir); err != nil || c.Checksum != want.Checksum {
		t.Errorf("ms1 cache = %v, %v; want checksum %s", c.Checksum, err, want.Checksum)
	}
	// A failed apply leaves the cache as it was.
	if c, err := agent.LoadCached(bad.dir); err != nil || c.Checksum != before.Checksum {
		t.Errorf("ms2 cache = %v, %v; want the old %s", c.Checksum, err, before.Checksum)
	}
	if _, err := e.admin.plane.Push(ctx, "nope", "alice"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("push to unknown cluster: %v, want ErrNotFound", err)
	}
}

func TestCatchUpOnReconnectAndChanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sub := e.subscribe()
	ms1 := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	waitState(t, e.admin.plane, "ms1", domain.StateRunning)

	// ms2 is down during the push.
	if _, err := e.st.SetClusterSessionDefaults(ctx, "test", "c1", domain.SessionOverride{TimeoutSeconds: ptr(900)}); err != nil {
		t.Fatal(err)
	}
	results, err := e.admin.plane.Push(ctx, "c1", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Node == "ms2" && (r.OK || r.Error != "not connected") {
			t.Fatalf("ms2 result %+v, want not connected", r)
		}
	}
	want2, err := e.st.DesiredConfig(ctx, wire.KindServer, "ms2")
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	ms2 := e.startNode(wire.KindServer, "ms2", e.admin.url, dir2, nil)
	waitEvent(t, sub, domain.EventConfigApplied, "ms2", wait) // caught up on connect
	if got, _ := ms2.role.lastApplied(); got.Checksum != want2.Checksum || got.Server.Session.TimeoutSeconds != 900 {
		t.Fatalf("ms2 applied %+v, want the pushed config", got)
	}

	// ms2 stops; the domain changes while it is away; it reconnects and
	// gets the newest config at once.
	ms2.stop()
	waitState(t, e.admin.plane, "ms2", domain.StateStopped)
	if _, err := e.st.SetServerSessionOverride(ctx, "test", "ms2", domain.SessionOverride{MaxSessions: ptr(123)}); err != nil {
		t.Fatal(err)
	}
	want2, _ = e.st.DesiredConfig(ctx, wire.KindServer, "ms2")
	ms2 = e.startNode(wire.KindServer, "ms2", e.admin.url, dir2, nil)
	testenv.Eventually(t, wait, func() error {
		if c, err := agent.LoadCached(dir2); err != nil || c.Checksum != want2.Checksum {
			return errors.New("ms2 has not cached the newest config")
		}
		return nil
	})
	if got, _ := ms2.role.lastApplied(); got.Server.Session.MaxSessions != 123 {
		t.Fatalf("ms2 applied %+v, want max sessions 123", got.Server.Session)
	}

	// Changed re-sends without a push.
	if _, err := e.st.SetServerSessionOverride(ctx, "test", "ms1", domain.SessionOverride{MaxSessions: ptr(77)}); err != nil {
		t.Fatal(err)
	}
	want1, _ := e.st.DesiredConfig(ctx, wire.KindServer, "ms1")
	e.admin.plane.Changed(ctx, control.Scope{Clusters: []string{"c1"}})
	testenv.Eventually(t, wait, func() error {
		if got, _ := ms1.role.lastApplied(); got.Checksum != want1.Checksum {
			return errors.New("ms1 did not get the changed config")
		}
		if ls, _ := e.admin.plane.Live("ms1"); ls.AppliedChecksum != want1.Checksum {
			return errors.New("live state does not show the applied checksum yet")
		}
		return nil
	})
}

func TestHeartbeatStopSuspectThenFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.subscribe()
	// A hand-driven node in cluster "fast" (50 ms / 300 ms) that
	// heartbeats once and then goes quiet, keeping its connection open.
	r, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	r.hello(wire.KindServer, "fs1")
	r.send(wire.TypeHeartbeat, wire.Heartbeat{State: domain.StateRunning, PID: 99})
	waitEvent(t, sub, domain.EventServerUp, "fs1", wait)
	suspect := waitEvent(t, sub, domain.EventServerSuspect, "fs1", wait)
	down := waitEvent(t, sub, domain.EventServerDown, "fs1", wait)
	if suspect.ID >= down.ID || suspect.Cluster != "fast" {
		t.Fatalf("suspect %+v, down %+v: want suspect first, in cluster fast", suspect, down)
	}
	waitState(t, e.admin.plane, "fs1", domain.StateFailed)
	// A heartbeat brings it back.
	r.send(wire.TypeHeartbeat, wire.Heartbeat{State: domain.StateRunning, PID: 99})
	waitEvent(t, sub, domain.EventServerUp, "fs1", wait)

	// A dropped connection (no "stopping") is suspect, then failed.
	r.c.CloseNow()
	waitEvent(t, sub, domain.EventServerSuspect, "fs1", wait)
	waitEvent(t, sub, domain.EventServerDown, "fs1", wait)
	waitState(t, e.admin.plane, "fs1", domain.StateFailed)
}

// A web server is told its cluster's member states when it connects and
// whenever one changes, so it can skip a silent member at once.
func TestWebServerFollowsMemberStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.subscribe()
	r, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	r.hello(wire.KindServer, "ms1")
	r.send(wire.TypeHeartbeat, wire.Heartbeat{State: domain.StateRunning, PID: 99})
	waitEvent(t, sub, domain.EventServerUp, "ms1", wait)
	web := &role{hb: wire.Heartbeat{State: domain.StateRunning}}
	e.startNode(wire.KindWebServer, "web1", e.admin.url, t.TempDir(), web)
	testenv.Eventually(t, wait, func() error {
		if st := web.stateOf("ms1"); st != domain.StateRunning {
			return fmt.Errorf("web1 has ms1 %q", st)
		}
		return nil
	})
	r.c.CloseNow()
	testenv.Eventually(t, wait, func() error {
		if st := web.stateOf("ms1"); st != domain.StateSuspect && st != domain.StateFailed {
			return fmt.Errorf("web1 has ms1 %q after its connection dropped", st)
		}
		return nil
	})
	web.mu.Lock()
	defer web.mu.Unlock()
	for _, ms := range web.states {
		if ms.Cluster != "c1" {
			t.Fatalf("states of cluster %q sent to a web server of c1", ms.Cluster)
		}
		for _, m := range ms.Members {
			if m.Name == "fs1" {
				t.Fatal("a server of another cluster was sent")
			}
		}
	}
}

func TestCleanStopIsStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.subscribe()
	n := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	waitEvent(t, sub, domain.EventServerUp, "ms1", wait)
	n.stop() // the agent says "stopping" and closes cleanly
	down := waitEvent(t, sub, domain.EventServerDown, "ms1", wait)
	if down.Message != "stopped" {
		t.Fatalf("server.down message %q, want stopped", down.Message)
	}
	waitState(t, e.admin.plane, "ms1", domain.StateStopped)
}

func TestAdminRestartReconnectsAndEventsKeepOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := e.subscribe()
	n := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	waitEvent(t, sub, domain.EventServerUp, "ms1", wait)
	n.agent.Emit(domain.Event{Type: domain.EventBackupChanged, Peer: "ms2", Sessions: 1, Message: "before restart"})
	waitEvent(t, sub, domain.EventBackupChanged, "ms1", wait)

	addr := e.admin.addr()
	e.admin.stop()
	testenv.Eventually(t, wait, func() error {
		if n.agent.Connected() {
			return errors.New("agent still connected")
		}
		return nil
	})
	// Events emitted while the admin server is down are queued, in order.
	for i := range 5 {
		n.agent.Emit(domain.Event{Type: domain.EventFailover, Peer: "ms2", Sessions: i + 1, Message: "while down"})
	}
	e.admin = e.startAdmin(addr)
	waitState(t, e.admin.plane, "ms1", domain.StateRunning)
	var got []int
	for len(got) < 5 {
		ev := waitEvent(t, sub, domain.EventFailover, "ms1", wait)
		if ev.Cluster != "c1" || ev.Peer != "ms2" {
			t.Fatalf("failover event %+v: want cluster filled in and peer kept", ev)
		}
		got = append(got, ev.Sessions)
	}
	if diff := cmp.Diff([]int{1, 2, 3, 4, 5}, got); diff != "" {
		t.Fatalf("events out of order (-want +got):\n%s", diff)
	}
	testenv.Eventually(t, wait, func() error { // recorded events are acked and forgotten
		if q := n.agent.QueuedEvents(); q != 0 {
			return fmt.Errorf("%d events still queued", q)
		}
		return nil
	})
}

// A node resending an event it has no ack for (the ack was lost with the
// connection) gets it acked again but recorded once.
func TestResentEventRecordedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	r.hello(wire.KindServer, "ms1")
	msg := wire.EventMsg{Seq: 1, Event: domain.Event{Type: domain.EventFailback, Peer: "ms2", Sessions: 40}}
	for range 2 {
		r.send(wire.TypeEvent, msg)
		var ack wire.EventAck
		r.expect(wire.TypeEventAck, &ack)
		if ack.Seq != 1 {
			t.Fatalf("ack %+v, want seq 1", ack)
		}
	}
	msg.Seq, msg.Event.Sessions = 2, 41
	r.send(wire.TypeEvent, msg)
	var ack wire.EventAck
	r.expect(wire.TypeEventAck, &ack)
	evs, err := e.st.Events(context.Background(), domain.EventFilter{Types: []string{domain.EventFailback}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Sessions != 40 || evs[1].Sessions != 41 || evs[0].Cluster != "c1" || evs[0].Server != "ms1" {
		t.Fatalf("recorded %s, want seq 1 and 2 once each", jsonString(evs))
	}
}

func TestCommandRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	r := &role{hb: wire.Heartbeat{State: domain.StateRunning, Processes: []wire.ProcessState{
		{Name: "ms2", Kind: wire.KindServer, State: "running", PID: 11}, {Name: "ms1", Kind: wire.KindServer, State: "exited"},
	}}}
	e.startNode(wire.KindNodeManager, "nm1", e.admin.url, t.TempDir(), r)
	waitState(t, e.admin.plane, "nm1", domain.StateRunning)

	res, err := e.admin.plane.Command(ctx, "nm1", wire.Command{Action: wire.ActionStart, Target: "ms1"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.PID != 4242 || res.ID == "" {
		t.Fatalf("result %+v, want ok pid 4242 with an id", res)
	}
	res, err = e.admin.plane.Command(ctx, "nm1", wire.Command{ID: "c-2", Action: wire.ActionStop, Target: "nope"})
	if err != nil || res.OK || res.Error != "no such process" || res.ID != "c-2" {
		t.Fatalf("result %+v, %v; want the node manager's refusal", res, err)
	}
	r.mu.Lock()
	cmds := append([]wire.Command(nil), r.commands...)
	r.mu.Unlock()
	if len(cmds) != 2 || cmds[0].Action != wire.ActionStart || cmds[0].Target != "ms1" || cmds[1].ID != "c-2" {
		t.Fatalf("node manager ran %+v", cmds)
	}
	if _, err := e.admin.plane.Command(ctx, "nm2", wire.Command{Action: wire.ActionStart, Target: "ms1"}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("command to an absent node manager: %v, want ErrUnavailable", err)
	}
	if _, err := e.admin.plane.Command(ctx, "ms1", wire.Command{Action: wire.ActionStart, Target: "ms1"}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("command to a server: %v, want ErrUnavailable", err)
	}
	var inv *domain.InvalidError
	if _, err := e.admin.plane.Command(ctx, "nm1", wire.Command{Action: "format", Target: "ms1"}); !errors.As(err, &inv) {
		t.Fatalf("bad action: %v, want InvalidError", err)
	}
	procs := e.admin.plane.Processes("nm1")
	if len(procs) != 2 || procs[0].Name != "ms1" || procs[1].PID != 11 {
		t.Fatalf("processes %+v", procs)
	}
	if p := e.admin.plane.Processes("nm9"); p == nil || len(p) != 0 {
		t.Fatalf("processes of unknown node manager = %#v, want empty", p)
	}
}

func TestGarbageFramesRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Garbage instead of Hello: an Error, then the close.
	r, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	r.sendBytes(websocket.MessageText, []byte(`{"v":1,"type":"hello","body":{"kind":"server","name":"ms1","x":1}}`))
	var we wire.Error
	r.expect(wire.TypeError, &we)
	if we.Code != wire.CodeBadMessage {
		t.Fatalf("code %q, want bad_message", we.Code)
	}
	if _, err := r.read(); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("after a bad hello: %v, want close 1008", err)
	}

	// After a good Hello, each bad frame gets an Error and is ignored.
	r, _, err = dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	r.hello(wire.KindServer, "ms1")
	garbage := [][]byte{
		[]byte("not json"),
		[]byte(`{"v":2,"type":"heartbeat","body":{}}`),
		[]byte(`{"v":1,"type":"heartbeat","body":{"sessions":-5}}`),
		[]byte(`{"v":1,"type":"heartbeat","body":{"state":"running","bogus":1}}`),
		[]byte(`{"v":1,"type":"config","body":{"server":{}}}`), // only the admin sends configs
		[]byte(`{"v":1,"type":"hello","body":{"kind":"server","name":"ms1"}}`),
		[]byte(`{"v":1,"type":"event","body":{"event":{"type":""}}}`),
	}
	for _, g := range garbage {
		r.sendBytes(websocket.MessageText, g)
		var we wire.Error
		r.expect(wire.TypeError, &we)
		if we.Code != wire.CodeBadMessage {
			t.Fatalf("frame %q: code %q, want bad_message", g, we.Code)
		}
	}
	r.sendBytes(websocket.MessageBinary, []byte{0, 1, 2})
	r.expect(wire.TypeError, &we)
	// The connection still works.
	r.send(wire.TypeHeartbeat, wire.Heartbeat{State: domain.StateRunning, PID: 99, Sessions: 5})
	testenv.Eventually(t, wait, func() error {
		if ls, _ := e.admin.plane.Live("ms1"); ls.Sessions != 5 || ls.State != domain.StateRunning {
			return errors.New("heartbeat after garbage not taken: " + jsonString(ls))
		}
		return nil
	})
	// A node that keeps sending garbage is cut off.
	for range 20 {
		if err := r.c.Write(context.Background(), websocket.MessageText, []byte("junk")); err != nil {
			break
		}
	}
	for {
		if _, err := r.read(); err != nil {
			break
		}
	}
	testenv.Eventually(t, wait, func() error {
		if e.admin.plane.Connected("ms1") {
			return errors.New("still connected")
		}
		return nil
	})
}

func TestSecondConnectionReplacesFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	first.hello(wire.KindServer, "ms1")
	second, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	second.hello(wire.KindServer, "ms1")
	var we wire.Error
	first.expect(wire.TypeError, &we)
	if we.Code != wire.CodeDuplicate {
		t.Fatalf("code %q, want %q", we.Code, wire.CodeDuplicate)
	}
	if _, err := first.read(); err == nil {
		t.Fatal("replaced connection still open")
	}
	second.send(wire.TypeHeartbeat, wire.Heartbeat{State: domain.StateRunning, PID: 100, Sessions: 2})
	ls := waitState(t, e.admin.plane, "ms1", domain.StateRunning)
	if ls.PID != 100 {
		t.Fatalf("live %+v, want the second connection's pid", ls)
	}
}

// TestNoGoroutineLeak runs a whole session (connect, push, command, admin
// restart, stop) and checks that nothing is left running. Not parallel:
// goleak looks at every goroutine of the test binary.
func TestNoGoroutineLeak(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	func() {
		e := newEnvNoCleanup(t)
		defer e.close()
		ctx := context.Background()
		ms1 := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
		nm1 := e.startNode(wire.KindNodeManager, "nm1", e.admin.url, t.TempDir(), nil)
		waitState(t, e.admin.plane, "ms1", domain.StateRunning)
		waitState(t, e.admin.plane, "nm1", domain.StateRunning)
		if _, err := e.admin.plane.Push(ctx, "c1", "leak"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.plane.Command(ctx, "nm1", wire.Command{Action: wire.ActionRestart, Target: "ms1"}); err != nil {
			t.Fatal(err)
		}
		addr := e.admin.addr()
		e.admin.stop()
		e.admin = e.startAdmin(addr)
		waitState(t, e.admin.plane, "ms1", domain.StateRunning)
		ms1.stop()
		nm1.stop()
	}()
	goleak.VerifyNone(t, opt)
}

// A node whose admin server is unreachable at boot keeps trying in the
// background and connects as soon as the admin server is there.
func TestAgentWaitsForAdmin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := testenv.FreeAddr(t)
	n := e.startNode(wire.KindServer, "ms2", "http://"+addr, t.TempDir(), nil)
	n.agent.Emit(domain.Event{Type: domain.EventBackupChanged, Peer: "ms1", Message: "queued before the admin server existed"})
	later := e.startAdmin(addr)
	defer later.stop()
	waitState(t, later.plane, "ms2", domain.StateRunning)
	// The queued event may already be recorded: look in the history.
	testenv.Eventually(t, wait, func() error {
		evs, err := e.st.Events(context.Background(), domain.EventFilter{Types: []string{domain.EventBackupChanged}, Server: "ms2"})
		if err != nil {
			return err
		}
		if len(evs) != 1 || evs[0].Cluster != "c1" {
			return errors.New("queued event not recorded: " + jsonString(evs))
		}
		return nil
	})
}

// A connected node that is deleted from the domain is told so and cut off
// at the next Changed; reconnecting, it is refused as unknown.
func TestDeletedNodeIsCutOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	r, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	r.hello(wire.KindServer, "ms2")
	if err := e.st.DeleteServer(ctx, "test", "ms2"); err != nil {
		t.Fatal(err)
	}
	e.admin.plane.Changed(ctx, control.Scope{Clusters: []string{"c1"}})
	var we wire.Error
	r.expect(wire.TypeError, &we)
	if we.Code != wire.CodeUnknownNode {
		t.Fatalf("code %q, want unknown_node", we.Code)
	}
	if _, err := r.read(); err == nil {
		t.Fatal("connection of a deleted node still open")
	}
	again, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	again.send(wire.TypeHello, wire.Hello{Kind: wire.KindServer, Name: "ms2"})
	again.expect(wire.TypeError, &we)
	if we.Code != wire.CodeUnknownNode {
		t.Fatalf("code %q, want unknown_node", we.Code)
	}
}

// A node process that dies and comes back (a new incarnation) before its
// liveness timer ran out is recorded as down, then up again.
func TestRestartedProcessIsDownThenUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	// A long timeout, so that the liveness timer cannot fail the node first.
	c, err := e.st.Cluster(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	c.HeartbeatTimeoutMS = 60000
	if _, err := e.st.UpdateCluster(ctx, "test", c); err != nil {
		t.Fatal(err)
	}
	sub := e.subscribe()
	old, _, err := dialRaw(t, e.admin.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	old.hello(wire.KindServer, "ms1")
	old.send(wire.TypeHeartbeat, wire.Heartbeat{State: domain.StateRunning, PID: 10})
	waitEvent(t, sub, domain.EventServerUp, "ms1", wait)
	old.c.CloseNow() // killed
	waitEvent(t, sub, domain.EventServerSuspect, "ms1", wait)

	e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil) // restarted: a new incarnation
	down := waitEvent(t, sub, domain.EventServerDown, "ms1", wait)
	if down.Message != "process restarted" {
		t.Fatalf("server.down %+v, want process restarted", down)
	}
	waitEvent(t, sub, domain.EventServerUp, "ms1", wait)
	if ls := waitState(t, e.admin.plane, "ms1", domain.StateRunning); ls.PID != os.Getpid() {
		t.Fatalf("live %+v, want the new process", ls)
	}
}

// A peer that stops answering pings (hung, or gone without a FIN) is
// disconnected, so it holds no resources; its state turns suspect.
func TestUnresponsivePeerIsDisconnected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ping = 100 * time.Millisecond
	a := e.startAdmin("")
	defer a.stop()
	sub := e.subscribe()
	r, _, err := dialRaw(t, a.url, nodeToken)
	if err != nil {
		t.Fatal(err)
	}
	r.hello(wire.KindServer, "ms1")
	r.send(wire.TypeHeartbeat, wire.Heartbeat{State: domain.StateRunning, PID: 7})
	// The raw client never reads again, so it never answers a ping.
	waitEvent(t, sub, domain.EventServerUp, "ms1", wait)
	testenv.Eventually(t, wait, func() error {
		if a.plane.Connected("ms1") {
			return errors.New("unresponsive node still connected")
		}
		return nil
	})
	waitEvent(t, sub, domain.EventServerSuspect, "ms1", wait)
}

// TestQueryRoundTrip: the session inspector's question reaches a managed
// server's agent and its answer comes back; a node that is not a
// connected server is unavailable.
func TestQueryRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	r := &role{hb: wire.Heartbeat{State: domain.StateRunning}, sessions: []domain.SessionInfo{{ID: "s1", Owner: "ms1", Epoch: 3, Version: 7}}}
	e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), r)
	waitState(t, e.admin.plane, "ms1", domain.StateRunning)

	res, err := e.admin.plane.Query(ctx, "ms1", wire.Query{Kind: wire.QuerySession, Session: "s1"})
	if err != nil || !res.OK || len(res.Sessions) != 1 || res.Sessions[0].Epoch != 3 || res.ID == "" {
		t.Fatalf("query: %+v %v", res, err)
	}
	res, err = e.admin.plane.Query(ctx, "ms1", wire.Query{Kind: wire.QuerySession, Session: "s2"})
	if err != nil || !res.OK || len(res.Sessions) != 0 {
		t.Fatalf("query of an unknown session: %+v %v", res, err)
	}
	if res, err = e.admin.plane.Query(ctx, "ms1", wire.Query{Kind: wire.QuerySessions, Limit: 10}); err != nil || res.Total != 1 {
		t.Fatalf("page: %+v %v", res, err)
	}
	var inv *domain.InvalidError
	if _, err := e.admin.plane.Query(ctx, "ms1", wire.Query{Kind: wire.QuerySessions, Limit: wire.MaxQueryLimit + 1}); !errors.As(err, &inv) {
		t.Fatalf("oversized page: %v, want InvalidError", err)
	}
	if _, err := e.admin.plane.Query(ctx, "ms2", wire.Query{Kind: wire.QuerySession, Session: "s1"}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("query to an absent server: %v, want ErrUnavailable", err)
	}
}
