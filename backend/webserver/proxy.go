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
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/backend/route"
	"tandem/backend/serve"
)

// clientConn is the state of one client connection, pooled between
// connections so buffers are reused.
type clientConn struct {
	s        *Server
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	req      head
	resp     head
	body     []byte
	cands    []Candidate
	order    []int
	conn     [][]byte
	respConn [][]byte  // the response's Connection values
	pins     []*upConn // idle upstream connections kept by this client connection, at most one per member
	ip       []byte
	retry503 bool // this attempt may turn a member's 503 into a retry
	track    bool // this attempt may be resent if its member goes down while it waits
	// waiting is the upstream connection a resendable request waits on for
	// its answer; markDown takes it (and closes it) to resend the request
	// at once when the member goes down or silent meanwhile.
	waiting atomic.Pointer[upConn]
	dlSet   time.Time // when the client read deadline was last set
	idle    atomic.Bool
	closed  bool
}

var clientPool = sync.Pool{New: func() any {
	return &clientConn{
		br: bufio.NewReaderSize(nil, 8<<10),
		bw: bufio.NewWriterSize(nil, 16<<10),
	}
}}

// reqInfo is what the proxy needs to know about one request.
type reqInfo struct {
	method, target, host []byte
	http10, close        bool
	chunked, upgrade     bool
	expect               bool
	hasLength            bool
	length               int64
	resendable           bool   // idempotent, or naming a session (see parseRequest)
	rid                  uint64 // X-Tandem-Request-Id sequence, the same on every retry
	resent               bool   // an earlier attempt was sent and given up on: X-Tandem-Resent
	session              route.Value
	hasSession           bool
	upgradeVal           []byte
}

// idleDeadline (re)sets the client read deadline to IdleTimeout from now,
// at most once a second: a timer update per request showed in profiles,
// and a deadline up to a second early is as good.
func (cc *clientConn) idleDeadline(now time.Time) {
	if now.Sub(cc.dlSet) > time.Second {
		_ = cc.c.SetReadDeadline(now.Add(cc.s.cfg.IdleTimeout))
		cc.dlSet = now
	}
}

func (cc *clientConn) wakeIdle() {
	if cc.idle.Load() {
		_ = cc.c.SetReadDeadline(time.Now())
	}
}

func (s *Server) serveConn(c net.Conn) {
	cc := clientPool.Get().(*clientConn)
	cc.s = s
	cc.ip = cc.ip[:0]
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		cc.ip = append(cc.ip, host...)
	}
	cc.attach(c, nil)
	cc.run(nil)
}

