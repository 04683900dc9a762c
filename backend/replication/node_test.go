package replication

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/session"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// pair runs two real nodes talking real HTTP on loopback, with an injected
// clock and without their background loops (the test drives them).
func pair(t *testing.T, clk *fakeClock) (*Node, *Node) { return pairB(t, clk) }

func pairB(t testing.TB, clk *fakeClock) (*Node, *Node) {
	t.Helper()
	nodes := ring(t, clk, "ms1", "ms2")
	if nodes[0].currentBackup() != "ms2" || nodes[1].currentBackup() != "ms1" {
		t.Fatalf("backups %q %q", nodes[0].currentBackup(), nodes[1].currentBackup())
	}
	return nodes[0], nodes[1]
}

// ring runs real nodes as pair does, every one having heard every other.
func ring(t testing.TB, clk *fakeClock, names ...string) []*Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes := []*Node{}
	var members []wire.Member
	for _, name := range names {
		n := New(Config{Name: name, Token: "tok", Now: clk.now})
		n.runCtx = ctx
		srv := httptest.NewServer(n.Handler())
		t.Cleanup(srv.Close)
		nodes = append(nodes, n)
		members = append(members, wire.Member{Name: name, Route: name, Listen: strings.TrimPrefix(srv.URL, "http://")})
	}
	sess := domain.DefaultSessionConfig()
	sess.TimeoutSeconds = 60
	for i, n := range nodes {
		sc := wire.ServerConfig{Self: members[i], Members: members, Session: sess,
			Cluster: wire.ClusterSettings{Name: "c", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 100, HeartbeatTimeoutMS: 1000}}
		if err := n.Apply(sc); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		for _, name := range names {
			if name != n.name {
				if err := n.heartbeat(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return nodes
}

func newSession(t *testing.T, n *Node, count int64) string {
	t.Helper()
	txn, err := n.New(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	txn.Record().Attrs["count"] = session.Value{Kind: session.KindInt, I: count}
	if res, err := txn.Commit(context.Background(), true); err != nil || res.Degraded || res.Backup != "ms2" {
		t.Fatalf("commit: %+v %v", res, err)
	}
	return txn.Record().ID
}

func TestExpiryRemovesBothCopies(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	n1, n2 := pair(t, clk)
	newSession(t, n1, 1)
	if o, c, u := n1.Counts(); o != 1 || c != 0 || u != 0 {
		t.Fatalf("ms1 counts %d %d %d", o, c, u)
	}
	if _, c, _ := n2.Counts(); c != 1 {
		t.Fatalf("ms2 holds %d copies", c)
	}
	clk.add(59 * time.Second)
	if n1.Expire() != 0 || n2.Expire() != 0 {
		t.Fatal("expired before the timeout")
	}
	clk.add(time.Second)
	if got := n2.Expire(); got != 0 {
		t.Fatalf("the copy expired on its own at the timeout (%d)", got)
	}
	if got := n1.Expire(); got != 1 {
		t.Fatalf("ms1 expired %d", got)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, c, _ := n2.Counts(); c != 0 {
			return fmt.Errorf("ms2 still holds %d copies", c)
		}
		return nil
	})
	// A copy whose owner never tells it expires after twice the timeout.
	id := newSession(t, n1, 1)
	if e := n1.lookup(id); e != nil {
		e.mu.Lock()
		e.rec = nil // the owner forgets it (as if it died)
		n1.remove(id, e)
		e.mu.Unlock()
	}
	clk.add(119 * time.Second)
	if n2.Expire() != 0 {
		t.Fatal("copy expired before twice the timeout")
	}
	clk.add(time.Second)
	if n2.Expire() != 1 {
		t.Fatal("orphan copy not expired")
	}
}

func TestMaxSessionsOnNode(t *testing.T) {
	t.Parallel()
	n1, _ := pair(t, &fakeClock{t: time.Unix(1e9, 0)})
	for range 2 {
		txn, err := n1.New(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Commit(context.Background(), true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n1.New(context.Background(), 2); !errors.Is(err, session.ErrTooManySessions) {
		t.Fatalf("third session: %v", err)
	}
}

// TestFencing: once the backup took a session over (epoch+1), the old
// primary's write is refused and not acknowledged, and a heartbeat tells
// the old primary what it lost, so it forwards instead of serving.
func TestFencing(t *testing.T) {
	t.Parallel()
	n1, n2 := pair(t, &fakeClock{t: time.Unix(1e9, 0)})
	ctx := context.Background()
	id := newSession(t, n1, 1)
	// ms1 starts a request (it holds a lease), then ms2 takes over.
	txn, err := n1.Get(ctx, session.Lookup{ID: id, Primary: "ms1", Backup: "ms2"})
	if err != nil {
		t.Fatal(err)
	}
	n2.declareDead("ms1", "test")
	txn.Record().Attrs["count"] = session.Value{Kind: session.KindInt, I: 100}
	_, err = txn.Commit(ctx, true)
	var fe *session.ForwardError
	if !errors.As(err, &fe) || fe.Server != "ms2" {
		t.Fatalf("stale primary's commit: %v, want a forward to ms2", err)
	}
	e := n2.lookup(id)
	e.mu.Lock()
	rec := e.rec.Clone()
	e.mu.Unlock()
	if rec.Owner != "ms2" || rec.Epoch != 2 || rec.Attrs["count"].I != 1 {
		t.Fatalf("ms2 holds %+v", rec)
	}
	// A second session: ms1 learns of the takeover from a heartbeat.
	id2 := newSession(t, n1, 7)
	n2.mu.Lock()
	n2.peers["ms1"].dead = false
	n2.mu.Unlock()
	n2.declareDead("ms1", "test")
	if err := n1.heartbeat(ctx, "ms2"); err != nil {
		t.Fatal(err)
	}
	if n1.lookup(id2) != nil {
		t.Fatal("ms1 kept a session ms2 took over")
	}
	if _, err := n1.Get(ctx, session.Lookup{ID: id2, Primary: "ms1", Backup: "ms2"}); !errors.As(err, &fe) || fe.Server != "ms2" {
		t.Fatalf("Get on the old primary: %v, want a forward to ms2", err)
	}
}

// A woken owner whose session its backup took over during the pause must
// not copy its stale record to a new backup before the lease's heartbeat
// told it of the takeover: that backup could later take the stale copy
// over, and the session would go back (a harness run saw 13 counts lost).
func TestStaleOwnerCopiesNothingWithoutLease(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	nodes := ring(t, clk, "ms1", "ms2", "ms3")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	id := newSession(t, n1, 1) // owned by ms1, copied to ms2
	// ms1 is paused: its lease from ms2 runs out, ms2 takes the session over.
	clk.add(2 * time.Second)
	n2.declareDead("ms1", reasonSilent)
	// ms1 wakes and, not having heard ms2 lately, picks ms3 as its backup.
	n1.mu.Lock()
	n1.peers["ms2"].heard = false
	n1.peers["ms3"].lastHeard = clk.now()
	n1.recomputeLocked()
	n1.mu.Unlock()
	if b := n1.currentBackup(); b != "ms3" {
		t.Fatalf("ms1's backup %q, want ms3", b)
	}
	e := n1.lookup(id)
	e.mu.Lock()
	e.copiedTo = "" // as for a record written since the last copy
	e.mu.Unlock()
	n1.copyRound(ctx)
	if n3.lookup(id) != nil {
		t.Fatal("ms1 copied its stale record to ms3 without a lease from ms2")
	}
	// The lease's heartbeat brings the takeover: ms1 drops its record.
	if err := n1.heartbeat(ctx, "ms2"); err != nil {
		t.Fatal(err)
	}
	if n1.lookup(id) != nil {
		t.Fatal("ms1 kept the session ms2 took over")
	}
	n1.copyRound(ctx)
	if e := n3.lookup(id); e != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.rec != nil && e.rec.Owner == "ms1" {
			t.Fatalf("ms3 holds ms1's stale record %+v", e.rec)
		}
	}
}

// When a peer comes back as a new incarnation, the backup of its old
// incarnation takes its sessions over, not the backup the new one names
// (whoever it heard first): that one may hold only a stale copy from long
// ago, and taking it over would make a second owner serving old data.
func TestRestartTakenOverByOldBackupOnly(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	nodes := ring(t, clk, "ms1", "ms2", "ms3")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	id := newSession(t, n1, 5) // owned by ms1, copied to ms2
	// ms3 holds a stale copy from a time it was ms1's backup.
	e1 := n1.lookup(id)
	e1.mu.Lock()
	old := e1.rec.Clone()
	e1.mu.Unlock()
	old.Version--
	old.Attrs["count"] = session.Value{Kind: session.KindInt, I: 1}
	var mine []*entry
	if st := n3.apply(Item{Op: opPut, Rec: old}, "ms1", &mine); st != stAccepted {
		t.Fatalf("stale copy on ms3: status %c", st)
	}
	// ms1 restarts; its new incarnation names ms3 as its backup.
	for _, n := range []*Node{n3, n2} {
		if !n.markHeardFrom("ms1", "new-incarnation", "ms3", true) {
			t.Fatalf("%s refused the new incarnation", n.name)
		}
	}
	owner := func(n *Node) (string, int64) {
		e := n.lookup(id)
		if e == nil {
			return "", 0
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.rec.Owner, e.rec.Attrs["count"].I
	}
	if o, c := owner(n3); o != "ms1" || c != 1 {
		t.Fatalf("ms3 took its stale copy over: owner %q count %d", o, c)
	}
	if o, c := owner(n2); o != "ms2" || c != 5 {
		t.Fatalf("ms2 (the old incarnation's backup): owner %q count %d, want ms2 with 5", o, c)
	}
}

// A failback drops the sender's copies wherever they are, also when the
// home names the holder as its backup (a name from its first heartbeats;
// its own copy goes to its current backup): a copy left behind would be
// taken over, as a second owner, when the sender dies.
func TestFailbackDropsTheSendersCopies(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	nodes := ring(t, clk, "ms1", "ms2", "ms3")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	txn, err := n3.New(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := txn.Record().ID
	if _, err := txn.Commit(ctx, true); err != nil { // home ms3, copied to ms1
		t.Fatal(err)
	}
	n1.declareDead("ms3", "test") // ms1 takes it over ...
	n1.copyRound(ctx)             // ... and copies it to its backup ms2
	if e := n2.lookup(id); e == nil {
		t.Fatal("ms2 holds no copy after the takeover")
	}
	if !n1.markHeard("ms3", n3.Incarnation()) { // ms3 is back
		t.Fatal("ms3 not heard")
	}
	n1.mu.Lock()
	n1.peers["ms3"].backup = "ms2"
	n1.mu.Unlock()
	n1.failback(ctx, "ms3")
	if e := n3.lookup(id); e == nil {
		t.Fatal("ms3 did not get its session back")
	}
	if e := n2.lookup(id); e != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.rec != nil && e.rec.Owner == "ms1" {
			t.Fatalf("ms2 kept ms1's copy after the failback: %+v", e.rec)
		}
	}
}
