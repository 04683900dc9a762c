package serve

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
)

// ErrPlainRefused is what a plain-text connection reads on a listener that
// requires TLS.
var ErrPlainRefused = errors.New("serve: plain text refused: this port requires TLS")

// tlsRecordHandshake is the first byte of every TLS connection.
const tlsRecordHandshake = 0x16

// SniffTLS serves TLS and plain text on one port, by the client's first
// byte: a TLS handshake is served with config() (nil: no certificate yet,
// refused), plain text only while plainOK() says so. The choice is made on
// the connection's first read, in its own goroutine, never in Accept, so a
// slow client holds up nobody. It lets a setting move a port from plain to
// TLS and back live: clients that already switched are served either way.
func SniffTLS(ln net.Listener, config func() *tls.Config, plainOK func() bool) net.Listener {
	return &sniffListener{Listener: ln, config: config, plainOK: plainOK}
}

type sniffListener struct {
	net.Listener
	config  func() *tls.Config
	plainOK func() bool
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, l: l}, nil
}

// sniffConn is one accepted connection; deadlines always reach the socket.
type sniffConn struct {
	net.Conn // the socket
	l        *sniffListener
	once     sync.Once
	active   net.Conn // *tls.Conn or the socket with its first byte put back
	err      error
	mu       sync.Mutex // guards active for Close, which may race decide
	closing  net.Conn
}

func (c *sniffConn) decide() {
	var first [1]byte
	if _, err := c.Conn.Read(first[:]); err != nil {
		c.err = err
		return
	}
	pc := &prefixConn{Conn: c.Conn, prefix: first[:]}
	switch {
	case first[0] == tlsRecordHandshake:
		cfg := c.l.config()
		if cfg == nil {
			c.err = errors.New("serve: TLS handshake refused: no certificate yet")
			return
		}
		c.active = tls.Server(pc, cfg)
	case c.l.plainOK():
		c.active = pc
	default:
		c.err = ErrPlainRefused
	}
	c.mu.Lock()
	c.closing = c.active
	c.mu.Unlock()
}

func (c *sniffConn) Read(p []byte) (int, error) {
	c.once.Do(c.decide)
	if c.err != nil {
		return 0, c.err
	}
	return c.active.Read(p)
}

func (c *sniffConn) Write(p []byte) (int, error) {
	c.once.Do(c.decide)
	if c.err != nil {
		return 0, c.err
	}
	return c.active.Write(p)
}

func (c *sniffConn) Close() error {
	c.mu.Lock()
	active := c.closing
	c.mu.Unlock()
	if active != nil {
		return active.Close() // a TLS close_notify, then the socket
	}
	return c.Conn.Close()
}

// prefixConn reads prefix before the socket.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
