// Package replication keeps each session on its primary (owner) and one
// backup server of the cluster, and moves ownership safely when servers
// die, pause or come back.
//
// Invariants (docs/ARCHITECTURE.md "Session ownership and replication"):
//   - A session record carries (epoch, version). Epoch grows on every
//     ownership change (takeover, relinquish, failback), version on every
//     write. A holder refuses a put whose epoch is lower than its own
//     ("fenced") and ignores one that is not newer.
//   - A primary serves a session whose copy is on backup B only while it
//     holds a lease from B: the lease starts when the primary sent a
//     heartbeat that B answered and lasts leaseFraction of the heartbeat
//     timeout. B takes over only after hearing nothing from the primary for
//     the whole timeout (or when the primary refuses connections, i.e. its
//     process is gone), so a paused primary's lease has ended before B
//     takes over. On waking, the primary re-validates with B, which answers
//     with the sessions it took over; the primary drops those.
//   - A new incarnation of a peer (restart, or a primary that noticed its
//     own long pause) means its old incarnation is dead: its copies held
//     here are taken over (and, with failback on, pushed back to it).
//   - A live backup is replaced only after it knows its successor
//     (recomputeLocked), and a silent peer on another machine is judged
//     dead only with a majority or the admin server as witness (quorum.go):
//     one taker per session, on one side of a partition.
//
// Locking: Node.mu guards membership and peer state and is never held
// while an entry lock is taken or a network call runs. An entry's lock is
// held by a request from Get to Commit/Abort (including its sync
// replication); every other holder takes it briefly, without network calls,
// except failback, which holds a batch while the returning server installs
// it (that server never calls back into the sender's entries).
package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/backend/domain"
	"tandem/backend/session"
	"tandem/backend/wire"
)

// reasonSilent is why a peer that stopped answering heartbeats is dead.
const reasonSilent = "silent for the heartbeat timeout"

// leaseFraction of the heartbeat timeout is how long a lease lasts.
const leaseFraction = 0.6

// failbackBatch is how many sessions one failback request carries.
const failbackBatch = 2000

// Config configures a Node.
type Config struct {
	Name       string // this server's name
	Token      string // the domain's node token (peer authentication)
	Logger     *slog.Logger
	Emit       func(domain.Event)    // events for the admin server; may be nil
	Now        func() time.Time      // nil: time.Now
	Registerer prometheus.Registerer // may be nil
	// ClientTLS, when set, makes calls to peers HTTPS with this node's
	// certificate (mutual TLS on the internal listeners); a peer must then
	// present a certificate named after a member of the cluster.
	ClientTLS *tls.Config
	// Revoked reports a revoked node certificate (by serial, hex): checked
	// on every call, so a kept-alive connection of a revoked peer is
	// refused too. Nil: none.
	Revoked func(serial string) bool
	// Witness asks the admin server whether a peer is down too (its control
	// connection silent): the tie-breaker when a peer on another machine
	// falls silent and this server cannot see a majority of its cluster. A
	// network partition looks like a death from both sides; only the side
	// that reaches the witness, or a majority, takes over. Nil: none.
	Witness func(ctx context.Context, peer string) (down bool, err error)
}

// Node is one managed server's session store and replication engine. It
// implements session.Store.
type Node struct {
	name  string
	token string
	log   *slog.Logger
	emit  func(domain.Event)
	now   func() time.Time

	client *http.Client
	scheme string // "http", or "https" with ClientTLS
	mtls   bool
	// clientTLS is the peers' client TLS (nil on plain HTTP).
	clientTLS *tls.Config
	revoked   func(serial string) bool
	witness   func(ctx context.Context, peer string) (bool, error)

	mu      sync.Mutex
	sc      wire.ServerConfig
	applied bool
	self    wire.Member
	peers   map[string]*peer
	inc     string
	backup  string
	// handoverTo is the backup to come, told to the current one in its
	// heartbeats; handoverAcked: the current one has answered one of them.
	handoverTo    string
	handoverAcked bool
	// quorumSince: since when this server sees a majority of its cluster
	// (zero: it does not); see quorum.go.
	quorumSince time.Time
	lastCopied  string // backup the copier last completed a round for
	draining    bool
	quiet       bool // drained: no more heartbeats
	lastTick    time.Time
	// pauseDone is open while a goroutine handles a pause of this process
	// (selfPaused); every request waits for it (pauseCheck).
	pauseDone   chan struct{}
	failingBack map[string]bool
	senders     map[string]*sender
	runCtx      context.Context
	events      []domain.Event
	relinq      map[string]int // sessions taken over by relinquish, per old owner, not yet reported
	onDemand    map[string]int // sessions of a dead owner taken over one by one as requests came, not yet reported
	degradedAt  time.Time

	tmu   sync.RWMutex
	table map[string]*entry

	dmu        sync.Mutex
	dirty      map[*entry]struct{} // async writes not yet sent to the backup
	dirtySince time.Time
	flush      chan struct{}

	kick  chan struct{}
	deadq chan string // peers whose process is gone, for deathLoop
	m     *nodeMetrics
}

