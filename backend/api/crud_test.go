package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"tandem/backend/api"
	"tandem/backend/domain"
)

func TestClusterAndServerRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.seed()
	var c domain.Cluster
	e.must(200, "GET", "/api/v1/clusters/c1", e.viewer, nil).decode(t, &c)
	if c.Name != "c1" || c.Description != "first" || c.FailoverMode != "immediate" || c.BackupPolicy != "ring" ||
		c.HeartbeatIntervalMS != 500 || c.HeartbeatTimeoutMS != 1500 {
		t.Fatalf("cluster = %+v", c)
	}
	// PUT replaces the whole resource; the name comes from the path.
	e.must(200, "PUT", "/api/v1/clusters/c1", e.operator, map[string]any{"failover_mode": "verify", "backup_policy": "explicit", "heartbeat_interval_ms": 200, "heartbeat_timeout_ms": 800})
	e.must(200, "GET", "/api/v1/clusters/c1", e.viewer, nil).decode(t, &c)
	if c.Description != "" || c.FailoverMode != "verify" || c.BackupPolicy != "explicit" || c.HeartbeatTimeoutMS != 800 {
		t.Fatalf("after PUT: %+v", c)
	}
	e.must(200, "PATCH", "/api/v1/clusters/c1", e.operator, map[string]any{"description": "patched"})
	e.must(200, "GET", "/api/v1/clusters/c1", e.viewer, nil).decode(t, &c)
	if c.Description != "patched" || c.FailoverMode != "verify" {
		t.Fatalf("after PATCH: %+v", c)
	}
	var cs []domain.Cluster
	e.must(200, "GET", "/api/v1/clusters", e.viewer, nil).decode(t, &cs)
	if len(cs) != 1 {
		t.Fatalf("clusters = %+v", cs)
	}

	var s domain.Server
	e.must(200, "GET", "/api/v1/servers/ms1", e.viewer, nil).decode(t, &s)
	if s.Cluster != "c1" || s.Listen != "127.0.0.1:9741" || s.Route != "ms1" || s.NodeManager != "nm1" {
		t.Fatalf("server = %+v", s)
	}
	e.must(200, "PUT", "/api/v1/servers/ms1", e.operator, map[string]any{"cluster": "c1", "listen": "127.0.0.1:9751", "route": "a", "backup": "ms2"})
	e.must(200, "GET", "/api/v1/servers/ms1", e.viewer, nil).decode(t, &s)
	if s.Listen != "127.0.0.1:9751" || s.Route != "a" || s.Backup != "ms2" || s.NodeManager != "" {
		t.Fatalf("after PUT: %+v", s)
	}
	e.must(200, "PATCH", "/api/v1/servers/ms1", e.operator, map[string]any{"node_manager": "nm1"})
	e.must(200, "GET", "/api/v1/servers/ms1", e.viewer, nil).decode(t, &s)
	if s.NodeManager != "nm1" || s.Backup != "ms2" {
		t.Fatalf("after PATCH: %+v", s)
	}
	var ss []domain.Server
	e.must(200, "GET", "/api/v1/servers?cluster=c1", e.viewer, nil).decode(t, &ss)
	if len(ss) != 2 {
		t.Fatalf("servers = %+v", ss)
	}

	var w domain.WebServer
	e.must(200, "PUT", "/api/v1/webservers/web1", e.operator, map[string]any{"cluster": "c1", "listen": "127.0.0.1:8081", "node_manager": "nm1"})
	e.must(200, "GET", "/api/v1/webservers/web1", e.viewer, nil).decode(t, &w)
	if w.Listen != "127.0.0.1:8081" || w.NodeManager != "nm1" {
		t.Fatalf("webserver = %+v", w)
	}
	var nm domain.NodeManager
	e.must(200, "PUT", "/api/v1/node-managers/nm1", e.operator, map[string]any{"listen": "127.0.0.1:9750"})
	e.must(200, "GET", "/api/v1/node-managers/nm1", e.viewer, nil).decode(t, &nm)
	if nm.Listen != "127.0.0.1:9750" {
		t.Fatalf("node manager = %+v", nm)
	}

	// Deletes, in the order references allow.
	if r := e.do("DELETE", "/api/v1/clusters/c1", e.operator, nil); r.Status != 409 || r.err(t).Code != api.CodeConflict {
		t.Fatalf("delete cluster with servers: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/api/v1/node-managers/nm1", e.operator, nil); r.Status != 409 {
		t.Fatalf("delete node manager in use: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/api/v1/servers/ms2", e.operator, nil); r.Status != 409 {
		t.Fatalf("delete a server that is a backup: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{"/api/v1/servers/ms1", "/api/v1/servers/ms2", "/api/v1/webservers/web1", "/api/v1/clusters/c1", "/api/v1/node-managers/nm1"} {
		e.must(204, "DELETE", p, e.operator, nil)
		if r := e.do("GET", p, e.viewer, nil); r.Status != 404 || r.err(t).Code != api.CodeNotFound {
			t.Fatalf("GET %s after delete: %d %s", p, r.Status, r.Body)
		}
	}
	// Empty lists are [], never null.
	for _, p := range []string{"/api/v1/clusters", "/api/v1/servers", "/api/v1/webservers", "/api/v1/node-managers", "/api/v1/events"} {
		if r := e.must(200, "GET", p, e.viewer, nil); strings.TrimSpace(string(r.Body)) != "[]" {
			t.Errorf("GET %s = %s, want []", p, r.Body)
		}
	}
	// Every write was audited with its actor.
	var audit []domain.AuditEntry
	e.must(200, "GET", "/api/v1/audit?limit=1000", e.viewer, nil).decode(t, &audit)
	if len(audit) < 15 || audit[0].Action != "node manager.delete" && audit[0].Action != "nodemanager.delete" || audit[0].Actor != "operator-token" {
		t.Fatalf("audit = %d entries, newest %+v", len(audit), audit[0])
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	e.seed()
	before := e.dump()
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"unknown cluster", "GET", "/api/v1/clusters/nope", nil, 404, api.CodeNotFound, ""},
		{"unknown server", "PUT", "/api/v1/servers/nope", map[string]any{"cluster": "c1", "listen": "127.0.0.1:1"}, 404, api.CodeNotFound, ""},
		{"unknown revision", "GET", "/api/v1/servers/ms1/config/revisions/99", nil, 404, api.CodeNotFound, ""},
		{"duplicate cluster", "POST", "/api/v1/clusters", map[string]any{"name": "c1"}, 409, api.CodeConflict, "name"},
		{"duplicate server", "POST", "/api/v1/servers", map[string]any{"name": "ms1", "cluster": "c1", "listen": "127.0.0.1:1"}, 409, api.CodeConflict, "name"},
		{"duplicate route", "POST", "/api/v1/servers", map[string]any{"name": "ms3", "cluster": "c1", "listen": "127.0.0.1:1", "route": "ms1"}, 409, api.CodeConflict, "route"},
		{"malformed JSON", "POST", "/api/v1/clusters", `{"name": "c2"`, 400, api.CodeBadRequest, ""},
		{"not an object", "POST", "/api/v1/clusters", `[1,2]`, 400, api.CodeBadRequest, ""},
		{"two values", "POST", "/api/v1/clusters", `{"name":"c2"} {}`, 400, api.CodeBadRequest, ""},
		{"empty body", "POST", "/api/v1/clusters", nil, 400, api.CodeBadRequest, ""},
		{"unknown field", "POST", "/api/v1/clusters", map[string]any{"name": "c2", "colour": "red"}, 400, api.CodeBadRequest, "colour"},
		{"unknown nested field", "PUT", "/api/v1/servers/ms1/session-config", map[string]any{"cookie": map[string]any{"nme": "X"}}, 400, api.CodeBadRequest, "nme"},
		{"wrong type", "POST", "/api/v1/clusters", map[string]any{"name": "c2", "heartbeat_interval_ms": "fast"}, 400, api.CodeBadRequest, "heartbeat_interval_ms"},
		{"too large", "POST", "/api/v1/clusters", `{"name":"c2","description":"` + strings.Repeat("x", 2<<20) + `"}`, 413, api.CodeTooLarge, ""},
		{"name differs from path", "PUT", "/api/v1/clusters/c1", map[string]any{"name": "c9"}, 422, api.CodeInvalid, "name"},
		{"bad events limit", "GET", "/api/v1/events?limit=0", nil, 400, api.CodeBadRequest, "limit"},
		{"bad revision number", "GET", "/api/v1/servers/ms1/config/revisions/x", nil, 400, api.CodeBadRequest, "n"},
		{"push without control plane", "POST", "/api/v1/clusters/c1/push", nil, 503, api.CodeUnavailable, ""},
		{"push unknown cluster", "POST", "/api/v1/clusters/nope/push", nil, 404, api.CodeNotFound, ""},
		{"start without control plane", "POST", "/api/v1/servers/ms1/start", nil, 503, api.CodeUnavailable, ""},
		{"rolling without roller", "POST", "/api/v1/clusters/c1/rolling-restart", nil, 503, api.CodeUnavailable, ""},
		{"job without roller", "GET", "/api/v1/jobs/1", nil, 503, api.CodeUnavailable, ""},
		{"stream without hub", "GET", "/api/v1/events/stream", nil, 503, api.CodeUnavailable, ""},
		{"no such endpoint", "GET", "/api/v1/nope", nil, 404, api.CodeNotFound, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, e.operator, c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			d := r.err(t)
			if d.Code != c.code || d.Field != c.field || d.Message == "" {
				t.Fatalf("error = %+v, want code %q field %q", d, c.code, c.field)
			}
		})
	}
	e.unchanged(before, "rejected requests")
}

