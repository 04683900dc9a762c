package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// codeUnavailable answers a Hello the admin server cannot serve right now
// (its store failed); the node retries.
const codeUnavailable = "unavailable"

// conn is one node's WebSocket connection. Its waiter maps are guarded by
// Plane.mu; ws may be written from any goroutine (coder/websocket
// serialises writes).
type conn struct {
	id     uint64
	ws     *websocket.Conn
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc
	node   *node

	appliedSum string                             // last checksum the node reported applied
	sentSum    string                             // last checksum sent and not yet acked
	refusedSum string                             // last checksum the node refused, until it applies another
	acks       map[string][]chan wire.Ack         // Push waiters by checksum
	settings   map[string]hbSettings              // heartbeat settings of configs sent, by checksum
	results    map[string]chan wire.CommandResult // Command waiters by id
	queries    map[string]chan wire.QueryResult   // Query waiters by id

	// cfgMu orders config sends (see offer); it guards readSeq, the
	// sequence number of the newest store read whose config was sent to
	// this connection or found unchanged for it.
	cfgMu   sync.Mutex
	readSeq uint64
}

// send writes one message with a deadline; a failed write ends the connection.
func (c *conn) send(typ string, body any) error {
	b, err := wire.Encode(typ, body)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageText, b); err != nil {
		c.cancel()
		return fmt.Errorf("control: write %s: %w", typ, err)
	}
	return nil
}

// ServeNode is the control-channel endpoint (GET /api/v1/nodes/connect).
// The node presents the domain's node token as bearer (else 401), says
// Hello, and is answered Welcome and at once its desired config, or an
// Error (unknown_node, bad_message) and a close. A second connection for
// the same name replaces the first.
func (p *Plane) ServeNode(w http.ResponseWriter, r *http.Request) {
	if !p.authorized(r) {
		writeHTTPError(w, http.StatusUnauthorized, wire.CodeUnauthorized, "a valid node token is required")
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		writeHTTPError(w, http.StatusServiceUnavailable, codeUnavailable, "admin server is shutting down")
		return
	}
	p.handlers.Add(1)
	p.mu.Unlock()
	defer p.handlers.Done()

	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		p.log.Warn("control channel handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(wire.MaxMessageBytes)

	// The connection ends when the node goes, the plane stops or it is replaced.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopAfter := context.AfterFunc(p.base, cancel)
	defer stopAfter()

	hello, desired, ok := p.handshake(ctx, ws)
	if !ok {
		return
	}
	p.noteAdvertise(ctx, hello, r.RemoteAddr)
	c := &conn{ws: ws, ctx: ctx, cancel: cancel, appliedSum: hello.AppliedChecksum,
		acks: map[string][]chan wire.Ack{}, results: map[string]chan wire.CommandResult{}, queries: map[string]chan wire.QueryResult{}, settings: map[string]hbSettings{}}
	interval, timeout := heartbeatSettings(desired)
	// Welcome goes out before the connection is registered, so that no
	// Push or Changed can send a Config ahead of it.
	welcome := wire.Welcome{Name: hello.Name,
		HeartbeatIntervalMS: int(interval / time.Millisecond), HeartbeatTimeoutMS: int(timeout / time.Millisecond)}
	if err := c.send(wire.TypeWelcome, welcome); err != nil {
		p.log.Warn("cannot welcome node", "node", hello.Name, "err", err)
		return
	}
	replaced := p.register(c, hello, desired, interval, timeout)
	if replaced != nil {
		p.log.Warn("node connected again, replacing its old connection", "node", hello.Name)
		_ = replaced.send(wire.TypeError, wire.Error{Code: wire.CodeDuplicate, Message: "replaced by a newer connection of the same node"})
		replaced.cancel()
	}
	p.log.Info("node connected", "node", hello.Name, "kind", hello.Kind, "pid", hello.PID, "remote", r.RemoteAddr)
	// Catch-up: the node gets its desired config at once, read afresh.
	if _, err := p.sendDesired(ctx, c, hello.Kind, hello.Name, nil); err != nil {
		p.log.Warn("cannot send desired config", "node", hello.Name, "err", err)
	}
	p.sendRevocations(c)

	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		p.pingLoop(c)
	}()
	closeErr := p.readLoop(c)
	cancel()
	<-pingDone
	p.unregister(c, closeErr)
}

