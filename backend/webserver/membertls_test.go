package webserver

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"tandem/backend/pki"
)

// With member_tls the web server accepts a member's certificate only if it
// names that member: another member's valid certificate at its address is
// refused (one member cannot answer for another).
func TestMemberTLSChecksTheMembersName(t *testing.T) {
	t.Parallel()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCert("ms2", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	s := New(Config{}, nil)
	// The agent's base checks the domain CA (its own test); here only the
	// name is under test.
	s.peerTLS.Store(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the name check below is what is tested
	handshake := func(name string) error {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		tc, err := s.handshake(context.Background(), &member{name: name, listen: ln.Addr().String(), tls: true}, c)
		if err == nil {
			tc.Close()
		}
		return err
	}
	if err := handshake("ms1"); err == nil || !strings.Contains(err.Error(), `does not name member "ms1"`) {
		t.Fatalf("ms2's certificate taken for ms1: %v", err)
	}
	if err := handshake("ms2"); err != nil {
		t.Fatalf("ms2's own certificate: %v", err)
	}
}