type entry struct {
	mu        sync.Mutex
	rec       *session.Record // nil once removed
	copiedTo  string          // server known to hold rec's current version (owner side)
	dropAt    string          // old copy holder to tell to drop once the backup holds rec
	holder    string          // last server that acknowledged a copy (not cleared by writes)
	touchSent int64
}

// copiedLocked notes that holder acknowledged the record's current version.
// A different server that acknowledged an earlier copy still holds it: it
// is told to drop it, and its lease stays required until it confirmed, so
// no stale copy is left behind for a later takeover to pick up. e.mu is held.
func (n *Node) copiedLocked(e *entry, holder string) {
	if h := e.holder; h != "" && h != holder && e.dropAt == "" {
		e.dropAt = h
	}
	e.holder = holder
	e.copiedTo = holder
	n.sendDropLocked(e, holder)
}

type peer struct {
	m         wire.Member
	inc       string
	retired   map[string]bool
	heard     bool
	lastHeard time.Time
	dead      bool
	// deadSilent: declared dead only because it was silent for the
	// timeout. That judgement says nothing once this process was paused
	// itself: the peer may have been alive all along, and may have taken
	// over our sessions while we were stopped.
	deadSilent  bool
	leaseUntil  time.Time
	backup      string // its backup, from its heartbeats
	fenced      []Fence
	fenceSeq    uint64
	fenceAck    uint64 // the seq of its fence list we processed
	tookOverInc string // its incarnation whose sessions we took over
	hbBusy      bool
	// witnessBusy: the witness is being asked about this peer;
	// noQuorumAt is when a refusal to judge it was last logged.
	witnessBusy bool
	noQuorumAt  time.Time
	// calls ends when this incarnation is declared dead, cancelling every
	// call to it then in flight (a frozen peer's callers go on at once);
	// made by the first call after the peer was live again.
	calls    context.Context
	endCalls context.CancelFunc
}

// Fence names a session taken over from a peer and the epoch it was taken at.
type Fence struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
}

// New returns a node; Apply a config and Run it before use.
func New(cfg Config) *Node {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSClientConfig:     cfg.ClientTLS,
	}
	scheme := "http"
	if cfg.ClientTLS != nil {
		scheme = "https"
	}
	n := &Node{
		name: cfg.Name, token: cfg.Token, log: cfg.Logger, emit: cfg.Emit, now: cfg.Now,
		client: &http.Client{Transport: tr}, scheme: scheme, mtls: cfg.ClientTLS != nil, clientTLS: cfg.ClientTLS, revoked: cfg.Revoked, witness: cfg.Witness,
		peers:       map[string]*peer{},
		inc:         session.NewID()[:16],
		failingBack: map[string]bool{},
		senders:     map[string]*sender{},
		relinq:      map[string]int{},
		onDemand:    map[string]int{},
		table:       map[string]*entry{},
		kick:        make(chan struct{}, 1),
		deadq:       make(chan string, 64),
		dirty:       map[*entry]struct{}{},
		flush:       make(chan struct{}, 1),
	}
	n.m = newMetrics(n, cfg.Registerer)
	return n
}

// Incarnation is this process's current incarnation id.
func (n *Node) Incarnation() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.inc
}

