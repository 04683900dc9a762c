//go:build linux

package webserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"tandem/backend/serve"
)

// The event loop: the common request (a small head and body, a member
// reached in plain text, a small length-delimited or chunked response) is
// read, forwarded and answered by a loop of our own on raw epoll (one per
// two cores, see defaultLoops), without a goroutine per connection. Profiles of the goroutine path
// showed the Go scheduler's park and wake-up per read as the cost above
// HAProxy's; an event loop batches readiness as HAProxy does (see
// BENCHMARKS.md).
//
// Anything else is handed over, at the point it was found, to the
// goroutine path in proxy.go, which does everything: the connection
// becomes a net.Conn again and its bytes already read go with it; an
// attempt already made goes to forward as its first outcome (attempt), so
// retries, resends with the same request id, 503 pauses, streaming and
// tunnels keep one implementation.

// Limits of the loop's own path: larger bodies and heads are the goroutine
// path's.
const (
	loopMaxBody   = 64 << 10
	loopMaxResp   = 256 << 10
	loopSweep     = 50 * time.Millisecond
	loopReadChunk = 16 << 10
)

const (
	cIdle    = iota // reading a request head
	cBody           // head read, reading its body
	cWaiting        // the request is at a member
)

const (
	uGone = iota // closed or handed over: counted nowhere
	uIdle
	uBusy
)

// lclient is a client connection served by the loop.
type lclient struct {
	fd    int
	cc    *clientConn // parsing state, shared with the goroutine path
	in    []byte      // read, not consumed yet
	out   []byte      // to be written
	state int
	ri    reqInfo
	start time.Time
	headN int // bytes of the head at the start of in, in cBody
	up    *lup
	eof   bool      // the client closed its side
	full  bool      // in holds as much as allowed: read again once consumed
	since time.Time // last progress, for the idle timeout
	gen   int32
}

// Write appends to the client's output (the target of cc.bw).
func (c *lclient) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}

// lup is a connection to a member owned by the loop.
type lup struct {
	fd      int
	m       *member
	in      []byte
	out     []byte
	state   int
	cl      *lclient
	reused  bool
	track   bool
	sentAt  time.Time
	since   time.Time // idle since (uIdle) or last progress of the body (uBusy)
	headN   int       // >0: the response head (of headN bytes) was read
	status  int
	f       framing
	dialing bool // the connection is being made
	dead    bool
	gen     int32
}

func (u *lup) Write(p []byte) (int, error) {
	u.out = append(u.out, p...)
	return len(p), nil
}

// evloop is one event loop.
type evloop struct {
	s  *Server
	ep int
	// epf holds ep for the runtime's poller: the loop waits for its set
	// there, as a goroutine parked like any other, instead of blocking a
	// thread in epoll_wait (see wait); nil when ep could not be given to
	// the poller.
	epf  *os.File
	eprc syscall.RawConn
	// pollFn is l.poll, made once; polled, pollN and pollErr are its
	// events and results.
	pollFn  func(uintptr) bool
	polled  []unix.EpollEvent
	pollN   int
	pollErr error
	wake    int // eventfd: the inbox has messages
	// conns maps a file descriptor to its *lclient or *lup.
	conns map[int32]any
	idle  map[*member][]*lup
	uw    *bufio.Writer
	buf   []byte
	gen   int32 // tells a descriptor's new connection from its old one

	// answered, request, retry and response count requests by how the
	// loop took them (metric tandem_webserver_event_loop_requests_total).
	answered, handRequest, handRetry, handResponse prometheus.Counter

	mu      sync.Mutex
	inbox   []loopMsg
	stopped bool // the loop ended: its descriptors are closed
	done    chan struct{}
}

type loopMsg struct {
	adopt bool // the client connection fd (from ip)
	fd    int
	ip    []byte
	down  *member
	drain bool
	kill  bool // close every client connection (the drain's grace ran out)
	stop  bool
}