// certNameKey carries the name a node's certificate was issued to (the
// API checked the certificate); a node on TLS must say Hello with it.
type certNameKey struct{}

// WithCertName marks r's context as authenticated by a node certificate
// issued to name.
func WithCertName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, certNameKey{}, name)
}

func certName(ctx context.Context) string {
	n, _ := ctx.Value(certNameKey{}).(string)
	return n
}

func (p *Plane) authorized(r *http.Request) bool {
	if certName(r.Context()) != "" {
		return true
	}
	if p.cfg.NodeToken == "" {
		return false
	}
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(p.cfg.NodeToken)) == 1
}

func writeHTTPError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// refuse sends an Error frame and closes the connection.
func refuse(ctx context.Context, ws *websocket.Conn, code, msg string, status websocket.StatusCode) {
	if b, err := wire.Encode(wire.TypeError, wire.Error{Code: code, Message: msg}); err == nil {
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		_ = ws.Write(wctx, websocket.MessageText, b)
		cancel()
	}
	_ = ws.Close(status, code)
}

// handshake reads Hello and looks the node up. On failure it has answered
// with an Error and closed the connection.
func (p *Plane) handshake(ctx context.Context, ws *websocket.Conn) (wire.Hello, wire.Config, bool) {
	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	typ, data, err := ws.Read(hctx)
	if err != nil {
		p.log.Debug("no hello from node", "err", err)
		return wire.Hello{}, wire.Config{}, false
	}
	if typ != websocket.MessageText {
		refuse(ctx, ws, wire.CodeBadMessage, "text frames only", websocket.StatusUnsupportedData)
		return wire.Hello{}, wire.Config{}, false
	}
	msg, err := wire.DecodeNodeMessage(data)
	hello, isHello := msg.(*wire.Hello)
	if err != nil || !isHello {
		refuse(ctx, ws, wire.CodeBadMessage, "the first message must be a valid hello", websocket.StatusPolicyViolation)
		return wire.Hello{}, wire.Config{}, false
	}
	if cn := certName(ctx); cn != "" && cn != hello.Name {
		p.log.Warn("node with another node's certificate refused", "hello", hello.Name, "certificate", cn)
		refuse(ctx, ws, wire.CodeUnauthorized, fmt.Sprintf("this certificate was issued to %q, not %q", cn, hello.Name), websocket.StatusPolicyViolation)
		return wire.Hello{}, wire.Config{}, false
	}
	desired, err := p.cfg.Store.DesiredConfig(ctx, hello.Kind, hello.Name)
	if errors.Is(err, domain.ErrNotFound) {
		p.log.Warn("unknown node refused", "node", hello.Name, "kind", hello.Kind)
		refuse(ctx, ws, wire.CodeUnknownNode, fmt.Sprintf("no %s named %q is defined", hello.Kind, hello.Name), websocket.StatusPolicyViolation)
		return wire.Hello{}, wire.Config{}, false
	}
	if err != nil {
		p.log.Error("cannot read desired config", "node", hello.Name, "err", err)
		refuse(ctx, ws, codeUnavailable, "admin server cannot serve this node right now", websocket.StatusTryAgainLater)
		return wire.Hello{}, wire.Config{}, false
	}
	return *hello, desired, true
}

// heartbeatSettings takes the cluster's heartbeat settings from a desired
// config (node managers have no cluster: the defaults).
func heartbeatSettings(cfg wire.Config) (interval, timeout time.Duration) {
	iv, to := domain.DefaultHeartbeatIntervalMS, domain.DefaultHeartbeatTimeoutMS
	var cs *wire.ClusterSettings
	switch {
	case cfg.Server != nil:
		cs = &cfg.Server.Cluster
	case cfg.WebServer != nil:
		cs = &cfg.WebServer.Cluster
	}
	if cs != nil && cs.HeartbeatIntervalMS > 0 && cs.HeartbeatTimeoutMS > 0 {
		iv, to = cs.HeartbeatIntervalMS, cs.HeartbeatTimeoutMS
	}
	return time.Duration(iv) * time.Millisecond, time.Duration(to) * time.Millisecond
}