// attach makes c (whose first bytes, already read elsewhere, are pre) the
// connection cc serves.
func (cc *clientConn) attach(c net.Conn, pre []byte) {
	cc.c, cc.closed = c, false
	cc.dlSet = time.Time{}
	if len(pre) > 0 {
		cc.br.Reset(&serve.PrefixConn{Conn: c, Prefix: pre})
	} else {
		cc.br.Reset(c)
	}
	cc.bw.Reset(c)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

// run serves cc's connection until it closes: first resume (the rest of a
// request the event loop began, if set), then one request after another.
func (cc *clientConn) run(resume func() bool) {
	s, c := cc.s, cc.c
	s.conns.Store(c, cc)
	defer func() {
		s.conns.Delete(c)
		for i, p := range cc.pins {
			p.m.put(p, s.cfg.MaxIdlePerMember)
			cc.pins[i] = nil
		}
		cc.pins = cc.pins[:0]
		_ = c.Close()
		cc.br.Reset(nil)
		cc.bw.Reset(nil)
		cc.s, cc.c = nil, nil
		if cap(cc.body) > 64<<10 {
			cc.body = nil
		}
		clientPool.Put(cc)
	}()
	if resume != nil && (!resume() || !cc.flush() || cc.closed) {
		return
	}
	for !cc.closed {
		if s.draining.Load() {
			return
		}
		cc.idle.Store(true)
		cc.idleDeadline(time.Now())
		if s.draining.Load() {
			return
		}
		if _, err := cc.br.Peek(1); err != nil {
			return
		}
		cc.idle.Store(false)
		if !cc.serveOne() {
			return
		}
	}
}

// serveOne reads and answers one request; false closes the connection.
func (cc *clientConn) serveOne() bool {
	s := cc.s
	start := time.Now()
	any, err := readHead(cc.br, &cc.req, s.cfg.MaxHeaderBytes)
	if err != nil {
		if !any {
			return false
		}
		switch {
		case errors.Is(err, errHeadTooLarge):
			cc.errorPage(http.StatusRequestHeaderFieldsTooLarge, "The request head is too large.")
		case errors.Is(err, errBadHead):
			cc.errorPage(http.StatusBadRequest, "Malformed request.")
		}
		cc.flush()
		return false
	}
	var ri reqInfo
	if code, msg := cc.parseRequest(&ri); code != 0 {
		cc.closed = true
		cc.errorPage(code, msg)
		cc.flush()
		return false
	}
	if ri.close || ri.http10 {
		cc.closed = true
	}
	if bytes.HasPrefix(ri.target, []byte(ReservedPrefix)) {
		if !cc.discardBody(&ri) {
			return false
		}
		cc.local(&ri)
		return cc.flush()
	}
	if !cc.readBody(&ri) {
		return false
	}
	cc.forward(&ri, start, nil)
	return cc.flush() && !cc.closed
}

func (cc *clientConn) flush() bool {
	if err := cc.bw.Flush(); err != nil {
		cc.closed = true
		return false
	}
	return true
}

// parseRequest validates the request line and framing headers. It returns
// a status and message for a request that must be refused.
func (cc *clientConn) parseRequest(ri *reqInfo) (int, string) {
	line := cc.req.first
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return http.StatusBadRequest, "Malformed request line."
	}
	rest := line[sp1+1:]
	sp2 := bytes.LastIndexByte(rest, ' ')
	if sp2 <= 0 {
		return http.StatusBadRequest, "Malformed request line."
	}
	ri.method, ri.target = line[:sp1], rest[:sp2]
	proto := rest[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		ri.http10 = true
	default:
		return http.StatusHTTPVersionNotSupported, "Only HTTP/1.x is supported."
	}
	if !isToken(ri.method) || bytes.IndexByte(ri.target, ' ') >= 0 || len(ri.target) == 0 {
		return http.StatusBadRequest, "Malformed request line."
	}
	for _, c := range ri.target {
		if c < 0x21 || c == 0x7f {
			return http.StatusBadRequest, "Malformed request target."
		}
	}
	// Absolute form (proxy style): keep only the path and query.
	if ri.target[0] != '/' {
		if bytes.Equal(ri.method, []byte("OPTIONS")) && string(ri.target) == "*" {
			// server-wide OPTIONS: forwarded as is
		} else if i := bytes.Index(ri.target, []byte("://")); i > 0 {
			t := ri.target[i+3:]
			if j := bytes.IndexAny(t, "/?"); j >= 0 {
				if ri.host == nil {
					ri.host = t[:j]
				}
				ri.target = t[j:]
			} else {
				ri.host, ri.target = t, []byte("/")
			}
		} else {
			return http.StatusBadRequest, "Malformed request target."
		}
	}
	switch string(ri.method) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		ri.resendable = true
	}
	cc.conn = cc.conn[:0]
	names := cc.s.tab.Load()
	hosts := 0
	for i := range cc.req.hdrs {
		h := &cc.req.hdrs[i]
		switch classify(h.name) {
		case hConnection:
			cc.conn = append(cc.conn, h.value)
			if hasToken(h.value, "close") {
				ri.close = true
			}
			if ri.http10 && hasToken(h.value, "keep-alive") {
				ri.http10 = true // HTTP/1.0 connections are closed after one exchange
			}
		case hContentLength:
			n, err := parseContentLength(h.value)
			if err != nil || (ri.hasLength && n != ri.length) {
				return http.StatusBadRequest, "Invalid Content-Length."
			}
			ri.hasLength, ri.length = true, n
		case hTransferEncoding:
			if ri.http10 {
				return http.StatusBadRequest, "Transfer-Encoding in HTTP/1.0."
			}
			if !bytes.EqualFold(h.value, []byte("chunked")) || ri.chunked {
				return http.StatusNotImplemented, "Unsupported Transfer-Encoding."
			}
			ri.chunked = true
		case hUpgrade:
			ri.upgradeVal = h.value
		case hHost:
			hosts++
			if hosts > 1 {
				return http.StatusBadRequest, "More than one Host header."
			}
			ri.host = h.value
		case hExpect:
			if bytes.EqualFold(h.value, []byte("100-continue")) {
				ri.expect = true
			} else {
				return http.StatusExpectationFailed, "Unsupported expectation."
			}
		case hCookie:
			if !ri.hasSession && names != nil {
				ri.session, ri.hasSession = SessionFromCookie(h.value, names.cookieNames)
			}
		}
	}
	if ri.chunked && ri.hasLength {
		return http.StatusBadRequest, "Both Content-Length and Transfer-Encoding."
	}
	if ri.upgradeVal != nil {
		for _, v := range cc.conn {
			if hasToken(v, "upgrade") {
				ri.upgrade = true
			}
		}
	}
	if !ri.hasSession {
		ri.session, ri.hasSession = SessionFromTarget(ri.target)
	}
	if ri.hasSession && !ri.upgrade {
		// A request that names a session is resent with the same
		// X-Tandem-Request-Id, whatever its method: the session's owner
		// answers a resent write from the reply stored with it (or 409
		// when that reply was too large to keep), never applies it twice.
		ri.resendable = true
	}
	return 0, ""
}

