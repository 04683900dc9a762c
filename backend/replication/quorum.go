package replication

import (
	"context"
	"time"
)

// A peer silent for the heartbeat timeout is dead, or cut off by the
// network: from inside, the two look the same, and if both sides of a
// partition took over each other's sessions, the side that comes back
// with the higher epoch would undo every write the other acknowledged.
// So a silent peer on another machine is judged dead only by the side
// that sees a strict majority of the cluster, or that the admin server
// (the witness, outside both hosts) confirms. Servers of one machine talk
// over loopback: a silent one there is a stopped or frozen process, and
// the plain rule holds. Without a verdict the peer stays suspect: no
// takeover, and this server's lease from it runs out, so its sessions
// backed up there wait (503, retried elsewhere) instead of diverging.
//
// A majority counts only for silence that lasted the whole timeout while
// the majority was seen (quorumSince): when a link comes back, the peers
// beyond it are heard again one by one, and one not heard yet is not
// silent, it is only late (its copies here are the stale ones).

type verdict int

const (
	verdictHold verdict = iota // no quorum: do not judge
	verdictDead                // judge the peer dead now
	verdictAsk                 // ask the witness
)

// silenceVerdictLocked decides about name, silent for the timeout at now.
// Caller holds n.mu.
func (n *Node) silenceVerdictLocked(name string, now time.Time) verdict {
	p := n.peers[name]
	mine := n.self.Host
	if p == nil || mine == "" || p.m.Host == "" || p.m.Host == mine {
		return verdictDead
	}
	if !n.quorumSince.IsZero() && now.Sub(n.quorumSince) >= n.timeout() {
		return verdictDead // p was silent the whole time the majority was seen
	}
	if n.witness != nil {
		return verdictAsk
	}
	return verdictHold
}

// updateQuorumLocked notes since when this server sees a strict majority
// of its cluster (itself and the peers heard within the timeout less one
// heartbeat interval); zero while it does not. Caller holds n.mu.
//
// Less one interval: when a link goes down, the peers beyond it fall
// silent within one interval of each other; counting one that is silent
// for nearly the timeout would make a majority out of the very peers that
// are cut off, and judge the first of them dead on its own side's word.
func (n *Node) updateQuorumLocked(now time.Time) {
	within := n.timeout() - n.interval()
	visible := 1
	for _, q := range n.peers {
		if q.heard && !q.dead && now.Sub(q.lastHeard) < within {
			visible++
		}
	}
	switch {
	case 2*visible <= len(n.peers)+1:
		n.quorumSince = time.Time{}
	case n.quorumSince.IsZero():
		n.quorumSince = now
	}
}

// askWitness asks the admin server about name and declares it dead if the
// admin server has lost it too and it is still silent here.
func (n *Node) askWitness(ctx context.Context, name string) {
	wctx, cancel := context.WithTimeout(ctx, n.timeout())
	down, err := n.witness(wctx, name)
	cancel()
	n.mu.Lock()
	p := n.peers[name]
	if p == nil {
		n.mu.Unlock()
		return
	}
	p.witnessBusy = false
	still := p.heard && !p.dead && MayTakeOver(p.lastHeard, n.now(), n.timeout())
	if still && (err != nil || !down) {
		n.noQuorumLocked(p, name, n.now(), err)
	}
	n.mu.Unlock()
	if still && err == nil && down {
		n.log.Info("replication: the admin server confirms a silent peer on another machine is down", "peer", name)
		n.declareDead(name, reasonSilent)
	}
}

// noQuorumLocked logs, at most every 5 s per peer, that a silent peer is
// not judged. Caller holds n.mu.
func (n *Node) noQuorumLocked(p *peer, name string, now time.Time, err error) {
	if now.Sub(p.noQuorumAt) < 5*time.Second {
		return
	}
	p.noQuorumAt = now
	args := []any{"peer", name, "peer_host", p.m.Host}
	if err != nil {
		args = append(args, "witness", err)
	}
	n.log.Warn("replication: a peer on another machine is silent, but this server sees no majority and the admin server does not confirm it down: not taken over (a network partition looks the same)", args...)
}
