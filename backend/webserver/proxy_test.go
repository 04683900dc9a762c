package webserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/route"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// upstream is a real HTTP server standing in for a member in the proxy
// mechanics tests.
type upstream struct {
	name, route string
	srv         *httptest.Server
	hits        atomic.Int64
}

func newUpstream(t *testing.T, name, rt string, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{name: name, route: rt}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Header().Set("X-Tandem-Server", name)
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, name)
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) member() wire.Member {
	return wire.Member{Name: u.name, Route: u.route, Listen: u.srv.Listener.Addr().String()}
}

type proxy struct {
	s    *Server
	url  string
	addr string
}

// testEventLoops is the EventLoops of the proxies the tests start:
// TANDEM_TEST_EVENT_LOOPS=-1 runs them on the goroutine path alone
// (make test runs the package both ways).
func testEventLoops() int {
	n, _ := strconv.Atoi(os.Getenv("TANDEM_TEST_EVENT_LOOPS"))
	return n
}

// applyMembers gives s a routing table of members.
func applyMembers(t *testing.T, s *Server, listen string, members ...wire.Member) {
	t.Helper()
	err := s.Apply(context.Background(), wire.Config{WebServer: &wire.WebServerConfig{
		Name: "ws1", Listen: listen, CookieNames: []string{"JSESSIONID", "APPSESSION"}, Members: members,
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func startProxy(t *testing.T, cfg Config, members ...wire.Member) *proxy {
	t.Helper()
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 50 * time.Millisecond
	}
	if cfg.EventLoops == 0 {
		cfg.EventLoops = testEventLoops()
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := New(cfg, logger)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	applyMembers(t, s, ln.Addr().String(), members...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, 2*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &proxy{s: s, url: "http://" + ln.Addr().String(), addr: ln.Addr().String()}
}

func get(t *testing.T, c *http.Client, url string, cookie string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestProxyForwardsWithForwardedHeadersAndNoHopByHop(t *testing.T) {
	t.Parallel()
	var seen http.Header
	var seenHost string
	up := newUpstream(t, "ms1", "ms1", func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		seenHost = r.Host
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Private", "drop-me")
		w.Header().Set("Connection", "X-Private")
		io.WriteString(w, "hello")
	})
	p := startProxy(t, Config{}, up.member())
	req, _ := http.NewRequest(http.MethodGet, p.url+"/app?x=1", nil)
	req.Host = "shop.example"
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("Connection", "X-Secret-Hop")
	req.Header.Set("X-Secret-Hop", "1")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Kept", "yes")
	req.Header.Set("X-Tandem-Resent", "1") // only the web server may say so
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := seen.Get("X-Forwarded-For"); got != "10.0.0.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := seen.Get("X-Forwarded-Host"); got != "shop.example" || seenHost != "shop.example" {
		t.Errorf("X-Forwarded-Host = %q, Host = %q", got, seenHost)
	}
	if got := seen.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	for _, h := range []string{"X-Secret-Hop", "Proxy-Authorization", "Te", "Connection", "X-Tandem-Resent"} {
		if v := seen.Get(h); v != "" {
			t.Errorf("hop-by-hop or internal %s forwarded: %q", h, v)
		}
	}
	if seen.Get("X-Kept") != "yes" {
		t.Errorf("end-to-end header lost")
	}
	if resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Private") != "" {
		t.Errorf("hop-by-hop response headers forwarded: %v", resp.Header)
	}
	if resp.Header.Get("X-Tandem-Server") != "ms1" {
		t.Errorf("X-Tandem-Server = %q", resp.Header.Get("X-Tandem-Server"))
	}
}

// rawMember listens on loopback as a member written by hand and returns
// its address: it answers GET /healthz itself and gives every other
// request to answer, which writes what it likes on c and says whether
// the connection serves on.
func rawMember(tb testing.TB, answer func(c net.Conn, req *http.Request) bool) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/healthz" {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						continue
					}
					if !answer(c, req) {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func sessionCookie(name, primary, backup string) string {
	return name + "=" + route.Value{ID: route.NewID(), Primary: primary, Backup: backup}.String()
}

func TestProxyStickyPrimaryThenBackupThenAny(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", nil)
	b := newUpstream(t, "ms2", "b", nil)
	c := newUpstream(t, "ms3", "c", nil)
	p := startProxy(t, Config{}, a.member(), b.member(), c.member())
	client := &http.Client{}
	for i := 0; i < 20; i++ {
		for _, tc := range []struct{ cookie, want string }{
			{sessionCookie("JSESSIONID", "b", "c"), "ms2"},
			{sessionCookie("APPSESSION", "c", "a"), "ms3"},
			{"other=1; JSESSIONID=" + route.Value{ID: route.NewID(), Primary: "a"}.String(), "ms1"},
		} {
			code, body, _ := get(t, client, p.url+"/counter", tc.cookie)
			if code != 200 || body != tc.want {
				t.Fatalf("cookie %q: got %d %q, want %s", tc.cookie, code, body, tc.want)
			}
		}
		code, body, _ := get(t, client, p.url+"/x;jsessionid="+route.Value{ID: route.NewID(), Primary: "c", Backup: "a"}.String()+"?q=1", "")
		if code != 200 || body != "ms3" {
			t.Fatalf("url rewriting: got %d %q", code, body)
		}
	}
	// Primary b is gone: its sessions go to the backup c at once.
	b.srv.Close()
	cookie := sessionCookie("JSESSIONID", "b", "c")
	for i := 0; i < 10; i++ {
		code, body, _ := get(t, client, p.url+"/counter", cookie)
		if code != 200 || body != "ms3" {
			t.Fatalf("after primary loss: got %d %q, want ms3", code, body)
		}
	}
	// Primary and backup gone: any live member.
	c.srv.Close()
	for i := 0; i < 10; i++ {
		code, body, _ := get(t, client, p.url+"/counter", cookie)
		if code != 200 || body != "ms1" {
			t.Fatalf("after primary and backup loss: got %d %q, want ms1", code, body)
		}
	}
	if !testenvMetric(t, p, `tandem_webserver_failovers_total{reason="primary_down"}`) {
		t.Errorf("no primary_down failover counted")
	}
}

func testenvMetric(t *testing.T, p *proxy, prefix string) bool {
	t.Helper()
	_, body, _ := get(t, http.DefaultClient, p.url+"/_tandem/metrics", "")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) && !strings.HasSuffix(line, " 0") {
			return true
		}
	}
	return false
}

func TestProxyMalformedSessionIsNoSession(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", nil)
	p := startProxy(t, Config{}, a.member())
	for _, cookie := range []string{
		"JSESSIONID=garbage",
		"JSESSIONID=" + strings.Repeat("x", 8000),
		"JSESSIONID=0123456789abcdef0123456789abcdef!unknown!route",
		"JSESSIONID=0123456789abcdef0123456789abcdef!a;Domain=evil",
		"JSESSIONID=\"\"; JSESSIONID=;;;==",
		"JSESSIONID=0123456789abcdef0123456789abcdef!a%0d%0aX: y",
	} {
		code, body, _ := get(t, http.DefaultClient, p.url+"/counter", cookie)
		if code != 200 || body != "ms1" {
			t.Fatalf("cookie %.40q: got %d %q", cookie, code, body)
		}
	}
	code, _, _ := get(t, http.DefaultClient, p.url+"/x;jsessionid=%00%ff", "")
	if code != 200 {
		t.Fatalf("bad path parameter: %d", code)
	}
}

func TestProxyReservedPrefixAndPingForwarded(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app:"+r.URL.Path)
	})
	p := startProxy(t, Config{}, a.member())
	for _, path := range []string{"/ping", "/metrics"} {
		code, body, _ := get(t, http.DefaultClient, p.url+path, "")
		if code != 200 || body != "app:"+path {
			t.Fatalf("%s: got %d %q; must be forwarded", path, code, body)
		}
	}
	code, body, _ := get(t, http.DefaultClient, p.url+"/_tandem/healthz", "")
	if code != 200 || body != "ok\n" {
		t.Fatalf("/_tandem/healthz: %d %q", code, body)
	}
	code, body, _ = get(t, http.DefaultClient, p.url+"/_tandem/metrics", "")
	if code != 200 || !strings.Contains(body, `tandem_webserver_requests_total{code="200",upstream="ms1"}`) {
		t.Fatalf("/_tandem/metrics: %d %.300q", code, body)
	}
	if code, _, _ := get(t, http.DefaultClient, p.url+"/_tandem/nope", ""); code != 404 {
		t.Fatalf("unknown reserved path: %d", code)
	}
}