// readBody reads the whole request body into cc.body (bounded), so a
// request can be retried on another member.
func (cc *clientConn) readBody(ri *reqInfo) bool {
	cc.body = cc.body[:0]
	limit := cc.s.cfg.MaxBodyBytes
	if ri.hasLength && ri.length > limit {
		// Read a moderate excess first, so the client sees the answer
		// instead of a reset while it is still sending.
		if ri.length-limit <= 256<<10 && !ri.expect {
			_ = cc.c.SetReadDeadline(time.Now().Add(cc.s.cfg.IdleTimeout))
			_, _ = io.CopyN(io.Discard, cc.br, ri.length)
		}
		cc.closed = true
		cc.errorPage(http.StatusRequestEntityTooLarge, "The request body is too large.")
		cc.flush()
		return false
	}
	if (ri.hasLength && ri.length > 0 || ri.chunked) && ri.expect {
		if _, err := cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil || cc.bw.Flush() != nil {
			return false
		}
	}
	cc.idleDeadline(time.Now())
	switch {
	case ri.chunked:
		r := httputil.NewChunkedReader(cc.br)
		buf := bytes.NewBuffer(cc.body)
		n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
		cc.body = buf.Bytes()
		if err != nil {
			cc.closed = true
			cc.errorPage(http.StatusBadRequest, "Malformed chunked body.")
			cc.flush()
			return false
		}
		if n > limit {
			cc.closed = true
			cc.errorPage(http.StatusRequestEntityTooLarge, "The request body is too large.")
			cc.flush()
			return false
		}
		// Trailers are dropped; read up to the final empty line.
		for {
			line, err := readLine(cc.br)
			if err != nil {
				return false
			}
			if len(trimEOL(line)) == 0 {
				break
			}
		}
	case ri.hasLength && ri.length > 0:
		if int64(cap(cc.body)) < ri.length {
			cc.body = make([]byte, ri.length)
		}
		cc.body = cc.body[:ri.length]
		if _, err := io.ReadFull(cc.br, cc.body); err != nil {
			return false
		}
	}
	return true
}

func (cc *clientConn) discardBody(ri *reqInfo) bool {
	if ri.chunked || ri.hasLength && ri.length > 0 {
		cc.closed = true // not worth reading: close after answering
	}
	return true
}

// attempt outcome
const (
	okDone          = iota // response forwarded
	failConnect            // nothing sent: try the next candidate
	failStale              // reused connection closed by the member before answering
	failSent               // sent, no response: retry only resendable requests
	failTimeout            // sent, no response head in time
	failAfter              // response started: the client connection is closed
	failClient             // the client went away
	failUnavailable        // 503 from the member for a resendable request: try again
	failAbandoned          // the member went down while a resendable request waited: try the next
)

// unavailableBackoff are the pauses before a resendable request answered
// 503 by a member is tried again (a managed server answers 503 while a
// session changes owner: nothing was applied); after the last one, the
// last pause repeats while the request is younger than the cluster's
// heartbeat timeout + 1 s.
var unavailableBackoff = [...]time.Duration{10 * time.Millisecond, 40 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond}

// attempt is the outcome of a first attempt the event loop made before it
// handed the request over (see forward): res as from try, on member m,
// with u the upstream connection whose response head was read when res is
// headRead.
type attempt struct {
	m      *member
	u      *upConn
	res    int
	status int
}

// headRead: the response head was read (into cc.resp) and counted; the
// rest of the exchange is afterHead's.
const headRead = -1

