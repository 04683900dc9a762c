package replication

import (
	"context"
	"syscall"
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
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op") }()
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

// BenchmarkFailback measures pushing sessions home in batches over real
// loopback HTTP (b.N sessions per run).
func BenchmarkFailback(b *testing.B) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	n1, n2 := pairB(b, clk)
	for i := 0; i < b.N; i++ {
		id := session.NewID()
		e := n2.getOrCreate(id)
		e.rec = &session.Record{ID: id, Home: "ms1", Owner: "ms2", Backup: "ms1", Epoch: 2, Version: 5, Created: 1, Access: clk.now().UnixMilli(),
			Attrs: map[string]session.Value{"count": {Kind: session.KindInt, I: 5}}}
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	n2.failback(context.Background(), "ms1")
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/session")
	if o, _, _ := n1.Counts(); o != b.N {
		b.Fatalf("ms1 owns %d of %d", o, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
