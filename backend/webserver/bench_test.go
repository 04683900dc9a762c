package webserver

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	"tandem/backend/route"
	"tandem/backend/wire"
)

// rawUpstream answers every request on a keep-alive connection with a
// fixed small response, so the benchmark measures the proxy, not net/http.
func rawUpstream(b *testing.B) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Tandem-Server: ms1\r\nContent-Length: 60\r\n\r\n{\"server\":\"ms1\",\"session\":\"0123456789abcdef0123\",\"count\":1}\n")
	return rawMember(b, func(c net.Conn, _ *http.Request) bool {
		_, err := c.Write(resp)
		return err == nil
	})
}

// BenchmarkReverseProxyBaseline is the same load through net/http's
// httputil.ReverseProxy with a tuned Transport (sticky by cookie route),
// the baseline DESIGN.md compares against.
func BenchmarkReverseProxyBaseline(b *testing.B) {
	targets := map[string]string{}
	for _, r := range []string{"a", "b", "c", "d"} {
		targets[r] = rawUpstream(b)
	}
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			host := targets["a"]
			if c, err := pr.In.Cookie("JSESSIONID"); err == nil {
				if v, err := route.Parse(c.Value); err == nil && targets[v.Primary] != "" {
					host = targets[v.Primary]
				}
			}
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", host
			pr.SetXForwarded()
		},
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	defer srv.Close()
	loadLoop(b, ln.Addr().String())
}

// BenchmarkProxyCounter forwards keep-alive GETs with a session cookie
// through the proxy over loopback, on the event loops and on the goroutine
// path; allocs/op is the number to watch (bench/proxy measures speed, with
// the proxy in a process of its own).
func BenchmarkProxyCounter(b *testing.B) {
	for _, tc := range []struct {
		name  string
		loops int
	}{{"loops", 0}, {"goroutines", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			var members []wire.Member
			for i, r := range []string{"a", "b", "c", "d"} {
				members = append(members, wire.Member{Name: "ms" + string(rune('1'+i)), Route: r, Listen: rawUpstream(b)})
			}
			s := New(Config{ProbeInterval: time.Hour, EventLoops: tc.loops}, nil)
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			if err := s.Apply(context.Background(), wire.Config{WebServer: &wire.WebServerConfig{Listen: ln.Addr().String(), CookieNames: []string{"JSESSIONID"}, Members: members}}); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = s.Serve(ctx, ln, time.Second); close(done) }()
			defer func() { cancel(); <-done }()
			loadLoop(b, ln.Addr().String())
		})
	}
}

func loadLoop(b *testing.B, addr string) {
	routes := []string{"a", "b", "c", "d"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		var reqs [][]byte
		for _, r := range routes {
			v := route.Value{ID: route.NewID(), Primary: r}
			reqs = append(reqs, []byte("GET /counter HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nCookie: JSESSIONID="+v.String()+"\r\n\r\n"))
		}
		br := bufio.NewReader(c)
		i := 0
		for pb.Next() {
			if _, err := c.Write(reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			i++
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("X-Tandem-Server"), "ms") {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