// forward routes and forwards one request with retries; pre, if set, is
// the outcome of a first attempt already made (ri.rid then is set).
func (cc *clientConn) forward(ri *reqInfo, start time.Time, pre *attempt) {
	s := cc.s
	if pre == nil {
		s.met.inflight.Inc()
		ri.rid = s.rid.Add(1)
	}
	defer s.met.inflight.Dec()
	var f fwd
	resumed := pre != nil
	var tried *member // the member of pre, not tried again in round 0
	for round := 0; ; round++ {
		t := s.tab.Load()
		if t == nil || len(t.members) == 0 {
			cc.errorPage(http.StatusServiceUnavailable, "No application server is configured.")
			s.noneCounter(http.StatusServiceUnavailable).Inc()
			cc.accessLog(ri, "none", http.StatusServiceUnavailable, f.attempts, start)
			return
		}
		// A member answers 503 while a session changes owner or while it
		// re-validates its sessions after a pause: up to the cluster's
		// heartbeat timeout and a bit (then the 503 goes to the client).
		cc.retry503 = ri.resendable && (round < len(unavailableBackoff) || time.Since(start) < t.suspectAfter+time.Second)
		f.unavailable, f.abandoned = false, false
		if pre != nil {
			p := pre
			pre, tried = nil, p.m
			f.attempts++
			res, status := p.res, p.status
			switch res {
			case headRead:
				res, status = cc.afterHead(ri, p.u, status)
			case failStale:
				res, status = cc.retryFresh(ri, p.m)
			}
			if cc.settle(ri, p.m, res, status, start, &f) {
				return
			}
		}
		if !f.stop {
			cc.orderFor(ri, t)
			if round == 0 && !resumed && ri.hasSession && ri.session.Primary != "" {
				if first := t.members[cc.order[0]]; first.route != ri.session.Primary {
					s.failover(0) // primary_down (or unknown route)
				}
			}
		}
		for k := 0; k < len(cc.order) && !f.stop; k++ {
			m := t.members[cc.order[k]]
			if m == tried && round == 0 {
				continue
			}
			f.attempts++
			// A member tried as a last resort (believed down) is waited for;
			// one believed live is left as soon as it is found down.
			cc.track = ri.resendable && cc.cands[cc.order[k]].Live
			res, status := cc.try(ri, m)
			if res == failStale {
				res, status = cc.retryFresh(ri, m)
			}
			if cc.settle(ri, m, res, status, start, &f) {
				return
			}
		}
		f.stop = false
		if f.abandoned && round < len(unavailableBackoff) {
			// Every member believed live went down under this request:
			// try again, now with them as last resorts.
			continue
		}
		if !f.unavailable {
			break
		}
		time.Sleep(unavailableBackoff[min(round, len(unavailableBackoff)-1)])
	}
	code, msg := http.StatusServiceUnavailable, "No application server could be reached. Please try again in a moment."
	if f.sent {
		code, msg = http.StatusBadGateway, "The application server did not answer. Please try again."
	}
	if !ri.resendable && f.sent {
		cc.closed = true
	}
	s.noneCounter(code).Inc()
	s.failed.Add(1)
	cc.errorPage(code, msg)
	name := "none"
	if f.last != nil {
		name = f.last.name
	}
	cc.accessLog(ri, name, code, f.attempts, start)
}

// fwd is forward's state across attempts.
type fwd struct {
	attempts    int
	sent        bool // an attempt was sent and not answered
	last        *member
	unavailable bool // this round: a member answered 503 (try again after a pause)
	abandoned   bool // this round: a member went down under the request
	stop        bool // this round: no further candidate
}

// orderFor orders the current table's members for ri into cc.order (and
// their state into cc.cands).
func (cc *clientConn) orderFor(ri *reqInfo, t *table) {
	cc.cands = cc.cands[:0]
	for _, m := range t.members {
		cc.cands = append(cc.cands, Candidate{Route: m.route, Live: m.live.Load(), Outstanding: m.outstanding.Load()})
	}
	tie := uint32(0)
	if !ri.hasSession || ri.session.Primary == "" {
		tie = cc.s.tie.Add(1)
	}
	cc.order = Order(cc.cands, ri.session, ri.hasSession, tie, cc.order[:0])
}

// retryFresh tries m again on a fresh connection after its pooled one
// turned out dead (the member may be fine).
func (cc *clientConn) retryFresh(ri *reqInfo, m *member) (int, int) {
	res, status := cc.tryFresh(ri, m)
	if res == failStale {
		res = failSent
	}
	return res, status
}

// settle records the outcome of one attempt on m; true when the request
// is answered (or the client gone) and forward is done.
func (cc *clientConn) settle(ri *reqInfo, m *member, res, status int, start time.Time, f *fwd) bool {
	s := cc.s
	f.last = m
	switch res {
	case failAbandoned, failSent, failTimeout:
		// That attempt may still be applied later (it waits in a
		// member cut off the network, whose close of it was lost):
		// the next ones say so, and the session keeps the id of
		// the one applied for long (see session.HeaderResent).
		ri.resent = true
	}
	switch res {
	case okDone:
		cc.accessLog(ri, m.name, status, f.attempts, start)
		return true
	case failAfter, failClient:
		cc.closed = true
		cc.accessLog(ri, m.name, status, f.attempts, start)
		return true
	case failUnavailable:
		s.failover(4)
		f.unavailable, f.stop = true, true
	case failAbandoned:
		s.failover(5)
		f.abandoned = true
	case failConnect:
		s.failover(1)
	case failSent:
		f.sent = true
		s.failover(2)
		f.stop = !ri.resendable
	case failTimeout:
		f.sent = true
		s.failover(3)
		f.stop = !ri.resendable
	}
	return false
}

