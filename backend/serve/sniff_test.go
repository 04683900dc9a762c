package serve_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"tandem/backend/pki"
	"tandem/backend/serve"
)

// TestSniffTLS: one port serves a TLS client always and a plain one only
// while plain text is allowed; the switch is live.
func TestSniffTLS(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCert("ms1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var plain atomic.Bool
	plain.Store(true)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(ctx, srv, serve.SniffTLS(ln, func() *tls.Config { return cfg }, plain.Load), time.Second)
	}()
	t.Cleanup(func() { cancel(); <-done })

	addr := ln.Addr().String()
	get := func(c *http.Client, url string) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			t.Fatalf("%s: %q", url, b)
		}
		return nil
	}
	plainC := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tlsC := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "ms1"}}}
	if err := get(plainC, "http://"+addr+"/"); err != nil {
		t.Fatalf("plain while allowed: %v", err)
	}
	if err := get(tlsC, "https://"+addr+"/"); err != nil {
		t.Fatalf("TLS while plain is allowed: %v", err)
	}
	plain.Store(false)
	if err := get(plainC, "http://"+addr+"/"); err == nil {
		t.Fatal("plain text served after it was refused")
	}
	if err := get(tlsC, "https://"+addr+"/"); err != nil {
		t.Fatalf("TLS: %v", err)
	}
}
