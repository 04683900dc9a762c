package api_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tandem/backend/api"
)

var ginParam = regexp.MustCompile(`:([a-z]+)`)

func routeSet(e *env) map[string]bool {
	out := map[string]bool{}
	for _, r := range e.engine.Routes() {
		out[r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	return out
}

// TestRoutesMatchOpenAPI: every route is documented and every documented
// operation is a route.
func TestRoutesMatchOpenAPI(t *testing.T) {
	e := newEnv(t)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	routes := routeSet(e)
	var missingDoc, missingRoute []string
	for r := range routes {
		if !documented[r] {
			missingDoc = append(missingDoc, r)
		}
	}
	for d := range documented {
		if !routes[d] {
			missingRoute = append(missingRoute, d)
		}
	}
	sort.Strings(missingDoc)
	sort.Strings(missingRoute)
	if len(missingDoc)+len(missingRoute) > 0 {
		t.Fatalf("routes not in openapi.json: %v\ndocumented but not routed: %v", missingDoc, missingRoute)
	}
	// The served document is the embedded file.
	r := e.must(200, "GET", "/api/v1/openapi.json", e.viewer, nil)
	if !cmp.Equal(r.Body, api.OpenAPI()) {
		t.Fatal("served openapi.json differs from the embedded file")
	}
}

// public routes answer without credentials.
var public = map[string]bool{
	"GET /healthz":       true,
	"GET /metrics":       true,
	"POST /api/v1/login": true,
}

func concrete(path string) string {
	return ginParam.ReplaceAllStringFunc(path, func(p string) string {
		if p == ":n" || p == ":id" {
			return "1"
		}
		return "x"
	})
}

// TestRouteAuthWalk: every non-public route answers 401 without a
// credential (and with a wrong one); writes answer 403 to a viewer; admin
// routes answer 403 to an operator.
func TestRouteAuthWalk(t *testing.T) {
	e := newEnv(t)
	before := e.dump()
	n := 0
	for _, r := range e.engine.Routes() {
		key := r.Method + " " + r.Path
		path := concrete(r.Path)
		if public[key] {
			continue
		}
		n++
		for _, tok := range []string{"", "wrong-token"} {
			res := e.do(r.Method, path, tok, nil)
			if res.Status != http.StatusUnauthorized || res.err(t).Code != api.CodeUnauthorized {
				t.Errorf("%s (token %q): status %d, want 401: %s", key, tok, res.Status, res.Body)
			}
		}
		if r.Path == "/api/v1/nodes/connect" || r.Path == "/api/v1/nodes/enroll" || r.Path == "/api/v1/nodes/renew" || r.Path == "/api/v1/nodes/witness" {
			// Node token only: user tokens are not node credentials.
			if res := e.do(r.Method, path, adminToken, nil); res.Status != http.StatusUnauthorized {
				t.Errorf("%s with a user token: %d", key, res.Status)
			}
			continue
		}
		admin := strings.HasPrefix(r.Path, "/api/v1/users") || strings.HasPrefix(r.Path, "/api/v1/tokens")
		write := r.Method != http.MethodGet && r.Path != "/api/v1/logout"
		if write || admin {
			if res := e.do(r.Method, path, e.viewer, nil); res.Status != http.StatusForbidden || res.err(t).Code != api.CodeForbidden {
				t.Errorf("%s as viewer: status %d, want 403: %s", key, res.Status, res.Body)
			}
		}
		if admin {
			if res := e.do(r.Method, path, e.operator, nil); res.Status != http.StatusForbidden {
				t.Errorf("%s as operator: status %d, want 403", key, res.Status)
			}
		}
	}
	if n < 50 {
		t.Fatalf("walked only %d routes", n)
	}
	for key := range public {
		method, path, _ := strings.Cut(key, " ")
		if method != "GET" {
			continue
		}
		if res := e.do(method, path, "", nil); res.Status != 200 {
			t.Errorf("public %s: %d", key, res.Status)
		}
	}
	e.unchanged(before, "the auth walk")
}
