package session

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/route"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func counterApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/read" {
			n, _ := s.Int("count")
			fmt.Fprintf(w, "%s %d %d", s.ID(), n, s.Version())
			return
		}
		n, _ := s.Int("count")
		s.SetInt("count", n+1)
		fmt.Fprintf(w, "%s %d %s", s.ID(), n+1, s.EncodeURL("/next"))
	})
}

func newTestServer(t *testing.T, cfg domain.SessionConfig, c *clock) (*httptest.Server, *MemStore) {
	t.Helper()
	st := NewMemStore("ms1", time.Duration(cfg.TimeoutSeconds)*time.Second, c.now)
	m := NewManager(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(m.Wrap(counterApp()))
	t.Cleanup(srv.Close)
	return srv, st
}

func get(t *testing.T, url string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return do(t, req)
}

// do sends req and returns the response with its body read.
func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	cfg := domain.DefaultSessionConfig()
	cfg.Cookie = domain.CookieConfig{Name: "SID", Domain: "example.com", Path: "/app", Secure: true, HTTPOnly: true, SameSite: "Strict", MaxAgeSeconds: 600}
	srv, _ := newTestServer(t, cfg, &clock{t: time.Unix(1e6, 0)})
	resp, body := get(t, srv.URL+"/")
	raw := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"SID=", "Domain=example.com", "Path=/app", "Max-Age=600", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(raw, want) {
			t.Errorf("Set-Cookie %q lacks %q", raw, want)
		}
	}
	c := resp.Cookies()[0]
	v, err := route.Parse(c.Value)
	if err != nil || v.Primary != "ms1" || !strings.HasPrefix(body, v.ID+" 1") {
		t.Fatalf("cookie %q body %q err %v", c.Value, body, err)
	}
	// Same owner and backup: no new cookie on the next request.
	resp, body = get(t, srv.URL+"/", c)
	if resp.Header.Get("Set-Cookie") != "" || !strings.HasPrefix(body, v.ID+" 2") {
		t.Fatalf("second request: cookie %q body %q", resp.Header.Get("Set-Cookie"), body)
	}
}

func TestMalformedCookieIsNoSession(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, domain.DefaultSessionConfig(), &clock{t: time.Unix(1e6, 0)})
	for _, bad := range []string{"garbage", strings.Repeat("z", 500), "0123456789abcdef0123456789abcdef!MS1", "0123456789abcdef0123456789abcdef"} {
		resp, body := get(t, srv.URL+"/", &http.Cookie{Name: "JSESSIONID", Value: bad})
		if resp.StatusCode != 200 || !strings.Contains(body, " 1 ") {
			t.Fatalf("cookie %q: status %d body %q", bad, resp.StatusCode, body)
		}
	}
}

func TestOnlyWritesBumpVersion(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, domain.DefaultSessionConfig(), &clock{t: time.Unix(1e6, 0)})
	resp, _ := get(t, srv.URL+"/")
	c := resp.Cookies()[0]
	_, b1 := get(t, srv.URL+"/read", c)
	_, b2 := get(t, srv.URL+"/read", c)
	if b1 != b2 || !strings.HasSuffix(b1, " 1 1") {
		t.Fatalf("reads changed the version: %q then %q", b1, b2)
	}
	get(t, srv.URL+"/", c)
	if _, b3 := get(t, srv.URL+"/read", c); !strings.HasSuffix(b3, " 2 2") {
		t.Fatalf("after a write: %q", b3)
	}
}

func TestMaxSessions(t *testing.T) {
	t.Parallel()
	cfg := domain.DefaultSessionConfig()
	cfg.MaxSessions = 2
	srv, st := newTestServer(t, cfg, &clock{t: time.Unix(1e6, 0)})
	r1, _ := get(t, srv.URL+"/")
	get(t, srv.URL+"/")
	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "max_sessions") {
		t.Fatalf("third session: %d %q", resp.StatusCode, body)
	}
	if st.Len() != 2 {
		t.Fatalf("store holds %d sessions", st.Len())
	}
	if resp, body := get(t, srv.URL+"/", r1.Cookies()[0]); resp.StatusCode != 200 || !strings.Contains(body, " 2 ") {
		t.Fatalf("existing session affected: %d %q", resp.StatusCode, body)
	}
}

func TestIdleExpiry(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1e6, 0)}
	cfg := domain.DefaultSessionConfig()
	cfg.TimeoutSeconds = 60
	srv, st := newTestServer(t, cfg, c)
	r1, _ := get(t, srv.URL+"/")
	c.add(59 * time.Second)
	if _, body := get(t, srv.URL+"/", r1.Cookies()[0]); !strings.Contains(body, " 2 ") {
		t.Fatalf("expired too early: %q", body)
	}
	c.add(59 * time.Second)
	if n := st.Expire(); n != 0 {
		t.Fatalf("expired %d sessions used 59 s ago", n)
	}
	c.add(time.Second)
	if n := st.Expire(); n != 1 || st.Len() != 0 {
		t.Fatalf("Expire removed %d, %d left", n, st.Len())
	}
	if _, body := get(t, srv.URL+"/", r1.Cookies()[0]); !strings.Contains(body, " 1 ") {
		t.Fatalf("expired session came back: %q", body)
	}
}

func TestURLTracking(t *testing.T) {
	t.Parallel()
	cfg := domain.DefaultSessionConfig()
	cfg.TrackingMode = domain.TrackingURL
	srv, _ := newTestServer(t, cfg, &clock{t: time.Unix(1e6, 0)})
	resp, body := get(t, srv.URL+"/")
	if resp.Header.Get("Set-Cookie") != "" {
		t.Fatal("URL mode set a cookie")
	}
	f := strings.Fields(body)
	if len(f) != 3 || !strings.HasPrefix(f[2], "/next;jsessionid="+f[0]+"!ms1") {
		t.Fatalf("body %q", body)
	}
	_, body2 := get(t, srv.URL+f[2])
	if !strings.HasPrefix(body2, f[0]+" 2") {
		t.Fatalf("URL session not found: %q", body2)
	}
}

func TestCookieRenameKeepsSessions(t *testing.T) {
	t.Parallel()
	cfg := domain.DefaultSessionConfig()
	st := NewMemStore("ms1", time.Hour, nil)
	m := NewManager(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(m.Wrap(counterApp()))
	t.Cleanup(srv.Close)
	r1, _ := get(t, srv.URL+"/")
	old := r1.Cookies()[0]
	cfg.Cookie.Name = "SID"
	m.SetConfig(cfg)
	resp, body := get(t, srv.URL+"/", old)
	if !strings.Contains(body, " 2 ") || len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "SID" {
		t.Fatalf("after rename: body %q cookies %v", body, resp.Cookies())
	}
	if _, body := get(t, srv.URL+"/", resp.Cookies()[0]); !strings.Contains(body, " 3 ") {
		t.Fatalf("new cookie: %q", body)
	}
	if resp, _ := get(t, srv.URL+"/"); resp.Cookies()[0].Name != "SID" {
		t.Fatalf("new session cookie %q", resp.Cookies()[0].Name)
	}
}
