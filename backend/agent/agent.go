// Package agent is the node end of the control channel: a managed server,
// web server or node manager dials the admin server, says Hello, applies
// every Config it is sent (acking each and caching the last applied one on
// disk), sends heartbeats with the node's state, forwards events and runs
// node-manager commands. It reconnects by itself, forever, until its context
// ends; the role keeps running from the cached config meanwhile.
//
// Concurrency: Run is called once, from the role's goroutine, and owns every
// goroutine the agent starts; they have all ended when Run returns. Emit,
// Connected and Applied may be called from any goroutine at any time, also
// before Run and after it returned; they never block.
package agent

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// ConnectPath is the admin server's control-channel endpoint.
const ConnectPath = "/api/v1/nodes/connect"

// Tunables. They are constants, not package variables: tests drive the
// agent through short cluster heartbeat settings instead.
const (
	// MaxQueuedEvents bounds the Emit queue; when it is full the oldest
	// event is dropped (and a warning logged).
	MaxQueuedEvents = 1024

	minBackoff      = 50 * time.Millisecond
	maxBackoff      = 2 * time.Second // a restarted admin server is found quickly
	stableSession   = 10 * time.Second
	dialTimeout     = 5 * time.Second
	welcomeTimeout  = 10 * time.Second
	writeTimeout    = 5 * time.Second
	applyTimeout    = 60 * time.Second
	closeTimeout    = 2 * time.Second
	pingInterval    = 5 * time.Second
	pingTimeout     = 10 * time.Second
	defaultInterval = time.Duration(domain.DefaultHeartbeatIntervalMS) * time.Millisecond
)

// ErrRefused wraps the admin server's refusal of a node (an Error frame in
// answer to Hello, or 401 on the handshake).
var ErrRefused = errors.New("agent: refused by admin server")

// Config tells the agent who it is and where the admin server is.
type Config struct {
	AdminURL  string // http(s):// or ws(s):// base URL of the admin server
	NodeToken string // the domain's node token (a secret: never logged)
	Kind      string // wire.KindServer, wire.KindWebServer or wire.KindNodeManager
	Name      string // the node's name as defined in the admin server
	DataDir   string // where applied-config.json is cached, and the node's key and certificate
	// CAFingerprint pins the domain CA of an https admin server
	// ("sha256:..."); the node then enrols with NodeToken once and uses
	// its certificate from then on.
	CAFingerprint string
	// Advertise is a managed server's --advertise host (wire.Hello).
	Advertise string
}

// Handler is the role behind the agent.
type Handler interface {
	// Apply applies a desired config; an error is acked as config.failed.
	Apply(ctx context.Context, cfg wire.Config) error
	// Status fills the next heartbeat.
	Status() wire.Heartbeat
	// Command runs a node-manager command (other kinds return an error).
	Command(ctx context.Context, cmd wire.Command) wire.CommandResult
}

// StatesHandler is implemented by a Handler that follows the admin
// server's view of its cluster's members (the web server does).
type StatesHandler interface {
	MemberStates(wire.MemberStates)
}

// RevocationsHandler is implemented by a Handler that acts when the
// revoked certificates change (the web server drops its verified pooled
// connections); the list itself is the agent's (Revoked).
type RevocationsHandler interface {
	Revocations(wire.Revocations)
}

// QueryHandler is implemented by a Handler that answers the admin
// server's questions about the sessions it holds (managed servers do).
type QueryHandler interface {
	Query(ctx context.Context, q wire.Query) wire.QueryResult
}

// Agent is the node end of the control channel. Create it with New.
type Agent struct {
	cfg         Config
	h           Handler
	log         *slog.Logger
	incarnation string
	id          *identity // nil on a plain-HTTP admin server
	idErr       error     // an https admin URL without a usable pin
	// revoked are the node certificates the admin server revoked (by
	// serial, hex): PeerTLS refuses peers presenting one.
	revoked atomic.Pointer[map[string]bool]

	mu         sync.Mutex
	queue      []queued // Emit queue, oldest first
	seq        uint64
	wake       chan struct{} // cap 1: an event was queued
	appliedRev int64
	appliedSum string
	connected  bool
	interval   time.Duration // heartbeat period: Welcome's, then the applied config's
}

