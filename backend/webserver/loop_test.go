//go:build linux

package webserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/testenv"
)

// loopCounts reads tandem_webserver_event_loop_requests_total by "how"
// over m, a connection of its own: its first request (a reserved path) is
// handed over and counted, later ones stay on the goroutine path, so
// differences between two reads count only the test's own requests.
func loopCounts(m *rawConn) map[string]int {
	m.t.Helper()
	m.write("GET /_tandem/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	code, body, _ := m.read("GET")
	if code != 200 {
		m.t.Fatalf("metrics: %d", code)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, `tandem_webserver_event_loop_requests_total{how="`)
		if !ok {
			continue
		}
		how, v, _ := strings.Cut(rest, `"} `)
		counts[how], _ = strconv.Atoi(v)
	}
	return counts
}

// rawConn is one kept-alive client connection written and read by hand.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one response; its status, body and X-Tandem-Server.
func (r *rawConn) read(method string) (int, string, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		r.t.Fatalf("reading a body: %v", err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("X-Tandem-Server")
}

// TestEventLoopAnswersAndHandsOver: on one kept-alive connection the loop
// answers small requests itself (pipelined ones in order, a small POST, a
// complete chunked answer, a HEAD), and hands over, each at its point, a
// chunked upload, a reserved path, a streamed answer, a large one and a 503
// it retries; the connection serves on after each hand-over.
func TestEventLoopAnswersAndHandsOver(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	busy := 1 // /busy answers 503 this many times
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d:%s", r.Method, len(b), b)
		case "/chunked":
			io.WriteString(w, strings.Repeat("c", 3000)) // over net/http's 2 KiB: chunked, in one write
		case "/stream":
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
		case "/large":
			io.WriteString(w, strings.Repeat("L", 600<<10))
		case "/busy":
			mu.Lock()
			b := busy > 0
			busy--
			mu.Unlock()
			if b {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "not busy")
		default:
			io.WriteString(w, "ms1"+r.URL.Path)
		}
	})
	p := startProxy(t, Config{EventLoops: 2}, a.member())
	m := dialRaw(t, p.addr)
	start := loopCounts(m)
	r := dialRaw(t, p.addr)

	// Two requests in one write: both answered, in order, by the loop.
	r.write("GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"ms1/one", "ms1/two"} {
		if code, body, _ := r.read("GET"); code != 200 || body != want {
			t.Fatalf("pipelined: %d %q, want %q", code, body, want)
		}
	}
	r.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if code, body, _ := r.read("POST"); code != 200 || body != "POST 5:hello" {
		t.Fatalf("small POST: %d %q", code, body)
	}
	r.write("GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, body, _ := r.read("GET"); code != 200 || body != strings.Repeat("c", 3000) {
		t.Fatalf("chunked answer: %d, %d bytes", code, len(body))
	}
	r.write("HEAD /one HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, _, srv := r.read("HEAD"); code != 200 || srv != "ms1" {
		t.Fatalf("HEAD: %d %q", code, srv)
	}
	now := loopCounts(m)
	if n := now["answered"] - start["answered"]; n < 5 {
		t.Fatalf("answered by the loop: %d, want 5", n)
	}
	for _, how := range []string{"request", "response", "retry"} {
		if n := now[how] - start[how]; n != 0 {
			t.Fatalf("%d hand-overs (%s) for requests the loop answers itself", n, how)
		}
	}

	// Each of these on a connection of its own (a connection handed over
	// stays on the goroutine path), followed by a request that must work.
	for _, tc := range []struct {
		name, req, method, want, how string
	}{
		{"chunked upload", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST", "POST 3:abc", "request"},
		{"reserved path", "GET /_tandem/healthz HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "", "request"},
		{"streamed answer", "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "part 0\npart 1\npart 2\n", "response"},
		{"large answer", "GET /large HTTP/1.1\r\nHost: x\r\n\r\n", "GET", strings.Repeat("L", 600<<10), "response"},
		{"503 retried", "GET /busy HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "not busy", "response"},
	} {
		before := loopCounts(m)[tc.how]
		r := dialRaw(t, p.addr)
		r.write(tc.req)
		code, body, _ := r.read(tc.method)
		if code != 200 || tc.want != "" && body != tc.want {
			t.Fatalf("%s: %d %q, want %q", tc.name, code, body[:min(len(body), 80)], tc.want[:min(len(tc.want), 80)])
		}
		r.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
		if code, body, _ := r.read("GET"); code != 200 || body != "ms1/after" {
			t.Fatalf("%s, then: %d %q", tc.name, code, body)
		}
		if after := loopCounts(m)[tc.how]; after <= before {
			t.Errorf("%s: not counted as handed over (%s)", tc.name, tc.how)
		}
	}
}

// TestEventLoopRetriesOnTheGoroutinePath: a first attempt the loop makes
// on a member that drops the connection without answering goes on to the
// session's backup, marked resent, with the same request id.
func TestEventLoopRetriesOnTheGoroutinePath(t *testing.T) {
	t.Parallel()
	type seen struct{ id, resent string }
	got := make(chan seen, 4)
	b := newUpstream(t, "ms2", "b", func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("X-Tandem-Request-Id"), r.Header.Get("X-Tandem-Resent")}
		io.WriteString(w, "ms2")
	})
	// ms1 answers its health probes and drops every other request unanswered.
	ids := make(chan string, 4)
	ms1 := rawMember(t, func(_ net.Conn, req *http.Request) bool {
		ids <- req.Header.Get("X-Tandem-Request-Id")
		return false
	})
	a := b.member()
	a.Name, a.Route, a.Listen = "ms1", "a", ms1
	p := startProxy(t, Config{EventLoops: 1, ProbeInterval: time.Hour}, a, b.member())
	// Until its first probe has answered, ms1 is not live and the
	// session's request would go to ms2 first.
	testenv.Eventually(t, 5*time.Second, func() error {
		for _, m := range p.s.tab.Load().members {
			if !m.live.Load() {
				return fmt.Errorf("%s not probed live yet", m.name)
			}
		}
		return nil
	})
	code, body, _ := get(t, http.DefaultClient, p.url+"/cart", sessionCookie("JSESSIONID", "a", "b"))
	if code != 200 || body != "ms2" {
		t.Fatalf("session whose primary drops the request: %d %q, want its backup ms2", code, body)
	}
	first, retry := <-ids, <-got
	if first == "" || retry.id != first || retry.resent != "1" {
		t.Fatalf("request id %q at ms1, %q (resent %q) at ms2: want the same id, marked resent", first, retry.id, retry.resent)
	}
	if loopCounts(dialRaw(t, p.addr))["retry"] == 0 {
		t.Error("the dropped first attempt was not handed over as a retry")
	}
}

// TestEventLoopClientGoneAndIdle: a client that closes while its request
// waits at a member leaves nothing counted in flight once the member
// answers; an idle connection is closed after IdleTimeout.
func TestEventLoopClientGoneAndIdle(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	started := make(chan struct{}, 4)
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "ms1")
	})
	t.Cleanup(free) // before the upstream's Close, which waits for its handlers
	p := startProxy(t, Config{EventLoops: 1, IdleTimeout: 300 * time.Millisecond}, a.member())
	inflight := func() string {
		_, body, _ := get(t, http.DefaultClient, p.url+"/_tandem/metrics", "")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "tandem_webserver_inflight_requests "); ok {
				return v
			}
		}
		return "?"
	}

	r := dialRaw(t, p.addr)
	r.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	if v := inflight(); v != "1" {
		t.Fatalf("in flight while a request waits: %s, want 1", v)
	}
	// As HAProxy without abortonclose, the request goes on at the member
	// after the client left; its answer is dropped, nothing stays counted.
	r.c.Close()
	free()
	testenv.Eventually(t, 5*time.Second, func() error {
		if v := inflight(); v != "0" {
			return fmt.Errorf("in flight after the client left: %s", v)
		}
		return nil
	})

	idle := dialRaw(t, p.addr)
	idle.write("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, _, _ := idle.read("GET"); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	_ = idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after IdleTimeout: %v, want it closed (EOF)", err)
	}
}

// TestEventLoopDrain: a request waiting at a member when the server stops
// is answered, and the server's Serve returns after it.
func TestEventLoopDrain(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	a := newUpstream(t, "ms1", "a", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(200 * time.Millisecond)
		io.WriteString(w, "answered")
	})
	s := New(Config{EventLoops: 1, ProbeInterval: time.Hour}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	applyMembers(t, s, ln.Addr().String(), a.member())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, 5*time.Second) }()
	r := dialRaw(t, ln.Addr().String())
	r.write("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	cancel()
	code, body, _ := r.read("GET")
	if code != 200 || body != "answered" {
		t.Fatalf("request in flight at the stop: %d %q", code, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