// TestProxyRetries: a member that accepts and drops connections after
// reading the request makes GET fail over and POST answer 502; a member
// whose port is closed is skipped for any method.
func TestProxyRetries(t *testing.T) {
	t.Parallel()
	// A member that reads the request and closes without answering.
	var dropped atomic.Int64
	dropper := rawMember(t, func(_ net.Conn, req *http.Request) bool {
		io.Copy(io.Discard, req.Body)
		dropped.Add(1)
		return false
	})
	good := newUpstream(t, "ms2", "b", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "ms2 %s %s", r.Method, b)
	})
	closedLn, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closedLn.Addr().String()
	closedLn.Close()

	p := startProxy(t, Config{ProbeInterval: time.Hour},
		wire.Member{Name: "ms1", Route: "a", Listen: dropper},
		good.member(),
		wire.Member{Name: "ms3", Route: "c", Listen: closedAddr})

	cookieA := sessionCookie("JSESSIONID", "a", "c")
	code, body, _ := get(t, http.DefaultClient, p.url+"/counter", cookieA)
	if code != 200 || body != "ms2 GET " {
		t.Fatalf("GET after a dropped connection: %d %q", code, body)
	}
	if dropped.Load() == 0 {
		t.Fatalf("the dropping member was never tried")
	}
	// Re-mark a live so the POST goes there first.
	for _, m := range p.s.tab.Load().members {
		p.s.markUp(m, "test")
	}
	req, _ := http.NewRequest(http.MethodPost, p.url+"/counter", strings.NewReader("payload"))
	req.Header.Set("Cookie", cookieA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "ms2 POST payload" {
		t.Fatalf("POST naming a session after the request was sent: %d %q, want it resent to ms2 (the owner answers a resent write from its stored reply)", resp.StatusCode, b)
	}
	// Without a session, a POST that was sent is never resent: 502.
	for _, m := range p.s.tab.Load().members {
		if m.name == "ms1" {
			p.s.markUp(m, "test")
		} else {
			p.s.markDown(m, "test", nil)
		}
	}
	req, _ = http.NewRequest(http.MethodPost, p.url+"/counter", strings.NewReader("payload"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "502") {
		t.Fatalf("POST without a session after the request was sent: %d %q, want 502 page", resp.StatusCode, b)
	}
	// A refused connect is safe to retry for POST too.
	for _, m := range p.s.tab.Load().members {
		p.s.markUp(m, "test")
	}
	req, _ = http.NewRequest(http.MethodPost, p.url+"/counter", strings.NewReader("payload"))
	req.Header.Set("Cookie", sessionCookie("JSESSIONID", "c", "b"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ms2 POST payload" {
		t.Fatalf("POST after a refused connect: %d %q", resp.StatusCode, b)
	}
}

func TestProxyAllDownAnswers503Page(t *testing.T) {
	t.Parallel()
	closedLn, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closedLn.Addr().String()
	closedLn.Close()
	p := startProxy(t, Config{}, wire.Member{Name: "ms1", Route: "a", Listen: addr})
	code, body, _ := get(t, http.DefaultClient, p.url+"/counter", sessionCookie("JSESSIONID", "a", ""))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "<h1>503") {
		t.Fatalf("got %d %q", code, body)
	}
	empty := startProxy(t, Config{})
	code, _, _ = get(t, http.DefaultClient, empty.url+"/", "")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("no members: %d", code)
	}
}

func TestProxyResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	p := startProxy(t, Config{ResponseHeaderTimeout: 300 * time.Millisecond, ProbeInterval: time.Hour}, slow.member())
	code, body, _ := get(t, http.DefaultClient, p.url+"/slow", "")
	if code != http.StatusBadGateway || !strings.Contains(body, "did not answer") {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestProxyBodyLimitAndChunkedUpload(t *testing.T) {
	t.Parallel()
	var gotLen atomic.Int64
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotLen.Store(r.ContentLength)
		fmt.Fprintf(w, "%d", len(b))
	})
	p := startProxy(t, Config{MaxBodyBytes: 1000}, a.member())
	resp, err := http.Post(p.url+"/up", "text/plain", strings.NewReader(strings.Repeat("x", 1001)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize body: %d", resp.StatusCode)
	}
	// Chunked upload (unknown length): forwarded with its length.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(strings.Repeat("y", 600)))
		pw.Close()
	}()
	resp, err = http.Post(p.url+"/up", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "600" || gotLen.Load() != 600 {
		t.Fatalf("chunked upload: %d %q len %d", resp.StatusCode, b, gotLen.Load())
	}
	pr, pw = io.Pipe()
	go func() {
		pw.Write([]byte(strings.Repeat("y", 1500)))
		pw.Close()
	}()
	resp, err = http.Post(p.url+"/up", "text/plain", pr)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversize chunked upload: %d", resp.StatusCode)
		}
	}
}

