package replication

import (
	"context"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// TestSilenceVerdict: a silent peer of this machine is dead; one on another
// machine only with a majority seen for the whole timeout, else the
// witness is asked (or, without one, nothing is judged); a majority that
// has just come back (a healed link) does not judge a peer not heard yet.
func TestSilenceVerdict(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	timeout := time.Second
	node := func(witness bool) *Node {
		cfg := Config{Name: "a1", Token: "tok", Now: clk.now}
		if witness {
			cfg.Witness = func(context.Context, string) (bool, error) { return true, nil }
		}
		n := New(cfg)
		members := []wire.Member{{Name: "a1", Route: "a1", Listen: "127.0.0.1:1", Host: "A"}, {Name: "a2", Route: "a2", Listen: "127.0.0.1:2", Host: "A"},
			{Name: "b1", Route: "b1", Listen: "127.0.0.1:3", Host: "B"}, {Name: "b2", Route: "b2", Listen: "127.0.0.1:4", Host: "B"}}
		sc := wire.ServerConfig{Self: members[0], Members: members, Session: domain.DefaultSessionConfig(),
			Cluster: wire.ClusterSettings{Name: "c", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 100, HeartbeatTimeoutMS: int(timeout / time.Millisecond)}}
		if err := n.Apply(sc); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// heard sets when each peer was last heard (a zero time: never).
	heard := func(n *Node, at map[string]time.Time) {
		n.mu.Lock()
		defer n.mu.Unlock()
		for name, p := range n.peers {
			p.heard, p.lastHeard = !at[name].IsZero(), at[name]
		}
		n.updateQuorumLocked(clk.now())
	}
	verdictOf := func(n *Node, name string) verdict {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.silenceVerdictLocked(name, clk.now())
	}
	start := clk.now()

	n := node(false)
	heard(n, map[string]time.Time{"a2": start, "b1": start, "b2": start})
	clk.add(2 * timeout)
	// Host B cut off: b1 and b2 silent, a2 heard. No majority.
	heard(n, map[string]time.Time{"a2": clk.now(), "b1": start, "b2": start})
	if v := verdictOf(n, "b1"); v != verdictHold {
		t.Fatalf("partition, no witness: %v, want hold", v)
	}
	if v := verdictOf(node(true), "b1"); v != verdictAsk {
		t.Fatalf("partition, witness: %v, want ask", v)
	}
	// a2 silent: the same machine, dead whatever the majority.
	heard(n, map[string]time.Time{"a2": start, "b1": clk.now(), "b2": clk.now()})
	if v := verdictOf(n, "a2"); v != verdictDead {
		t.Fatalf("a silent peer of this machine: %v, want dead", v)
	}

	// The link goes down: b1 and b2 fall silent half an interval apart.
	// When b1 passes the timeout, b2 (heard 50 ms later) does not make a
	// majority with a2: b1 is not judged dead on that word.
	p := node(false)
	heard(p, map[string]time.Time{"a2": clk.now(), "b1": clk.now(), "b2": clk.now()})
	clk.add(2 * timeout) // a majority seen for long
	cut := clk.now()
	heard(p, map[string]time.Time{"a2": cut, "b1": cut, "b2": cut.Add(50 * time.Millisecond)})
	clk.add(timeout)
	heard(p, map[string]time.Time{"a2": clk.now(), "b1": cut, "b2": cut.Add(50 * time.Millisecond)})
	if v := verdictOf(p, "b1"); v == verdictDead {
		t.Fatal("b1 judged dead with a majority counting b2, silent too")
	}

	// The link comes back: a2 and b2 are heard again, b1 not yet. The
	// majority is new: b1 is late, not silent.
	m := node(false)
	heard(m, map[string]time.Time{"a2": clk.now(), "b1": start, "b2": start})
	clk.add(timeout / 2)
	heard(m, map[string]time.Time{"a2": clk.now(), "b1": start, "b2": clk.now()})
	if v := verdictOf(m, "b1"); v == verdictDead {
		t.Fatal("a peer not heard yet after a healed link judged dead")
	}
	// b1 stays silent for the timeout while the majority is seen: dead.
	clk.add(timeout)
	heard(m, map[string]time.Time{"a2": clk.now(), "b1": start, "b2": clk.now()})
	if v := verdictOf(m, "b1"); v != verdictDead {
		t.Fatalf("silent for the timeout under a majority: %v, want dead", v)
	}
}
