package control_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/store"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// hasDesired waits until the node's last applied config is its desired
// config now, and returns it.
func hasDesired(t *testing.T, e *env, n *node, kind, name string) wire.Config {
	t.Helper()
	var want wire.Config
	testenv.Eventually(t, wait, func() error {
		var err error
		if want, err = e.st.DesiredConfig(context.Background(), kind, name); err != nil {
			return err
		}
		got, _ := n.role.lastApplied()
		if got.Checksum != want.Checksum {
			return fmt.Errorf("%s applied revision %d (%.8s), desired %d (%.8s)", name, got.Revision, got.Checksum, want.Revision, want.Checksum)
		}
		return nil
	})
	return want
}

func memberNames(cfg wire.Config) []string {
	var out []string
	for _, m := range cfg.Server.Members {
		out = append(out, m.Name)
	}
	return out
}

// A server moved to another cluster gets its new config, and both
// clusters' members their new member lists, from a Changed that names
// the two clusters; naming only the one it left is enough for the moved
// server itself (the plane knows where it was).
func TestChangedScopeMovedServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ms1 := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	ms2 := e.startNode(wire.KindServer, "ms2", e.admin.url, t.TempDir(), nil)
	fs1 := e.startNode(wire.KindServer, "fs1", e.admin.url, t.TempDir(), nil)
	for _, n := range []string{"ms1", "ms2", "fs1"} {
		waitState(t, e.admin.plane, n, domain.StateRunning)
	}
	hasDesired(t, e, ms2, wire.KindServer, "ms2")

	// Only c1 named: ms2, still known in c1, gets its config of "fast".
	if _, err := e.st.UpdateServer(ctx, "test", domain.Server{Name: "ms2", Cluster: "fast", Listen: "127.0.0.1:9742", NodeManager: "nm1"}); err != nil {
		t.Fatal(err)
	}
	e.admin.plane.Changed(ctx, control.Scope{Clusters: []string{"c1"}})
	if cfg := hasDesired(t, e, ms2, wire.KindServer, "ms2"); cfg.Server.Cluster.Name != "fast" || !slices.Equal(memberNames(cfg), []string{"fs1", "ms2"}) {
		t.Fatalf("ms2 after the move: cluster %s, members %v", cfg.Server.Cluster.Name, memberNames(cfg))
	}
	if cfg := hasDesired(t, e, ms1, wire.KindServer, "ms1"); !slices.Equal(memberNames(cfg), []string{"ms1"}) {
		t.Fatalf("ms1 members %v, want only itself", memberNames(cfg))
	}

	// And back, naming both clusters: everyone converges.
	if _, err := e.st.UpdateServer(ctx, "test", domain.Server{Name: "ms2", Cluster: "c1", Listen: "127.0.0.1:9742", NodeManager: "nm1"}); err != nil {
		t.Fatal(err)
	}
	e.admin.plane.Changed(ctx, control.Scope{Clusters: []string{"c1", "fast"}})
	if cfg := hasDesired(t, e, fs1, wire.KindServer, "fs1"); !slices.Equal(memberNames(cfg), []string{"fs1"}) {
		t.Fatalf("fs1 members %v, want only itself", memberNames(cfg))
	}
	if cfg := hasDesired(t, e, ms2, wire.KindServer, "ms2"); cfg.Server.Cluster.Name != "c1" {
		t.Fatalf("ms2 back: cluster %s", cfg.Server.Cluster.Name)
	}
	hasDesired(t, e, ms1, wire.KindServer, "ms1")
}

// Without any Changed call, the periodic reconcile delivers a write; a
// config the node refused is not sent to it again by the reconciles that
// follow.
func TestReconcileWithoutChanged(t *testing.T) {
	t.Parallel()
	e := newEnvNoCleanup(t)
	t.Cleanup(e.close)
	e.admin.stop()
	e.reconcile = 100 * time.Millisecond
	e.admin = e.startAdmin("")
	ctx := context.Background()
	sub := e.subscribe()
	ms1 := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	ms2 := e.startNode(wire.KindServer, "ms2", e.admin.url, t.TempDir(), nil)
	waitState(t, e.admin.plane, "ms1", domain.StateRunning)
	waitState(t, e.admin.plane, "ms2", domain.StateRunning)
	hasDesired(t, e, ms2, wire.KindServer, "ms2")

	ms2.role.set(func(r *role) { r.failApply = "cannot apply" })
	if _, err := e.st.SetServerSessionOverride(ctx, "test", "ms2", domain.SessionOverride{MaxSessions: ptr(5)}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, domain.EventConfigFailed, "ms2", wait)
	// Two more writes for ms1, each delivered by a later reconcile, which
	// also checks ms2 and must leave its refused config alone.
	for _, n := range []int{7, 8} {
		if _, err := e.st.SetServerSessionOverride(ctx, "test", "ms1", domain.SessionOverride{MaxSessions: ptr(n)}); err != nil {
			t.Fatal(err)
		}
		if cfg := hasDesired(t, e, ms1, wire.KindServer, "ms1"); cfg.Server.Session.MaxSessions != n {
			t.Fatalf("ms1 max sessions %d, want %d", cfg.Server.Session.MaxSessions, n)
		}
	}
	failed, err := e.st.Events(ctx, domain.EventFilter{Types: []string{domain.EventConfigFailed}, Server: "ms2"})
	if err != nil || len(failed) != 1 {
		t.Fatalf("config.failed for ms2: %+v, %v; want the one refusal", failed, err)
	}
	// Once it can apply again, a push delivers it.
	ms2.role.set(func(r *role) { r.failApply = "" })
	res, err := e.admin.plane.Push(ctx, "c1", "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Node == "ms2" && !r.OK {
			t.Fatalf("push to ms2: %+v", r)
		}
	}
	hasDesired(t, e, ms2, wire.KindServer, "ms2")
}

