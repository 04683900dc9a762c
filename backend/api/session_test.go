package api_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"tandem/backend/api"
	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/wire"
)

func TestSessionConfigRevisionsAndRollback(t *testing.T) {
	e := newEnv(t)
	e.seed()
	var v api.SessionConfigView
	e.must(200, "GET", "/api/v1/servers/ms1/session-config", e.viewer, nil).decode(t, &v)
	if v.Revision != 1 || v.Effective != domain.DefaultSessionConfig() || !v.Override.IsEmpty() {
		t.Fatalf("initial: %+v", v)
	}
	// Cluster defaults: every server of the cluster gets a revision.
	e.must(200, "PUT", "/api/v1/clusters/c1/session-config", e.operator, map[string]any{"timeout_seconds": 600, "replication": "async"})
	e.must(200, "GET", "/api/v1/clusters/c1/session-config", e.viewer, nil).decode(t, &v)
	if v.Effective.TimeoutSeconds != 600 || *v.Override.Replication != "async" {
		t.Fatalf("cluster view: %+v", v)
	}
	for _, s := range []string{"ms1", "ms2"} {
		e.must(200, "GET", "/api/v1/servers/"+s+"/session-config", e.viewer, nil).decode(t, &v)
		if v.Revision != 2 || v.Effective.TimeoutSeconds != 600 || v.Effective.Replication != "async" {
			t.Fatalf("%s after cluster change: %+v", s, v)
		}
	}
	// Server override: absent fields inherit.
	e.must(200, "PUT", "/api/v1/servers/ms1/session-config", e.operator, map[string]any{"cookie": map[string]any{"name": "SID"}}).decode(t, &v)
	if v.Revision != 3 || v.Effective.Cookie.Name != "SID" || v.Effective.TimeoutSeconds != 600 || v.Effective.Cookie.Path != "/" {
		t.Fatalf("override: %+v", v)
	}
	// {} sets an empty override: everything inherits again.
	e.must(200, "PUT", "/api/v1/servers/ms1/session-config", e.operator, map[string]any{}).decode(t, &v)
	if v.Revision != 4 || v.Effective.Cookie.Name != "JSESSIONID" {
		t.Fatalf("empty override: %+v", v)
	}
	var revs []domain.Revision
	e.must(200, "GET", "/api/v1/servers/ms1/config/revisions", e.viewer, nil).decode(t, &revs)
	if len(revs) != 4 || revs[0].Number != 4 || revs[3].Number != 1 || revs[1].Actor != "operator-token" {
		t.Fatalf("revisions: %+v", revs)
	}
	var rv api.RevisionView
	e.must(200, "GET", "/api/v1/servers/ms1/config/revisions/3", e.viewer, nil).decode(t, &rv)
	if rv.Number != 3 || len(rv.Changes) != 1 || rv.Changes[0].Field != "cookie.name" || rv.Changes[0].To != "SID" {
		t.Fatalf("revision 3: %+v", rv)
	}
	// Rollback to 3 is revision 5 with 3's effective config.
	var r5 domain.Revision
	e.must(200, "POST", "/api/v1/servers/ms1/config/rollback", e.operator, map[string]any{"revision": 3}).decode(t, &r5)
	if r5.Number != 5 || r5.Checksum != rv.Checksum || r5.Config.Cookie.Name != "SID" {
		t.Fatalf("rollback: %+v", r5)
	}
	if r := e.do("POST", "/api/v1/servers/ms1/config/rollback", e.operator, map[string]any{"revision": 42}); r.Status != 404 {
		t.Fatalf("rollback to unknown: %d", r.Status)
	}
	// DELETE clears the override.
	e.must(200, "DELETE", "/api/v1/servers/ms1/session-config", e.operator, nil).decode(t, &v)
	if v.Revision != 6 || v.Effective.Cookie.Name != "JSESSIONID" {
		t.Fatalf("cleared: %+v", v)
	}
	e.must(200, "DELETE", "/api/v1/clusters/c1/session-config", e.operator, nil)
	e.must(200, "GET", "/api/v1/servers/ms2/session-config", e.viewer, nil).decode(t, &v)
	if v.Effective != domain.DefaultSessionConfig() || v.Revision != 3 {
		t.Fatalf("ms2 after clearing defaults: %+v", v)
	}
}