// failover counts a request sent to another member than its first choice,
// by reason (an index into s.fail).
func (s *Server) failover(reason int) {
	s.fail[reason].Inc()
	s.retried.Add(1)
}

func (s *Server) noneCounter(code int) prometheus.Counter {
	if c, ok := s.none.Load(code); ok {
		return c.(prometheus.Counter)
	}
	c := s.met.requests.WithLabelValues("none", strconv.Itoa(code))
	s.none.Store(code, c)
	return c
}

// maxPins bounds the upstream connections one client connection keeps.
const maxPins = 8

// try sends the request to m over a pinned or a pooled connection.
func (cc *clientConn) try(ri *reqInfo, m *member) (int, int) {
	if cc.track && !m.live.Load() {
		return failAbandoned, 0 // went down since the order was made
	}
	var u *upConn
	for i, p := range cc.pins {
		if p.m != m {
			continue
		}
		last := len(cc.pins) - 1
		cc.pins[i], cc.pins[last] = cc.pins[last], nil
		cc.pins = cc.pins[:last]
		if m.live.Load() && (time.Since(p.idleAt) <= staleCheckAfter || alive(p)) {
			u = p
			u.reused = true
		} else {
			p.close()
		}
		break
	}
	if u == nil {
		var err error
		u, err = m.get(context.Background(), cc.s)
		if err != nil {
			cc.s.markDown(m, "connect", err)
			return failConnect, 0
		}
	}
	return cc.exchange(ri, u)
}

func (cc *clientConn) tryFresh(ri *reqInfo, m *member) (int, int) {
	u, err := m.dial(context.Background(), cc.s)
	if err != nil {
		cc.s.markDown(m, "connect", err)
		return failConnect, 0
	}
	return cc.exchange(ri, u)
}

// exchange writes the request on u and relays the response to the client.
func (cc *clientConn) exchange(ri *reqInfo, u *upConn) (int, int) {
	s := cc.s
	m := u.m
	m.outstanding.Add(1)
	defer m.outstanding.Add(-1)
	sentAt := time.Now()
	if cc.track {
		cc.waiting.Store(u)
		if !m.live.Load() { // markDown ran before it could see u
			cc.waiting.Store(nil)
			u.close()
			return failAbandoned, 0
		}
	}
	u.headerDeadline(sentAt, s.cfg.ResponseHeaderTimeout)
	cc.writeRequest(ri, u.bw)
	if err := u.bw.Flush(); err != nil {
		u.close()
		if cc.abandoned() {
			return failAbandoned, 0
		}
		if u.reused {
			return failStale, 0
		}
		s.markDown(m, "write", err)
		return failSent, 0
	}
	var (
		status int
		any    bool
		err    error
	)
	for {
		any, err = readHead(u.br, &cc.resp, s.cfg.MaxHeaderBytes)
		if err != nil {
			break
		}
		status = parseStatus(cc.resp.first)
		if status < 100 || status > 999 {
			err = errBadHead
			break
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			continue // 100 Continue and other interim answers: already handled
		}
		break
	}
	if cc.abandoned() {
		u.close()
		return failAbandoned, 0
	}
	if err != nil {
		u.close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.markDown(m, "timeout", err)
			return failTimeout, 0
		}
		if any {
			// A broken response head: the member answered garbage.
			return failSent, 0
		}
		if u.reused && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return failStale, 0
		}
		s.markDown(m, "read", err)
		return failSent, 0
	}
	m.headRead(time.Now(), sentAt, status)
	return cc.afterHead(ri, u, status)
}

// headRead counts a response head from m (read at now, its request sent
// at sentAt).
func (m *member) headRead(now, sentAt time.Time, status int) {
	m.answered(now)
	m.latency.Observe(now.Sub(sentAt).Seconds())
	m.counter(status).Inc()
}

// afterHead ends an exchange whose response head (status) is in cc.resp:
// a 503 that may be retried is dropped, any other response relayed.
func (cc *clientConn) afterHead(ri *reqInfo, u *upConn, status int) (int, int) {
	if status == http.StatusServiceUnavailable && cc.retry503 && cc.drainSmall(ri, u) {
		return failUnavailable, status
	}
	return cc.relayResponse(ri, u, status), status
}

// abandoned ends the wait of a tracked attempt and reports whether
// markDown took it first: the member was found down (or silent) while the
// request waited, so its connection is closed and the request goes on to
// the next member, whatever that connection delivered meanwhile.
func (cc *clientConn) abandoned() bool {
	return cc.track && cc.waiting.Swap(nil) == nil
}