// Apply takes a new server configuration: membership, cluster settings and
// the session config. It never restarts anything.
func (n *Node) Apply(sc wire.ServerConfig) error {
	if sc.Self.Name != n.name {
		return fmt.Errorf("replication: config is for %q, not %q", sc.Self.Name, n.name)
	}
	found := false
	for _, m := range sc.Members {
		if m.Name == n.name {
			found = true
		}
	}
	if !found {
		sc.Members = append(sc.Members, sc.Self)
	}
	c := domain.Cluster{Name: "x", FailoverMode: sc.Cluster.FailoverMode, BackupPolicy: sc.Cluster.BackupPolicy,
		HeartbeatIntervalMS: sc.Cluster.HeartbeatIntervalMS, HeartbeatTimeoutMS: sc.Cluster.HeartbeatTimeoutMS}
	c.ApplyDefaults()
	sc.Cluster.FailoverMode, sc.Cluster.BackupPolicy = c.FailoverMode, c.BackupPolicy
	sc.Cluster.HeartbeatIntervalMS, sc.Cluster.HeartbeatTimeoutMS = c.HeartbeatIntervalMS, c.HeartbeatTimeoutMS
	if err := c.Validate(); err != nil {
		return fmt.Errorf("replication: cluster settings: %w", err)
	}
	n.mu.Lock()
	n.sc = sc
	n.applied = true
	n.self = sc.Self
	keep := map[string]bool{}
	for _, m := range sc.Members {
		if m.Name == n.name {
			n.self = m
			continue
		}
		keep[m.Name] = true
		if p, ok := n.peers[m.Name]; ok {
			p.m = m
		} else {
			n.peers[m.Name] = &peer{m: m, retired: map[string]bool{}}
		}
	}
	for name := range n.peers {
		if !keep[name] {
			if p := n.peers[name]; p.endCalls != nil {
				p.endCalls()
			}
			delete(n.peers, name)
		}
	}
	n.recomputeLocked()
	n.mu.Unlock()
	n.kickCopier()
	return nil
}

func (n *Node) interval() time.Duration {
	return time.Duration(n.sc.Cluster.HeartbeatIntervalMS) * time.Millisecond
}

func (n *Node) timeout() time.Duration {
	return time.Duration(n.sc.Cluster.HeartbeatTimeoutMS) * time.Millisecond
}

func (n *Node) sessionTimeout() time.Duration {
	return time.Duration(n.sc.Session.TimeoutSeconds) * time.Second
}

// liveLocked: heard from within the timeout and not declared dead.
func (n *Node) liveLocked(name string) bool {
	p := n.peers[name]
	return p != nil && p.heard && !p.dead && n.now().Sub(p.lastHeard) < n.timeout()
}

// recomputeLocked chooses the backup. A live backup is replaced only once
// it has answered a heartbeat naming its successor (handoverTo): until then
// the peers know it as the backup that takes everything over, and it keeps
// getting every write. Replaced at once, it would still believe so if this
// server died before its next heartbeat, and take over its stale copies
// while the successor took over the fresh ones: two owners at one epoch
// (TestDomainOnThreeHosts, a host cut off soon after a restart).
func (n *Node) recomputeLocked() {
	old := n.backup
	want := ""
	if n.sc.Session.Shared {
		want = ChooseBackup(n.sc.Cluster.BackupPolicy, n.name, n.sc.Members, n.liveLocked)
	}
	switch {
	case want == old:
		n.handoverTo, n.handoverAcked = "", false
		return
	case old != "" && want != "" && n.liveLocked(old) && (n.handoverTo != want || !n.handoverAcked):
		if n.handoverTo != want {
			n.handoverTo, n.handoverAcked = want, false
			n.log.Info("replication: backup to change once the current one knows", "from", old, "to", want)
		}
		return
	}
	n.backup, n.handoverTo, n.handoverAcked = want, "", false
	n.log.Info("replication: backup changed", "from", old, "to", n.backup)
}

func (n *Node) currentBackup() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.backup
}

func (n *Node) routeOf(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name == n.name {
		return n.self.Route
	}
	if p := n.peers[name]; p != nil {
		return p.m.Route
	}
	return ""
}

func (n *Node) addrOf(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p := n.peers[name]; p != nil {
		return p.m.PeerAddr()
	}
	return ""
}

