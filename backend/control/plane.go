// Package control is the admin server's end of the control channel: the
// registry of connected nodes (managed servers, web servers, node managers),
// their live state derived from heartbeats with one liveness timer per node,
// revisioned config pushes with acks, catch-up on reconnect, and commands to
// node managers.
//
// Concurrency: a Plane is safe for concurrent use. ServeNode runs one
// WebSocket connection per call (the HTTP server owns that goroutine; the
// Plane owns the ping goroutine it starts). A node's own events are recorded
// on its connection's reader, in the order it sent them, and acked. Run must
// be running for state changes to be recorded (it records them in order from
// a queue) and for Changed to take effect; when Run's context ends it closes
// every connection, waits for their handlers and returns. Live,
// Snapshot, Processes and Changed never block on the network or the store.
//
// Each node's state follows its heartbeats: starting or running as the node
// says; suspect after about two heartbeat intervals without one (or at once
// when the connection drops); failed after the cluster's heartbeat timeout
// without one; stopped when the node said "stopping" before its connection
// closed. Each change records server.up, server.suspect or server.down.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"tandem/backend/domain"
	"tandem/backend/store"
	"tandem/backend/wire"
)

// Store is what the plane reads from the domain store.
type Store interface {
	// DesiredConfig returns a node's desired config; ErrNotFound for an unknown node.
	DesiredConfig(ctx context.Context, kind, name string) (wire.Config, error)
	// ClusterConfigs returns the desired configs of a cluster's servers
	// and web servers, read in one pass; ErrNotFound for an unknown cluster.
	ClusterConfigs(ctx context.Context, cluster string) ([]store.NodeConfig, error)
}

// Recorder stores an event (and publishes it).
type Recorder interface {
	Record(ctx context.Context, e domain.Event) (domain.Event, error)
}

// Config configures a Plane.
type Config struct {
	Store     Store
	Recorder  Recorder
	NodeToken string // the domain's node token; nodes present it as bearer
	Logger    *slog.Logger
	// PushTimeout bounds how long Push waits for acks; 0 means 5 s.
	PushTimeout time.Duration
	// PingInterval is how often each node connection is pinged; a node
	// that does not answer within the same time is disconnected, so a
	// vanished peer holds nothing. 0 means 10 s.
	PingInterval time.Duration
	// ReconcileInterval is how often every connected node's desired
	// config is checked against what it applied, whatever was written:
	// the safety net under Changed, which checks only the nodes a write
	// names. 0 means 1 minute.
	ReconcileInterval time.Duration
}

const (
	defaultPushTimeout  = 5 * time.Second
	helloTimeout        = 10 * time.Second
	writeTimeout        = 5 * time.Second
	defaultPingInterval = 10 * time.Second
	defaultReconcile    = time.Minute
	commandTimeout      = 60 * time.Second
	maxQueuedEvents     = 10000
	maxBadFrames        = 16 // per connection, then it is closed
	stateStopping       = "stopping"
)

// Plane is the admin end of the control channel. Create it with New.
type Plane struct {
	cfg  Config
	log  *slog.Logger
	base context.Context // canceled when Run ends: closes every connection
	stop context.CancelFunc

	mu       sync.Mutex
	nodes    map[string]*node // by name; kept after disconnect for Live
	revoked  []string         // revoked node certificates (nil: not read yet)
	closed   bool             // Run ended: refuse connections, freeze states
	started  bool
	handlers sync.WaitGroup // ServeNode calls past the handshake
	nextID   uint64
	evq      []domain.Event // events waiting for Run to record them, in order

	evWake  chan struct{} // cap 1
	changed chan struct{} // cap 1

	statesWake    chan struct{}   // cap 1
	statesPending map[string]bool // clusters whose member states are to be sent
	pending       Scope           // what Changed asked for since Run last took it

	// readSeq numbers the store reads of desired configs in the order
	// they begin (see offer).
	readSeq atomic.Uint64
}

// node is one node's registry entry. Guarded by Plane.mu.
type node struct {
	kind, name, cluster string
	interval, timeout   time.Duration
	live                domain.LiveState
	processes           []wire.ProcessState
	stopping            bool
	incarnation         string
	eventSeq            uint64 // highest event Seq recorded from this incarnation
	conn                *conn  // nil while disconnected
	timer               *time.Timer
	gen                 uint64 // bumped by every heartbeat and (dis)connect; stale timers compare it
}

// New returns a Plane. Start Run and mount ServeNode at /api/v1/nodes/connect.
func New(cfg Config) *Plane {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = defaultPushTimeout
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = defaultPingInterval
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = defaultReconcile
	}
	base, stop := context.WithCancel(context.Background())
	return &Plane{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "control"),
		base:       base,
		stop:       stop,
		nodes:      map[string]*node{},
		evWake:     make(chan struct{}, 1),
		changed:    make(chan struct{}, 1),
		statesWake: make(chan struct{}, 1),
	}
}

// ErrStopped is returned by Run when it is called again after it ended.
var ErrStopped = errors.New("control: plane stopped")

