package api_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestHostileInput sends the real engine, over a real SQLite file, input
// written to hurt: oversized and malformed bodies, wrong types, huge
// numbers, unicode look-alikes and direction marks, SQL in names, path
// traversal and NUL bytes in names. Each is answered with the expected
// 4xx and the error envelope, no answer leaks internals, and the
// database keeps every row exactly as it was.
func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	e.seed()
	// Warm the tokens up first (their use is recorded once a minute),
	// so the row dump below only sees what the hostile requests change.
	e.must(200, "GET", "/api/v1/clusters", adminToken, nil)
	e.must(200, "GET", "/api/v1/clusters", e.operator, nil)

	srv := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"cluster":"c1","listen":"127.0.0.1:9749"}`, name)
	}
	cl := func(name string) string { return fmt.Sprintf(`{"name":%q}`, name) }
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	bad := []int{400, 422}
	miss := []int{404}
	cases := []struct {
		name, method, path string
		body               string // sent as is ("" = none)
		want               []int
	}{
		// Size and shape.
		{"body over the limit", "POST", "/api/v1/clusters", `{"name":"big","description":"` + strings.Repeat("x", 2<<20) + `"}`, []int{413}},
		{"body over the limit, not JSON", "PUT", "/api/v1/clusters/c1/session-config", strings.Repeat("A", 3<<20), []int{413}},
		{"empty body", "POST", "/api/v1/clusters", "", bad},
		{"whitespace body", "POST", "/api/v1/servers", "  \n\t ", bad},
		{"JSON null", "POST", "/api/v1/clusters", `null`, bad},
		{"array instead of object", "POST", "/api/v1/clusters", `[{"name":"c9"}]`, bad},
		{"string instead of object", "POST", "/api/v1/servers", `"ms9"`, bad},
		{"truncated JSON", "POST", "/api/v1/clusters", `{"name":"c9"`, bad},
		{"two values", "POST", "/api/v1/clusters", `{"name":"c9"} {"name":"c10"}`, bad},
		{"trailing garbage", "POST", "/api/v1/clusters", `{"name":"c9"}xyz`, bad},
		{"deeply nested", "POST", "/api/v1/clusters", deep, bad},
		{"unknown field", "POST", "/api/v1/clusters", `{"name":"c9","admin":true}`, bad},
		{"invalid UTF-8", "POST", "/api/v1/clusters", "{\"name\":\"c\xff\xfe9\"}", bad},
		// Wrong types.
		{"name is a number", "POST", "/api/v1/clusters", `{"name":123}`, bad},
		{"name is an object", "POST", "/api/v1/servers", `{"name":{"$ne":null},"cluster":"c1","listen":"127.0.0.1:9749"}`, bad},
		{"interval is a string", "POST", "/api/v1/clusters", `{"name":"c9","heartbeat_interval_ms":"fast"}`, bad},
		{"shared is a string", "PUT", "/api/v1/servers/ms1/session-config", `{"shared":"yes"}`, bad},
		{"cookie is a string", "PUT", "/api/v1/clusters/c1/session-config", `{"cookie":"JSESSIONID"}`, bad},
		{"timeout is a float", "PUT", "/api/v1/servers/ms1/session-config", `{"timeout_seconds":1800.5}`, bad},
		{"listen is an array", "POST", "/api/v1/servers", `{"name":"ms9","cluster":"c1","listen":["127.0.0.1",9749]}`, bad},
		{"patch with null name", "PATCH", "/api/v1/servers/ms1", `{"listen":null,"cluster":7}`, bad},
		// Huge and odd numbers.
		{"interval 1e30", "POST", "/api/v1/clusters", `{"name":"c9","heartbeat_interval_ms":1e30}`, bad},
		{"interval past int64", "POST", "/api/v1/clusters", `{"name":"c9","heartbeat_interval_ms":9223372036854775808}`, bad},
		{"timeout max int64", "PUT", "/api/v1/clusters/c1/session-config", `{"timeout_seconds":9223372036854775807}`, bad},
		{"max sessions min int64", "PUT", "/api/v1/servers/ms1/session-config", `{"max_sessions":-9223372036854775808}`, bad},
		{"max age huge", "PUT", "/api/v1/servers/ms1/session-config", `{"cookie":{"max_age_seconds":99999999999999999999999}}`, bad},
		{"interval negative", "POST", "/api/v1/clusters", `{"name":"c9","heartbeat_interval_ms":-200,"heartbeat_timeout_ms":-100}`, bad},
		{"rollback to a huge revision", "POST", "/api/v1/servers/ms1/config/rollback", `{"revision":9223372036854775807}`, []int{404, 422}},
		{"rollback revision past int64", "POST", "/api/v1/servers/ms1/config/rollback", `{"revision":1e300}`, bad},
		{"job id huge", "GET", "/api/v1/jobs/99999999999999999999999", "", []int{400, 404}},
		{"job id not a number", "GET", "/api/v1/jobs/abc", "", []int{400, 404}},
		{"revision not a number", "GET", "/api/v1/servers/ms1/config/revisions/1;DROP", "", []int{400, 404}},
		{"events limit negative", "GET", "/api/v1/events?limit=-1", "", bad},
		{"events after not a number", "GET", "/api/v1/events?after=1%20OR%201=1", "", bad},
		// Unicode tricks in names.
		{"homoglyph cluster (Cyrillic es)", "POST", "/api/v1/clusters", cl("\u04411"), bad},
		{"homoglyph server (Greek omicron)", "POST", "/api/v1/servers", srv("ms\u03bf1"), bad},
		{"fullwidth name", "POST", "/api/v1/clusters", cl("\uff43\uff11"), bad},
		{"right-to-left override", "POST", "/api/v1/clusters", cl("c1\u202egnp.exe"), bad},
		{"right-to-left mark", "POST", "/api/v1/servers", srv("ms\u200f9"), bad},
		{"zero-width space", "POST", "/api/v1/clusters", cl("c\u200b1"), bad},
		{"byte order mark", "POST", "/api/v1/clusters", cl("\ufeffc9"), bad},
		{"combining accent", "POST", "/api/v1/webservers", `{"name":"web\u03011","cluster":"c1","listen":"127.0.0.1:8081"}`, bad},
		{"homoglyph cookie name", "PUT", "/api/v1/clusters/c1/session-config", `{"cookie":{"name":"JSESS\u0406ONID"}}`, bad},
		{"homoglyph in path", "GET", "/api/v1/clusters/%D1%811", "", miss},
		{"RTL mark in path", "DELETE", "/api/v1/servers/ms1%E2%80%8F", "", miss},
		// SQL-looking names.
		{"SQL in a new name", "POST", "/api/v1/clusters", cl("c1'; DROP TABLE clusters;--"), bad},
		{"SQL tautology in a new server", "POST", "/api/v1/servers", srv("x' OR '1'='1"), bad},
		{"SQL in a reference", "POST", "/api/v1/servers", `{"name":"ms9","cluster":"c1' OR '1'='1","listen":"127.0.0.1:9749"}`, []int{400, 404, 422}},
		{"SQL tautology delete", "DELETE", "/api/v1/clusters/c1'%20OR%20'1'='1", "", miss},
		{"SQL comment delete", "DELETE", "/api/v1/servers/ms1'--", "", miss},
		{"SQL union read", "GET", "/api/v1/servers/x'%20UNION%20SELECT%20*%20FROM%20tokens--", "", miss},
		{"SQL in events filter", "GET", "/api/v1/events?cluster=c1'%20OR%201=1--", "", []int{200, 400, 422}},
		{"SQL in a token name", "POST", "/api/v1/tokens", `{"name":"t'); DELETE FROM tokens;--","role":"viewer"}`, bad},
		{"SQL in a user name", "POST", "/api/v1/users", `{"name":"bob' --","role":"viewer","password":"long enough pw"}`, bad},
		// Path traversal and NUL bytes.
		{"encoded traversal read", "GET", "/api/v1/clusters/..%2f..%2fetc%2fpasswd", "", []int{400, 404}},
		{"encoded traversal delete", "DELETE", "/api/v1/servers/..%2fms1", "", []int{400, 404}},
		{"dot-dot name", "DELETE", "/api/v1/clusters/..", "", []int{400, 404}},
		{"encoded dot-dot session config", "PUT", "/api/v1/servers/%2e%2e/session-config", `{"shared":false}`, []int{400, 404}},
		{"backslash traversal", "DELETE", "/api/v1/webservers/..%5cweb1", "", []int{400, 404}},
		{"traversal in a new name", "POST", "/api/v1/servers", srv("../../etc/passwd"), bad},
		{"NUL in a new name", "POST", "/api/v1/clusters", cl("c1\u0000"), bad},
		{"NUL in the path", "DELETE", "/api/v1/clusters/c1%00", "", []int{400, 404}},
		{"NUL in a listen address", "POST", "/api/v1/servers", `{"name":"ms9","cluster":"c1","listen":"127.0.0.1:9749\u0000"}`, bad},
		{"newline in a cookie path", "PUT", "/api/v1/servers/ms1/session-config", `{"cookie":{"path":"/a\r\nSet-Cookie: x=y"}}`, bad},
		{"control char in a description is fine, but the name is not", "POST", "/api/v1/clusters", `{"name":"c\u00079","description":"bell"}`, bad},
	}
	before := e.dump()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := e.do(c.method, c.path, adminToken, body)
			if !slices.Contains(c.want, r.Status) {
				t.Fatalf("status %d, want one of %v: %.300s", r.Status, c.want, r.Body)
			}
			low := strings.ToLower(string(r.Body))
			for _, leak := range []string{"sqlite", "gorm", "sql:", "syntax error near", "goroutine", "panic", "/work/", ".go:"} {
				if strings.Contains(low, leak) {
					t.Fatalf("answer leaks %q: %.300s", leak, r.Body)
				}
			}
			if r.Status >= 400 {
				if d := r.err(t); d.Code == "" || d.Message == "" {
					t.Fatalf("no error envelope: %.300s", r.Body)
				}
			}
		})
	}
	e.unchanged(before, "hostile requests")
	// The engine is still fine.
	e.must(201, "POST", "/api/v1/clusters", e.operator, map[string]any{"name": "c9"})
}