// drainSmall reads and drops a small Content-Length body of a response
// that will not be relayed, recycling u; false (u untouched) when the
// body is not small or not length-framed, so the response is relayed.
func (cc *clientConn) drainSmall(ri *reqInfo, u *upConn) bool {
	var length int64 = -1
	for i := range cc.resp.hdrs {
		switch classify(cc.resp.hdrs[i].name) {
		case hContentLength:
			n, err := parseContentLength(cc.resp.hdrs[i].value)
			if err != nil {
				return false
			}
			length = n
		case hTransferEncoding:
			return false
		}
	}
	if string(ri.method) == "HEAD" {
		length = 0
	}
	if length < 0 || length > 64<<10 {
		return false
	}
	if _, err := u.br.Discard(int(length)); err != nil {
		u.close()
		return true
	}
	cc.recycle(u, false)
	return true
}

// writeRequest writes the request head (hop-by-hop headers removed,
// X-Forwarded-* set) and the buffered body.
func (cc *clientConn) writeRequest(ri *reqInfo, w *bufio.Writer) {
	w.Write(ri.method)
	w.WriteByte(' ')
	w.Write(ri.target)
	w.WriteString(" HTTP/1.1\r\n")
	var xff []byte
	hasHost := false
	for i := range cc.req.hdrs {
		h := &cc.req.hdrs[i]
		switch classify(h.name) {
		case hOther, hCookie:
			if len(cc.conn) > 0 && listedIn(h.name, cc.conn) {
				continue
			}
		case hHost:
			hasHost = true
		case hXFF:
			if xff != nil {
				xff = append(xff, ", "...)
			}
			xff = append(xff, h.value...)
			continue
		default:
			continue
		}
		w.Write(h.name)
		w.WriteString(": ")
		w.Write(h.value)
		w.WriteString("\r\n")
	}
	if !hasHost && ri.host != nil {
		w.WriteString("Host: ")
		w.Write(ri.host)
		w.WriteString("\r\n")
	}
	w.WriteString("X-Forwarded-For: ")
	if xff != nil {
		w.Write(xff)
		w.WriteString(", ")
	}
	w.Write(cc.ip)
	w.WriteString("\r\nX-Forwarded-Proto: http\r\n")
	// The session owner keeps the reply under this id, so a retry on
	// another member after the first one applied the write (and died before
	// answering) is answered from the stored reply, not applied twice.
	w.WriteString("X-Tandem-Request-Id: ")
	w.Write(cc.s.ridPrefix[:])
	w.Write(strconv.AppendUint(w.AvailableBuffer(), ri.rid, 16))
	w.WriteString("\r\n")
	if ri.resent {
		w.WriteString("X-Tandem-Resent: 1\r\n")
	}
	if ri.host != nil {
		w.WriteString("X-Forwarded-Host: ")
		w.Write(ri.host)
		w.WriteString("\r\n")
	}
	if ri.upgrade {
		w.WriteString("Connection: Upgrade\r\nUpgrade: ")
		w.Write(ri.upgradeVal)
		w.WriteString("\r\n")
	}
	if ri.hasLength || ri.chunked {
		w.WriteString("Content-Length: ")
		var nb [20]byte
		w.Write(strconv.AppendInt(nb[:0], int64(len(cc.body)), 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(cc.body)
}

func parseStatus(line []byte) int {
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0
	}
	c := line[9:12]
	if c[0] < '1' || c[0] > '9' || c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' {
		return 0
	}
	if len(line) > 12 && line[12] != ' ' {
		return 0
	}
	return int(c[0]-'0')*100 + int(c[1]-'0')*10 + int(c[2]-'0')
}

// framing is how a response's body is delimited and relayed.
type framing struct {
	length       int64 // Content-Length, -1 if none
	chunked      bool
	upClose      bool // the member closes the connection after it
	bodyless     bool
	upgraded     bool // 101 to an upgrade request: a tunnel follows
	untilClose   bool // delimited by the member closing the connection
	decodeChunks bool // chunked, to an HTTP/1.0 client: decoded
}

// respFraming reads the framing of the response head in cc.resp (and
// collects its Connection values into cc.respConn); an error for an
// invalid Content-Length.
func (cc *clientConn) respFraming(ri *reqInfo, status int) (framing, error) {
	f := framing{length: -1}
	cc.respConn = cc.respConn[:0]
	for i := range cc.resp.hdrs {
		h := &cc.resp.hdrs[i]
		switch classify(h.name) {
		case hContentLength:
			n, err := parseContentLength(h.value)
			if err != nil {
				return f, err
			}
			f.length = n
		case hTransferEncoding:
			if hasToken(h.value, "chunked") {
				f.chunked = true
			}
		case hConnection:
			cc.respConn = append(cc.respConn, h.value)
			if hasToken(h.value, "close") {
				f.upClose = true
			}
		}
	}
	if f.chunked {
		f.length = -1
	}
	f.bodyless = ri.method[0] == 'H' && string(ri.method) == "HEAD" || status == 204 || status == 304 || status < 200
	f.upgraded = status == http.StatusSwitchingProtocols && ri.upgrade
	f.untilClose = !f.bodyless && !f.chunked && f.length < 0 && !f.upgraded
	f.decodeChunks = f.chunked && ri.http10 && !f.bodyless
	return f, nil
}

// writeResponseHead writes the head in cc.resp to w as the client gets it
// (hop-by-hop headers removed); it closes the client connection after a
// response delimited by the member's close or decoded from chunks.
func (cc *clientConn) writeResponseHead(w *bufio.Writer, f *framing) {
	if f.untilClose || f.decodeChunks {
		cc.closed = true
	}
	w.WriteString("HTTP/1.1")
	w.Write(cc.resp.first[8:])
	w.WriteString("\r\n")
	for i := range cc.resp.hdrs {
		h := &cc.resp.hdrs[i]
		switch classify(h.name) {
		case hOther, hCookie, hContentLength, hHost, hExpect, hXFF, hXFHost, hXFProto:
			if len(cc.respConn) > 0 && listedIn(h.name, cc.respConn) {
				continue
			}
			if f.chunked && classify(h.name) == hContentLength {
				continue
			}
		case hTransferEncoding:
			if f.decodeChunks || f.bodyless {
				continue
			}
			w.WriteString("Transfer-Encoding: chunked\r\n")
			continue
		case hUpgrade:
			if !f.upgraded {
				continue
			}
		default:
			continue
		}
		w.Write(h.name)
		w.WriteString(": ")
		w.Write(h.value)
		w.WriteString("\r\n")
	}
	switch {
	case f.upgraded:
		w.WriteString("Connection: Upgrade\r\n")
	case cc.closed:
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

// relayResponse writes the response head and body to the client and
// recycles u when the exchange leaves it reusable.
func (cc *clientConn) relayResponse(ri *reqInfo, u *upConn, status int) int {
	s := cc.s
	f, err := cc.respFraming(ri, status)
	if err != nil {
		u.close()
		cc.errorPage(http.StatusBadGateway, "The application server sent an invalid response.")
		return failSent
	}
	w := cc.bw
	cc.writeResponseHead(w, &f)
	upgraded, bodyless, decodeChunks, chunked, length, untilClose, upClose := f.upgraded, f.bodyless, f.decodeChunks, f.chunked, f.length, f.untilClose, f.upClose

	if upgraded {
		cc.tunnel(u)
		cc.closed = true
		return okDone
	}
	if bodyless {
		cc.recycle(u, upClose)
		return okDone
	}
	if decodeChunks {
		u.bodyDeadline(time.Now(), s.cfg.BodyTimeout)
	}
	err = nil
	switch {
	case decodeChunks:
		err = copyStream(w, bufio.NewReader(httputil.NewChunkedReader(u.br)), -1, nil, 0)
		u.close()
	case chunked:
		err = copyChunked(w, u.br, u, s.cfg.BodyTimeout)
	case length >= 0:
		err = copyStream(w, u.br, length, u, s.cfg.BodyTimeout)
	default:
		err = copyStream(w, u.br, -1, u, s.cfg.BodyTimeout)
		u.close()
	}
	if err != nil {
		u.close()
		cc.closed = true
		s.log.Debug("response body relay failed", "member", u.m.name, "err", err)
		return failAfter
	}
	if untilClose || decodeChunks {
		return okDone
	}
	cc.recycle(u, upClose)
	return okDone
}

// recycle pins a reusable upstream connection to this client connection
// (its member's pool takes it when the client connection already keeps
// maxPins).
func (cc *clientConn) recycle(u *upConn, upClose bool) {
	if upClose || u.br.Buffered() > 0 {
		u.close()
		return
	}
	u.idleAt = time.Now()
	if len(cc.pins) >= maxPins {
		u.m.put(u, cc.s.cfg.MaxIdlePerMember)
		return
	}
	cc.pins = append(cc.pins, u)
}

// copyStream copies n bytes (n < 0: until EOF) from src to dst, flushing
// dst whenever src has nothing buffered, so streamed responses reach the
// client as they are produced. Before each wait on src, u's read deadline
// (if u is set) is moved to silence from now.
func copyStream(dst *bufio.Writer, src *bufio.Reader, n int64, u *upConn, silence time.Duration) error {
	for n != 0 {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
			if u != nil {
				u.bodyDeadline(time.Now(), silence)
			}
			if _, err := src.Peek(1); err != nil {
				if n < 0 && err == io.EOF {
					return nil
				}
				return err
			}
		}
		k := int64(src.Buffered())
		if n >= 0 && k > n {
			k = n
		}
		b, _ := src.Peek(int(k))
		if _, err := dst.Write(b); err != nil {
			return err
		}
		_, _ = src.Discard(int(k))
		if n > 0 {
			n -= k
		}
	}
	return nil
}

// copyChunked relays a chunked body as is (chunk framing included),
// validating the framing to find its end.
func copyChunked(dst *bufio.Writer, src *bufio.Reader, u *upConn, silence time.Duration) error {
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return err
			}
			u.bodyDeadline(time.Now(), silence)
		}
		line, err := readLine(src)
		if err != nil {
			return err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return err
		}
		if _, err := dst.Write(line); err != nil {
			return err
		}
		if size == 0 {
			for { // trailer section up to the empty line
				line, err := readLine(src)
				if err != nil {
					return err
				}
				if _, err := dst.Write(line); err != nil {
					return err
				}
				if len(trimEOL(line)) == 0 {
					return nil
				}
			}
		}
		if err := copyStream(dst, src, size+2, u, silence); err != nil {
			return err
		}
	}
}