func (n *Node) kickCopier() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *Node) record(e domain.Event) {
	e.Time = n.now().UTC()
	if e.Cluster == "" {
		n.mu.Lock()
		e.Cluster = n.sc.Cluster.Name
		n.mu.Unlock()
	}
	if e.Server == "" {
		e.Server = n.name
	}
	n.log.Info("event", "type", e.Type, "peer", e.Peer, "sessions", e.Sessions, "message", e.Message)
	n.mu.Lock()
	n.events = append(n.events, e)
	if len(n.events) > 1000 {
		n.events = n.events[len(n.events)-1000:]
	}
	n.mu.Unlock()
	if n.emit != nil {
		n.emit(e)
	}
}

// Record keeps an event of this server's (e.g. its application's) with
// the node's own: logged, listed by Events, and sent to the admin server.
func (n *Node) Record(e domain.Event) { n.record(e) }

// Events returns the events this node emitted (the last 1000).
func (n *Node) Events() []domain.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]domain.Event{}, n.events...)
}

// ---- table ----

func (n *Node) lookup(id string) *entry {
	n.tmu.RLock()
	defer n.tmu.RUnlock()
	return n.table[id]
}

func (n *Node) remove(id string, e *entry) {
	n.tmu.Lock()
	if n.table[id] == e {
		delete(n.table, id)
	}
	n.tmu.Unlock()
}

// getOrCreate returns the entry for id, creating an empty one.
func (n *Node) getOrCreate(id string) *entry {
	n.tmu.Lock()
	defer n.tmu.Unlock()
	e := n.table[id]
	if e == nil {
		e = &entry{}
		n.table[id] = e
	}
	return e
}

func (n *Node) entries() []*entry {
	n.tmu.RLock()
	defer n.tmu.RUnlock()
	out := make([]*entry, 0, len(n.table))
	for _, e := range n.table {
		out = append(out, e)
	}
	return out
}

// Counts reports sessions owned here, copies held for peers, and owned
// sessions without a copy on the current backup. It never waits for an
// entry a request holds (that request may wait the heartbeat timeout on a
// silent backup, and the heartbeats to the admin server, the metrics and
// new sessions' limit check must not wait with it): a held entry is in a
// request, so it counts as owned.
func (n *Node) Counts() (owned, copies, unprotected int) {
	backup := n.currentBackup()
	for _, e := range n.entries() {
		if !e.mu.TryLock() {
			owned++
			continue
		}
		if e.rec != nil {
			if e.rec.Owner == n.name {
				owned++
				if backup == "" || e.copiedTo != backup {
					unprotected++
				}
			} else {
				copies++
			}
		}
		e.mu.Unlock()
	}
	return
}

// Status summarises the node for the agent's heartbeat.
func (n *Node) Status() wire.Heartbeat {
	owned, copies, unprot := n.Counts()
	lag := n.lag()
	n.mu.Lock()
	defer n.mu.Unlock()
	hb := wire.Heartbeat{State: "running", Sessions: owned, BackupSessions: copies, Backup: n.backup, Unprotected: unprot, LagMS: lag.Milliseconds()}
	if n.draining {
		hb.State = "stopping"
	}
	names := make([]string, 0, len(n.peers))
	for name := range n.peers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		st := domain.StateStarting
		p := n.peers[name]
		switch {
		case p.dead:
			st = domain.StateFailed
		case n.liveLocked(name):
			st = domain.StateRunning
		case p.heard:
			st = domain.StateSuspect
		}
		hb.Peers = append(hb.Peers, wire.PeerState{Name: name, State: st})
	}
	return hb
}

// ---- liveness ----

// refused reports whether err (or a fresh dial to addr) shows that no
// process listens at addr: the peer's process is gone.
func refused(err error, addr string) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	if addr == "" || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	// A reused keep-alive connection to a dead process fails with a reset or
	// EOF: ask the kernel directly.
	c, derr := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if derr == nil {
		c.Close()
		return false
	}
	// Reset while connecting: the listening socket is going away with its process.
	return errors.Is(derr, syscall.ECONNREFUSED) || errors.Is(derr, syscall.ECONNRESET)
}

// markHeard records a message from name's incarnation inc. It reports
// false when inc is retired (a message from a previous incarnation).
func (n *Node) markHeard(name, inc string) bool { return n.markHeardFrom(name, inc, "", false) }