func TestEventsPaging(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := 1; i <= 30; i++ {
		typ := domain.EventServerUp
		if i%3 == 0 {
			typ = domain.EventFailover
		}
		if _, err := e.st.AppendEvent(ctx, domain.Event{Type: typ, Cluster: "c1", Server: fmt.Sprintf("ms%d", i%2)}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(path string) []int64 {
		var es []domain.Event
		e.must(200, "GET", path, e.viewer, nil).decode(t, &es)
		out := []int64{}
		for _, ev := range es {
			out = append(out, ev.ID)
		}
		return out
	}
	check := func(path string, want ...int64) {
		t.Helper()
		if got := ids(path); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	check("/api/v1/events?limit=3", 28, 29, 30)
	check("/api/v1/events?limit=3&before=28", 25, 26, 27)
	check("/api/v1/events?limit=2&after=10", 11, 12)
	check("/api/v1/events?type=failover&limit=2", 27, 30)
	check("/api/v1/events?type=failover,server.up&limit=2", 29, 30)
	check("/api/v1/events?server=ms0&type=failover&limit=2", 24, 30)
	check("/api/v1/events?cluster=c2")
}

// liveControl is a stand-in for backend/control (built in parallel): it
// reports fixed live state and records Changed and Command calls.
type liveControl struct {
	mu      sync.Mutex
	changed []control.Scope
	cmds    []wire.Command
}

func (l *liveControl) Live(name string) (domain.LiveState, bool) {
	if name != "ms1" {
		return domain.LiveState{}, false
	}
	return domain.LiveState{State: domain.StateRunning, PID: 4242, Sessions: 7, Backup: "ms2", AppliedRevision: 1}, true
}

func (l *liveControl) Disconnect(string) {}

func (l *liveControl) Revocations(context.Context) error { return nil }

func (l *liveControl) Query(ctx context.Context, server string, q wire.Query) (wire.QueryResult, error) {
	return wire.QueryResult{}, domain.ErrUnavailable
}

func (l *liveControl) Push(ctx context.Context, cluster, actor string) ([]domain.PushResult, error) {
	return []domain.PushResult{{Node: "ms1", Kind: wire.KindServer, Revision: 1, OK: true}}, nil
}

func (l *liveControl) Changed(ctx context.Context, scope control.Scope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changed = append(l.changed, scope)
}

func (l *liveControl) Command(ctx context.Context, nm string, cmd wire.Command) (wire.CommandResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds = append(l.cmds, cmd)
	if cmd.Target == "ms2" {
		return wire.CommandResult{ID: cmd.ID, Error: "no such process"}, nil
	}
	return wire.CommandResult{ID: cmd.ID, OK: true, PID: 99}, nil
}

func (l *liveControl) ServeNode(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusTeapot)
}

func (l *liveControl) changes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.changed)
}

// lastScope returns the scope of the last Changed call.
func (l *liveControl) lastScope() control.Scope {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.changed) == 0 {
		return control.Scope{}
	}
	return l.changed[len(l.changed)-1]
}

func TestTopologyAndControl(t *testing.T) {
	// Without a control plane every server is stopped.
	e := newEnv(t)
	e.seed()
	var topo api.Topology
	e.must(200, "GET", "/api/v1/topology", e.viewer, nil).decode(t, &topo)
	if len(topo.Clusters) != 1 || len(topo.Clusters[0].Servers) != 2 || len(topo.Clusters[0].WebServers) != 1 || len(topo.NodeManagers) != 1 {
		t.Fatalf("topology: %+v", topo)
	}
	if s := topo.Clusters[0].Servers[0]; s.State != domain.StateStopped || s.PID != 0 || s.DesiredRevision != 1 || s.Route != "ms1" {
		t.Fatalf("server without control: %+v", s)
	}

	lc := &liveControl{}
	e2 := newEnv(t, func(c *api.Config) { c.Control = lc })
	e2.seed()
	if n := lc.changes(); n != 5 {
		t.Fatalf("Changed called %d times for 5 writes", n)
	}
	e2.do("POST", "/api/v1/clusters", e2.operator, map[string]any{"name": "BAD"})
	if n := lc.changes(); n != 5 {
		t.Fatalf("Changed called after a rejected write")
	}
	e2.must(200, "GET", "/api/v1/topology", e2.viewer, nil).decode(t, &topo)
	s := topo.Clusters[0].Servers[0]
	if s.State != domain.StateRunning || s.PID != 4242 || s.Sessions != 7 || s.Backup != "ms2" || s.AppliedRevision != 1 || s.DesiredRevision != 1 {
		t.Fatalf("live server: %+v", s)
	}
	if s2 := topo.Clusters[0].Servers[1]; s2.State != domain.StateStopped {
		t.Fatalf("unknown server: %+v", s2)
	}
	var pr api.PushResponse
	e2.must(200, "POST", "/api/v1/clusters/c1/push", e2.operator, nil).decode(t, &pr)
	if pr.Cluster != "c1" || len(pr.Results) != 1 || !pr.Results[0].OK {
		t.Fatalf("push: %+v", pr)
	}
	var cr wire.CommandResult
	e2.must(200, "POST", "/api/v1/servers/ms1/restart", e2.operator, nil).decode(t, &cr)
	if !cr.OK || cr.PID != 99 || len(lc.cmds) != 1 || lc.cmds[0].Action != wire.ActionRestart || lc.cmds[0].Target != "ms1" {
		t.Fatalf("restart: %+v %+v", cr, lc.cmds)
	}
	if r := e2.do("POST", "/api/v1/servers/ms2/stop", e2.operator, nil); r.Status != 502 || r.err(t).Code != api.CodeCommandFailed {
		t.Fatalf("failing command: %d %s", r.Status, r.Body)
	}
	// The node channel: node token only.
	nodeToken := nodeTokenOf(t, e2)
	if r := e2.do("GET", "/api/v1/nodes/connect", nodeToken, nil); r.Status != http.StatusTeapot {
		t.Fatalf("node connect with node token: %d %s", r.Status, r.Body)
	}
}