type queued struct {
	seq uint64
	e   domain.Event
}

// New returns an agent for cfg that drives h. Call Run to connect.
func New(cfg Config, h Handler, logger *slog.Logger) *Agent {
	if logger == nil {
		logger = slog.Default()
	}
	a := &Agent{
		cfg:         cfg,
		h:           h,
		log:         logger.With("component", "agent"),
		incarnation: newIncarnation(),
		wake:        make(chan struct{}, 1),
	}
	if c, err := LoadCached(cfg.DataDir); err == nil {
		a.appliedRev, a.appliedSum = c.Revision, c.Checksum
	}
	a.id, a.idErr = newIdentity(cfg, a.log)
	return a
}

// HTTPClient talks to the admin server as this node (its certificate on
// an https admin server); timeout 0 is none.
func (a *Agent) HTTPClient(timeout time.Duration) *http.Client {
	if a.id != nil {
		return a.id.httpClient(timeout)
	}
	return &http.Client{Timeout: timeout}
}

func newIncarnation() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// Revoked reports whether the admin server revoked the node certificate
// with serial (hex): checked on every peer call, so a kept-alive
// connection of a revoked peer is refused too.
func (a *Agent) Revoked(serial string) bool {
	m := a.revoked.Load()
	return m != nil && (*m)[serial]
}

// Incarnation is the random id of this agent's process start, sent in Hello.
func (a *Agent) Incarnation() string { return a.incarnation }

// Connected reports whether the agent is welcomed by the admin server now.
func (a *Agent) Connected() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected
}

// Applied returns the revision and checksum of the last config applied
// successfully (from the cache until the first Apply).
func (a *Agent) Applied() (int64, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.appliedRev, a.appliedSum
}

// Emit queues e to be sent to the admin server. It never blocks: events
// are kept in a bounded queue and sent in order; each stays queued until the
// admin server acks it as recorded (wire.EventAck), so an event written to
// a connection that then broke is sent again after the reconnect. When the
// queue is full the oldest event is dropped with a log line.
func (a *Agent) Emit(e domain.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Server == "" && a.cfg.Kind == wire.KindServer {
		e.Server = a.cfg.Name
	}
	a.mu.Lock()
	if len(a.queue) >= MaxQueuedEvents {
		dropped := a.queue[0]
		a.queue = a.queue[1:]
		a.log.Warn("event queue full, dropping oldest event", "type", dropped.e.Type, "queued", len(a.queue))
	}
	a.seq++
	a.queue = append(a.queue, queued{seq: a.seq, e: e})
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// next returns the oldest queued event with a sequence number above after.
func (a *Agent) next(after uint64) (queued, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, q := range a.queue {
		if q.seq > after {
			return q, true
		}
	}
	return queued{}, false
}

// ackEvents forgets the queued events up to seq: the admin recorded them.
func (a *Agent) ackEvents(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := 0
	for i < len(a.queue) && a.queue[i].seq <= seq {
		i++
	}
	a.queue = a.queue[i:]
}

// QueuedEvents returns how many emitted events the admin server has not
// acked yet.
func (a *Agent) QueuedEvents() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queue)
}

func (a *Agent) setConnected(v bool) {
	a.mu.Lock()
	a.connected = v
	a.mu.Unlock()
}

// ConnectURL returns the control-channel WebSocket URL for an admin base URL.
func ConnectURL(admin string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(admin))
	if err != nil {
		return "", fmt.Errorf("agent: admin url: %w", err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("agent: admin url %q: scheme must be http, https, ws or wss", u.Redacted())
	}
	if u.Host == "" {
		return "", fmt.Errorf("agent: admin url %q: no host", u.Redacted())
	}
	u.User = nil
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + ConnectPath
	u.RawPath = ""
	return u.String(), nil
}