// markHeardFrom is markHeard with the backup the peer names in its own
// heartbeat (hasBackup). On a new incarnation, only the server the peer
// names as its backup takes over the copies of the old one: other holders
// may hold stale copies (an old backup whose drop is pending), and two
// takers would make two owners. Copies not taken over stay; a request for
// one takes it over on demand when the owner no longer has it.
func (n *Node) markHeardFrom(name, inc, backup string, hasBackup bool) bool {
	n.mu.Lock()
	p := n.peers[name]
	if p == nil {
		n.mu.Unlock()
		return false
	}
	if p.retired[inc] {
		n.mu.Unlock()
		return false
	}
	old := ""
	oldBackup := p.backup // named by the old incarnation (p.backup is updated after this call)
	if p.inc != "" && p.inc != inc {
		if !hasBackup {
			// Learn the new incarnation from its own heartbeat, which names
			// its backup; until then the old one counts as still alive.
			n.mu.Unlock()
			return true
		}
		old = p.inc
		p.retired[old] = true
	}
	changed := !p.heard || p.dead || old != "" || !n.liveLocked(name)
	p.inc = inc
	p.heard = true
	p.lastHeard = n.now()
	p.dead, p.deadSilent = false, false
	if old != "" {
		p.leaseUntil = time.Time{}
	}
	if changed {
		n.recomputeLocked()
	}
	n.mu.Unlock()
	if old != "" {
		n.log.Info("replication: peer has a new incarnation", "peer", name, "its_backup", backup, "old_backup", oldBackup)
		// The old incarnation's backup holds the newest copies of what it
		// owned; the new one's backup (whoever it heard first) may hold only
		// stale copies from long ago.
		if oldBackup == n.name || oldBackup == "" {
			n.takeOver(name, old, "restarted")
		} else {
			n.mu.Lock()
			p.tookOverInc = old // failback of what we took over earlier still applies
			n.mu.Unlock()
		}
		// Its copies of our sessions died with the old incarnation.
		for _, e := range n.entries() {
			e.mu.Lock()
			if e.copiedTo == name {
				e.copiedTo = ""
			}
			if e.holder == name {
				e.holder = ""
			}
			if e.dropAt == name {
				e.dropAt = ""
			}
			e.mu.Unlock()
		}
	}
	if changed || old != "" {
		n.kickCopier()
	}
	return true
}

// declareDead marks name's current incarnation dead and takes over the
// sessions it owned that this server holds copies of.
func (n *Node) declareDead(name, reason string) {
	n.mu.Lock()
	p := n.peers[name]
	if p == nil || p.dead {
		n.mu.Unlock()
		return
	}
	p.dead = true
	p.deadSilent = reason == reasonSilent
	p.leaseUntil = time.Time{}
	if p.endCalls != nil {
		p.endCalls()
		p.calls, p.endCalls = nil, nil
	}
	inc := p.inc
	designated := p.backup == "" || p.backup == n.name
	n.recomputeLocked()
	n.mu.Unlock()
	n.log.Warn("replication: peer is down", "peer", name, "reason", reason)
	if designated {
		n.takeOver(name, inc, reason)
	} else {
		// Only the backup it last named takes everything over (a second
		// taker would make a second owner); copies here are taken over on
		// demand by requests that their cookie routes here.
		n.mu.Lock()
		p.tookOverInc = inc
		n.mu.Unlock()
	}
	n.kickCopier()
}

// markDirty queues an owned session for the async flusher. Repeated
// writes to one session before a flush coalesce into one copy, so the
// backlog is bounded by the number of sessions.
func (n *Node) markDirty(e *entry) {
	n.dmu.Lock()
	if len(n.dirty) == 0 {
		n.dirtySince = n.now()
	}
	n.dirty[e] = struct{}{}
	n.dmu.Unlock()
	select {
	case n.flush <- struct{}{}:
	default:
	}
}

// lag is the age of the oldest asynchronous write not yet sent to the
// backup; 0 when none waits.
func (n *Node) lag() time.Duration {
	n.dmu.Lock()
	defer n.dmu.Unlock()
	if len(n.dirty) == 0 {
		return 0
	}
	return n.now().Sub(n.dirtySince)
}

func (n *Node) dirtyLen() int {
	n.dmu.Lock()
	defer n.dmu.Unlock()
	return len(n.dirty)
}

