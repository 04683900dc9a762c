package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"tandem/backend/api"
	"tandem/backend/auth"
	"tandem/backend/domain"
	"tandem/backend/store"
)

const adminToken = "test-admin-token-0123456789abcdef"

// env is a real store in a temp dir, the real engine, and an httptest server.
type env struct {
	t        *testing.T
	dir      string // data folder (node.token)
	st       *store.Store
	engine   *gin.Engine
	srv      *httptest.Server
	operator string // operator token secret
	viewer   string // viewer token secret
}

func newEnv(t *testing.T, mod ...func(*api.Config)) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nodeToken, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: dir, AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, dir: dir}
	for role, dst := range map[string]*string{domain.RoleOperator: &e.operator, domain.RoleViewer: &e.viewer} {
		secret, hash, err := auth.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateToken(ctx, "test", role+"-token", role, hash); err != nil {
			t.Fatal(err)
		}
		*dst = secret
	}
	cfg := api.Config{Store: st, Auth: auth.New(st, nodeToken, nil)}
	for _, m := range mod {
		m(&cfg)
	}
	e.engine = api.New(cfg)
	e.srv = httptest.NewServer(e.engine)
	t.Cleanup(e.srv.Close)
	return e
}

// result is one HTTP exchange.
type result struct {
	Status int
	Body   []byte
	Header http.Header
}

func (r result) decode(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, out); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// errBody returns the error envelope.
func (r result) err(t *testing.T) api.ErrorDetail {
	t.Helper()
	var b api.ErrorBody
	r.decode(t, &b)
	return b.Error
}

// do sends a request with an optional bearer token; body may be a string
// (sent as is), nil, or a value encoded as JSON.
func (e *env) do(method, path, token string, body any, hdr ...string) result {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Body: b, Header: resp.Header}
}

// must sends a request and fails the test unless the status is want.
func (e *env) must(want int, method, path, token string, body any) result {
	e.t.Helper()
	r := e.do(method, path, token, body)
	if r.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

func (e *env) dump() map[string][]string {
	e.t.Helper()
	d, err := e.st.DumpRows(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// unchanged fails if the database rows differ from before.
func (e *env) unchanged(before map[string][]string, what string) {
	e.t.Helper()
	if d := cmp.Diff(before, e.dump()); d != "" {
		e.t.Errorf("%s changed the database (-before +after):\n%s", what, d)
	}
}

// seed creates nm1, cluster c1 with ms1, ms2 and web1.
func (e *env) seed() {
	e.t.Helper()
	e.must(201, "POST", "/api/v1/node-managers", e.operator, map[string]any{"name": "nm1", "listen": "127.0.0.1:9740"})
	e.must(201, "POST", "/api/v1/clusters", e.operator, map[string]any{"name": "c1", "description": "first"})
	e.must(201, "POST", "/api/v1/servers", e.operator, map[string]any{"name": "ms1", "cluster": "c1", "listen": "127.0.0.1:9741", "node_manager": "nm1"})
	e.must(201, "POST", "/api/v1/servers", e.operator, map[string]any{"name": "ms2", "cluster": "c1", "listen": "127.0.0.1:9742", "node_manager": "nm1"})
	e.must(201, "POST", "/api/v1/webservers", e.operator, map[string]any{"name": "web1", "cluster": "c1", "listen": "127.0.0.1:8080"})
}

func nodeTokenOf(t *testing.T, e *env) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, auth.NodeTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