// Run connects to the admin server and serves the control channel,
// reconnecting with jittered exponential backoff (capped at 2 s) whenever
// the connection fails or is refused, until ctx ends. It returns nil when
// ctx ends and an error only for an unusable Config.
func (a *Agent) Run(ctx context.Context) error {
	u, err := ConnectURL(a.cfg.AdminURL)
	if err != nil {
		return err
	}
	if a.idErr != nil {
		return a.idErr
	}
	if a.id != nil {
		renewCtx, stopRenew := context.WithCancel(ctx)
		renewDone := make(chan struct{})
		go func() { defer close(renewDone); a.id.renewLoop(renewCtx) }()
		defer func() { stopRenew(); <-renewDone }()
	}
	switch a.cfg.Kind {
	case wire.KindServer, wire.KindWebServer, wire.KindNodeManager:
	default:
		return domain.Invalid("kind", "%q is not a node kind", a.cfg.Kind)
	}
	if !domain.ValidName(a.cfg.Name) {
		return domain.Invalid("name", "%q is not a valid node name", a.cfg.Name)
	}
	backoff := minBackoff
	failures := 0
	for {
		start := time.Now()
		welcomed, err := a.session(ctx, u)
		if ctx.Err() != nil {
			return nil
		}
		if welcomed {
			// Only a connection that lasted starts the backoff over, so
			// that two processes claiming the same name (each replacing
			// the other) do not reconnect in a tight loop.
			if time.Since(start) > stableSession {
				backoff = minBackoff
			}
			failures = 0
			a.log.Warn("control channel lost, reconnecting", "err", err)
		} else {
			failures++
			if failures == 1 || failures%30 == 0 {
				a.log.Warn("cannot reach admin server, retrying", "err", err, "attempts", failures)
			} else {
				a.log.Debug("cannot reach admin server, retrying", "err", err, "attempts", failures)
			}
		}
		// Full jitter in [backoff/2, backoff).
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// session runs one connection. welcomed tells whether the admin server
// accepted the node (so the backoff starts over).
func (a *Agent) session(ctx context.Context, u string) (welcomed bool, err error) {
	opts := &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": []string{"Bearer " + a.cfg.NodeToken}}}
	if a.id != nil {
		// TLS: the node's certificate is its credential; it enrols first.
		if err := a.id.ensure(ctx); err != nil {
			return false, err
		}
		opts = &websocket.DialOptions{HTTPClient: a.id.httpClient(0)}
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, resp, err := websocket.Dial(dctx, u, opts)
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			if a.id != nil {
				// Revoked (or from another domain): enrol again next time;
				// the admin server refuses that too until it allows the node.
				a.id.forget()
			}
			return false, fmt.Errorf("%w: credential rejected (401)", ErrRefused)
		}
		return false, fmt.Errorf("agent: dial: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(wire.MaxMessageBytes)

	rev, sum := a.Applied()
	hello := wire.Hello{
		Kind: a.cfg.Kind, Name: a.cfg.Name, PID: os.Getpid(), Incarnation: a.incarnation,
		AppliedRevision: rev, AppliedChecksum: sum, Advertise: a.cfg.Advertise,
	}
	if err := write(ctx, conn, wire.TypeHello, hello); err != nil {
		return false, fmt.Errorf("agent: send hello: %w", err)
	}
	welcome, err := readWelcome(ctx, conn)
	if err != nil {
		return false, err
	}
	interval := time.Duration(welcome.HeartbeatIntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = defaultInterval
	}
	a.setConnected(true)
	defer a.setConnected(false)
	a.mu.Lock()
	a.interval = interval
	a.mu.Unlock()
	a.log.Info("connected to admin server", "heartbeat_interval", interval)
	return true, a.serve(ctx, conn)
}

func readWelcome(ctx context.Context, conn *websocket.Conn) (wire.Welcome, error) {
	var w wire.Welcome
	rctx, cancel := context.WithTimeout(ctx, welcomeTimeout)
	defer cancel()
	_, data, err := conn.Read(rctx)
	if err != nil {
		return w, fmt.Errorf("agent: read welcome: %w", err)
	}
	msg, err := wire.DecodeAdminMessage(data)
	if err != nil {
		return w, fmt.Errorf("agent: welcome: %w", err)
	}
	switch m := msg.(type) {
	case *wire.Welcome:
		return *m, nil
	case *wire.Error:
		return w, fmt.Errorf("%w: %s: %s", ErrRefused, m.Code, m.Message)
	default:
		return w, fmt.Errorf("agent: expected welcome, got %T: %w", msg, wire.ErrBadMessage)
	}
}

func write(ctx context.Context, conn *websocket.Conn, typ string, body any) error {
	b, err := wire.Encode(typ, body)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return conn.Write(wctx, websocket.MessageText, b)
}

// serve runs a welcomed connection until it fails or ctx ends. Workers stop
// on wctx, but reads and writes run on ioctx, which ends only when the
// connection is abandoned: coder/websocket closes a connection whose write
// context is canceled mid-write, and at shutdown the agent still sends a
// last "stopping" heartbeat and closes the connection cleanly.
func (a *Agent) serve(ctx context.Context, conn *websocket.Conn) error {
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	ioctx, stopIO := context.WithCancel(context.Background())
	defer stopIO()

	var (
		wg      sync.WaitGroup // workers
		cmds    sync.WaitGroup // command runners (started by the reader) and the pinger
		errOnce sync.Once
		sessErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { sessErr = err })
		stopWorkers()
	}
	configs := make(chan wire.Config, 8)

	// Reader: dispatches frames; ends when the connection ends.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			_, data, err := conn.Read(ioctx)
			if err != nil {
				fail(fmt.Errorf("agent: read: %w", err))
				return
			}
			msg, err := wire.DecodeAdminMessage(data)
			if err != nil {
				a.log.Warn("ignoring bad frame from admin server", "err", err)
				continue
			}
			switch m := msg.(type) {
			case *wire.Config:
				select {
				case configs <- *m:
				case <-wctx.Done():
					return
				}
			case *wire.Command:
				cmds.Add(1)
				go func(cmd wire.Command) {
					defer cmds.Done()
					res := a.h.Command(wctx, cmd)
					res.ID = cmd.ID
					if err := write(ioctx, conn, wire.TypeCommandResult, res); err != nil {
						fail(fmt.Errorf("agent: send command result: %w", err))
					}
				}(*m)
			case *wire.Revocations:
				set := make(map[string]bool, len(m.Serials))
				for _, x := range m.Serials {
					set[x] = true
				}
				a.revoked.Store(&set)
				if rh, ok := a.h.(RevocationsHandler); ok {
					rh.Revocations(*m)
				}
			case *wire.Query:
				cmds.Add(1)
				go func(q wire.Query) {
					defer cmds.Done()
					res := wire.QueryResult{Error: "this node holds no sessions"}
					if qh, ok := a.h.(QueryHandler); ok {
						res = qh.Query(wctx, q)
					}
					res.ID = q.ID
					if err := write(ioctx, conn, wire.TypeQueryResult, res); err != nil {
						fail(fmt.Errorf("agent: send query result: %w", err))
					}
				}(*m)
			case *wire.Error:
				a.log.Warn("admin server reported an error", "code", m.Code, "message", m.Message)
			case *wire.EventAck:
				a.ackEvents(m.Seq)
			case *wire.MemberStates:
				if sh, ok := a.h.(StatesHandler); ok {
					sh.MemberStates(*m)
				}
			case *wire.Welcome:
				// Already welcomed; nothing to do.
			}
		}
	}()

	wg.Add(3)
	go func() { // applier: configs in arrival order
		defer wg.Done()
		for {
			select {
			case <-wctx.Done():
				return
			case cfg := <-configs:
				if err := a.apply(wctx, ioctx, conn, cfg); err != nil {
					fail(err)
					return
				}
			}
		}
	}()
	go func() { // heartbeats, the first at once; the period follows the cluster's setting
		defer wg.Done()
		interval := a.heartbeatInterval()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := write(ioctx, conn, wire.TypeHeartbeat, a.heartbeat(false)); err != nil {
				fail(fmt.Errorf("agent: send heartbeat: %w", err))
				return
			}
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			if iv := a.heartbeatInterval(); iv != interval {
				interval = iv
				t.Reset(interval)
			}
		}
	}()
	go func() { // events, in order, from the oldest unacked one
		defer wg.Done()
		var sent uint64
		for {
			q, ok := a.next(sent)
			if !ok {
				select {
				case <-wctx.Done():
					return
				case <-a.wake:
					continue
				}
			}
			if err := write(ioctx, conn, wire.TypeEvent, wire.EventMsg{Event: q.e, Seq: q.seq}); err != nil {
				fail(fmt.Errorf("agent: send event: %w", err))
				return
			}
			sent = q.seq
		}
	}()
	cmds.Add(1)
	go func() { // pings: a peer that vanished without a FIN is noticed
		defer cmds.Done()
		t := time.NewTicker(pingInterval)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(ioctx, pingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && wctx.Err() == nil {
				fail(fmt.Errorf("agent: ping: %w", err))
				return
			}
		}
	}()

	<-wctx.Done()
	wg.Wait()
	if ctx.Err() != nil {
		// Shutting down: say so, then close cleanly so the admin server
		// records the node as stopped rather than failed.
		fctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		if err := write(fctx, conn, wire.TypeHeartbeat, a.heartbeat(true)); err != nil {
			a.log.Debug("cannot send the last heartbeat", "err", err)
		}
		cancel()
		if err := conn.Close(websocket.StatusNormalClosure, "node stopping"); err != nil {
			a.log.Debug("close", "err", err)
		}
	}
	stopIO()
	conn.CloseNow()
	<-readerDone
	cmds.Wait()
	return sessErr
}

