package replication

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStatusDoesNotWaitForRequests: the heartbeat's counts never wait for
// an entry a request holds (it may wait the timeout on a silent backup):
// a server whose backup went silent still tells the admin server it lives.
func TestStatusDoesNotWaitForRequests(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	ms1, _ := pair(t, clk)
	id := newSession(t, ms1, 1)
	e := ms1.lookup(id)
	e.mu.Lock() // a request in flight holds the session
	defer e.mu.Unlock()
	done := make(chan int, 1)
	go func() { done <- ms1.Status().Sessions }()
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("sessions %d, want 1 (a held entry is an owned one)", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Status waited for a session a request holds")
	}
}

// TestOnDemandTakeoverFencesTheOldOwner: a session taken over on demand
// (a request for it reached its backup while its owner looked dead) is
// fenced at the old owner too, as a bulk takeover is: the old owner, alive
// after all (it was paused), drops its stale copy at its next heartbeat
// instead of serving it.
func TestOnDemandTakeoverFencesTheOldOwner(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	ms1, ms2 := pair(t, clk)
	id := newSession(t, ms1, 1) // owned by ms1, its copy on ms2
	e := ms2.lookup(id)
	if e == nil {
		t.Fatal("no copy on ms2")
	}
	ms2.takeOverOne(e, "ms1")
	if err := ms1.heartbeat(context.Background(), "ms2"); err != nil {
		t.Fatal(err)
	}
	if e1 := ms1.lookup(id); e1 != nil {
		e1.mu.Lock()
		r := e1.rec
		e1.mu.Unlock()
		if r != nil && r.Owner == "ms1" {
			t.Fatalf("ms1 still owns the session at epoch %d after ms2 took it over", r.Epoch)
		}
	}
}

// TestNoWriteWaitsForADeadPeer: a write queued for a peer already declared
// dead fails at once (its writer goes on to the next backup) and is not
// sent: a call to a dead peer is not cut short, and one to a frozen peer
// would wait out its whole timeout.
func TestNoWriteWaitsForADeadPeer(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1e6, 0)}
	nodes := ring(t, clk, "ms1", "ms2", "ms3")
	ms1, ms2 := nodes[0], nodes[1]
	id := newSession(t, ms1, 1)
	ms1.declareDead("ms2", reasonSilent)
	if b := ms1.currentBackup(); b == "ms2" {
		t.Fatalf("backup still %s after its death", b)
	}
	rec := ms1.lookup(id).rec.Clone()
	rec.Version++
	res := make(chan sendResult, 1)
	ms1.senderFor("ms2").enqueue(Item{Op: opPut, Rec: rec}, nil, res)
	select {
	case r := <-res:
		if !errors.Is(r.err, errPeerDead) {
			t.Fatalf("write for a dead peer: %+v, want errPeerDead", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write for a dead peer waited")
	}
	if e := ms2.lookup(id); e != nil && e.rec != nil && e.rec.Version == rec.Version {
		t.Fatal("the write reached the dead peer")
	}
}