func clusterOf(cfg wire.Config) string {
	switch {
	case cfg.Server != nil:
		return cfg.Server.Cluster.Name
	case cfg.WebServer != nil:
		return cfg.WebServer.Cluster.Name
	}
	return ""
}

// register makes c the node's connection and returns the one it replaces.
func (p *Plane) register(c *conn, h wire.Hello, desired wire.Config, interval, timeout time.Duration) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	c.id = p.nextID
	n, ok := p.nodes[h.Name]
	if !ok {
		n = &node{name: h.Name}
		p.nodes[h.Name] = n
	}
	old := n.conn
	n.kind, n.cluster = h.Kind, clusterOf(desired)
	n.interval, n.timeout = interval, timeout
	if n.incarnation != h.Incarnation {
		n.eventSeq = 0 // a new process numbers its events from 1
		if ok && n.incarnation != "" {
			switch n.live.State {
			case domain.StateStarting, domain.StateRunning, domain.StateSuspect:
				// The old process died without being declared failed yet.
				p.setState(n, domain.StateFailed, "process restarted")
			}
		}
	}
	n.incarnation = h.Incarnation
	n.stopping = false
	n.conn = c
	c.node = n
	n.live.PID = h.PID
	n.live.AppliedRevision, n.live.AppliedChecksum = h.AppliedRevision, h.AppliedChecksum
	n.live.LastSeen = time.Now().UTC()
	switch n.live.State {
	case "", domain.StateFailed, domain.StateStopped:
		p.setState(n, domain.StateStarting, "connected")
	default:
		// A running (or suspect) node that only lost its connection keeps
		// its state; its first heartbeat, sent at once, says what it is now.
	}
	p.armLiveness(n)
	if n.kind == wire.KindWebServer {
		p.statesChanged(n.cluster) // it learns the states it missed
	}
	return old
}

// unregister detaches c from its node and derives the state the closed
// connection leaves behind.
func (p *Plane) unregister(c *conn, closeErr error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Wake every waiter on this connection: they see c.ctx done.
	c.acks, c.results, c.queries = map[string][]chan wire.Ack{}, map[string]chan wire.CommandResult{}, map[string]chan wire.QueryResult{}
	n := c.node
	if n.conn != c {
		return // replaced by a newer connection
	}
	n.conn = nil
	if p.closed {
		return // the admin server is stopping: the nodes did nothing
	}
	p.log.Info("node disconnected", "node", n.name, "stopping", n.stopping, "err", closeErr)
	if n.stopping {
		n.gen++
		if n.timer != nil {
			n.timer.Stop()
		}
		p.setState(n, domain.StateStopped, "stopped")
		return
	}
	if n.live.State == domain.StateRunning || n.live.State == domain.StateStarting {
		p.setState(n, domain.StateSuspect, "control connection lost")
		// The liveness timer keeps running and fails the node after the
		// heartbeat timeout unless it reconnects and heartbeats again.
		gen := n.gen
		since := time.Since(n.live.LastSeen)
		if n.timer != nil {
			n.timer.Stop()
		}
		n.timer = time.AfterFunc(max(n.timeout-since, 0), func() { p.livenessExpired(n, gen, 0) })
	}
}

// readLoop dispatches the node's frames until the connection ends.
func (p *Plane) readLoop(c *conn) error {
	bad := 0
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return err
		}
		var msg any
		if typ == websocket.MessageText {
			msg, err = wire.DecodeNodeMessage(data)
		} else {
			err = fmt.Errorf("%w: binary frame", wire.ErrBadMessage)
		}
		if err == nil {
			if _, again := msg.(*wire.Hello); again {
				err = fmt.Errorf("%w: hello after welcome", wire.ErrBadMessage)
			}
		}
		if err != nil {
			bad++
			p.log.Warn("bad frame from node", "node", c.node.name, "err", err)
			if bad > maxBadFrames {
				refuse(c.ctx, c.ws, wire.CodeBadMessage, "too many bad messages", websocket.StatusPolicyViolation)
				return err
			}
			if serr := c.send(wire.TypeError, wire.Error{Code: wire.CodeBadMessage, Message: "message ignored: malformed or unexpected"}); serr != nil {
				return serr
			}
			continue
		}
		switch m := msg.(type) {
		case *wire.Heartbeat:
			p.onHeartbeat(c, *m)
		case *wire.Ack:
			p.onAck(c, *m)
		case *wire.CommandResult:
			p.onResult(c, *m)
		case *wire.QueryResult:
			p.onQueryResult(c, *m)
		case *wire.EventMsg:
			p.onEvent(c, *m)
		}
	}
}

