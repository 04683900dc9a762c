package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// Result texts of Push for nodes that did not ack.
const (
	ErrTextNotConnected = "not connected"
	errTextDisconnected = "disconnected before acking"
	errTextNoAck        = "no ack in time"
	errTextNoConfig     = "cannot build the desired config"
)

// connOfKind returns the live connection of the node named name if it is
// of kind, or nil.
func (p *Plane) connOfKind(name, kind string) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.nodes[name]; ok && n.kind == kind {
		return n.conn
	}
	return nil
}

func (p *Plane) dropAckWaiter(c *conn, sum string, ch chan wire.Ack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ws := c.acks[sum]
	for i, w := range ws {
		if w == ch {
			c.acks[sum] = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(c.acks[sum]) == 0 {
		delete(c.acks, sum)
	}
}

// Push sends every server and web server of cluster its desired config and
// waits (at most Config.PushTimeout, and ctx) for their acks. It records
// config.pushed, then config.applied or config.failed (with the reason) per
// node. Nodes not connected are reported with OK false and Error "not
// connected"; they get the config when they reconnect. An unknown cluster
// is ErrNotFound. The configs of the whole cluster are read in one pass
// (store.ClusterConfigs), so a push costs O(nodes), not O(nodes²).
func (p *Plane) Push(ctx context.Context, cluster, actor string) ([]domain.PushResult, error) {
	seq := p.readSeq.Add(1)
	cfgs, err := p.cfg.Store.ClusterConfigs(ctx, cluster)
	if err != nil {
		return nil, fmt.Errorf("control: push to %q: %w", cluster, err)
	}
	// Events are recorded even if the caller goes away mid-push.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	_ = p.record(rctx, domain.Event{Type: domain.EventConfigPushed, Cluster: cluster,
		Message: fmt.Sprintf("pushed by %s to %d nodes", actor, len(cfgs))})

	type pending struct {
		i   int
		c   *conn
		sum string
		ch  chan wire.Ack
	}
	results := make([]domain.PushResult, len(cfgs))
	var waits []pending
	for i, nc := range cfgs {
		results[i] = domain.PushResult{Node: nc.Name, Kind: nc.Kind, Revision: nc.Config.Revision}
		c := p.connOfKind(nc.Name, nc.Kind)
		if c == nil {
			results[i].Error = ErrTextNotConnected
			continue
		}
		ch := make(chan wire.Ack, 1)
		await := func(cfg wire.Config) bool {
			c.acks[cfg.Checksum] = append(c.acks[cfg.Checksum], ch) // before the send: no ack is missed
			return false
		}
		cfg := nc.Config
		err := p.offer(c, seq, cfg, await)
		if errors.Is(err, errSuperseded) {
			// The node was sent a config read after this push's read
			// (it reconnected, or a re-check ran): send it the newest.
			cfg, err = p.sendDesired(ctx, c, nc.Kind, nc.Name, await)
			results[i].Revision = cfg.Revision
		}
		if err != nil {
			if cfg.Checksum != "" {
				p.dropAckWaiter(c, cfg.Checksum, ch)
			}
			if c.ctx.Err() != nil {
				results[i].Error = ErrTextNotConnected
			} else {
				p.log.Error("push: desired config", "node", nc.Name, "err", err)
				results[i].Error = errTextNoConfig
			}
			continue
		}
		waits = append(waits, pending{i: i, c: c, sum: cfg.Checksum, ch: ch})
	}

	wctx, cancel := context.WithTimeout(ctx, p.cfg.PushTimeout)
	defer cancel()
	for _, w := range waits {
		select {
		case ack := <-w.ch:
			results[w.i].OK = ack.OK
			results[w.i].Error = ack.Error
			if !ack.OK && ack.Error == "" {
				results[w.i].Error = "refused"
			}
		case <-w.c.ctx.Done():
			results[w.i].Error = errTextDisconnected
		case <-wctx.Done():
			results[w.i].Error = errTextNoAck
		}
		p.dropAckWaiter(w.c, w.sum, w.ch)
	}

	for _, r := range results {
		e := domain.Event{Cluster: cluster, Server: r.Node}
		if r.OK {
			e.Type, e.Message = domain.EventConfigApplied, fmt.Sprintf("revision %d applied", r.Revision)
		} else {
			e.Type, e.Message = domain.EventConfigFailed, fmt.Sprintf("revision %d: %s", r.Revision, r.Error)
		}
		_ = p.record(rctx, e)
	}
	return results, nil
}