func newLoop(s *Server) (*evloop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("webserver: epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(ep)
		return nil, fmt.Errorf("webserver: eventfd: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		_ = unix.Close(ep)
		_ = unix.Close(wake)
		return nil, fmt.Errorf("webserver: epoll: %w", err)
	}
	l := &evloop{
		s: s, ep: ep, wake: wake,
		answered:     s.met.loop.WithLabelValues("answered"),
		handRequest:  s.met.loop.WithLabelValues("request"),
		handRetry:    s.met.loop.WithLabelValues("retry"),
		handResponse: s.met.loop.WithLabelValues("response"),
		conns:        map[int32]any{},
		idle:         map[*member][]*lup{},
		uw:           bufio.NewWriterSize(nil, upstreamBufSize),
		buf:          make([]byte, loopReadChunk),
		done:         make(chan struct{}),
	}
	if err := unix.SetNonblock(ep, true); err == nil {
		// Non-blocking, the file is registered with the runtime's poller;
		// it closes ep from here on.
		l.epf = os.NewFile(uintptr(ep), "epoll")
		if rc, err := l.epf.SyscallConn(); err == nil {
			l.eprc, l.pollFn = rc, l.poll
		}
	}
	return l, nil
}

// startLoops starts the configured number of event loops (none when the
// configuration turns them off or they cannot be made).
func (s *Server) startLoops() {
	n := s.cfg.EventLoops
	if n < 0 {
		return
	}
	if n == 0 {
		n = defaultLoops(runtime.GOMAXPROCS(0))
	}
	for range n {
		l, err := newLoop(s)
		if err != nil {
			s.log.Warn("event loop unavailable; serving on goroutines", "err", err)
			break
		}
		s.loops = append(s.loops, l)
		go l.run()
	}
}

// defaultLoops is one loop per two cores, at least one. A loop under load
// keeps its core without blocking (pollNow), so the other half is left to
// the goroutine path (TLS, WebSocket, large bodies), the probes and the
// GC; and on a host it shares with its members, fewer loops find more
// events per wake-up: on 2 cores one loop costs 22-25 µs of CPU per
// request where two cost 29-31 (BENCHMARKS.md).
func defaultLoops(procs int) int {
	return max(1, procs/2)
}

// stopLoops stops the loops and waits for them.
func (s *Server) stopLoops() {
	for _, l := range s.loops {
		l.send(loopMsg{stop: true})
	}
	for _, l := range s.loops {
		<-l.done
	}
}

// tellLoops sends msg to every loop.
func (s *Server) tellLoops(msg loopMsg) {
	for _, l := range s.loops {
		l.send(msg)
	}
}

// adopt gives the accepted connection c to a loop; false leaves c to the
// caller (no loop, or its descriptor could not be taken).
func (s *Server) adopt(c net.Conn) bool {
	if len(s.loops) == 0 {
		return false
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	if err := rc.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || fd < 0 {
		return false
	}
	var ip []byte
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		ip = []byte(host)
	}
	_ = tc.SetNoDelay(true)
	_ = c.Close() // the duplicate, non-blocking like it, is the loop's now
	l := s.loops[int(s.nextLoop.Add(1))%len(s.loops)]
	l.send(loopMsg{adopt: true, fd: fd, ip: ip})
	return true
}

func (l *evloop) send(msg loopMsg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		if msg.adopt {
			_ = unix.Close(msg.fd)
			l.s.connWG.Done()
		}
		return
	}
	l.inbox = append(l.inbox, msg)
	var one = [8]byte{1}
	_, _ = unix.Write(l.wake, one[:])
}