// TestInternalErrorHidesDetail: a failing database gives a 500 with a
// generic message and a request id, never the driver's text.
func TestInternalErrorHidesDetail(t *testing.T) {
	e := newEnv(t)
	e.st.Close()
	r := e.do("POST", "/api/v1/clusters", e.operator, map[string]any{"name": "c1"})
	if r.Status != 401 && r.Status != 500 {
		t.Fatalf("status %d", r.Status)
	}
	d := r.err(t)
	if r.Status == 500 && (d.Code != api.CodeInternal || d.RequestID == "" || d.RequestID != r.Header.Get("X-Request-ID")) {
		t.Fatalf("500 body: %+v", d)
	}
	for _, leak := range []string{"sql", "database", "closed", "store"} {
		if strings.Contains(strings.ToLower(d.Message), leak) {
			t.Fatalf("500 message leaks %q: %s", leak, r.Body)
		}
	}
	if r.Status != 500 {
		t.Fatalf("status %d, want 500: %s", r.Status, r.Body)
	}
}

func TestConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/api/v1/clusters", e.operator, map[string]any{"name": "c1"})
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do("POST", "/api/v1/servers", e.operator, map[string]any{"name": fmt.Sprintf("s%02d", i), "cluster": "c1", "listen": fmt.Sprintf("127.0.0.1:%d", 10000+i)})
			if r.Status != 201 {
				errs <- fmt.Sprintf("create s%02d: %d %s", i, r.Status, r.Body)
			}
			r = e.do("PUT", "/api/v1/clusters/c1/session-config", e.operator, map[string]any{"max_sessions": i})
			if r.Status != 200 {
				errs <- fmt.Sprintf("cluster defaults %d: %d %s", i, r.Status, r.Body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
	ss, err := e.st.Servers(context.Background(), "c1")
	if err != nil || len(ss) != 50 {
		t.Fatalf("servers: %d, %v", len(ss), err)
	}
}
