package webserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// member is one upstream server with its health, load and pool of idle
// connections. Members outlive routing tables: a new table reuses the
// member with the same name, route and address, so health and pooled
// connections carry over.
//
// live, outstanding and the counters are atomics read on every request;
// mu guards idle and closed only.
type member struct {
	name, route, listen string
	// tls: the cluster sets member_tls; tlsCfg and probe are made on first
	// use (guarded by tlsMu).
	tls    bool
	tlsMu  sync.Mutex
	tlsCfg *tls.Config
	probe  *http.Client

	live        atomic.Bool
	probing     atomic.Bool // a health probe is in flight
	outstanding atomic.Int64
	// lastAnswer is when the member last answered anything (a response
	// head or a probe), in UnixNano: a member with requests waiting and
	// no answer for the heartbeat timeout is suspect.
	lastAnswer atomic.Int64

	mu     sync.Mutex
	idle   []*upConn
	closed bool
	gone   atomic.Bool // closed, read without the lock

	// sa is the member's socket address for the event loop's own dials
	// (see sockaddr), made once.
	saOnce sync.Once
	sa     any

	latency prometheus.Observer
	codes   [600]atomic.Pointer[prometheus.Counter]
	m       *metricSet
}

// upConn is one pooled HTTP/1.1 connection to a member.
type upConn struct {
	m      *member
	c      net.Conn
	raw    net.Conn // the socket under c (c itself on plain text)
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	dlSet  time.Time // when the deadline was last set
	dlBody bool      // the deadline is the body timeout, not the header one
}

// headerDeadline bounds writing a request and reading the response head;
// refreshed at most once a second while the connection keeps serving.
func (u *upConn) headerDeadline(now time.Time, d time.Duration) {
	if u.dlBody || now.Sub(u.dlSet) > time.Second {
		_ = u.c.SetDeadline(now.Add(d))
		u.dlSet, u.dlBody = now, false
	}
}

// bodyDeadline bounds the silence while a response body streams.
func (u *upConn) bodyDeadline(now time.Time, d time.Duration) {
	_ = u.c.SetReadDeadline(now.Add(d))
	u.dlSet, u.dlBody = now, true
}

func (u *upConn) close() { _ = u.c.Close() }

// answered notes an answer from the member at now (written at most every
// 10 ms: the field is shared by every connection to the member).
func (m *member) answered(now time.Time) {
	n := now.UnixNano()
	if n-m.lastAnswer.Load() > int64(10*time.Millisecond) {
		m.lastAnswer.Store(n)
	}
}

// counter returns the requests counter of this member for status code.
func (m *member) counter(code int) prometheus.Counter {
	if code < 0 || code >= len(m.codes) {
		return m.m.requests.WithLabelValues(m.name, strconv.Itoa(code))
	}
	if c := m.codes[code].Load(); c != nil {
		return *c
	}
	c := m.m.requests.WithLabelValues(m.name, strconv.Itoa(code))
	m.codes[code].Store(&c)
	return c
}

// get returns an idle connection or dials a new one.
func (m *member) get(ctx context.Context, s *Server) (*upConn, error) {
	for {
		m.mu.Lock()
		n := len(m.idle)
		if n == 0 {
			m.mu.Unlock()
			break
		}
		u := m.idle[n-1]
		m.idle[n-1] = nil
		m.idle = m.idle[:n-1]
		m.mu.Unlock()
		if time.Since(u.idleAt) > staleCheckAfter && !alive(u) {
			u.close()
			continue
		}
		u.reused = true
		return u, nil
	}
	return m.dial(ctx, s)
}

// staleCheckAfter: a pooled connection idle longer than this is checked
// (one non-blocking peek) before use, because the server may have closed it.
const staleCheckAfter = time.Second

func (m *member) dial(ctx context.Context, s *Server) (*upConn, error) {
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", m.listen)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	raw := c
	if m.tls {
		if c, err = s.handshake(ctx, m, c); err != nil {
			return nil, err
		}
	}
	return &upConn{
		m:   m,
		c:   c,
		raw: raw,
		br:  bufio.NewReaderSize(c, upstreamBufSize),
		bw:  bufio.NewWriterSize(c, upstreamBufSize),
	}, nil
}

const upstreamBufSize = 16 << 10

// put returns a healthy connection to the pool.
func (m *member) put(u *upConn, max int) {
	u.idleAt = time.Now()
	m.mu.Lock()
	if m.closed || len(m.idle) >= max || !m.live.Load() {
		m.mu.Unlock()
		u.close()
		return
	}
	m.idle = append(m.idle, u)
	m.mu.Unlock()
}

// closeIdle closes every pooled connection (member down or removed).
func (m *member) closeIdle(final bool) {
	m.mu.Lock()
	idle := m.idle
	m.idle = nil
	if final {
		m.closed = true
		m.gone.Store(true)
	}
	m.mu.Unlock()
	for _, u := range idle {
		u.close()
	}
}

// reap closes connections idle for longer than maxIdle.
func (m *member) reap(maxIdle time.Duration) {
	now := time.Now()
	m.mu.Lock()
	keep := m.idle[:0]
	var old []*upConn
	for _, u := range m.idle {
		if now.Sub(u.idleAt) > maxIdle {
			old = append(old, u)
		} else {
			keep = append(keep, u)
		}
	}
	for i := len(keep); i < len(m.idle); i++ {
		m.idle[i] = nil
	}
	m.idle = keep
	m.mu.Unlock()
	for _, u := range old {
		u.close()
	}
}

// alive peeks at an idle connection without blocking: a closed or
// readable (unexpected data) connection is not reusable.
func alive(u *upConn) bool {
	if u.br.Buffered() > 0 {
		return false
	}
	sc, ok := u.raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 || (err != nil && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)))
		return true
	})
	return ok
}