// tunnel relays bytes both ways after a 101 Switching Protocols until
// either side closes.
func (cc *clientConn) tunnel(u *upConn) {
	if err := cc.bw.Flush(); err != nil {
		u.close()
		return
	}
	_ = u.c.SetDeadline(time.Time{})
	_ = cc.c.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(cc.c, u.br)
		_ = cc.c.Close()
		_ = u.c.Close()
	}()
	_, _ = io.Copy(u.c, cc.br)
	_ = u.c.Close()
	_ = cc.c.Close()
	<-done
}

// errorPage writes a small HTML error page.
func (cc *clientConn) errorPage(code int, msg string) {
	text := http.StatusText(code)
	body := "<!doctype html><html><head><title>" + strconv.Itoa(code) + " " + text +
		"</title></head><body><h1>" + strconv.Itoa(code) + " " + text + "</h1><p>" + msg +
		"</p><p><small>Tandem web server</small></p></body></html>\n"
	w := cc.bw
	w.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n")
	w.WriteString("Content-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n")
	w.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	if cc.closed || code >= 400 && code != http.StatusBadGateway && code != http.StatusServiceUnavailable && code != http.StatusGatewayTimeout && code != http.StatusNotFound {
		cc.closed = true
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	w.WriteString(body)
}

// local answers the reserved /_tandem/ endpoints.
func (cc *clientConn) local(ri *reqInfo) {
	path := ri.target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	var rec bufferedResponse
	req, err := http.NewRequest(string(ri.method), "/", nil)
	if err != nil {
		cc.errorPage(http.StatusBadRequest, "Malformed request.")
		return
	}
	switch string(path) {
	case ReservedPrefix + "healthz":
		h := metricsHealthz(cc.s.readyErr)
		h.ServeHTTP(&rec, req)
	case ReservedPrefix + "metrics":
		cc.s.reg.Handler().ServeHTTP(&rec, req)
	default:
		cc.errorPage(http.StatusNotFound, "No such web server endpoint.")
		return
	}
	code := rec.code
	if code == 0 {
		code = http.StatusOK
	}
	w := cc.bw
	w.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
	rec.h.Del("Content-Length")
	rec.h.Del("Connection")
	_ = rec.h.Write(w)
	w.WriteString("Content-Length: " + strconv.Itoa(rec.buf.Len()) + "\r\n")
	if cc.closed {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	if string(ri.method) != "HEAD" {
		w.Write(rec.buf.Bytes())
	}
}

type bufferedResponse struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.h == nil {
		b.h = http.Header{}
	}
	return b.h
}
func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	if b.h == nil {
		b.h = http.Header{}
	}
	return b.buf.Write(p)
}

// accessLog logs one line per request (or one in AccessLogEvery). The
// path is logged without query and without a ;jsessionid= parameter: both
// can carry secrets.
func (cc *clientConn) accessLog(ri *reqInfo, upstream string, status, attempts int, start time.Time) {
	s := cc.s
	every := s.cfg.AccessLogEvery
	if every <= 0 {
		return
	}
	if every > 1 && s.logSeq.Add(1)%uint64(every) != 0 {
		return
	}
	path := ri.target
	if i := bytes.IndexAny(path, "?;"); i >= 0 {
		path = path[:i]
	}
	lvl := slog.LevelInfo
	switch {
	case status >= 500 || status == 0:
		lvl = slog.LevelError
	case status >= 400:
		lvl = slog.LevelWarn
	}
	s.log.LogAttrs(context.Background(), lvl, "request",
		slog.String("method", string(ri.method)),
		slog.String("path", string(path)),
		slog.String("route", ri.session.Primary),
		slog.String("upstream", upstream),
		slog.Int("status", status),
		slog.Int("attempts", attempts),
		slog.Duration("duration", time.Since(start)),
	)
}