// flushLoop sends async writes to the backup: one round trip at a time,
// carrying everything written meanwhile.
func (n *Node) flushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.flush:
		}
		n.flushOnce(ctx)
	}
}

func (n *Node) flushOnce(ctx context.Context) {
	n.dmu.Lock()
	set, since := n.dirty, n.dirtySince
	n.dirty = map[*entry]struct{}{}
	n.dmu.Unlock()
	if len(set) == 0 {
		return
	}
	backup := n.currentBackup()
	if backup == "" {
		return // the copier protects them when a backup appears
	}
	var items []Item
	var es []*entry
	send := func() {
		if len(items) == 0 {
			return
		}
		sts, err := n.postRecords(ctx, backup, items)
		if err != nil {
			if errors.Is(err, errRefused) {
				n.reportDead(backup)
			}
			n.kickCopier()
		}
		for i, e := range es {
			sent := items[i].Rec
			e.mu.Lock()
			if r := e.rec; r != nil && r.Owner == n.name && err == nil {
				switch {
				case sts[i] == stFenced && r.Epoch <= sent.Epoch:
					e.rec = nil
					n.remove(r.ID, e)
				case sts[i] != stFenced && r.Epoch == sent.Epoch && r.Version == sent.Version:
					n.copiedLocked(e, backup)
				}
			}
			e.mu.Unlock()
		}
		items, es = items[:0], es[:0]
	}
	for e := range set {
		e.mu.Lock()
		if r := e.rec; r != nil && r.Owner == n.name && n.unleased(e) == "" {
			r.Backup = backup
			items = append(items, Item{Op: opPut, Rec: r.Clone()})
			es = append(es, e)
		}
		e.mu.Unlock()
		if len(items) >= 1000 {
			send()
		}
	}
	send()
	n.m.lag.Set(n.now().Sub(since).Seconds())
}

// reportDead asks deathLoop to declare name dead (connection refused);
// it never blocks.
func (n *Node) reportDead(name string) {
	select {
	case n.deadq <- name:
	default:
	}
}

func (n *Node) deathLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-n.deadq:
			n.declareDead(name, "connection refused")
		}
	}
}

// takeOver makes this server the owner of every copy it holds whose owner
// is name, fencing name's incarnation inc.
func (n *Node) takeOver(name, inc, reason string) {
	n.mu.Lock()
	shared := n.sc.Session.Shared
	backup := n.backup
	n.mu.Unlock()
	if !shared {
		return
	}
	start := n.now()
	var fences []Fence
	for _, e := range n.entries() {
		e.mu.Lock()
		if r := e.rec; r != nil && r.Owner == name {
			r.Epoch++
			r.Owner = n.name
			r.Backup = backup
			e.copiedTo = ""
			fences = append(fences, Fence{ID: r.ID, Epoch: r.Epoch})
		}
		e.mu.Unlock()
	}
	n.mu.Lock()
	if p := n.peers[name]; p != nil {
		if len(fences) > 0 {
			p.fenced = append(p.fenced, fences...)
			p.fenceSeq++
		}
		p.tookOverInc = inc
	}
	n.mu.Unlock()
	if len(fences) > 0 {
		n.m.failovers.Add(float64(len(fences)))
		n.record(domain.Event{Type: domain.EventFailover, Peer: name, Sessions: len(fences),
			Message: fmt.Sprintf("%s took over %d sessions of %s (%s) in %s", n.name, len(fences), name, reason, n.now().Sub(start).Round(time.Microsecond))})
		n.kickCopier()
	}
}

// ---- run loop ----

// Run heartbeats the peers, detects failures, copies sessions to the
// backup, fails sessions back and expires idle ones, until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	n.runCtx = ctx
	iv := n.interval()
	n.mu.Unlock()
	if iv <= 0 {
		iv = 500 * time.Millisecond
	}
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); n.flushLoop(ctx) }()
	go func() { defer wg.Done(); n.copierLoop(ctx) }()
	go func() { defer wg.Done(); n.deathLoop(ctx) }()
	go func() { defer wg.Done(); n.reaperLoop(ctx) }()
	defer wg.Wait()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n.tick(ctx, &wg)
		n.mu.Lock()
		iv = n.interval()
		n.mu.Unlock()
		t.Reset(iv)
	}
}