func (l *evloop) run() {
	defer close(l.done)
	evs := make([]unix.EpollEvent, 256)
	lastSweep := time.Now()
	l.setSweep(lastSweep)
	for {
		n, err := l.wait(evs)
		if err != nil {
			l.s.log.Error("event loop failed", "err", err)
			n = 0
		}
		now := time.Now()
		for i := 0; i < n; i++ {
			ev := &evs[i]
			if int(ev.Fd) == l.wake {
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				if l.messages(now) {
					l.shutdown()
					return
				}
				continue
			}
			// Pad carries the generation: an event for a descriptor closed
			// and reused in this batch is not the new connection's.
			switch x := l.conns[ev.Fd].(type) {
			case *lclient:
				if x.gen == ev.Pad {
					l.clientEvent(x, ev.Events, now)
				}
			case *lup:
				if x.gen == ev.Pad {
					l.upEvent(x, ev.Events, now)
				}
			}
		}
		if now.Sub(lastSweep) >= loopSweep {
			lastSweep = now
			l.sweep(now)
			l.setSweep(now)
		}
	}
}

// wait returns the next events of the loop's set, or none when it is time
// to sweep. Under load they are there already (pollNow). Else the loop
// parks on the runtime's poller until the set has some: a thread blocked
// in epoll_wait instead has the runtime's monitor take its P away after
// 20 µs and wake every 20 µs while that goes on (6 % of the web server's
// CPU in profiles at 20k requests/s).
func (l *evloop) wait(evs []unix.EpollEvent) (int, error) {
	if l.eprc == nil {
		n, err := pollNow(l.ep, evs)
		if n > 0 || err != nil && err != unix.EINTR {
			return n, err
		}
		n, err = unix.EpollWait(l.ep, evs, int(loopSweep/time.Millisecond))
		if err == unix.EINTR {
			return 0, nil
		}
		return n, err
	}
	// Read calls poll first, and parks only when it finds nothing.
	l.polled = evs
	err := l.eprc.Read(l.pollFn)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return l.pollN, l.pollErr
}

// poll is wait's function for the runtime's poller (as l.pollFn, made
// once: a closure made per wait allocated itself and its results).
func (l *evloop) poll(uintptr) bool {
	l.pollN, l.pollErr = pollNow(l.ep, l.polled)
	return l.pollN > 0 || l.pollErr != nil && l.pollErr != unix.EINTR
}

// setSweep has wait return for the next sweep, due loopSweep after now.
func (l *evloop) setSweep(now time.Time) {
	if l.epf != nil {
		_ = l.epf.SetReadDeadline(now.Add(loopSweep))
	}
}

// messages handles the inbox; true on stop.
func (l *evloop) messages(now time.Time) bool {
	l.mu.Lock()
	msgs := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	stop := false
	for _, msg := range msgs {
		switch {
		case msg.adopt:
			l.addClient(msg.fd, msg.ip, now)
		case msg.down != nil:
			l.memberDown(msg.down)
		case msg.drain:
			l.sweep(now)
		case msg.kill:
			for _, x := range l.conns {
				if c, ok := x.(*lclient); ok {
					l.closeClient(c)
				}
			}
		case msg.stop:
			stop = true
		}
	}
	return stop
}

func (l *evloop) shutdown() {
	for _, x := range l.conns {
		switch x := x.(type) {
		case *lclient:
			l.closeClient(x)
		case *lup:
			l.closeUp(x)
		}
	}
	l.mu.Lock()
	l.stopped = true
	if l.epf != nil {
		_ = l.epf.Close()
	} else {
		_ = unix.Close(l.ep)
	}
	_ = unix.Close(l.wake)
	l.mu.Unlock()
}

const edgeEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// register adds fd to the loop's epoll set with a new generation.
func (l *evloop) register(fd int) (int32, error) {
	l.gen++
	return l.gen, unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: edgeEvents, Fd: int32(fd), Pad: l.gen})
}

func (l *evloop) addClient(fd int, ip []byte, now time.Time) {
	gen, err := l.register(fd)
	if err != nil {
		_ = unix.Close(fd)
		l.s.connWG.Done()
		return
	}
	cc := clientPool.Get().(*clientConn)
	c := &lclient{fd: fd, gen: gen, cc: cc, since: now, in: make([]byte, 0, 4096)}
	cc.s, cc.c, cc.closed = l.s, nil, false
	cc.ip = append(cc.ip[:0], ip...)
	cc.bw.Reset(c)
	l.conns[int32(fd)] = c
	// Bytes may have arrived before the registration.
	l.clientEvent(c, unix.EPOLLIN, now)
}

