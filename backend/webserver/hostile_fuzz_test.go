package webserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/backend/wire"
)

// FuzzReadHead: the head parser never panics, and a head it accepts has a
// start line and only token header names with values free of CR, LF and
// NUL (so nothing it forwards can split a header or smuggle a request).
func FuzzReadHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
		"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\nCookie: JSESSIONID=x\n\n",
		"GET / HTTP/1.1\r\n: empty\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
		"G\r\n\r\n",
		strings.Repeat("A", 5000) + "\r\n\r\n",
	} {
		f.Add([]byte(s), uint16(4096))
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		var h head
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		_, err := readHead(br, &h, int(max))
		// The event loop's parser of a buffer agrees with the reader's.
		var h2 head
		n, err2 := headBytes(data, &h2, int(max))
		if errors.Is(err, errBadHead) && err2 == nil && n > 0 {
			t.Fatalf("headBytes accepted %q, readHead refused it", data)
		}
		if err == nil && err2 == nil {
			if n == 0 {
				t.Fatalf("headBytes found no head in %q", data)
			}
			if !bytes.Equal(h.first, h2.first) || len(h.hdrs) != len(h2.hdrs) {
				t.Fatalf("headBytes parsed %q as %q %d headers, readHead as %q %d", data, h2.first, len(h2.hdrs), h.first, len(h.hdrs))
			}
			for i := range h.hdrs {
				if !bytes.Equal(h.hdrs[i].name, h2.hdrs[i].name) || !bytes.Equal(h.hdrs[i].value, h2.hdrs[i].value) {
					t.Fatalf("header %d: %q: %q vs %q: %q", i, h2.hdrs[i].name, h2.hdrs[i].value, h.hdrs[i].name, h.hdrs[i].value)
				}
			}
		}
		if err != nil {
			return
		}
		if len(h.first) == 0 {
			t.Fatal("accepted a head without a start line")
		}
		if len(h.buf) > int(max) {
			t.Fatalf("head of %d bytes over the limit %d", len(h.buf), max)
		}
		for _, hd := range h.hdrs {
			if !isToken(hd.name) {
				t.Fatalf("header name %q is not a token", hd.name)
			}
			if bytes.ContainsAny(hd.value, "\r\n\x00") {
				t.Fatalf("header value %q carries CR, LF or NUL", hd.value)
			}
		}
	})
}

// FuzzParseContentLength agrees with strconv on what it accepts, and
// never accepts a sign, a space or a value that overflows.
func FuzzParseContentLength(f *testing.F) {
	for _, s := range []string{"0", "12", "+1", "-1", " 1", "1 ", "0x10", "999999999999999999", "9999999999999999999", "", "1,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseContentLength([]byte(s))
		if err != nil {
			return
		}
		want, err2 := strconv.ParseInt(s, 10, 64)
		if err2 != nil || want != n || n < 0 || s[0] == '+' {
			t.Fatalf("parseContentLength(%q) = %d, strconv says %d %v", s, n, want, err2)
		}
	})
}

// FuzzParseChunkSize agrees with strconv (hex) and never goes negative.
func FuzzParseChunkSize(f *testing.F) {
	for _, s := range []string{"0\r\n", "1a;ext=1\r\n", "FFFFFFFFFFFFFFF\r\n", "FFFFFFFFFFFFFFFF\r\n", "-1\r\n", " 5 \r\n", "\r\n", "0x5\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseChunkSize([]byte(s))
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseChunkSize(%q) = %d", s, n)
		}
		v := trimOWS(trimEOL([]byte(s)))
		if i := bytes.IndexByte(v, ';'); i >= 0 {
			v = trimOWS(v[:i])
		}
		want, err2 := strconv.ParseInt(string(v), 16, 64)
		if err2 != nil || want != n {
			t.Fatalf("parseChunkSize(%q) = %d, strconv says %d %v", s, n, want, err2)
		}
	})
}

// FuzzParseStatus: a status is 100..999 and only from an HTTP/1.x line.
func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK", "HTTP/1.0 404", "HTTP/1.1 20 OK", "HTTP/2 200", "HTTP/1.1 099 x", "HTTP/1.1 200OK"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := parseStatus([]byte(s))
		if c == 0 {
			return
		}
		if c < 100 || c > 999 || !strings.HasPrefix(s, "HTTP/1.") || s[9:12] != strconv.Itoa(c) {
			t.Fatalf("parseStatus(%q) = %d", s, c)
		}
	})
}

// FuzzProxyRawRequest writes arbitrary bytes to a running proxy (the real
// Server on a loopback listener, in front of a real HTTP member). Whatever
// the bytes, the proxy answers nothing or an HTTP/1.1 response, never
// crashes, and still forwards a well-formed request afterwards.
func FuzzProxyRawRequest(f *testing.F) {
	for _, s := range []string{
		"GET /ping HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"GET /x HTTP/1.1\r\nHost: a\r\nCookie: JSESSIONID=0123456789abcdef0123456789abcdef!ms1!ms1\r\n\r\n",
		"GET /x;jsessionid=0123456789abcdef0123456789abcdef!zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /_tandem/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Cookie\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
	} {
		f.Add([]byte(s))
	}
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Tandem-Server", "ms1")
		_, _ = io.WriteString(w, "ok")
	}))
	f.Cleanup(member.Close)
	s := New(Config{ProbeInterval: time.Second, ResponseHeaderTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Apply(context.Background(), wire.Config{WebServer: &wire.WebServerConfig{
		Name: "ws1", Listen: ln.Addr().String(), CookieNames: []string{"JSESSIONID"},
		Members: []wire.Member{{Name: "ms1", Route: "ms1", Listen: strings.TrimPrefix(member.URL, "http://")}},
	}}); err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, 2*time.Second) }()
	f.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()
	hc := &http.Client{Timeout: 5 * time.Second}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = c.Write(data)
		_ = c.(*net.TCPConn).CloseWrite()
		out, _ := io.ReadAll(c)
		c.Close()
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(out, []byte("HTTP/1.0 ")) {
			t.Fatalf("answer to %q is not HTTP: %.200q", data, out)
		}
		resp, err := hc.Get("http://" + addr + "/ping")
		if err != nil {
			t.Fatalf("after %q the proxy no longer answers: %v", data, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("after %q: %d %q", data, resp.StatusCode, b)
		}
	})
}
