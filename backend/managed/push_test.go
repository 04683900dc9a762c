package managed_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"tandem/backend/agent"
	apiclient "tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/route"
	"tandem/backend/sampleapp"
	"tandem/backend/session"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// adminCluster is cluster c1 defined over REST in a real `tandem admin`,
// served by real `tandem server` processes that take their config from it
// over the control channel (no applied-config.json written by the test).
// The embedded cluster gives the routing client, status and events.
type adminCluster struct {
	*cluster
	admin   *testenv.Admin
	servers map[string]domain.Server
	runs    map[string]int
}

func newAdminCluster(t *testing.T, n int) *adminCluster {
	t.Helper()
	a := testenv.StartAdmin(t, testToken)
	defs := a.DefineCluster(domain.Cluster{Name: "c1", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing,
		HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 2000}, n, "")
	ac := &adminCluster{admin: a, servers: map[string]domain.Server{}, runs: map[string]int{},
		cluster: &cluster{t: t, dirs: map[string]string{}, procs: map[string]*testenv.Proc{}, addrOf: map[string]string{}}}
	for _, s := range defs {
		ac.servers[s.Name] = s
		ac.members = append(ac.members, wire.Member{Name: s.Name, Route: s.Route, Listen: s.Listen, Internal: s.InternalListen})
		ac.addrOf[s.Route] = s.Listen
		ac.dirs[s.Name] = t.TempDir()
	}
	for _, s := range defs {
		ac.startServer(s.Name)
	}
	a.WaitCluster("c1", 30*time.Second, testenv.Settled)
	return ac
}

// startServer starts (or starts again, on the same data folder) a server.
func (ac *adminCluster) startServer(name string) *testenv.Proc {
	ac.t.Helper()
	ac.runs[name]++
	label := name
	if ac.runs[name] > 1 {
		label = fmt.Sprintf("%s-run%d", name, ac.runs[name])
	}
	p := ac.admin.StartServer(ac.servers[name], ac.dirs[name], label)
	ac.procs[name] = p
	return p
}

// desiredRevisions reads every server's current revision from the API.
func (ac *adminCluster) desiredRevisions(ctx context.Context) map[string]int64 {
	ac.t.Helper()
	out := map[string]int64{}
	for _, m := range ac.members {
		v, err := ac.admin.API.ServerSessionConfig(ctx, m.Name)
		if err != nil {
			ac.t.Fatalf("session config of %s: %v", m.Name, err)
		}
		out[m.Name] = v.Revision
	}
	return out
}

// lastEventID is the id of the newest stored event (0 if none).
func (ac *adminCluster) lastEventID(ctx context.Context) int64 {
	ac.t.Helper()
	evs, err := ac.admin.API.Events(ctx, apiclient.EventQuery{Limit: 1})
	if err != nil {
		ac.t.Fatalf("events: %v", err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].ID
}

// newSession opens a session on the server at addr (no cookie sent) and
// returns its session cookie and answer; the response must set exactly
// one cookie.
func newSession(addr string) (*http.Cookie, sampleapp.Counter, error) {
	return counterWith(addr, nil)
}

// counterWith sends GET /counter to addr with cookie (may be nil) and
// returns the one cookie the answer sets (nil if none) and the answer. A
// 503 ("temporarily unavailable, retry": the session is being handed over
// by a failback) is sent again with the same request id for up to 5 s, as
// the web server does.
func counterWith(addr string, cookie *http.Cookie) (*http.Cookie, sampleapp.Counter, error) {
	var out sampleapp.Counter
	rid := route.NewID()
	deadline := time.Now().Add(5 * time.Second)
	var resp *http.Response
	var body []byte
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/counter", nil)
		if cookie != nil {
			req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
		}
		req.Header.Set(session.HeaderRequestID, rid)
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			return nil, out, err
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the handover takes a moment; the request is resent as a front tier would
	}
	if resp.StatusCode != http.StatusOK {
		return nil, out, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, out, fmt.Errorf("body %q: %w", body, err)
	}
	cs := resp.Cookies()
	switch len(cs) {
	case 0:
		return nil, out, nil
	case 1:
		return cs[0], out, nil
	}
	return nil, out, fmt.Errorf("%d cookies set: %v", len(cs), resp.Header.Values("Set-Cookie"))
}

