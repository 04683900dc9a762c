package series_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/series"
	"tandem/backend/store"
)

// TestSampleRates: requests per second come from the heartbeat counters'
// growth between samples; a restarted process starts over; a server that
// is not running is sampled with its state and no load.
func TestSampleRates(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateCluster(ctx, "t", domain.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ms1", "ms2"} {
		if _, err := st.CreateServer(ctx, "t", domain.Server{Name: n, Cluster: "c1", Listen: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	live := map[string]domain.LiveState{
		"ms1": {State: domain.StateRunning, PID: 10, Sessions: 5, Requests: 1000},
		"ms2": {State: domain.StateFailed, PID: 11, Sessions: 9, Requests: 50},
	}
	s := series.New(series.Config{Store: st, Live: func() map[string]domain.LiveState { return live }, Now: func() time.Time { return now }})
	sample := func() {
		t.Helper()
		if err := s.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sample()
	now = now.Add(5 * time.Second)
	live["ms1"] = domain.LiveState{State: domain.StateRunning, PID: 10, Sessions: 6, Requests: 1500}
	sample()
	now = now.Add(5 * time.Second)
	live["ms1"] = domain.LiveState{State: domain.StateRunning, PID: 12, Sessions: 1, Requests: 20} // restarted
	sample()

	got, err := st.Samples(ctx, domain.SeriesQuery{Cluster: "c1", From: now.Add(-time.Minute), To: now, Step: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ms1, ms2 := got["ms1"], got["ms2"]
	if len(ms1) != 3 || len(ms2) != 3 {
		t.Fatalf("samples %+v", got)
	}
	if ms1[0].RPS != 0 || ms1[1].RPS != 100 || ms1[1].Sessions != 6 || ms1[2].RPS != 0 {
		t.Fatalf("ms1 %+v", ms1)
	}
	if ms2[1].State != domain.StateFailed || ms2[1].Sessions != 0 {
		t.Fatalf("a failed server's sample %+v", ms2[1])
	}
}