func (n *Node) tick(ctx context.Context, wg *sync.WaitGroup) {
	now := n.now()
	n.mu.Lock()
	if !n.applied || n.quiet {
		n.mu.Unlock()
		return
	}
	gap, stalled, paused := n.claimPauseLocked(now)
	n.lastTick = now
	if stalled && !paused {
		// We were slow, not the peers: give them a fresh timeout before
		// judging them (their heartbeats may sit unread in our sockets).
		for _, p := range n.peers {
			if p.heard && !p.dead {
				p.lastHeard = now
			}
		}
	}
	n.mu.Unlock()
	if paused {
		n.handlePause(gap)
		return
	}
	if stalled {
		n.log.Debug("replication: this process stalled", "gap", gap)
	}
	n.mu.Lock()
	n.updateQuorumLocked(now)
	var hb []string
	var silent []string
	var ask []string
	var fb []string
	for name, p := range n.peers {
		if !p.hbBusy {
			p.hbBusy = true
			hb = append(hb, name)
		}
		if p.heard && !p.dead && MayTakeOver(p.lastHeard, now, n.timeout()) {
			switch n.silenceVerdictLocked(name, now) {
			case verdictDead:
				silent = append(silent, name)
			case verdictAsk:
				if !p.witnessBusy {
					p.witnessBusy = true
					ask = append(ask, name)
				}
			default:
				n.noQuorumLocked(p, name, now, nil)
			}
		}
		if p.tookOverInc != "" && p.inc != p.tookOverInc && n.liveLocked(name) && n.sc.Session.Failback && !n.failingBack[name] && !n.draining {
			fb = append(fb, name)
			n.failingBack[name] = true
		}
	}
	rel, dem := n.relinq, n.onDemand
	n.relinq, n.onDemand = map[string]int{}, map[string]int{}
	n.mu.Unlock()
	for why, counts := range map[string]map[string]int{"relinquished on request": rel, "one by one, as their requests came; it was down": dem} {
		for name, cnt := range counts {
			n.m.failovers.Add(float64(cnt))
			n.record(domain.Event{Type: domain.EventFailover, Peer: name, Sessions: cnt,
				Message: fmt.Sprintf("%s took over %d sessions of %s (%s)", n.name, cnt, name, why)})
		}
	}
	// A takeover waits for the entry locks of requests in flight (some
	// waiting on the silent peer): never on this goroutine, whose gaps
	// measure this process's own pauses.
	for _, name := range silent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.declareDead(name, reasonSilent)
		}()
	}
	for _, name := range ask {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.askWitness(ctx, name)
		}()
	}
	for _, name := range hb {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.heartbeat(ctx, name)
			n.mu.Lock()
			if p := n.peers[name]; p != nil {
				p.hbBusy = false
			}
			n.mu.Unlock()
		}()
	}
	for _, name := range fb {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.failback(ctx, name)
			n.mu.Lock()
			delete(n.failingBack, name)
			n.mu.Unlock()
		}()
	}
}

// pauseCheck runs selfPaused at once when this process was stalled long
// enough for peers to have declared it dead and its tick has not noticed
// yet. Every request (a peer's or a user's) checks first: after a SIGSTOP
// or a VM stall, requests that sat in the sockets are read as soon as the
// process runs, often before the tick; a relinquish or a write answered
// from a record a peer has taken over meanwhile would make a second owner.
func (n *Node) pauseCheck() {
	n.mu.Lock()
	gap, _, paused := n.claimPauseLocked(n.now())
	inProgress := n.pauseDone
	n.mu.Unlock()
	switch {
	case paused:
		n.handlePause(gap)
	case inProgress != nil:
		<-inProgress // another goroutine handles it: wait until it is done
	}
}

// claimPauseLocked measures the time since the last tick: a stall is
// longer than two heartbeat intervals; a pause is a stall long enough for
// a peer to have declared us dead (a full timeout of silence after our
// last heartbeat). The caller claims a pause it is told of (lastTick and
// pauseDone are set, so no one else handles the same pause) and must
// handlePause it. Caller holds n.mu.
func (n *Node) claimPauseLocked(now time.Time) (gap time.Duration, stalled, paused bool) {
	if !n.applied || n.quiet || n.lastTick.IsZero() {
		return 0, false, false
	}
	gap = now.Sub(n.lastTick)
	stalled = gap > 2*n.interval()
	paused = stalled && gap > n.timeout()-n.interval()/4 && n.pauseDone == nil
	if paused {
		n.lastTick = now
		n.pauseDone = make(chan struct{})
	}
	return gap, stalled, paused
}

