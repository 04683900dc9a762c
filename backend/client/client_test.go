package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/backend/api"
	"tandem/backend/auth"
	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/store"
)

const adminToken = "client-test-admin-token-0123456789"

// TestClientRoundTrip drives every resource through the typed client
// against the real engine and a real SQLite file.
func TestClientRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nodeTok, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: dir, AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Store: st, Auth: auth.New(st, nodeTok, nil)}))
	defer srv.Close()
	c := client.New(srv.URL, adminToken)
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	check("healthz", c.Healthz(ctx))
	me, err := c.Me(ctx)
	check("me", err)
	if me.Name != "bootstrap" || me.Role != domain.RoleAdmin {
		t.Fatalf("me: %+v", me)
	}
	_, err = c.CreateNodeManager(ctx, domain.NodeManager{Name: "nm1", Listen: "127.0.0.1:9740"})
	check("create nm", err)
	_, err = c.UpdateNodeManager(ctx, domain.NodeManager{Name: "nm1", Listen: "127.0.0.1:9750"})
	check("update nm", err)
	nms, err := c.NodeManagers(ctx)
	check("nms", err)
	nm, err := c.NodeManager(ctx, "nm1")
	check("nm", err)
	if len(nms) != 1 || nm.Listen != "127.0.0.1:9750" {
		t.Fatalf("node managers: %+v %+v", nms, nm)
	}
	_, err = c.CreateCluster(ctx, domain.Cluster{Name: "c1"})
	check("create cluster", err)
	_, err = c.UpdateCluster(ctx, domain.Cluster{Name: "c1", FailoverMode: domain.FailoverVerify})
	check("update cluster", err)
	desc := "patched"
	cl, err := c.PatchCluster(ctx, "c1", client.ClusterPatch{Description: &desc})
	check("patch cluster", err)
	if cl.Description != "patched" || cl.FailoverMode != domain.FailoverVerify {
		t.Fatalf("cluster: %+v", cl)
	}
	cls, err := c.Clusters(ctx)
	check("clusters", err)
	if len(cls) != 1 {
		t.Fatalf("clusters: %+v", cls)
	}
	for _, n := range []string{"ms1", "ms2"} {
		_, err = c.CreateServer(ctx, domain.Server{Name: n, Cluster: "c1", Listen: "127.0.0.1:1" + n[2:], NodeManager: "nm1"})
		check("create server", err)
	}
	_, err = c.UpdateServer(ctx, domain.Server{Name: "ms1", Cluster: "c1", Listen: "127.0.0.1:9741"})
	check("update server", err)
	b := "ms2"
	s, err := c.PatchServer(ctx, "ms1", client.ServerPatch{Backup: &b})
	check("patch server", err)
	if s.Backup != "ms2" || s.Listen != "127.0.0.1:9741" {
		t.Fatalf("server: %+v", s)
	}
	ss, err := c.Servers(ctx, "c1")
	check("servers", err)
	if len(ss) != 2 {
		t.Fatalf("servers: %+v", ss)
	}
	to := 600
	v, err := c.SetClusterSessionConfig(ctx, "c1", domain.SessionOverride{TimeoutSeconds: &to})
	check("cluster session", err)
	if v.Effective.TimeoutSeconds != 600 {
		t.Fatalf("cluster session: %+v", v)
	}
	_, err = c.ClusterSessionConfig(ctx, "c1")
	check("get cluster session", err)
	name := "SID"
	v, err = c.SetServerSessionConfig(ctx, "ms1", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: &name}})
	check("server session", err)
	if v.Revision != 3 || v.Effective.Cookie.Name != "SID" || v.Effective.TimeoutSeconds != 600 {
		t.Fatalf("server session: %+v", v)
	}
	revs, err := c.Revisions(ctx, "ms1")
	check("revisions", err)
	rv, err := c.Revision(ctx, "ms1", 3)
	check("revision", err)
	if len(revs) != 3 || len(rv.Changes) != 1 {
		t.Fatalf("revisions: %d, %+v", len(revs), rv)
	}
	r4, err := c.Rollback(ctx, "ms1", 2)
	check("rollback", err)
	if r4.Number != 4 || r4.Config.Cookie.Name != "JSESSIONID" {
		t.Fatalf("rollback: %+v", r4)
	}
	_, err = c.ClearServerSessionConfig(ctx, "ms1")
	check("clear server session", err)
	_, err = c.ClearClusterSessionConfig(ctx, "c1")
	check("clear cluster session", err)
	v, err = c.ServerSessionConfig(ctx, "ms1")
	check("server session", err)
	if v.Effective != domain.DefaultSessionConfig() {
		t.Fatalf("after clearing: %+v", v)
	}
	_, err = c.CreateWebServer(ctx, domain.WebServer{Name: "web1", Cluster: "c1", Listen: "127.0.0.1:8080"})
	check("create web", err)
	_, err = c.UpdateWebServer(ctx, domain.WebServer{Name: "web1", Cluster: "c1", Listen: "127.0.0.1:8081"})
	check("update web", err)
	ws, err := c.WebServers(ctx, "c1")
	check("webs", err)
	w, err := c.WebServer(ctx, "web1")
	check("web", err)
	if len(ws) != 1 || w.Listen != "127.0.0.1:8081" {
		t.Fatalf("webservers: %+v", ws)
	}
	topo, err := c.Topology(ctx)
	check("topology", err)
	if len(topo.Clusters) != 1 || len(topo.Clusters[0].Servers) != 2 || topo.Clusters[0].Servers[0].State != domain.StateStopped {
		t.Fatalf("topology: %+v", topo)
	}
	if _, err := st.AppendEvent(ctx, domain.Event{Type: domain.EventFailover, Cluster: "c1", Server: "ms2", Peer: "ms1", Sessions: 3}); err != nil {
		t.Fatal(err)
	}
	evs, err := c.Events(ctx, client.EventQuery{Types: []string{domain.EventFailover}, Cluster: "c1", Limit: 10})
	check("events", err)
	if len(evs) != 1 || evs[0].Sessions != 3 {
		t.Fatalf("events: %+v", evs)
	}
	audit, err := c.Audit(ctx, 0, 5)
	check("audit", err)
	if len(audit) != 5 {
		t.Fatalf("audit: %d", len(audit))
	}
	// Without a control plane or roller, operations are 503 and typed.
	if _, err := c.Push(ctx, "c1"); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("push: %v", err)
	}
	if _, err := c.RestartServer(ctx, "ms1"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("restart without node manager: %v", err) // ms1 lost its node manager in UpdateServer
	}
	if _, err := c.StartServer(ctx, "ms2"); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("start: %v", err)
	}
	if _, err := c.StopServer(ctx, "nope"); !client.IsNotFound(err) {
		t.Fatalf("stop unknown: %v", err)
	}
	if _, err := c.StartWebServer(ctx, "web1"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("start a web server without node manager: %v", err)
	}
	if _, err := c.RestartWebServer(ctx, "nope"); !client.IsNotFound(err) {
		t.Fatalf("restart unknown web server: %v", err)
	}
	hcfg, err := c.HAProxyConfig(ctx, "c1", "")
	check("haproxy.cfg", err)
	for _, want := range []string{"bind 127.0.0.1:8081", "backend", "server ms1 ", "server ms2 ", "httpchk"} {
		if !strings.Contains(hcfg, want) {
			t.Fatalf("haproxy.cfg lacks %q:\n%s", want, hcfg)
		}
	}
	if hcfg, err = c.HAProxyConfig(ctx, "c1", "127.0.0.1:18080"); err != nil || !strings.Contains(hcfg, "127.0.0.1:18080") {
		t.Fatalf("haproxy.cfg with listen: %v", err)
	}
	var hae *client.APIError
	if _, err := c.HAProxyConfig(ctx, "c1", "no-port"); !errors.As(err, &hae) || hae.Status != 422 || hae.Field != "listen" {
		t.Fatalf("haproxy.cfg with a bad listen: %v", err)
	}
	if _, err := c.HAProxyConfig(ctx, "nope", ""); !client.IsNotFound(err) {
		t.Fatalf("haproxy.cfg of an unknown cluster: %v", err)
	}
	if _, err := c.RollingRestart(ctx, "c1", time.Minute); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("rolling: %v", err)
	}
	if _, err := c.Job(ctx, 1); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("job: %v", err)
	}
	// Users and tokens.
	_, err = c.CreateUser(ctx, "bob", domain.RoleViewer, "bobs password")
	check("create user", err)
	_, err = c.UpdateUser(ctx, "bob", domain.RoleOperator, "")
	check("update user", err)
	u, err := c.User(ctx, "bob")
	check("user", err)
	us, err := c.Users(ctx)
	check("users", err)
	if u.Role != domain.RoleOperator || len(us) != 2 {
		t.Fatalf("users: %+v %+v", u, us)
	}
	check("delete user", c.DeleteUser(ctx, "bob"))
	nt, err := c.CreateToken(ctx, "ci", domain.RoleViewer)
	check("create token", err)
	ts, err := c.Tokens(ctx)
	check("tokens", err)
	if len(ts) != 2 {
		t.Fatalf("tokens: %+v", ts)
	}
	viewer := client.New(srv.URL, nt.Secret)
	_, err = viewer.CreateCluster(ctx, domain.Cluster{Name: "c2"})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "forbidden" || !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("viewer write: %v", err)
	}
	_, err = c.CreateServer(ctx, domain.Server{Name: "ms3", Cluster: "c1", Listen: "nowhere"})
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Field != "listen" {
		t.Fatalf("invalid: %v", err)
	}
	check("delete token", c.DeleteToken(ctx, "ci"))
	if _, err := viewer.Clusters(ctx); !errors.Is(err, domain.ErrUnauthorized) {
		t.Fatalf("deleted token: %v", err)
	}
	// Deletes.
	check("delete web", c.DeleteWebServer(ctx, "web1"))
	_, err = c.PatchServer(ctx, "ms1", client.ServerPatch{Backup: new(string)})
	check("unset backup", err)
	check("delete ms1", c.DeleteServer(ctx, "ms1"))
	check("delete ms2", c.DeleteServer(ctx, "ms2"))
	check("delete cluster", c.DeleteCluster(ctx, "c1"))
	check("delete nm", c.DeleteNodeManager(ctx, "nm1"))
	if _, err := c.Cluster(ctx, "c1"); !client.IsNotFound(err) {
		t.Fatalf("deleted cluster: %v", err)
	}
}
