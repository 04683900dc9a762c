package session

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
)

// A front tier that resends a request it gave up on (the web server does,
// when the member it waited on was found down or silent) closes the
// connection it sent the first attempt on. The first attempt may still be
// read and run later: it sat in the socket buffer of a member frozen by a
// GC pause or a VM stall, which wakes up long after the resend was
// answered elsewhere and the session written many times since. Running it
// then would apply the write a second time, so a request whose client has
// already closed its connection is not applied (see Manager.serve and
// finish).

type connKey struct{}

// WithConn returns ctx carrying the client connection c; set it as the
// http.Server's ConnContext so the session middleware can tell when the
// client has gone.
func WithConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// ClientGone reports whether the client of r has closed its connection:
// r's context is done (net/http noticed), or the connection has nothing
// left to read but its end (a non-blocking peek, which consumes nothing).
func ClientGone(r *http.Request) bool {
	if r.Context().Err() != nil {
		return true
	}
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && err == nil || errors.Is(err, syscall.ECONNRESET)
	})
	return gone
}