func (a *Agent) heartbeatInterval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.interval <= 0 {
		return defaultInterval
	}
	return a.interval
}

// configInterval is the heartbeat interval a config asks for (0: none).
func configInterval(cfg wire.Config) time.Duration {
	switch {
	case cfg.Server != nil:
		return time.Duration(cfg.Server.Cluster.HeartbeatIntervalMS) * time.Millisecond
	case cfg.WebServer != nil:
		return time.Duration(cfg.WebServer.Cluster.HeartbeatIntervalMS) * time.Millisecond
	}
	return 0
}

func (a *Agent) heartbeat(stopping bool) wire.Heartbeat {
	hb := a.h.Status()
	if hb.PID == 0 {
		hb.PID = os.Getpid()
	}
	if hb.State == "" {
		hb.State = domain.StateRunning
	}
	if stopping {
		hb.State = "stopping"
	}
	hb.AppliedRevision, hb.AppliedChecksum = a.Applied()
	return hb
}

// apply applies one config, caches it on success, and acks it (writing on
// ioctx). Only a failure to send the ack ends the session. An Apply cut
// short because the agent is stopping is not acked.
func (a *Agent) apply(ctx, ioctx context.Context, conn *websocket.Conn, cfg wire.Config) error {
	actx, cancel := context.WithTimeout(ctx, applyTimeout)
	err := a.h.Apply(actx, cfg)
	cancel()
	if err != nil && ctx.Err() != nil {
		return nil
	}
	ack := wire.Ack{Revision: cfg.Revision, Checksum: cfg.Checksum, OK: err == nil}
	if err != nil {
		ack.Error = err.Error()
		a.log.Warn("config not applied", "revision", cfg.Revision, "err", err)
	} else {
		if cerr := writeCached(a.cfg.DataDir, cfg); cerr != nil {
			// The role runs the new config; only the boot-time fallback
			// is stale. Say so loudly, but the apply itself succeeded.
			a.log.Error("config applied but not cached", "err", cerr)
		}
		a.mu.Lock()
		a.appliedRev, a.appliedSum = cfg.Revision, cfg.Checksum
		if iv := configInterval(cfg); iv > 0 {
			a.interval = iv
		}
		a.mu.Unlock()
		a.log.Info("config applied", "revision", cfg.Revision)
	}
	if err := write(ioctx, conn, wire.TypeAck, ack); err != nil {
		return fmt.Errorf("agent: send ack: %w", err)
	}
	return nil
}