// closeClient closes a client connection the loop serves, and the
// exchange it has at a member.
func (l *evloop) closeClient(c *lclient) {
	if c.fd < 0 {
		return
	}
	if u := c.up; u != nil {
		l.endExchange(u, false)
	}
	if c.state == cWaiting {
		l.s.met.inflight.Dec()
	}
	delete(l.conns, int32(c.fd))
	_ = unix.Close(c.fd)
	c.fd = -1
	l.releaseCC(c)
	l.s.connWG.Done()
}

func (l *evloop) releaseCC(c *lclient) {
	cc := c.cc
	c.cc = nil
	cc.bw.Reset(nil)
	cc.s = nil
	if cap(cc.body) > 64<<10 {
		cc.body = nil
	}
	clientPool.Put(cc)
}

// readAll reads what fd has into *buf, up to limit bytes in all; eof
// when the peer closed its side, full when limit stopped it (more may
// wait), err on a failed read.
func (l *evloop) readAll(fd int, buf *[]byte, limit int) (eof, full bool, err error) {
	for {
		room := min(len(l.buf), limit-len(*buf))
		if room <= 0 {
			return false, true, nil
		}
		n, err := rawRead(fd, l.buf[:room])
		switch {
		case n > 0:
			*buf = append(*buf, l.buf[:n]...)
			if n < room {
				return false, false, nil
			}
		case err == unix.EAGAIN:
			return false, false, nil
		case err == unix.EINTR:
		case err != nil:
			return false, false, err
		default:
			return true, false, nil
		}
	}
}

// clientLimit bounds what the loop holds of a client's bytes: a head and
// a body it forwards itself, or the start of one it hands over.
func (l *evloop) clientLimit() int { return l.s.cfg.MaxHeaderBytes + loopMaxBody + 4096 }

// writeAll writes what it can of *out to fd, keeping what is left at the
// start of *out (so the buffer keeps its capacity from one answer to the
// next); err on a failed write.
func writeAll(fd int, out *[]byte) error {
	b := *out
	w := 0
	defer func() { *out = b[:copy(b, b[w:])] }()
	for w < len(b) {
		n, err := rawWrite(fd, b[w:])
		switch {
		case n > 0:
			w += n
		case err == unix.EAGAIN:
			return nil
		case err == unix.EINTR:
		case err != nil:
			return err
		}
	}
	return nil
}

