package agent

import (
	"log/slog"
	"testing"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// The Emit queue is bounded: when full, the oldest event goes, order is
// kept, and Emit never blocks (no connection exists here at all).
func TestEmitQueueDropsOldest(t *testing.T) {
	t.Parallel()
	a := New(Config{Kind: wire.KindServer, Name: "ms1", DataDir: t.TempDir()}, nil, slog.New(slog.DiscardHandler))
	for i := range MaxQueuedEvents + 5 {
		a.Emit(domain.Event{Type: domain.EventFailover, Sessions: i})
	}
	q, ok := a.next(0)
	if !ok || q.e.Sessions != 5 || q.e.Server != "ms1" || q.e.Time.IsZero() {
		t.Fatalf("head = %+v, %v; want the 6th event, server and time filled in", q.e, ok)
	}
	// Sent but unacked events stay; acked ones go.
	var sent uint64
	for i := 5; i < MaxQueuedEvents+5; i++ {
		q, ok := a.next(sent)
		if !ok || q.e.Sessions != i {
			t.Fatalf("event %d: got %+v, %v", i, q.e, ok)
		}
		sent = q.seq
	}
	if _, ok := a.next(sent); ok {
		t.Fatal("an event after the last one")
	}
	if n := a.QueuedEvents(); n != MaxQueuedEvents {
		t.Fatalf("%d queued before any ack, want %d", n, MaxQueuedEvents)
	}
	mid, _ := a.next(0)
	for range 9 {
		mid, _ = a.next(mid.seq)
	}
	a.ackEvents(mid.seq) // the first ten are recorded
	if q, _ := a.next(0); q.e.Sessions != 15 || a.QueuedEvents() != MaxQueuedEvents-10 {
		t.Fatalf("after ack: head %+v, %d queued", q.e, a.QueuedEvents())
	}
	a.ackEvents(sent)
	if a.QueuedEvents() != 0 {
		t.Fatal("queue not empty after the last ack")
	}
}
