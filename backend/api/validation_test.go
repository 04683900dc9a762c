package api_test

import (
	"strings"
	"testing"

	"tandem/backend/api"
	"tandem/backend/domain"
)

// TestValidation: every rule is rejected with 422 and the field named, and
// the database keeps every row as it was.
func TestValidation(t *testing.T) {
	e := newEnv(t)
	e.seed()
	e.must(201, "POST", "/api/v1/clusters", e.operator, map[string]any{"name": "c2"})
	e.must(201, "POST", "/api/v1/servers", e.operator, map[string]any{"name": "other", "cluster": "c2", "listen": "127.0.0.1:9800"})
	srv := func(over map[string]any) map[string]any {
		m := map[string]any{"name": "ms9", "cluster": "c1", "listen": "127.0.0.1:9749"}
		for k, v := range over {
			m[k] = v
		}
		return m
	}
	cookie := func(k string, v any) map[string]any { return map[string]any{"cookie": map[string]any{k: v}} }
	cases := []struct {
		name, method, path string
		body               any
		field              string
	}{
		{"cluster name upper case", "POST", "/api/v1/clusters", map[string]any{"name": "Prod"}, "name"},
		{"cluster name leading dash", "POST", "/api/v1/clusters", map[string]any{"name": "-a"}, "name"},
		{"cluster name too long", "POST", "/api/v1/clusters", map[string]any{"name": strings.Repeat("a", 64)}, "name"},
		{"cluster name missing", "POST", "/api/v1/clusters", map[string]any{}, "name"},
		{"failover mode", "POST", "/api/v1/clusters", map[string]any{"name": "c3", "failover_mode": "eventually"}, "failover_mode"},
		{"backup policy", "POST", "/api/v1/clusters", map[string]any{"name": "c3", "backup_policy": "all"}, "backup_policy"},
		{"heartbeat timeout below 2x interval", "POST", "/api/v1/clusters", map[string]any{"name": "c3", "heartbeat_interval_ms": 500, "heartbeat_timeout_ms": 600}, "heartbeat_timeout_ms"},
		{"member TLS on a plain-HTTP admin server", "POST", "/api/v1/clusters", map[string]any{"name": "c3", "member_tls": true}, "member_tls"},
		{"member TLS patched on a plain-HTTP admin server", "PATCH", "/api/v1/clusters/c1", map[string]any{"member_tls": true}, "member_tls"},
		{"member TLS replaced on a plain-HTTP admin server", "PUT", "/api/v1/clusters/c1", map[string]any{"member_tls": true}, "member_tls"},
		{"server name", "POST", "/api/v1/servers", srv(map[string]any{"name": "ms_9"}), "name"},
		{"listen without port", "POST", "/api/v1/servers", srv(map[string]any{"listen": "127.0.0.1"}), "listen"},
		{"listen port 0", "POST", "/api/v1/servers", srv(map[string]any{"listen": "127.0.0.1:0"}), "listen"},
		{"listen port 65536", "POST", "/api/v1/servers", srv(map[string]any{"listen": "127.0.0.1:65536"}), "listen"},
		{"listen bad host", "POST", "/api/v1/servers", srv(map[string]any{"listen": "bad host:80"}), "listen"},
		{"route", "POST", "/api/v1/servers", srv(map[string]any{"route": "Has!Bang"}), "route"},
		{"unknown cluster", "POST", "/api/v1/servers", srv(map[string]any{"cluster": "nope"}), "cluster"},
		{"unknown node manager", "POST", "/api/v1/servers", srv(map[string]any{"node_manager": "nope"}), "node_manager"},
		{"backup in another cluster", "POST", "/api/v1/servers", srv(map[string]any{"backup": "other"}), "backup"},
		{"backup unknown", "POST", "/api/v1/servers", srv(map[string]any{"backup": "nope"}), "backup"},
		{"backup itself", "PUT", "/api/v1/servers/ms1", map[string]any{"cluster": "c1", "listen": "127.0.0.1:9741", "backup": "ms1"}, "backup"},
		{"patch backup in another cluster", "PATCH", "/api/v1/servers/ms1", map[string]any{"backup": "other"}, "backup"},
		{"webserver listen", "POST", "/api/v1/webservers", map[string]any{"name": "web2", "cluster": "c1", "listen": "nowhere"}, "listen"},
		{"webserver unknown node manager", "POST", "/api/v1/webservers", map[string]any{"name": "web2", "cluster": "c1", "listen": "127.0.0.1:8081", "node_manager": "nope"}, "node_manager"},
		{"node manager listen", "POST", "/api/v1/node-managers", map[string]any{"name": "nm2", "listen": ":x"}, "listen"},
		{"cookie name with space", "PUT", "/api/v1/servers/ms1/session-config", cookie("name", "MY SESSION"), "cookie.name"},
		{"cookie name with separator", "PUT", "/api/v1/clusters/c1/session-config", cookie("name", "a;b"), "cookie.name"},
		{"cookie name empty", "PUT", "/api/v1/servers/ms1/session-config", cookie("name", ""), "cookie.name"},
		{"cookie domain", "PUT", "/api/v1/servers/ms1/session-config", cookie("domain", "exa mple.com"), "cookie.domain"},
		{"cookie domain IP", "PUT", "/api/v1/servers/ms1/session-config", cookie("domain", "10.0.0.1"), "cookie.domain"},
		{"cookie path relative", "PUT", "/api/v1/servers/ms1/session-config", cookie("path", "app"), "cookie.path"},
		{"cookie path semicolon", "PUT", "/api/v1/clusters/c1/session-config", cookie("path", "/a;b"), "cookie.path"},
		{"same site", "PUT", "/api/v1/servers/ms1/session-config", cookie("same_site", "lax-ish"), "cookie.same_site"},
		{"same site None without Secure", "PUT", "/api/v1/servers/ms1/session-config", cookie("same_site", "None"), "cookie.same_site"},
		{"cluster same site None without Secure", "PUT", "/api/v1/clusters/c1/session-config", cookie("same_site", "None"), "cookie.same_site"},
		{"max age negative", "PUT", "/api/v1/servers/ms1/session-config", cookie("max_age_seconds", -1), "cookie.max_age_seconds"},
		{"timeout below 1 minute", "PUT", "/api/v1/servers/ms1/session-config", map[string]any{"timeout_seconds": 59}, "timeout_seconds"},
		{"timeout above 7 days", "PUT", "/api/v1/clusters/c1/session-config", map[string]any{"timeout_seconds": 7*24*3600 + 1}, "timeout_seconds"},
		{"max sessions negative", "PUT", "/api/v1/servers/ms1/session-config", map[string]any{"max_sessions": -1}, "max_sessions"},
		{"tracking mode", "PUT", "/api/v1/servers/ms1/session-config", map[string]any{"tracking_mode": "ssl"}, "tracking_mode"},
		{"replication", "PUT", "/api/v1/clusters/c1/session-config", map[string]any{"replication": "maybe"}, "replication"},
		{"rollback revision 0", "POST", "/api/v1/servers/ms1/config/rollback", map[string]any{"revision": 0}, "revision"},
		{"token role", "POST", "/api/v1/tokens", map[string]any{"name": "t1", "role": "root"}, "role"},
		{"token name", "POST", "/api/v1/tokens", map[string]any{"name": "T 1", "role": "viewer"}, "name"},
		{"user password short", "POST", "/api/v1/users", map[string]any{"name": "bob", "role": "viewer", "password": "short"}, "password"},
		{"user role", "POST", "/api/v1/users", map[string]any{"name": "bob", "role": "god", "password": "long enough"}, "role"},
	}
	before := e.dump()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, adminToken, c.body)
			if r.Status != 422 {
				t.Fatalf("status %d, want 422: %s", r.Status, r.Body)
			}
			if d := r.err(t); d.Code != api.CodeInvalid || d.Field != c.field || d.Message == "" {
				t.Fatalf("error = %+v, want field %q", d, c.field)
			}
		})
	}
	e.unchanged(before, "rejected requests")

	// The boundaries themselves are accepted.
	for _, body := range []map[string]any{
		{"timeout_seconds": domain.MinTimeoutSeconds}, {"timeout_seconds": domain.MaxTimeoutSeconds},
		{"max_sessions": 0}, {"cookie": map[string]any{"same_site": "None", "secure": true, "domain": ".example.com", "path": "/app"}},
	} {
		e.must(200, "PUT", "/api/v1/servers/ms1/session-config", e.operator, body)
	}
	e.must(201, "POST", "/api/v1/servers", e.operator, srv(map[string]any{"backup": "ms1", "listen": "localhost:65535", "internal_listen": "localhost:65534"}))
}