// Run records queued events, acts on Changed, reconciles every connected
// node every Config.ReconcileInterval, and, when ctx ends, closes every
// node connection, waits for their handlers, records what is left in the
// queue and returns nil.
func (p *Plane) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.closed || p.started {
		p.mu.Unlock()
		return ErrStopped
	}
	p.started = true
	p.mu.Unlock()
	if err := p.Revocations(ctx); err != nil {
		p.log.Warn("cannot read the revoked certificates", "err", err)
	}

	reconcile := time.NewTicker(p.cfg.ReconcileInterval)
	defer reconcile.Stop()
	sctx, stopStates := context.WithCancel(ctx)
	statesDone := make(chan struct{})
	go func() { defer close(statesDone); p.statesLoop(sctx) }()
	defer func() { stopStates(); <-statesDone }()
	for {
		select {
		case <-ctx.Done():
			p.shutdown()
			// Flush what was queued before the connections closed, briefly.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			p.recordQueued(fctx)
			cancel()
			return nil
		case <-p.evWake:
			// An event being stored when ctx ends is still stored.
			p.recordQueued(context.WithoutCancel(ctx))
		case <-p.changed:
			p.resync(ctx, p.takePending())
		case <-reconcile.C:
			p.resync(ctx, Everything)
		}
	}
}

func (p *Plane) shutdown() {
	p.mu.Lock()
	p.closed = true
	for _, n := range p.nodes {
		if n.timer != nil {
			n.timer.Stop()
		}
	}
	p.mu.Unlock()
	p.stop()
	p.handlers.Wait()
}

// enqueue queues events for Run to record, in order. Caller holds p.mu.
func (p *Plane) enqueue(es ...domain.Event) {
	if p.closed {
		return
	}
	for _, e := range es {
		if len(p.evq) >= maxQueuedEvents {
			p.log.Warn("event queue full, dropping oldest", "type", p.evq[0].Type, "server", p.evq[0].Server)
			p.evq = p.evq[1:]
		}
		p.evq = append(p.evq, e)
	}
	select {
	case p.evWake <- struct{}{}:
	default:
	}
}

func (p *Plane) recordQueued(ctx context.Context) {
	for {
		p.mu.Lock()
		if len(p.evq) == 0 {
			p.mu.Unlock()
			return
		}
		e := p.evq[0]
		p.evq = p.evq[1:]
		p.mu.Unlock()
		_ = p.record(ctx, e)
	}
}

func (p *Plane) record(ctx context.Context, e domain.Event) error {
	if p.cfg.Recorder == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.cfg.Recorder.Record(ctx, e); err != nil {
		p.log.Error("cannot record event", "type", e.Type, "server", e.Server, "err", err)
		return err
	}
	return nil
}

// Live returns what the plane knows now about the node named name; false
// when that node has not connected since the admin server started.
func (p *Plane) Live(name string) (domain.LiveState, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[name]
	if !ok {
		return domain.LiveState{}, false
	}
	return n.live, true
}

// Snapshot returns the live state of every node seen since start, by name.
func (p *Plane) Snapshot() map[string]domain.LiveState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]domain.LiveState, len(p.nodes))
	for name, n := range p.nodes {
		out[name] = n.live
	}
	return out
}

// Connected reports whether the node named name has a control connection now.
func (p *Plane) Connected(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[name]
	return ok && n.conn != nil
}

// Disconnect ends the node's control connection, if it has one (its
// certificate was revoked: it cannot come back).
func (p *Plane) Disconnect(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.nodes[name]; ok && n.conn != nil {
		n.conn.cancel()
	}
}

// Processes returns the process list of a node manager's last heartbeat
// (empty, never nil, when unknown), sorted by name.
func (p *Plane) Processes(nodeManager string) []wire.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []wire.ProcessState{}
	if n, ok := p.nodes[nodeManager]; ok {
		out = append(out, n.processes...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (p *Plane) event(n *node, typ, msg string) domain.Event {
	return domain.Event{Type: typ, Cluster: n.cluster, Server: n.name, Message: msg}
}

// setState moves n to state s, queueing the event that goes with the
// change. Caller holds p.mu.
func (p *Plane) setState(n *node, s, why string) {
	old := n.live.State
	if old == s {
		return
	}
	n.live.State = s
	p.log.Info("node state", "node", n.name, "from", old, "to", s, "why", why)
	if n.kind == wire.KindServer {
		p.statesChanged(n.cluster)
	}
	switch s {
	case domain.StateRunning:
		p.enqueue(p.event(n, domain.EventServerUp, why))
	case domain.StateSuspect:
		p.enqueue(p.event(n, domain.EventServerSuspect, why))
	case domain.StateFailed, domain.StateStopped:
		if old == domain.StateFailed || old == domain.StateStopped {
			return
		}
		p.enqueue(p.event(n, domain.EventServerDown, why))
	}
}

// armLiveness (re)starts n's liveness timer from now. Caller holds p.mu.
func (p *Plane) armLiveness(n *node) {
	n.gen++
	if n.timer != nil {
		n.timer.Stop()
	}
	if p.closed {
		return
	}
	suspectAfter := min(2*n.interval, n.timeout*3/4)
	gen := n.gen
	n.timer = time.AfterFunc(suspectAfter, func() { p.livenessExpired(n, gen, n.timeout-suspectAfter) })
}

// livenessExpired runs on the timer's goroutine: suspect first, then failed.
func (p *Plane) livenessExpired(n *node, gen uint64, untilFailed time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || n.gen != gen {
		return
	}
	switch n.live.State {
	case domain.StateStarting, domain.StateRunning:
		p.setState(n, domain.StateSuspect, fmt.Sprintf("no heartbeat for %s", time.Since(n.live.LastSeen).Round(time.Millisecond)))
		n.timer = time.AfterFunc(untilFailed, func() { p.livenessExpired(n, gen, 0) })
	case domain.StateSuspect:
		p.setState(n, domain.StateFailed, fmt.Sprintf("no heartbeat for %s (timeout %s)", time.Since(n.live.LastSeen).Round(time.Millisecond), n.timeout))
	}
}