// Writes with their Changed calls, pushes and a node's reconnects, all at
// once: every node ends with its newest desired config (no older read of
// a config reaches a node after a newer one).
func TestConcurrentWritesPushesAndReconnectsConverge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ms1 := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	dir2 := t.TempDir()
	ms2 := e.startNode(wire.KindServer, "ms2", e.admin.url, dir2, nil)
	waitState(t, e.admin.plane, "ms1", domain.StateRunning)
	waitState(t, e.admin.plane, "ms2", domain.StateRunning)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	wg.Add(2)
	go func() { // writer: until the reconnects are over, and at least 40 writes
		defer wg.Done()
		for i := 0; i < 40 || !stopped(); i++ {
			o := domain.SessionOverride{MaxSessions: ptr(100 + i)}
			if i%3 == 0 {
				if _, err := e.st.SetClusterSessionDefaults(ctx, "test", "c1", o); err != nil {
					t.Error(err)
					return
				}
			} else if _, err := e.st.SetServerSessionOverride(ctx, "test", []string{"ms1", "ms2"}[i%2], o); err != nil {
				t.Error(err)
				return
			}
			e.admin.plane.Changed(ctx, control.Scope{Clusters: []string{"c1"}})
		}
	}()
	go func() { // pusher
		defer wg.Done()
		for !stopped() {
			if _, err := e.admin.plane.Push(ctx, "c1", "test"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// ms2 reconnects (catch-up sends) meanwhile.
	for range 3 {
		ms2.stop()
		ms2 = e.startNode(wire.KindServer, "ms2", e.admin.url, dir2, nil)
		waitState(t, e.admin.plane, "ms2", domain.StateRunning)
	}
	close(stop)
	wg.Wait()
	hasDesired(t, e, ms1, wire.KindServer, "ms1")
	hasDesired(t, e, ms2, wire.KindServer, "ms2")
}

// heldStore holds the next ClusterConfigs call after its read, until
// released: a slow reader of the store.
type heldStore struct {
	control.Store
	mu      sync.Mutex
	hold    bool
	read    chan struct{} // closed when the held call has read
	release chan struct{}
}

func (h *heldStore) ClusterConfigs(ctx context.Context, cluster string) ([]store.NodeConfig, error) {
	cfgs, err := h.Store.ClusterConfigs(ctx, cluster)
	h.mu.Lock()
	hold := h.hold
	h.hold = false
	h.mu.Unlock()
	if hold {
		close(h.read)
		<-h.release
	}
	return cfgs, err
}

// A push whose read of the configs is older than a config already sent to
// a node (a write and its re-check came in between) does not send that
// older config: the node keeps the newer one, and the push reports it.
func TestOlderReadNeverFollowsNewer(t *testing.T) {
	t.Parallel()
	e := newEnvNoCleanup(t)
	t.Cleanup(e.close)
	e.admin.stop()
	held := &heldStore{read: make(chan struct{}), release: make(chan struct{})}
	e.wrap = func(st control.Store) control.Store { held.Store = st; return held }
	e.admin = e.startAdmin("")
	ctx := context.Background()
	ms1 := e.startNode(wire.KindServer, "ms1", e.admin.url, t.TempDir(), nil)
	waitState(t, e.admin.plane, "ms1", domain.StateRunning)
	old := hasDesired(t, e, ms1, wire.KindServer, "ms1")

	held.mu.Lock()
	held.hold = true
	held.mu.Unlock()
	type pushed struct {
		res []domain.PushResult
		err error
	}
	pc := make(chan pushed, 1)
	go func() {
		res, err := e.admin.plane.Push(ctx, "c1", "test")
		pc <- pushed{res, err}
	}()
	<-held.read // the push has read the configs of now
	if _, err := e.st.SetServerSessionOverride(ctx, "test", "ms1", domain.SessionOverride{MaxSessions: ptr(9)}); err != nil {
		t.Fatal(err)
	}
	e.admin.plane.Changed(ctx, control.Scope{Clusters: []string{"c1"}})
	newer := hasDesired(t, e, ms1, wire.KindServer, "ms1")
	close(held.release)
	p := <-pc
	if p.err != nil {
		t.Fatal(p.err)
	}
	for _, r := range p.res {
		if r.Node == "ms1" && (!r.OK || r.Revision != newer.Revision) {
			t.Errorf("push result %+v, want ok at the newer revision %d", r, newer.Revision)
		}
	}
	ms1.role.mu.Lock()
	applied := slices.Clone(ms1.role.applied)
	ms1.role.mu.Unlock()
	seenNewer := false
	for _, a := range applied {
		seenNewer = seenNewer || a.Checksum == newer.Checksum
		if seenNewer && a.Checksum == old.Checksum {
			t.Fatalf("ms1 applied the older revision %d after the newer %d", old.Revision, newer.Revision)
		}
	}
	if last := applied[len(applied)-1]; last.Checksum != newer.Checksum {
		t.Fatalf("ms1 ends at revision %d, want %d", last.Revision, newer.Revision)
	}
}