func TestProxyStreamsResponses(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "event %d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	p := startProxy(t, Config{}, a.member())
	resp, err := http.Get(p.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		// The upstream waits for us before writing the next event: this
		// read only succeeds if the proxy flushed the previous one.
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("event %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		next <- struct{}{}
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("trailing data %q", rest)
	}
}

func TestProxyWebSocketPassThrough(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	})
	p := startProxy(t, Config{}, a.member())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := 0; i < 3; i++ {
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		_, msg, err := c.Read(ctx)
		if err != nil || string(msg) != fmt.Sprintf("echo:%d", i) {
			t.Fatalf("got %q %v", msg, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestProxyHealthProbesBringMemberBack(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", nil)
	b := newUpstream(t, "ms2", "b", nil)
	// b starts as a closed port, then comes up on the same address.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p := startProxy(t, Config{ProbeInterval: 20 * time.Millisecond}, a.member(), wire.Member{Name: "ms2", Route: "b", Listen: addr})
	cookie := sessionCookie("JSESSIONID", "b", "a")
	if code, body, _ := get(t, http.DefaultClient, p.url+"/", cookie); code != 200 || body != "ms1" {
		t.Fatalf("while b is down: %d %q", code, body)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port reuse: %v", err)
	}
	srv := &http.Server{Handler: b.srv.Config.Handler}
	go srv.Serve(ln2)
	t.Cleanup(func() { srv.Close() })
	testenv.Eventually(t, 10*time.Second, func() error {
		code, body, _ := get(t, http.DefaultClient, p.url+"/", cookie)
		if code != 200 || body != "ms2" {
			return fmt.Errorf("got %d %q", code, body)
		}
		return nil
	})
}

// TestProxyRetriesMemberUnavailable: a member's 503 (a managed server's
// answer while a session changes owner, nothing applied) is retried for
// GET and relayed for POST.
func TestProxyRetriesMemberUnavailable(t *testing.T) {
	t.Parallel()
	var left atomic.Int64
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		if left.Add(-1) >= 0 {
			http.Error(w, "session temporarily unavailable, retry", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "served "+r.Method)
	})
	p := startProxy(t, Config{}, a.member())
	left.Store(2)
	code, body, _ := get(t, http.DefaultClient, p.url+"/counter", sessionCookie("JSESSIONID", "a", ""))
	if code != 200 || body != "served GET" {
		t.Fatalf("GET after two 503s: %d %q", code, body)
	}
	left.Store(100)
	code, body, _ = get(t, http.DefaultClient, p.url+"/counter", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "temporarily unavailable") {
		t.Fatalf("GET when the member stays unavailable: %d %q, want its 503", code, body)
	}
	left.Store(1)
	resp, err := http.Post(p.url+"/counter", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "temporarily unavailable") {
		t.Fatalf("POST answered 503: got %d %q, want the 503 relayed", resp.StatusCode, b)
	}
}

// rawExchange writes raw bytes to the proxy and returns what it answers
// until it closes the connection or the deadline passes.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestProxyHTTPEdgeCases(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d:%s", r.Method, r.URL.Path, len(b), b)
	})
	p := startProxy(t, Config{}, a.member())
	tests := []struct {
		name, raw string
		want      []string
		not       []string
	}{
		{"smuggling: both Content-Length and chunked",
			"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			[]string{"HTTP/1.1 400 "}, []string{"POST /x"}},
		{"two different Content-Lengths",
			"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
			[]string{"HTTP/1.1 400 "}, []string{"POST /x"}},
		{"unknown transfer coding",
			"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			[]string{"HTTP/1.1 501 "}, nil},
		{"obsolete line folding",
			"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n",
			[]string{"HTTP/1.1 400 "}, []string{"GET /x"}},
		{"bad header name",
			"GET /x HTTP/1.1\r\nHost: h\r\nBad Name: 1\r\n\r\n",
			[]string{"HTTP/1.1 400 "}, nil},
		{"HTTP/2 preface refused",
			"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			[]string{"HTTP/1.1 505 "}, nil},
		{"pipelined requests answered in order, then close",
			"GET /one HTTP/1.1\r\nHost: h\r\n\r\nPOST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
			[]string{"GET /one 0:", "POST /two 3:abc", "GET /three 0:", "Connection: close"}, nil},
		{"HTTP/1.0 client gets an answer and a close",
			"GET /old HTTP/1.0\r\nHost: h\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "GET /old 0:", "Connection: close"}, nil},
		{"HEAD has no body",
			"HEAD /h HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK"}, []string{"HEAD /h"}},
		{"absolute-form target",
			"GET http://shop.example/abs?q=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
			[]string{"GET /abs 0:"}, nil},
		{"expect 100-continue",
			"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
			[]string{"HTTP/1.1 100 Continue", "POST /e 2:hi"}, nil},
		{"oversize head",
			"GET /x HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
			[]string{"HTTP/1.1 431 "}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := rawExchange(t, p.addr, tt.raw)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("answer lacks %q:\n%.600s", w, got)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("answer contains %q (request reached the server):\n%.600s", n, got)
				}
			}
			if strings.Contains(got, " 500 ") {
				t.Errorf("500 answer:\n%.600s", got)
			}
		})
	}
}

// TestProxyBodySilenceTimeout: a member that stops sending mid-body is cut
// off after BodyTimeout of silence, while one that keeps streaming longer
// than that in total is not.
func TestProxyBodySilenceTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stuck" {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		// /steady: 6 parts 300 ms apart: the whole stream outlasts the
		// 1 s timeout, no silence comes near it.
		for i := 0; i < 6; i++ {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
		}
	})
	p := startProxy(t, Config{BodyTimeout: time.Second, ProbeInterval: time.Hour}, a.member())
	resp, err := http.Get(p.url + "/stuck")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(b) != "12345" {
		t.Fatalf("stuck body: got %q, err %v; want the first 5 bytes then an error", b, err)
	}
	resp, err = http.Get(p.url + "/steady")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(b), "part") != 6 {
		t.Fatalf("steady stream: %q, %v", b, err)
	}
}
