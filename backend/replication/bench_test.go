package replication

import (
	"context"
	"testing"
	"time"

	"tandem/backend/session"
)

// BenchmarkSyncCommit measures a session write replicated synchronously to
// a real peer over loopback HTTP, from parallel requests (group commit).
func BenchmarkSyncCommit(b *testing.B) {
	benchCommit(b, true)
}

// BenchmarkLocalCommit is the same write on a node with sharing off.
func BenchmarkLocalCommit(b *testing.B) {
	benchCommit(b, false)
}

func benchCommit(b *testing.B, shared bool) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	n1, _ := pairB(b, clk)
	if !shared {
		n1.mu.Lock()
		n1.sc.Session.Shared = false
		n1.recomputeLocked()
		n1.mu.Unlock()
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		txn, err := n1.New(ctx, 0)
		if err != nil {
			b.Error(err)
			return
		}
		if _, err := txn.Commit(ctx, true); err != nil {
			b.Error(err)
			return
		}
		id := txn.Record().ID
		for pb.Next() {
			txn, err := n1.Get(ctx, session.Lookup{ID: id})
			if err != nil {
				b.Error(err)
				return
			}
			v := txn.Record().Attrs["count"]
			txn.Record().Attrs["count"] = session.Value{Kind: session.KindInt, I: v.I + 1}
			if _, err := txn.Commit(ctx, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