// checkNewSessions opens a session on each named server and checks the
// cookie name and Max-Age it gets.
func (ac *adminCluster) checkNewSessions(name string, maxAge int, servers ...string) {
	ac.t.Helper()
	for _, s := range servers {
		ck, out, err := newSession(ac.member(s).Listen)
		switch {
		case err != nil:
			ac.t.Fatalf("new session on %s: %v", s, err)
		case out.Count != 1 || out.Server != s:
			ac.t.Fatalf("new session on %s: answer %+v", s, out)
		case ck == nil || ck.Name != name || ck.MaxAge != maxAge:
			ac.t.Fatalf("new session on %s: cookie %v, want name %s and Max-Age %d", s, ck, name, maxAge)
		}
	}
}

// checkCached checks the config a server cached on disk (what it boots
// from) has revision rev and the session config want.
func (ac *adminCluster) checkCached(name string, rev int64, want domain.SessionConfig) {
	ac.t.Helper()
	cfg, err := agent.LoadCached(ac.dirs[name])
	if err != nil {
		ac.t.Fatalf("cached config of %s: %v", name, err)
	}
	if cfg.Revision != rev || cfg.Server == nil || cfg.Server.Session != want {
		ac.t.Fatalf("cached config of %s: revision %d, session %+v; want revision %d, session %+v", name, cfg.Revision, cfg.Server, rev, want)
	}
}

// appliedAfter waits until the admin server's last config event after id
// is config.applied for each named server.
func (ac *adminCluster) appliedAfter(ctx context.Context, id int64, servers ...string) {
	ac.t.Helper()
	testenv.Eventually(ac.t, 10*time.Second, func() error {
		evs, err := ac.admin.API.Events(ctx, apiclient.EventQuery{Types: []string{domain.EventConfigApplied, domain.EventConfigFailed}, Cluster: "c1", AfterID: id, Limit: 1000})
		if err != nil {
			return err
		}
		seen := map[string]string{}
		for _, e := range evs {
			seen[e.Server] = e.Type
		}
		for _, s := range servers {
			if seen[s] == domain.EventConfigFailed {
				return fmt.Errorf("config.failed from %s after event %d", s, id)
			}
			if seen[s] != domain.EventConfigApplied {
				return fmt.Errorf("no config.applied from %s after event %d (have %v)", s, id, seen)
			}
		}
		return nil
	})
}

// waitPeerEvents waits until the other servers' events of type typ about
// peer add up to n sessions.
func (ac *adminCluster) waitPeerEvents(typ, peer string, n int) {
	ac.t.Helper()
	var others []string
	for _, m := range ac.members {
		if m.Name != peer {
			others = append(others, m.Name)
		}
	}
	testenv.Eventually(ac.t, 20*time.Second, func() error {
		got, err := ac.sumEvents(typ, peer, others...)
		if err != nil || got != n {
			return fmt.Errorf("%s events about %s count %d sessions (err %v), want %d", typ, peer, got, err, n)
		}
		return nil
	})
}

func ptr[T any](v T) *T { return &v }