func (p *Plane) pingLoop(c *conn) {
	t := time.NewTicker(p.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(c.ctx, p.cfg.PingInterval)
		err := c.ws.Ping(pctx)
		cancel()
		if err != nil {
			c.cancel()
			return
		}
	}
}

func (p *Plane) onHeartbeat(c *conn, hb wire.Heartbeat) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := c.node
	if n.conn != c {
		return
	}
	n.live.PID = hb.PID
	n.live.Sessions = hb.Sessions
	n.live.BackupSessions = hb.BackupSessions
	n.live.Backup = hb.Backup
	n.live.AppliedRevision = hb.AppliedRevision
	n.live.AppliedChecksum = hb.AppliedChecksum
	n.live.Unprotected = hb.Unprotected
	n.live.Requests = hb.Requests
	n.live.LagMS = hb.LagMS
	n.live.Retried, n.live.Failed = hb.Retried, hb.Failed
	n.live.App = domain.AppStatus{}
	if hb.App != nil {
		n.live.App = *hb.App
	}
	n.live.LastSeen = time.Now().UTC()
	n.live.Host = hb.Host
	n.processes = append([]wire.ProcessState(nil), hb.Processes...)
	n.stopping = hb.State == stateStopping
	switch {
	case hb.State == domain.StateStarting:
		p.setState(n, domain.StateStarting, "starting")
	case n.live.State == domain.StateSuspect || n.live.State == domain.StateFailed:
		p.setState(n, domain.StateRunning, "heartbeats resumed")
	default: // running, stopping (still serving) or a state this admin does not know
		p.setState(n, domain.StateRunning, fmt.Sprintf("running, pid %d", hb.PID))
	}
	p.armLiveness(n)
}

func (p *Plane) onAck(c *conn, ack wire.Ack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := c.node
	prev := c.appliedSum
	if c.sentSum == ack.Checksum {
		c.sentSum = ""
	}
	if !ack.OK {
		c.refusedSum = ack.Checksum
	}
	if ack.OK {
		c.appliedSum, c.refusedSum = ack.Checksum, ""
		if n.conn == c {
			n.live.AppliedRevision, n.live.AppliedChecksum = ack.Revision, ack.Checksum
			// The node heartbeats at the applied config's interval from
			// now on, so its liveness is judged by that config's settings.
			if hs, ok := c.settings[ack.Checksum]; ok && (hs.interval != n.interval || hs.timeout != n.timeout) {
				n.interval, n.timeout = hs.interval, hs.timeout
				p.armLiveness(n)
			}
		}
	}
	delete(c.settings, ack.Checksum)
	if ws := c.acks[ack.Checksum]; len(ws) > 0 {
		delete(c.acks, ack.Checksum)
		for _, w := range ws {
			w <- ack // buffered 1, one send per waiter
		}
		return // the Push that waits records the outcome
	}
	switch {
	case !ack.OK:
		p.enqueue(p.event(n, domain.EventConfigFailed, fmt.Sprintf("revision %d: %s", ack.Revision, ack.Error)))
	case ack.Checksum != prev:
		p.enqueue(p.event(n, domain.EventConfigApplied, fmt.Sprintf("revision %d applied", ack.Revision)))
	}
}

func (p *Plane) onResult(c *conn, res wire.CommandResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !deliver(c.results, res.ID, res) {
		p.log.Warn("command result nobody waits for", "node", c.node.name, "id", res.ID)
	}
}