func (l *evloop) clientEvent(c *lclient, ev uint32, now time.Time) {
	if ev&unix.EPOLLOUT != 0 && len(c.out) > 0 {
		if err := writeAll(c.fd, &c.out); err != nil {
			l.closeClient(c)
			return
		}
		c.since = now
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 && !c.eof {
		if !l.readClient(c, now) {
			return
		}
	}
	l.advance(c, now)
}

// readClient reads what the client sent, up to clientLimit; false when
// the connection broke (and is closed).
func (l *evloop) readClient(c *lclient, now time.Time) bool {
	n := len(c.in)
	eof, full, err := l.readAll(c.fd, &c.in, l.clientLimit())
	if err != nil {
		l.closeClient(c)
		return false
	}
	c.eof = c.eof || eof
	c.full = full
	if len(c.in) > n {
		c.since = now
	}
	return true
}

// advance moves a client connection on as far as its bytes allow.
func (l *evloop) advance(c *lclient, now time.Time) {
	s := l.s
	cc := c.cc
	for c.fd >= 0 {
		switch c.state {
		case cWaiting:
			return
		case cIdle:
			if len(c.out) > 0 {
				return // the next request after this answer is out
			}
			if c.full && !l.readClient(c, now) {
				return
			}
			if cc.closed || s.draining.Load() || len(c.in) == 0 && c.eof {
				l.closeClient(c)
				return
			}
			if len(c.in) == 0 {
				if cap(c.in) > 64<<10 {
					c.in = make([]byte, 0, 4096)
				}
				return
			}
			n, err := headBytes(c.in, &cc.req, s.cfg.MaxHeaderBytes)
			if err != nil || n == 0 && c.eof {
				// Malformed heads get their answer from the goroutine path.
				l.handoff(c, nil, false)
				return
			}
			if n == 0 {
				return
			}
			c.ri = reqInfo{}
			c.start = now
			if code, _ := cc.parseRequest(&c.ri); code != 0 || !loopable(&c.ri, s.cfg.MaxBodyBytes) {
				l.handoff(c, nil, false)
				return
			}
			c.headN = n
			c.state = cBody
		case cBody:
			need := c.headN
			if c.ri.hasLength {
				need += int(c.ri.length)
			}
			if len(c.in) < need && c.full && !l.readClient(c, now) {
				return
			}
			if len(c.in) < need {
				if c.eof {
					l.closeClient(c)
				}
				return
			}
			cc.body = append(cc.body[:0], c.in[c.headN:need]...)
			c.in = c.in[:copy(c.in, c.in[need:])]
			if c.ri.close || c.ri.http10 {
				cc.closed = true
			}
			c.state = cWaiting
			l.send1(c, now)
		}
	}
}

// loopable: requests the loop forwards itself.
func loopable(ri *reqInfo, maxBody int64) bool {
	return !ri.chunked && !ri.expect && !ri.upgrade && (!ri.hasLength || ri.length <= min(loopMaxBody, maxBody)) &&
		!bytes.HasPrefix(ri.target, []byte(ReservedPrefix))
}

// send1 makes the first attempt of c's request: on the member forward
// would try first, when the loop can reach it; else the goroutine path
// forwards it from the start.
func (l *evloop) send1(c *lclient, now time.Time) {
	s := l.s
	cc := c.cc
	ri := &c.ri
	t := s.tab.Load()
	if t == nil || len(t.members) == 0 {
		l.handoff(c, nil, true)
		return
	}
	cc.orderFor(ri, t)
	m := t.members[cc.order[0]]
	sa := m.sockaddr()
	if m.tls || sa == nil {
		l.handoff(c, nil, true)
		return
	}
	if ri.hasSession && ri.session.Primary != "" && m.route != ri.session.Primary {
		s.failover(0) // primary_down (or unknown route)
	}
	s.met.inflight.Inc()
	ri.rid = s.rid.Add(1)
	cc.retry503 = ri.resendable
	cc.track = ri.resendable && cc.cands[cc.order[0]].Live
	if cc.track && !m.live.Load() {
		l.handoff(c, &attempt{m: m, res: failAbandoned}, true)
		return
	}
	u, err := l.upstream(m, sa, now)
	if err != nil {
		s.markDown(m, "connect", err)
		l.handoff(c, &attempt{m: m, res: failConnect}, true)
		return
	}
	m.outstanding.Add(1)
	u.state, u.cl, u.track, u.sentAt, u.since, u.headN = uBusy, c, cc.track, now, now, 0
	c.up = u
	l.uw.Reset(u)
	cc.writeRequest(ri, l.uw)
	_ = l.uw.Flush()
	if !u.dialing {
		l.flushUp(u)
	}
}

// upstream returns an idle connection to m or starts a new one.
func (l *evloop) upstream(m *member, sa unix.Sockaddr, now time.Time) (*lup, error) {
	pool := l.idle[m]
	for len(pool) > 0 {
		u := pool[len(pool)-1]
		pool[len(pool)-1] = nil
		pool = pool[:len(pool)-1]
		if !u.dead {
			l.idle[m] = pool
			u.reused = true
			return u, nil
		}
	}
	l.idle[m] = pool
	fd, err := unix.Socket(sockFamily(sa), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		return nil, err
	}
	u := &lup{fd: fd, m: m, in: make([]byte, 0, 4096), dialing: err == unix.EINPROGRESS, since: now}
	if u.gen, err = l.register(fd); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	l.conns[int32(fd)] = u
	return u, nil
}

func sockFamily(sa unix.Sockaddr) int {
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// sockaddr is the member's address for the loop's own dials: nil when its
// listen address names a host (the goroutine path resolves names).
func (m *member) sockaddr() unix.Sockaddr {
	m.saOnce.Do(func() {
		ap, err := netip.ParseAddrPort(m.listen)
		if err != nil {
			return
		}
		if ip := ap.Addr().Unmap(); ip.Is4() {
			m.sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
		} else {
			m.sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
		}
	})
	sa, _ := m.sa.(unix.Sockaddr)
	return sa
}

// flushUp writes u's pending request bytes.
func (l *evloop) flushUp(u *lup) {
	if err := writeAll(u.fd, &u.out); err != nil {
		l.upFailed(u, err, false)
	}
}

func (l *evloop) upEvent(u *lup, ev uint32, now time.Time) {
	s := l.s
	switch u.state {
	case uIdle:
		// An idle connection that turns readable was closed by the member
		// (or sent what nobody asked for): not reusable.
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.closeUp(u)
		}
		return
	case uGone:
		return
	}
	if u.dialing {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		soErr, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soErr != 0 {
			err = unix.Errno(soErr)
		}
		if err != nil {
			l.connectFailed(u, err)
			return
		}
		u.dialing = false
		l.flushUp(u)
		return
	}
	if ev&unix.EPOLLOUT != 0 && len(u.out) > 0 {
		l.flushUp(u)
		if u.fd < 0 || u.state != uBusy {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	n := len(u.in)
	eof, full, err := l.readAll(u.fd, &u.in, s.cfg.MaxHeaderBytes+loopMaxResp+4096)
	if len(u.in) > n {
		u.since = now
	}
	switch {
	case err != nil:
	case eof:
		err = errEOF
	case full:
		err = errFull
	}
	l.response(u, err, now)
}

var (
	errEOF  = errors.New("connection closed by the member")
	errFull = errors.New("response larger than the event loop relays")
)

// connectFailed: the member refused or could not be reached.
func (l *evloop) connectFailed(u *lup, err error) {
	c, m := u.cl, u.m
	l.endExchange(u, false)
	l.s.markDown(m, "connect", err)
	if c != nil {
		l.handoff(c, &attempt{m: m, res: failConnect}, true)
	}
}

// upFailed: u broke while its request was written or its answer awaited.
func (l *evloop) upFailed(u *lup, err error, headless bool) {
	c, m := u.cl, u.m
	res := failSent
	switch {
	case u.reused && len(u.in) == 0 && (errors.Is(err, errEOF) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)):
		res = failStale // the member closed it while idle: try again fresh
	case !headless:
		l.s.markDown(m, "read", err)
	}
	l.endExchange(u, false)
	if c != nil {
		l.handoff(c, &attempt{m: m, res: res}, true)
	}
}

// response parses and relays what u has of the answer to its request;
// rerr is the read's error, if any.
func (l *evloop) response(u *lup, rerr error, now time.Time) {
	c := u.cl
	if c == nil {
		// The client went away: finish nothing, keep nothing.
		l.endExchange(u, false)
		return
	}
	s := l.s
	cc := c.cc
	if u.headN > 0 {
		return // handed over already
	}
	for {
		n, err := headBytes(u.in, &cc.resp, s.cfg.MaxHeaderBytes)
		if err != nil {
			l.upFailed(u, err, true) // the member answered garbage
			return
		}
		if n == 0 {
			if rerr != nil {
				l.upFailed(u, rerr, len(u.in) > 0)
			}
			return
		}
		status := parseStatus(cc.resp.first)
		if status < 100 || status > 999 {
			l.upFailed(u, errBadHead, true)
			return
		}
		if status < 200 && status != http.StatusSwitchingProtocols {
			u.in = u.in[:copy(u.in, u.in[n:])] // interim answers: handled already
			continue
		}
		u.m.headRead(now, u.sentAt, status)
		u.headN, u.status = n, status
		f, err := cc.respFraming(&c.ri, status)
		if err != nil || f.upgraded || f.untilClose || f.decodeChunks || f.length > loopMaxResp ||
			status == http.StatusServiceUnavailable && cc.retry503 {
			l.handoffResponse(u)
			return
		}
		u.f = f
		break
	}
	// A body not all here with its head is streamed, or large: the
	// goroutine path relays it as it comes.
	body := 0
	switch {
	case u.f.bodyless:
	case u.f.chunked:
		k, err := chunkedLen(u.in[u.headN:])
		if err != nil || k == 0 {
			l.handoffResponse(u)
			return
		}
		body = k
	default:
		body = int(u.f.length)
		if len(u.in)-u.headN < body {
			l.handoffResponse(u)
			return
		}
	}
	cc.writeResponseHead(cc.bw, &u.f)
	_, _ = cc.bw.Write(u.in[u.headN : u.headN+body])
	_ = cc.bw.Flush()
	reuse := !u.f.upClose && len(u.in) == u.headN+body && rerr == nil
	status, name := u.status, u.m.name
	l.endExchange(u, reuse)
	s.met.inflight.Dec()
	l.answered.Inc()
	cc.accessLog(&c.ri, name, status, 1, c.start)
	c.state = cIdle
	if err := writeAll(c.fd, &c.out); err != nil {
		l.closeClient(c)
		return
	}
	c.since = now
	l.advance(c, now)
}

// endExchange ends u's exchange: u goes back to the loop's pool when
// reuse, else it is closed.
func (l *evloop) endExchange(u *lup, reuse bool) {
	if u.state == uBusy {
		u.m.outstanding.Add(-1)
	}
	if c := u.cl; c != nil {
		c.up = nil
	}
	u.cl = nil
	u.in = u.in[:0]
	u.out = u.out[:0]
	if !reuse || !u.m.live.Load() {
		u.state = uGone
		l.closeUp(u)
		return
	}
	u.state, u.since, u.headN = uIdle, time.Now(), 0
	l.idle[u.m] = append(l.idle[u.m], u)
}

// closeUp closes u (ending its exchange, if any).
func (l *evloop) closeUp(u *lup) {
	if u.fd < 0 {
		return
	}
	if u.state == uBusy {
		l.endExchange(u, false)
		return
	}
	u.state = uGone
	delete(l.conns, int32(u.fd))
	_ = unix.Close(u.fd)
	u.fd = -1
	u.dead = true
}

// memberDown abandons the resendable requests waiting on m (they go on to
// the next member at once, as in Server.abandonWaiting) and closes the
// loop's idle connections to it.
func (l *evloop) memberDown(m *member) {
	for _, u := range l.idle[m] {
		l.closeUp(u)
	}
	delete(l.idle, m)
	for _, x := range l.conns {
		u, ok := x.(*lup)
		if !ok || u.m != m || u.state != uBusy || !u.track || u.headN > 0 {
			continue
		}
		c := u.cl
		l.closeUp(u)
		if c != nil {
			l.handoff(c, &attempt{m: m, res: failAbandoned}, true)
		}
	}
}

// sweep applies the timeouts and the drain.
func (l *evloop) sweep(now time.Time) {
	s := l.s
	cfg := &s.cfg
	draining := s.draining.Load()
	for _, x := range l.conns {
		switch x := x.(type) {
		case *lclient:
			switch {
			case x.state == cWaiting:
			case draining && x.state == cIdle && len(x.out) == 0:
				l.closeClient(x)
			case now.Sub(x.since) > cfg.IdleTimeout:
				l.closeClient(x)
			}
		case *lup:
			switch {
			case x.state == uIdle:
				if now.Sub(x.since) > cfg.IdleTimeout || x.m.gone.Load() {
					l.closeUp(x)
				}
			case x.state != uBusy:
			case x.dialing:
				if now.Sub(x.sentAt) > cfg.ConnectTimeout {
					l.connectFailed(x, fmt.Errorf("dial %s: %w", x.m.listen, os.ErrDeadlineExceeded))
				}
			case x.headN == 0 && now.Sub(x.sentAt) > cfg.ResponseHeaderTimeout:
				c, m := x.cl, x.m
				l.endExchange(x, false)
				if c != nil {
					l.handoff(c, &attempt{m: m, res: failTimeout}, true)
				}
				s.markDown(m, "timeout", fmt.Errorf("no response head in %s", cfg.ResponseHeaderTimeout))
			}
		}
	}
}

// handoff gives c to the goroutine path. With resume, c's request (head
// and body read) is forwarded there, after pre if set; without, the
// goroutine path reads the request again from c's unconsumed bytes.
func (l *evloop) handoff(c *lclient, pre *attempt, resume bool) {
	if u := c.up; u != nil {
		l.endExchange(u, false)
	}
	nc, err := l.release(c.fd)
	c.fd = -1
	cc := c.cc
	if err != nil {
		l.s.log.Warn("event loop: handing a connection over failed", "err", err)
		if pre != nil {
			l.s.met.inflight.Dec()
		}
		l.releaseCC(c)
		l.s.connWG.Done()
		return
	}
	switch {
	case pre != nil && pre.res == headRead:
		l.handResponse.Inc()
	case pre != nil:
		l.handRetry.Inc()
	default:
		l.handRequest.Inc()
	}
	out := c.out // an answer not all written yet: it goes first
	cc.attach(nc, c.in)
	ri, start := c.ri, c.start
	var run func() bool
	if resume {
		run = func() bool {
			cc.forward(&ri, start, pre)
			return true
		}
	}
	go func() {
		defer l.s.connWG.Done()
		if len(out) > 0 {
			if _, err := nc.Write(out); err != nil {
				cc.closed = true
			}
		}
		cc.run(run)
	}()
}

// handoffResponse gives u's exchange to the goroutine path, its response
// head read: the relay (streaming, tunnels, retried 503s) goes on there.
func (l *evloop) handoffResponse(u *lup) {
	c, m, status := u.cl, u.m, u.status
	rest := append([]byte(nil), u.in[u.headN:]...)
	m.outstanding.Add(-1)
	u.state = uGone // the goroutine path counts from here
	c.up, u.cl = nil, nil
	fd := u.fd
	u.fd = -1
	u.dead = true
	delete(l.conns, int32(fd))
	nc, err := l.release(fd)
	if err != nil {
		l.s.log.Warn("event loop: handing a connection over failed", "err", err)
		l.closeClient(c)
		return
	}
	pc := &serve.PrefixConn{Conn: nc, Prefix: rest}
	up := &upConn{m: m, c: pc, raw: nc, br: bufio.NewReaderSize(pc, upstreamBufSize), bw: bufio.NewWriterSize(nc, upstreamBufSize)}
	up.headerDeadline(time.Now(), l.s.cfg.ResponseHeaderTimeout)
	l.handoff(c, &attempt{m: m, u: up, res: headRead, status: status}, true)
}

// release takes fd out of the loop and returns it as a net.Conn.
func (l *evloop) release(fd int) (net.Conn, error) {
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
	delete(l.conns, int32(fd))
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f) // a duplicate, on Go's poller
	_ = f.Close()
	return nc, err
}

// pollNow is epoll_wait(2) with a timeout of 0, which never blocks: under
// load it mostly finds events, and the loop's thread runs on without a
// blocking system call, after which the runtime's monitor would hand its
// P to another thread and wake that one (several per cent in profiles).
func pollNow(ep int, evs []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(unsafe.SliceData(evs))), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawRead and rawWrite are read(2) and write(2) on non-blocking sockets,
// which never block: without the scheduler's bookkeeping around a system
// call that may (a few per cent of the loop's time in profiles).
func rawRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
