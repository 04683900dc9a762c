package api_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tandem/backend/api"
	"tandem/backend/control"
)

// TestChangedScope: each write tells the control plane which nodes it may
// have changed (the clusters and node managers a server or web server sat
// in before and sits in after it), and a push or a command, which change
// no desired config, do not call it.
func TestChangedScope(t *testing.T) {
	lc := &liveControl{}
	e := newEnv(t, func(c *api.Config) { c.Control = lc })
	e.seed() // nm1; c1 with ms1, ms2 (nm1) and web1 (no node manager)
	cl := func(names ...string) []string { return names }
	steps := []struct {
		method, path string
		body         any
		status       int
		want         *control.Scope // nil: Changed is not called
	}{
		{"POST", "/api/v1/node-managers", map[string]any{"name": "nm2", "listen": "127.0.0.1:9750"}, 201, &control.Scope{NodeManagers: cl("nm2")}},
		{"POST", "/api/v1/clusters", map[string]any{"name": "c2"}, 201, &control.Scope{Clusters: cl("c2")}},
		{"PUT", "/api/v1/clusters/c1", map[string]any{"description": "put"}, 200, &control.Scope{Clusters: cl("c1")}},
		{"PATCH", "/api/v1/clusters/c1", map[string]any{"failover_mode": "verify"}, 200, &control.Scope{Clusters: cl("c1")}},
		{"PUT", "/api/v1/clusters/c1/session-config", map[string]any{"timeout_seconds": 600}, 200, &control.Scope{Clusters: cl("c1")}},
		{"DELETE", "/api/v1/clusters/c1/session-config", nil, 200, &control.Scope{Clusters: cl("c1")}},
		{"POST", "/api/v1/servers", map[string]any{"name": "ms3", "cluster": "c2", "listen": "127.0.0.1:9743", "node_manager": "nm2"}, 201,
			&control.Scope{Clusters: cl("c2"), NodeManagers: cl("nm2")}},
		{"PATCH", "/api/v1/servers/ms3", map[string]any{"cluster": "c1", "node_manager": "nm1"}, 200,
			&control.Scope{Clusters: cl("c2", "c1"), NodeManagers: cl("nm2", "nm1")}},
		{"PUT", "/api/v1/servers/ms3", map[string]any{"cluster": "c2", "listen": "127.0.0.1:9743"}, 200,
			&control.Scope{Clusters: cl("c1", "c2"), NodeManagers: cl("nm1")}},
		{"PUT", "/api/v1/servers/ms1/session-config", map[string]any{"max_sessions": 10}, 200, &control.Scope{Clusters: cl("c1")}},
		{"DELETE", "/api/v1/servers/ms1/session-config", nil, 200, &control.Scope{Clusters: cl("c1")}},
		{"POST", "/api/v1/servers/ms1/config/rollback", map[string]any{"revision": 2}, 200, &control.Scope{Clusters: cl("c1")}},
		{"DELETE", "/api/v1/servers/ms3", nil, 204, &control.Scope{Clusters: cl("c2")}},
		{"POST", "/api/v1/webservers", map[string]any{"name": "web2", "cluster": "c2", "listen": "127.0.0.1:8081", "node_manager": "nm2"}, 201,
			&control.Scope{Clusters: cl("c2"), NodeManagers: cl("nm2")}},
		{"PUT", "/api/v1/webservers/web2", map[string]any{"cluster": "c1", "listen": "127.0.0.1:8081"}, 200,
			&control.Scope{Clusters: cl("c2", "c1"), NodeManagers: cl("nm2")}},
		{"DELETE", "/api/v1/webservers/web2", nil, 204, &control.Scope{Clusters: cl("c1")}},
		{"PUT", "/api/v1/node-managers/nm2", map[string]any{"listen": "127.0.0.1:9751"}, 200, &control.Scope{NodeManagers: cl("nm2")}},
		{"DELETE", "/api/v1/node-managers/nm2", nil, 204, &control.Scope{NodeManagers: cl("nm2")}},
		{"DELETE", "/api/v1/clusters/c2", nil, 204, &control.Scope{Clusters: cl("c2")}},
		// They deliver what they do themselves.
		{"POST", "/api/v1/clusters/c1/push", nil, 200, nil},
		{"POST", "/api/v1/servers/ms1/restart", nil, 200, nil},
		// Refused: no call.
		{"DELETE", "/api/v1/servers/nope", nil, 404, nil},
		{"PUT", "/api/v1/servers/nope", map[string]any{"cluster": "c1", "listen": "127.0.0.1:9799"}, 404, nil},
	}
	for _, s := range steps {
		before := lc.changes()
		e.must(s.status, s.method, s.path, e.operator, s.body)
		calls := lc.changes() - before
		switch {
		case s.want == nil && calls != 0:
			t.Errorf("%s %s: Changed called %d times (%+v), want none", s.method, s.path, calls, lc.lastScope())
		case s.want != nil && calls != 1:
			t.Errorf("%s %s: Changed called %d times, want once", s.method, s.path, calls)
		case s.want != nil:
			if d := cmp.Diff(*s.want, lc.lastScope(), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("%s %s: scope (-want +got):\n%s", s.method, s.path, d)
			}
		}
	}
}
