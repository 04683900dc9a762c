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
	q, ok := a.peek()
	if !ok || q.e.Sessions != 5 || q.e.Server != "ms1" || q.e.Time.IsZero() {
		t.Fatalf("head = %+v, %v; want the 6th event, server and time filled in", q.e, ok)
	}
	for i := 5; i < MaxQueuedEvents+5; i++ {
		q, ok := a.peek()
		if !ok || q.e.Sessions != i {
			t.Fatalf("event %d: got %+v, %v", i, q.e, ok)
		}
		a.pop(q.seq)
	}
	if _, ok := a.peek(); ok {
		t.Fatal("queue not empty")
	}
}