// handlePause runs selfPaused and releases the requests waiting for it.
// The caller made n.pauseDone.
func (n *Node) handlePause(gap time.Duration) {
	n.selfPaused(gap)
	n.mu.Lock()
	close(n.pauseDone)
	n.pauseDone = nil
	n.mu.Unlock()
}

// selfPaused handles a stall of this process longer than the heartbeat
// timeout: peers may have declared us dead meanwhile. Copies we
// hold may be stale, so they go; leases are void; we take a new
// incarnation so every peer treats the old one as dead (fencing it) and
// re-copies to us; and peers get a fresh timeout before we judge them.
func (n *Node) selfPaused(gap time.Duration) {
	n.mu.Lock()
	n.inc = session.NewID()[:16]
	now := n.now()
	revived := false
	for _, p := range n.peers {
		p.leaseUntil = time.Time{}
		if p.dead && p.deadSilent {
			// Judged dead by silence before or during our pause: it may
			// be alive and own our sessions now. Hear from it again (its
			// fences come with the answer) before serving what it backs up.
			p.dead, p.deadSilent, p.heard = false, false, true
			revived = true
		}
		if p.heard && !p.dead {
			p.lastHeard = now
		}
	}
	if revived {
		n.recomputeLocked()
	}
	n.mu.Unlock()
	dropped := 0
	for _, e := range n.entries() {
		e.mu.Lock()
		if e.rec != nil && e.rec.Owner != n.name {
			id := e.rec.ID
			e.rec = nil
			n.remove(id, e)
			dropped++
		}
		e.mu.Unlock()
	}
	n.log.Warn("replication: this process was paused; new incarnation, copies dropped, leases void", "gap", gap, "copies_dropped", dropped)
}

func (n *Node) reaperLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.Expire()
		}
	}
}

// Expire removes owned sessions idle past the timeout (telling the backup
// to drop its copy) and copies whose owner has been silent about them for
// twice the timeout. It returns how many it removed.
func (n *Node) Expire() int {
	n.mu.Lock()
	to := n.sessionTimeout()
	n.mu.Unlock()
	now := n.now()
	removed := 0
	drops := map[string][]Item{} // by copy holder
	for _, e := range n.entries() {
		if !e.mu.TryLock() {
			continue
		}
		if r := e.rec; r != nil {
			own := r.Owner == n.name
			limit := to
			if !own {
				limit = 2 * to
			}
			if session.Expired(r.Access, limit, now) {
				if own && e.copiedTo != "" {
					drops[e.copiedTo] = append(drops[e.copiedTo], Item{Op: opDrop, Rec: &session.Record{ID: r.ID, Owner: n.name, Epoch: r.Epoch}})
				}
				e.rec = nil
				n.remove(r.ID, e)
				removed++
			}
		}
		e.mu.Unlock()
	}
	for holder, items := range drops {
		s := n.senderFor(holder)
		for _, it := range items {
			s.enqueue(it, nil, nil)
		}
	}
	return removed
}

// Drain prepares a graceful stop: no new sessions, async queues flushed,
// and every owned session copied to a live backup (while ctx allows). It
// returns how many owned sessions are protected and unprotected.
func (n *Node) Drain(ctx context.Context) (protected, unprotected int) {
	n.mu.Lock()
	n.draining = true
	n.mu.Unlock()
	for ctx.Err() == nil {
		n.mu.Lock()
		q := 0
		for _, s := range n.senders {
			q += len(s.q)
		}
		n.mu.Unlock()
		if d := n.dirtyLen(); d > 0 {
			n.flushOnce(ctx)
			q += d
		}
		if q == 0 {
			left := n.copyRound(ctx)
			if left <= 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	n.mu.Lock()
	n.quiet = true // peers now learn of our exit from a refused connection
	n.mu.Unlock()
	owned, _, unprot := n.Counts()
	return owned - unprot, unprot
}
