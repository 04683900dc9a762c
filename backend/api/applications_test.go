package api_test

import (
	"context"
	"strings"
	"testing"

	"tandem/backend/api"
	"tandem/backend/domain"
	"tandem/backend/wire"
)

func TestApplicationsCRUDAndValidation(t *testing.T) {
	e := newEnv(t)
	e.seed()
	cart := map[string]any{"name": "cart", "kind": "process", "command": []string{"python3", "/srv/cart/app.py"}, "env": map[string]string{"DB": "db1"}}
	var a domain.Application
	r := e.must(201, "POST", "/api/v1/applications", e.operator, cart)
	r.decode(t, &a)
	if a.HealthPath != "/healthz" || a.StartTimeoutSeconds != 30 || a.RequestTimeoutSeconds != 30 || a.Env["DB"] != "db1" || r.Header.Get("Location") != "/api/v1/applications/cart" {
		t.Fatalf("created %+v (Location %q)", a, r.Header.Get("Location"))
	}
	if r := e.do("POST", "/api/v1/applications", e.operator, cart); r.Status != 409 {
		t.Fatalf("duplicate: %d %s", r.Status, r.Body)
	}

	bad := []struct {
		field string
		body  map[string]any
	}{
		{"kind", map[string]any{"name": "x", "kind": "jar", "command": []string{"java"}}},
		{"command", map[string]any{"name": "x", "kind": "process", "command": []string{}}},
		{"command", map[string]any{"name": "x", "kind": "process"}},
		{"env", map[string]any{"name": "x", "kind": "process", "command": []string{"a"}, "env": map[string]string{"PORT": "1"}}},
		{"env", map[string]any{"name": "x", "kind": "process", "command": []string{"a"}, "env": map[string]string{"TANDEM_NODE_TOKEN": "x"}}},
		{"env", map[string]any{"name": "x", "kind": "process", "command": []string{"a"}, "env": map[string]string{"1BAD": "x"}}},
		{"health_path", map[string]any{"name": "x", "kind": "process", "command": []string{"a"}, "health_path": "healthz"}},
		{"start_timeout_seconds", map[string]any{"name": "x", "kind": "process", "command": []string{"a"}, "start_timeout_seconds": 601}},
		{"request_timeout_seconds", map[string]any{"name": "x", "kind": "process", "command": []string{"a"}, "request_timeout_seconds": -1}},
		{"name", map[string]any{"name": "Bad Name", "kind": "process", "command": []string{"a"}}},
	}
	for _, b := range bad {
		before := e.dump()
		r := e.do("POST", "/api/v1/applications", e.operator, b.body)
		if r.Status != 422 || r.err(t).Field != b.field {
			t.Errorf("%v: %d %s, want 422 on field %s", b.body, r.Status, r.Body, b.field)
		}
		e.unchanged(before, "a refused application")
	}
	if r := e.do("POST", "/api/v1/applications", e.viewer, cart); r.Status != 403 {
		t.Fatalf("viewer create: %d", r.Status)
	}
	if r := e.do("GET", "/api/v1/applications", "", nil); r.Status != 401 {
		t.Fatalf("no token: %d", r.Status)
	}

	// PUT replaces; the name comes from the path.
	e.must(200, "PUT", "/api/v1/applications/cart", e.operator, map[string]any{"kind": "process", "command": []string{"python3", "/srv/cart/v2.py"}, "health_path": "/up"})
	a = domain.Application{}
	e.must(200, "GET", "/api/v1/applications/cart", e.viewer, nil).decode(t, &a)
	if a.Command[1] != "/srv/cart/v2.py" || a.HealthPath != "/up" || len(a.Env) != 0 {
		t.Fatalf("after PUT: %+v", a)
	}
	var list []domain.Application
	e.must(200, "GET", "/api/v1/applications", e.viewer, nil).decode(t, &list)
	if len(list) != 1 || list[0].Name != "cart" {
		t.Fatalf("list: %+v", list)
	}

	// Set it on c1: a new revision for every server, recording it; the
	// desired configs carry it.
	revsBefore := map[string]int64{}
	for _, s := range []string{"ms1", "ms2"} {
		n, _ := e.st.LatestRevisions(context.Background())
		revsBefore[s] = n[s]
	}
	var v api.ClusterApplicationView
	e.must(200, "PUT", "/api/v1/clusters/c1/application", e.operator, map[string]any{"application": "cart"}).decode(t, &v)
	if v.Application != "cart" || len(v.Revisions) != 2 || v.Job != nil {
		t.Fatalf("set application: %+v", v)
	}
	for _, rev := range v.Revisions {
		if rev.Application != "cart" || rev.Number != revsBefore[rev.Server]+1 {
			t.Fatalf("revision %+v (before %d)", rev, revsBefore[rev.Server])
		}
	}
	cfg, err := e.st.DesiredConfig(context.Background(), wire.KindServer, "ms1")
	if err != nil || cfg.Server.App == nil || cfg.Server.App.Command[1] != "/srv/cart/v2.py" || cfg.Server.App.Kind != domain.AppProcess {
		t.Fatalf("desired config of ms1: %+v %v", cfg.Server, err)
	}
	nm, _ := e.st.DesiredConfig(context.Background(), wire.KindNodeManager, "nm1")
	for _, p := range nm.NodeManager.Processes {
		if p.App != nil {
			t.Fatalf("a process application reached the node manager's config: %+v", p)
		}
	}
	var c domain.Cluster
	e.must(200, "GET", "/api/v1/clusters/c1", e.viewer, nil).decode(t, &c)
	if c.Application != "cart" {
		t.Fatalf("cluster %+v", c)
	}
	// Setting it again changes nothing.
	e.must(200, "PUT", "/api/v1/clusters/c1/application", e.operator, map[string]any{"application": "cart"}).decode(t, &v)
	if len(v.Revisions) != 0 {
		t.Fatalf("same application again made revisions: %+v", v.Revisions)
	}
	// GET then PUT of the cluster round-trips; another application through it is refused.
	cm := map[string]any{"failover_mode": "immediate", "application": "cart"}
	e.must(200, "PUT", "/api/v1/clusters/c1", e.operator, cm)
	cm["application"] = "other"
	if r := e.do("PUT", "/api/v1/clusters/c1", e.operator, cm); r.Status != 422 || r.err(t).Field != "application" {
		t.Fatalf("PUT cluster with another application: %d %s", r.Status, r.Body)
	}

	before := e.dump()
	for _, b := range []map[string]any{{"application": "nope"}, {}, {"application": "Bad"}} {
		if r := e.do("PUT", "/api/v1/clusters/c1/application", e.operator, b); r.Status != 422 || r.err(t).Field != "application" {
			t.Fatalf("set %v: %d %s", b, r.Status, r.Body)
		}
	}
	if r := e.do("PUT", "/api/v1/clusters/c1/application", e.viewer, map[string]any{"application": ""}); r.Status != 403 {
		t.Fatalf("viewer set: %d", r.Status)
	}
	if r := e.do("DELETE", "/api/v1/applications/cart", e.operator, nil); r.Status != 409 || !strings.Contains(r.err(t).Message, "c1") {
		t.Fatalf("delete in use: %d %s", r.Status, r.Body)
	}
	e.unchanged(before, "refused application writes")

	// A go application reaches the node manager (it runs the binary).
	e.must(201, "POST", "/api/v1/applications", e.operator, map[string]any{"name": "shop", "kind": "go", "command": []string{"/srv/shop/shop"}})
	e.must(200, "PUT", "/api/v1/clusters/c1/application", e.operator, map[string]any{"application": "shop"}).decode(t, &v)
	if v.Job != nil || v.RestartError == "" {
		t.Fatalf("to a go application without a roller: %+v", v)
	}
	nm, _ = e.st.DesiredConfig(context.Background(), wire.KindNodeManager, "nm1")
	for _, p := range nm.NodeManager.Processes {
		if (p.Kind == wire.KindServer) != (p.App != nil && p.App.Command[0] == "/srv/shop/shop") {
			t.Fatalf("node manager process %+v", p)
		}
	}

	// Back to the sample app; then the applications can go.
	e.must(200, "PUT", "/api/v1/clusters/c1/application", e.operator, map[string]any{"application": ""}).decode(t, &v)
	if cfg, _ := e.st.DesiredConfig(context.Background(), wire.KindServer, "ms2"); cfg.Server.App != nil {
		t.Fatalf("sample app config still has an app: %+v", cfg.Server.App)
	}
	// The history has every change; a rollback goes back one.
	var deps []domain.Deployment
	e.must(200, "GET", "/api/v1/clusters/c1/deployments", e.viewer, nil).decode(t, &deps)
	if len(deps) != 3 || deps[0].ToApplication != "" || deps[0].FromApplication != "shop" || deps[2].FromApplication != "" || deps[2].ToApplication != "cart" {
		t.Fatalf("deployments %+v", deps)
	}
	// A rollback is a deploy job: this engine has no roller.
	if r := e.do("POST", "/api/v1/clusters/c1/rollback", e.operator, nil); r.Status != 503 {
		t.Fatalf("rollback without a roller: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/v1/clusters/c1/deploy", e.operator, map[string]any{"application": "nope"}); r.Status != 422 || r.err(t).Field != "application" {
		t.Fatalf("deploy of an unknown application: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/v1/clusters/c1/deploy", e.operator, map[string]any{"application": ""}); r.Status != 409 {
		t.Fatalf("deploy of what runs already: %d %s", r.Status, r.Body)
	}
	e.must(201, "POST", "/api/v1/clusters", e.operator, map[string]any{"name": "fresh"})
	if r := e.do("POST", "/api/v1/clusters/fresh/rollback", e.operator, nil); r.Status != 409 {
		t.Fatalf("rollback without history: %d %s", r.Status, r.Body)
	}
	e.must(204, "DELETE", "/api/v1/applications/cart", e.operator, nil)
	e.must(204, "DELETE", "/api/v1/applications/shop", e.operator, nil)
	if r := e.do("GET", "/api/v1/applications/cart", e.viewer, nil); r.Status != 404 {
		t.Fatalf("deleted: %d", r.Status)
	}
	var audit []domain.AuditEntry
	e.must(200, "GET", "/api/v1/audit", e.viewer, nil).decode(t, &audit)
	seen := map[string]bool{}
	for _, a := range audit {
		seen[a.Action] = true
	}
	for _, want := range []string{"application.create", "application.update", "application.delete", "cluster.application"} {
		if !seen[want] {
			t.Errorf("no audit entry %s", want)
		}
	}
}

func TestMaxSessionBytesThroughSessionConfig(t *testing.T) {
	e := newEnv(t)
	e.seed()
	var v api.SessionConfigView
	e.must(200, "PUT", "/api/v1/clusters/c1/session-config", e.operator, map[string]any{"max_session_bytes": 4096}).decode(t, &v)
	if v.Effective.MaxSessionBytes != 4096 {
		t.Fatalf("effective %+v", v.Effective)
	}
	e.must(200, "GET", "/api/v1/servers/ms1/session-config", e.viewer, nil).decode(t, &v)
	if v.Effective.MaxSessionBytes != 4096 {
		t.Fatalf("server inherits: %+v", v.Effective)
	}
	before := e.dump()
	if r := e.do("PUT", "/api/v1/servers/ms1/session-config", e.operator, map[string]any{"max_session_bytes": 10}); r.Status != 422 || r.err(t).Field != "max_session_bytes" {
		t.Fatalf("too small: %d %s", r.Status, r.Body)
	}
	e.unchanged(before, "a refused max_session_bytes")
}