// TestConfigPushRealAdmin: a real admin server and four real servers. Bad
// session config is refused by the API and changes nothing anywhere; a new
// cookie name and timeout pushed over REST are acked by all four within a
// second, new sessions get the new cookie and existing ones keep counting;
// a server SIGKILLed during the next push gets that config when it comes
// back and uses it.
func TestConfigPushRealAdmin(t *testing.T) {
	ctx := context.Background()
	ac := newAdminCluster(t, 4)
	api := ac.admin.API
	all := []string{"ms1", "ms2", "ms3", "ms4"}
	ac.checkNewSessions("JSESSIONID", 0, all...)
	cl := newClient(ac.cluster, "JSESSIONID")
	var ss []*sess
	for _, s := range all {
		ss = append(ss, cl.create(t, s, 20, 8)...)
	}
	cl.step(t, ss, 8)

	// Bad input: refused with the field named, and nothing changes.
	revs := ac.desiredRevisions(ctx)
	before, err := api.ClusterSessionConfig(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	firstID := ac.lastEventID(ctx)
	bad := []struct {
		server string // "" for the cluster's defaults
		o      domain.SessionOverride
		field  string
	}{
		{"", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("bad name;")}, TimeoutSeconds: ptr(900)}, "cookie.name"},
		{"", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("SHOPSESSION")}, TimeoutSeconds: ptr(5)}, "timeout_seconds"},
		{"", domain.SessionOverride{Cookie: &domain.CookieOverride{MaxAgeSeconds: ptr(-1)}}, "cookie.max_age_seconds"},
		{"ms2", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("a=b")}}, "cookie.name"},
		{"ms3", domain.SessionOverride{Cookie: &domain.CookieOverride{SameSite: ptr("None"), Secure: ptr(false)}}, "cookie.same_site"},
	}
	for _, b := range bad {
		if b.server == "" {
			_, err = api.SetClusterSessionConfig(ctx, "c1", b.o)
		} else {
			_, err = api.SetServerSessionConfig(ctx, b.server, b.o)
		}
		var ae *apiclient.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Code != "invalid" || ae.Field != b.field {
			t.Fatalf("bad config %q %+v: got %v, want 422 invalid on field %s", b.server, b.o, err, b.field)
		}
	}
	if after, err := api.ClusterSessionConfig(ctx, "c1"); err != nil || after.Effective != before.Effective {
		t.Fatalf("cluster session config changed by rejected requests: %+v (err %v), was %+v", after.Effective, err, before.Effective)
	}
	if got := ac.desiredRevisions(ctx); fmt.Sprint(got) != fmt.Sprint(revs) {
		t.Fatalf("revisions after rejected requests: %v, was %v", got, revs)
	}
	res, err := api.Push(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Results {
		if r.Kind == wire.KindServer && (!r.OK || r.Revision != revs[r.Node]) {
			t.Fatalf("push after rejected requests: %+v, want ok at revision %d", r, revs[r.Node])
		}
	}
	ac.appliedAfter(ctx, firstID, all...)
	c1 := ac.admin.WaitCluster("c1", 10*time.Second, testenv.Settled)
	for _, s := range c1.Servers {
		if s.AppliedRevision != revs[s.Name] {
			t.Fatalf("%s applied revision %d, want the unchanged %d", s.Name, s.AppliedRevision, revs[s.Name])
		}
	}
	ac.checkNewSessions("JSESSIONID", 0, all...)
	for _, s := range all {
		ac.checkCached(s, revs[s], before.Effective)
	}
	cl.step(t, ss, 8)

	// A new cookie name and timeout, pushed to all four.
	put := time.Now()
	view, err := api.SetClusterSessionConfig(ctx, "c1", domain.SessionOverride{
		Cookie: &domain.CookieOverride{Name: ptr("SHOPSESSION"), MaxAgeSeconds: ptr(1800)}, TimeoutSeconds: ptr(900)})
	if err != nil {
		t.Fatal(err)
	}
	want := view.Effective
	if want.Cookie.Name != "SHOPSESSION" || want.Cookie.MaxAgeSeconds != 1800 || want.TimeoutSeconds != 900 {
		t.Fatalf("effective cluster config %+v", want)
	}
	revs2 := ac.desiredRevisions(ctx)
	for _, s := range all {
		if revs2[s] <= revs[s] {
			t.Fatalf("%s revision %d after the change, was %d", s, revs2[s], revs[s])
		}
	}
	pushID := ac.lastEventID(ctx)
	start := time.Now()
	res, err = api.Push(ctx, "c1")
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push to 4 servers took %s (%s after the PUT)", took, time.Since(put))
	acked := 0
	for _, r := range res.Results {
		if r.Kind != wire.KindServer {
			continue
		}
		if !r.OK || r.Revision != revs2[r.Node] {
			t.Fatalf("push result %+v, want ok at revision %d", r, revs2[r.Node])
		}
		acked++
	}
	if acked != 4 {
		t.Fatalf("push reported %d servers: %+v", acked, res.Results)
	}
	if took > time.Second {
		t.Fatalf("push with all acks took %s, want at most 1 s", took)
	}
	ac.appliedAfter(ctx, pushID, all...)
	ac.admin.WaitCluster("c1", 10*time.Second, func(c domain.TopologyCluster) error {
		for _, s := range c.Servers {
			if s.AppliedRevision != revs2[s.Name] || s.DesiredRevision != revs2[s.Name] {
				return fmt.Errorf("%s desired %d applied %d, want %d", s.Name, s.DesiredRevision, s.AppliedRevision, revs2[s.Name])
			}
		}
		return testenv.Settled(c)
	})
	ac.checkNewSessions("SHOPSESSION", 1800, all...)
	for _, s := range all {
		ac.checkCached(s, revs2[s], want)
	}
	// Sessions begun under the old name go on, now under the new one.
	for _, s := range ss {
		ck, out, err := counterWith(ac.addrOf[primaryOf(s)], &http.Cookie{Name: "JSESSIONID", Value: s.cookie})
		if err != nil || out.Count != s.count+1 || ck == nil || ck.Name != "SHOPSESSION" {
			t.Fatalf("old-name session on %s: %+v cookie %v err %v; want count %d under SHOPSESSION", primaryOf(s), out, ck, err, s.count+1)
		}
		s.count, s.cookie = out.Count, ck.Value
	}
	cl = newClient(ac.cluster, "SHOPSESSION")
	cl.step(t, ss, 8)

	// ms4 is down during the next push and catches up when it is back.
	// Its sessions fail over first and fail back before they are asked
	// for again (as in TestKillFailoverFailback): this test is about the
	// config, not about requests racing a failback.
	st4, err := ac.status("ms4")
	if err != nil {
		t.Fatal(err)
	}
	ac.procs["ms4"].Kill()
	ac.waitPeerEvents(domain.EventFailover, "ms4", st4.Sessions)
	ac.admin.WaitCluster("c1", 10*time.Second, func(c domain.TopologyCluster) error {
		for _, s := range c.Servers {
			if s.Name == "ms4" && s.State == domain.StateRunning {
				return errors.New("ms4 still running in the topology")
			}
		}
		return nil
	})
	view, err = api.SetClusterSessionConfig(ctx, "c1", domain.SessionOverride{
		Cookie: &domain.CookieOverride{Name: ptr("TANDEMSID"), MaxAgeSeconds: ptr(600)}, TimeoutSeconds: ptr(300)})
	if err != nil {
		t.Fatal(err)
	}
	want3 := view.Effective
	revs3 := ac.desiredRevisions(ctx)
	pushID = ac.lastEventID(ctx)
	start = time.Now()
	res, err = api.Push(ctx, "c1")
	took = time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push with ms4 down took %s", took)
	for _, r := range res.Results {
		switch {
		case r.Kind != wire.KindServer:
		case r.Node == "ms4" && (r.OK || r.Error == "" || r.Revision != revs3["ms4"]):
			t.Fatalf("push result for the dead ms4: %+v", r)
		case r.Node != "ms4" && (!r.OK || r.Revision != revs3[r.Node]):
			t.Fatalf("push result %+v, want ok at revision %d", r, revs3[r.Node])
		}
	}
	if took > time.Second {
		t.Fatalf("push to the three live servers took %s, want at most 1 s", took)
	}
	ac.appliedAfter(ctx, pushID, "ms1", "ms2", "ms3")
	ac.checkNewSessions("TANDEMSID", 600, "ms1", "ms2", "ms3")
	ac.checkCached("ms4", revs2["ms4"], want) // what it will boot from

	backID := ac.lastEventID(ctx)
	p4 := ac.startServer("ms4")
	c1 = ac.admin.WaitCluster("c1", 20*time.Second, func(c domain.TopologyCluster) error {
		for _, s := range c.Servers {
			if s.Name == "ms4" && (s.PID != p4.PID() || s.AppliedRevision != revs3["ms4"]) {
				return fmt.Errorf("ms4 pid %d applied %d, want pid %d revision %d", s.PID, s.AppliedRevision, p4.PID(), revs3["ms4"])
			}
		}
		return testenv.Settled(c)
	})
	ac.appliedAfter(ctx, backID, "ms4")
	ac.checkCached("ms4", revs3["ms4"], want3)
	ac.checkNewSessions("TANDEMSID", 600, all...)
	t.Logf("topology after ms4 came back: %+v", c1.Servers)

	// Every session still counts on, while ms4's own ones fail back to it
	// (a request racing its session's failback must find it, not get a
	// new session).
	cl = newClient(ac.cluster, "TANDEMSID")
	for _, s := range ss {
		ck, out, err := counterWith(ac.addrOf[primaryOf(s)], &http.Cookie{Name: "SHOPSESSION", Value: s.cookie})
		if err != nil || out.Count != s.count+1 || ck == nil || ck.Name != "TANDEMSID" {
			t.Fatalf("session on %s after the second change: %+v cookie %v err %v; want count %d under TANDEMSID", primaryOf(s), out, ck, err, s.count+1)
		}
		s.count, s.cookie = out.Count, ck.Value
	}
	ac.waitPeerEvents(domain.EventFailback, "ms4", st4.Sessions)
	cl.step(t, ss, 8)
	for _, m := range ac.members {
		if n, err := ac.sumEvents(domain.EventSessionLost, "", m.Name); err != nil || n != 0 {
			t.Fatalf("session.lost on %s: %d (err %v)", m.Name, n, err)
		}
	}
}
