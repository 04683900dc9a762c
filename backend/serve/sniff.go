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
	once     sync.Once // decide, on the first Read or Write
	err      error
	// active is the *tls.Conn or the socket with its first byte put back:
	// set once by decide (under mu, for Close; Read and Write read it after
	// once.Do).
	mu     sync.Mutex
	active net.Conn
}

func (c *sniffConn) decide() {
	var first [1]byte
	if _, err := c.Conn.Read(first[:]); err != nil {
		c.err = err
		return
	}
	pc := &PrefixConn{Conn: c.Conn, Prefix: first[:]}
	var active net.Conn
	switch {
	case first[0] == tlsRecordHandshake:
		cfg := c.l.config()
		if cfg == nil {
			c.err = errors.New("serve: TLS handshake refused: no certificate yet")
			return
		}
		active = tls.Server(pc, cfg)
	case c.l.plainOK():
		active = pc
	default:
		c.err = ErrPlainRefused
		return
	}
	c.mu.Lock()
	c.active = active
	c.mu.Unlock()
}

// conn is the decided connection, nil before (for Close, which does not
// wait for decide).
func (c *sniffConn) conn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active
}

func (c *sniffConn) Read(p []byte) (int, error) {
	c.once.Do(c.decide)
	if c.err != nil {
		return 0, c.err
	}
	return c.active.Read(p) // written before once.Do returned
}

func (c *sniffConn) Write(p []byte) (int, error) {
	c.once.Do(c.decide)
	if c.err != nil {
		return 0, c.err
	}
	return c.active.Write(p)
}

func (c *sniffConn) Close() error {
	if active := c.conn(); active != nil {
		return active.Close() // a TLS close_notify, then the socket
	}
	return c.Conn.Close()
}

// PrefixConn is a connection whose first bytes were read before it was
// handed on: Read returns Prefix first.
type PrefixConn struct {
	net.Conn
	Prefix []byte
}

func (p *PrefixConn) Read(b []byte) (int, error) {
	if len(p.Prefix) > 0 {
		n := copy(b, p.Prefix)
		p.Prefix = p.Prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
