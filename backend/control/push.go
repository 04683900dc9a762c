package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
// is ErrNotFound.
func (p *Plane) Push(ctx context.Context, cluster, actor string) ([]domain.PushResult, error) {
	refs, err := p.cfg.Store.NodesOfCluster(ctx, cluster)
	if err != nil {
		return nil, fmt.Errorf("control: push to %q: %w", cluster, err)
	}
	// Events are recorded even if the caller goes away mid-push.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	_ = p.record(rctx, domain.Event{Type: domain.EventConfigPushed, Cluster: cluster,
		Message: fmt.Sprintf("pushed by %s to %d nodes", actor, len(refs))})

	type pending struct {
		i   int
		c   *conn
		sum string
		ch  chan wire.Ack
	}
	results := make([]domain.PushResult, len(refs))
	var waits []pending
	for i, ref := range refs {
		results[i] = domain.PushResult{Node: ref.Name, Kind: ref.Kind}
		c := p.connOfKind(ref.Name, ref.Kind)
		if c == nil {
			results[i].Error = ErrTextNotConnected
			if cfg, err := p.cfg.Store.DesiredConfig(ctx, ref.Kind, ref.Name); err == nil {
				results[i].Revision = cfg.Revision
			}
			continue
		}
		ch := make(chan wire.Ack, 1)
		cfg, err := p.sendDesired(ctx, c, ref.Kind, ref.Name, func(cfg wire.Config) bool {
			c.acks[cfg.Checksum] = append(c.acks[cfg.Checksum], ch) // before the send: no ack is missed
			return false
		})
		results[i].Revision = cfg.Revision
		if err != nil {
			if cfg.Checksum != "" {
				p.dropAckWaiter(c, cfg.Checksum, ch)
			}
			if c.ctx.Err() != nil {
				results[i].Error = ErrTextNotConnected
			} else {
				p.log.Error("push: desired config", "node", ref.Name, "err", err)
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

// Changed asks the plane to re-send every connected node whose desired
// config differs from what it applied (call it after any domain write).
// It never blocks; Run does the work.
func (p *Plane) Changed(ctx context.Context) {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

type target struct {
	c          *conn
	kind, name string
}

// resync is Changed's work, on Run's goroutine.
func (p *Plane) resync(ctx context.Context) {
	p.mu.Lock()
	var ts []target
	for _, n := range p.nodes {
		if n.conn != nil {
			ts = append(ts, target{c: n.conn, kind: n.kind, name: n.name})
		}
	}
	p.mu.Unlock()
	for _, t := range ts {
		cfg, err := p.sendDesired(ctx, t.c, t.kind, t.name, func(cfg wire.Config) bool {
			if n := t.c.node; n.conn == t.c {
				n.cluster = clusterOf(cfg) // heartbeat settings change when the node acks
			}
			return cfg.Checksum == t.c.appliedSum || cfg.Checksum == t.c.sentSum
		})
		switch {
		case errors.Is(err, domain.ErrNotFound):
			p.log.Warn("connected node was deleted, closing its connection", "node", t.name)
			_ = t.c.send(wire.TypeError, wire.Error{Code: wire.CodeUnknownNode, Message: "this node is no longer defined"})
			t.c.cancel()
		case errors.Is(err, errUnchanged):
		case err != nil:
			if t.c.ctx.Err() == nil {
				p.log.Error("resync: cannot send desired config", "node", t.name, "err", err)
			}
		default:
			p.log.Info("sent changed config", "node", t.name, "revision", cfg.Revision)
		}
	}
}

// Command sends cmd to the node manager and waits for its result (bounded
// by ctx and a minute). A node manager that is not connected, or that goes
// away before answering, is domain.ErrUnavailable. An empty cmd.ID is
// filled with a random one.
func (p *Plane) Command(ctx context.Context, nodeManager string, cmd wire.Command) (wire.CommandResult, error) {
	if cmd.ID == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		cmd.ID = hex.EncodeToString(b)
	}
	if err := cmd.Validate(); err != nil {
		return wire.CommandResult{}, &domain.InvalidError{Field: "command", Message: err.Error()}
	}
	c := p.connOfKind(nodeManager, wire.KindNodeManager)
	if c == nil {
		return wire.CommandResult{}, fmt.Errorf("control: node manager %q is not connected: %w", nodeManager, domain.ErrUnavailable)
	}
	ch := make(chan wire.CommandResult, 1)
	p.mu.Lock()
	if _, dup := c.results[cmd.ID]; dup {
		p.mu.Unlock()
		return wire.CommandResult{}, domain.Conflict("id", "command %q is already running", cmd.ID)
	}
	c.results[cmd.ID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if c.results[cmd.ID] == ch {
			delete(c.results, cmd.ID)
		}
		p.mu.Unlock()
	}()
	if err := c.send(wire.TypeCommand, cmd); err != nil {
		return wire.CommandResult{}, fmt.Errorf("control: node manager %q: %w: %w", nodeManager, domain.ErrUnavailable, err)
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	select {
	case res := <-ch:
		return res, nil
	case <-c.ctx.Done():
		return wire.CommandResult{}, fmt.Errorf("control: node manager %q went away: %w", nodeManager, domain.ErrUnavailable)
	case <-cctx.Done():
		return wire.CommandResult{}, fmt.Errorf("control: command %s to %q: %w", cmd.ID, nodeManager, cctx.Err())
	}
}