func (p *Plane) onQueryResult(c *conn, res wire.QueryResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !deliver(c.queries, res.ID, res) {
		p.log.Debug("query result nobody waits for", "node", c.node.name, "id", res.ID)
	}
}

// onEvent records a node's event (on the connection's reader, so a node's
// events are stored in the order it sent them) and acks it, so the node
// forgets it. A resent event already recorded is only acked again.
func (p *Plane) onEvent(c *conn, m wire.EventMsg) {
	p.mu.Lock()
	n := c.node
	e := m.Event
	e.ID = 0 // the store assigns it
	if e.Cluster == "" {
		e.Cluster = n.cluster
	}
	if e.Server == "" {
		e.Server = n.name
	}
	dup := m.Seq != 0 && m.Seq <= n.eventSeq
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return // not recorded, not acked: the node sends it again later
	}
	if !dup {
		if err := p.record(context.WithoutCancel(c.ctx), e); err != nil {
			return // not acked: the node sends it again after a reconnect
		}
		p.mu.Lock()
		n.eventSeq = max(n.eventSeq, m.Seq)
		p.mu.Unlock()
	}
	if m.Seq != 0 {
		_ = c.send(wire.TypeEventAck, wire.EventAck{Seq: m.Seq})
	}
}

type hbSettings struct{ interval, timeout time.Duration }

// errUnchanged is sendDesired's answer when skip said not to send.
var errUnchanged = errors.New("control: desired config already applied or pending")

// errSuperseded is offer's answer when the node was already sent (or found
// up to date with) a config read from the store after the one offered.
var errSuperseded = errors.New("control: a newer read of the desired config was sent")

// sendDesired reads the node's desired config and sends it to c, unless
// skip (when not nil) returns true for it (errUnchanged). It holds c.cfgMu
// from before the read until the send, so no config read earlier can
// follow it to the node (see offer), and it is never superseded.
func (p *Plane) sendDesired(ctx context.Context, c *conn, kind, name string, skip func(cfg wire.Config) bool) (wire.Config, error) {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	seq := p.readSeq.Add(1)
	cfg, err := p.cfg.Store.DesiredConfig(ctx, kind, name)
	if err != nil {
		return wire.Config{}, err
	}
	return cfg, p.offerLocked(c, seq, cfg, skip)
}

// offer sends c the config cfg, read from the store under sequence number
// seq (taken from Plane.readSeq before the read began), in order with
// every other config send to c. A config read before the last one sent to
// c (or found unchanged for c) is not sent: errSuperseded. So the last
// config a node gets comes from the newest read, even though reads of a
// whole cluster (Push, the re-check) and of one node (the catch-up on
// connect) run concurrently; and every write is followed by a re-check
// whose read starts after the write committed. When skip is not nil and
// returns true for cfg, nothing is sent (errUnchanged); skip runs with
// Plane.mu held, so it may register ack waiters.
func (p *Plane) offer(c *conn, seq uint64, cfg wire.Config, skip func(cfg wire.Config) bool) error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	return p.offerLocked(c, seq, cfg, skip)
}

// offerLocked is offer with c.cfgMu held.
func (p *Plane) offerLocked(c *conn, seq uint64, cfg wire.Config, skip func(cfg wire.Config) bool) error {
	if seq < c.readSeq {
		return errSuperseded
	}
	c.readSeq = seq
	if skip != nil {
		p.mu.Lock()
		s := skip(cfg)
		p.mu.Unlock()
		if s {
			return errUnchanged
		}
	}
	return p.sendConfig(c, cfg)
}

// sendConfig sends cfg to c and remembers it as pending.
func (p *Plane) sendConfig(c *conn, cfg wire.Config) error {
	iv, to := heartbeatSettings(cfg)
	p.mu.Lock()
	c.sentSum = cfg.Checksum
	if len(c.settings) >= 16 { // acks lost to a node that never answers: forget
		clear(c.settings)
	}
	c.settings[cfg.Checksum] = hbSettings{interval: iv, timeout: to}
	p.mu.Unlock()
	return c.send(wire.TypeConfig, cfg)
}