// Scope names the nodes whose desired config a domain write may have
// changed: every server and web server of Clusters (those the store has
// in them now, and any connected node last sent a config of one of them:
// a node deleted or moved away), and the node managers NodeManagers. All
// means every connected node. The zero Scope names nothing.
type Scope struct {
	All          bool
	Clusters     []string
	NodeManagers []string
}

// Everything is the Scope of every connected node.
var Everything = Scope{All: true}

// IsEmpty reports whether s names no node.
func (s Scope) IsEmpty() bool {
	return !s.All && len(s.Clusters) == 0 && len(s.NodeManagers) == 0
}

// merge adds o's nodes to s.
func (s *Scope) merge(o Scope) {
	if s.All || o.All {
		*s = Everything
		return
	}
	s.Clusters = appendNew(s.Clusters, o.Clusters...)
	s.NodeManagers = appendNew(s.NodeManagers, o.NodeManagers...)
}

// appendNew appends the non-empty names of add that list lacks.
func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		if a != "" && !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

// Changed asks the plane to re-send the desired config to every connected
// node of scope whose desired config differs from what it applied or was
// last sent (call it after a domain write, with what the write touched).
// It never blocks; Run does the work, merging the scopes of the calls made
// while it was busy. A config the node refused is not re-sent until the
// desired config changes again, the node reconnects, or a Push.
func (p *Plane) Changed(ctx context.Context, scope Scope) {
	if scope.IsEmpty() {
		return
	}
	p.mu.Lock()
	p.pending.merge(scope)
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// takePending returns the scope Changed accumulated and clears it.
func (p *Plane) takePending() Scope {
	p.mu.Lock()
	defer p.mu.Unlock()
	sc := p.pending
	p.pending = Scope{}
	return sc
}

type target struct {
	c          *conn
	kind, name string
}

// resync is Changed's work (and the periodic reconcile's), on Run's
// goroutine: the configs of each cluster in scope are read in one pass,
// node managers one by one.
func (p *Plane) resync(ctx context.Context, sc Scope) {
	clusters := appendNew(nil, sc.Clusters...)
	nms := appendNew(nil, sc.NodeManagers...)
	var singles []target // connected nodes of no cluster that are not node managers (none expected)
	if sc.All {
		p.mu.Lock()
		for _, n := range p.nodes {
			switch {
			case n.conn == nil:
			case n.kind == wire.KindNodeManager:
				nms = appendNew(nms, n.name)
			case n.cluster != "":
				clusters = appendNew(clusters, n.cluster)
			default:
				singles = append(singles, target{c: n.conn, kind: n.kind, name: n.name})
			}
		}
		p.mu.Unlock()
	}
	slices.Sort(clusters)
	slices.Sort(nms)
	for _, cl := range clusters {
		if ctx.Err() != nil {
			return
		}
		p.resyncCluster(ctx, cl)
	}
	for _, nm := range nms {
		if c := p.connOfKind(nm, wire.KindNodeManager); c != nil {
			singles = append(singles, target{c: c, kind: wire.KindNodeManager, name: nm})
		}
	}
	for _, t := range singles {
		if ctx.Err() != nil {
			return
		}
		cfg, err := p.sendDesired(ctx, t.c, t.kind, t.name, p.unchanged(t.c))
		p.resent(t, cfg, err)
	}
}

// resyncCluster re-sends the changed configs of one cluster's connected
// nodes, and settles the connected nodes last known in it that the store
// no longer has there (deleted: cut off; moved: their new config).
func (p *Plane) resyncCluster(ctx context.Context, cluster string) {
	seq := p.readSeq.Add(1)
	cfgs, err := p.cfg.Store.ClusterConfigs(ctx, cluster)
	if err != nil && !errors.Is(err, domain.ErrNotFound) {
		if ctx.Err() == nil {
			p.log.Error("resync: cannot read the desired configs", "cluster", cluster, "err", err)
		}
		return
	}
	in := make(map[target]bool, len(cfgs))
	for _, nc := range cfgs {
		in[target{kind: nc.Kind, name: nc.Name}] = true
		if c := p.connOfKind(nc.Name, nc.Kind); c != nil {
			p.resent(target{c: c, kind: nc.Kind, name: nc.Name}, nc.Config, p.offer(c, seq, nc.Config, p.unchanged(c)))
		}
	}
	p.mu.Lock()
	var gone []target
	for _, n := range p.nodes {
		if n.conn != nil && n.cluster == cluster && !in[target{kind: n.kind, name: n.name}] {
			gone = append(gone, target{c: n.conn, kind: n.kind, name: n.name})
		}
	}
	p.mu.Unlock()
	for _, t := range gone {
		cfg, err := p.sendDesired(ctx, t.c, t.kind, t.name, p.unchanged(t.c))
		p.resent(t, cfg, err)
	}
}

// unchanged is the re-check's skip: it notes the node's cluster (its
// heartbeat settings change when it acks) and skips a config the node
// already has or was sent last, or refused.
func (p *Plane) unchanged(c *conn) func(cfg wire.Config) bool {
	return func(cfg wire.Config) bool {
		if n := c.node; n.conn == c {
			n.cluster = clusterOf(cfg)
		}
		has := c.sentSum // the node applies it next
		if has == "" {
			has = c.appliedSum
		}
		return cfg.Checksum == has || cfg.Checksum == c.refusedSum
	}
}

// resent logs the outcome of a re-check's send to t, and cuts off a node
// that is no longer defined.
func (p *Plane) resent(t target, cfg wire.Config, err error) {
	switch {
	case errors.Is(err, domain.ErrNotFound):
		p.log.Warn("connected node was deleted, closing its connection", "node", t.name)
		_ = t.c.send(wire.TypeError, wire.Error{Code: wire.CodeUnknownNode, Message: "this node is no longer defined"})
		t.c.cancel()
	case errors.Is(err, errUnchanged), errors.Is(err, errSuperseded):
	case err != nil:
		if t.c.ctx.Err() == nil {
			p.log.Error("resync: cannot send desired config", "node", t.name, "err", err)
		}
	default:
		p.log.Info("sent changed config", "node", t.name, "revision", cfg.Revision)
	}
}

// Command sends cmd to the node manager and waits for its result (bounded
// by ctx and a minute). A node manager that is not connected, or that goes
// away before answering, is domain.ErrUnavailable. An empty cmd.ID is
// filled with a random one.
func (p *Plane) Command(ctx context.Context, nodeManager string, cmd wire.Command) (wire.CommandResult, error) {
	if cmd.ID == "" {
		cmd.ID = callID()
	}
	if err := cmd.Validate(); err != nil {
		return wire.CommandResult{}, &domain.InvalidError{Field: "command", Message: err.Error()}
	}
	c := p.connOfKind(nodeManager, wire.KindNodeManager)
	if c == nil {
		return wire.CommandResult{}, fmt.Errorf("control: node manager %q is not connected: %w", nodeManager, domain.ErrUnavailable)
	}
	return call(ctx, p, c, func(c *conn) map[string]chan wire.CommandResult { return c.results }, cmd.ID, wire.TypeCommand, cmd, commandTimeout)
}
