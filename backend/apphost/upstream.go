package apphost

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// upstream is a pool of keep-alive HTTP/1.1 connections to one
// application process. A request runs on the calling goroutine: written,
// then its answer read, on one connection it holds alone until the answer's
// body is read to the end (http.Transport's read and write loops hand every
// request between three goroutines; on this hop that cost more than the
// application itself, see BENCHMARKS.md).
//
// Safe for concurrent use. The zero value is not usable: newUpstream.
type upstream struct {
	addr          string
	headerTimeout time.Duration // writing the request and reading the answer's head
	dialer        net.Dialer
	idle          chan *appConn
	closed        chan struct{}
	closeOnce     sync.Once
}

// idleFor bounds how long a pooled connection is reused: the application
// may close idle connections on its own schedule, and a request written to
// a connection it closed fails.
const idleFor = 30 * time.Second

type appConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went back to the pool
}

func newUpstream(addr string, headerTimeout time.Duration) *upstream {
	return &upstream{addr: addr, headerTimeout: headerTimeout, dialer: net.Dialer{Timeout: 2 * time.Second},
		idle: make(chan *appConn, 256), closed: make(chan struct{})}
}

// get returns a pooled connection (reused true) or a new one.
func (u *upstream) get(ctx context.Context) (*appConn, bool, error) {
	for {
		select {
		case ac := <-u.idle:
			if time.Since(ac.used) < idleFor {
				return ac, true, nil
			}
			ac.c.Close()
			continue
		default:
		}
		c, err := u.dialer.DialContext(ctx, "tcp", u.addr)
		if err != nil {
			return nil, false, err
		}
		return &appConn{c: c, br: bufio.NewReaderSize(c, 8<<10), bw: bufio.NewWriterSize(c, 8<<10)}, false, nil
	}
}

// put pools ac, or closes it when the pool is full or closed.
func (u *upstream) put(ac *appConn) {
	ac.used = time.Now()
	select {
	case <-u.closed:
		ac.c.Close()
		return
	default:
	}
	select {
	case u.idle <- ac:
	default:
		ac.c.Close()
	}
}

// close closes the pooled connections; connections in use close when
// their request ends.
func (u *upstream) close() {
	u.closeOnce.Do(func() { close(u.closed) })
	u.dropIdle()
}

// dropIdle closes the pooled connections (their process exited: a request
// written on one would fail).
func (u *upstream) dropIdle() {
	for {
		select {
		case ac := <-u.idle:
			ac.c.Close()
		default:
			return
		}
	}
}

// roundTrip sends req and reads the answer's head. The answer's body must
// be read to its end or closed: that returns the connection. A request
// written on a reused connection that the application had closed (no
// answer byte came) is sent once more on a new connection when it has no
// body: nothing of it reached the application.
func (u *upstream) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		ac, reused, err := u.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := u.send(ctx, ac, req)
		if err == nil {
			return resp, nil
		}
		ac.c.Close()
		if reused && attempt == 0 && req.Body == nil && errors.Is(err, errStale) {
			continue
		}
		return nil, err
	}
}

// errStale marks a connection that ended before any answer byte.
var errStale = errors.New("apphost: connection closed by the application")

func (u *upstream) send(ctx context.Context, ac *appConn, req *http.Request) (*http.Response, error) {
	if err := ac.c.SetDeadline(time.Now().Add(u.headerTimeout)); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = ac.c.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(ac.bw); err != nil {
		stop()
		return nil, err
	}
	if err := ac.bw.Flush(); err != nil {
		stop()
		return nil, err
	}
	if _, err := ac.br.Peek(1); err != nil {
		stop()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return nil, errors.Join(errStale, err)
		}
		return nil, err
	}
	resp, err := http.ReadResponse(ac.br, req)
	if err != nil {
		stop()
		return nil, err
	}
	if err := ac.c.SetDeadline(time.Time{}); err != nil { // the body may stream for long; ctx bounds it
		stop()
		resp.Body.Close()
		return nil, err
	}
	resp.Body = &pooledBody{ReadCloser: resp.Body, u: u, ac: ac, stop: stop, reuse: !resp.Close && !req.Close}
	return resp, nil
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read"
}

// pooledBody returns its connection to the pool once read to the end.
type pooledBody struct {
	io.ReadCloser
	u     *upstream
	ac    *appConn
	stop  func() bool
	reuse bool
	eof   bool
	done  bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if !b.eof {
		// Not read to the end (the user went away): the connection is
		// not reusable, and closing it first ends the body's drain at once.
		b.ac.c.Close()
	}
	err := b.ReadCloser.Close()
	// The deadline callback must not fire on a pooled connection: stop
	// reports false when it ran (the request's context ended).
	if b.stop() && b.reuse && b.eof && err == nil {
		b.u.put(b.ac)
		return nil
	}
	b.ac.c.Close()
	if !b.eof {
		return nil // the drain's error is the close above
	}
	return err
}
