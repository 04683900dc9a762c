package replication

import (
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
