package control

import (
	"context"
	"sort"

	"tandem/backend/wire"
)

// The admin server's view of each cluster's servers goes to the cluster's
// web servers as it changes (wire.MemberStates), so a web server skips a
// member the admin has found silent before its own probe times out, and
// tries a member the admin has seen start before its next probe.

// statesChanged notes that the member states of cluster are to be sent.
// Caller holds p.mu.
func (p *Plane) statesChanged(cluster string) {
	if cluster == "" || p.closed {
		return
	}
	if p.statesPending == nil {
		p.statesPending = map[string]bool{}
	}
	p.statesPending[cluster] = true
	select {
	case p.statesWake <- struct{}{}:
	default:
	}
}

// statesLoop sends the pending clusters' member states until ctx ends.
// It runs apart from Run's loop: a slow web server delays only this.
func (p *Plane) statesLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.statesWake:
		}
		type delivery struct {
			c   *conn
			msg wire.MemberStates
		}
		var out []delivery
		p.mu.Lock()
		pending := p.statesPending
		p.statesPending = nil
		for cluster := range pending {
			msg := p.memberStatesLocked(cluster)
			for _, n := range p.nodes {
				if n.kind == wire.KindWebServer && n.cluster == cluster && n.conn != nil {
					out = append(out, delivery{n.conn, msg})
				}
			}
		}
		p.mu.Unlock()
		for _, d := range out {
			if err := d.c.send(wire.TypeMemberStates, d.msg); err != nil {
				p.log.Debug("member states not sent", "node", d.c.node.name, "err", err)
			}
		}
	}
}

// memberStatesLocked is the live state of every managed server of
// cluster that has ever connected, by name. Caller holds p.mu.
func (p *Plane) memberStatesLocked(cluster string) wire.MemberStates {
	msg := wire.MemberStates{Cluster: cluster, Members: []wire.PeerState{}}
	for _, n := range p.nodes {
		if n.kind == wire.KindServer && n.cluster == cluster && n.live.State != "" {
			msg.Members = append(msg.Members, wire.PeerState{Name: n.name, State: n.live.State})
		}
	}
	sort.Slice(msg.Members, func(i, j int) bool { return msg.Members[i].Name < msg.Members[j].Name })
	return msg
}
