package capacity

import (
	"context"
	"strings"
	"testing"
	"time"

	"tandem/backend/domain"
)

func TestAssess(t *testing.T) {
	run := domain.StateRunning
	three := []Server{
		{Name: "ms1", State: run, Sessions: 60, BackupSessions: 40, Backup: "ms2", MaxSessions: 100},
		{Name: "ms2", State: run, Sessions: 50, BackupSessions: 60, Backup: "ms3", MaxSessions: 100},
		{Name: "ms3", State: run, Sessions: 40, BackupSessions: 50, Backup: "ms1", MaxSessions: 100},
	}
	c := Assess("c1", three)
	imp := c.Servers[0].IfItFails
	if imp.TakesOver != "ms2" || imp.ResultingSessions != 110 || imp.SingleCopy != 100 || imp.StaysSingleCopy || !imp.Overflow {
		t.Fatalf("ms1 impact %+v", imp)
	}
	if c.Healthy || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "ms2 would hold 110 sessions, over its max_sessions 100") {
		t.Fatalf("ms1's failure overflows ms2: %+v", c)
	}

	// Room everywhere: no overflow.
	for i := range three {
		three[i].MaxSessions = 0
	}
	if c := Assess("c1", three); !c.Healthy {
		t.Fatalf("no limits: %+v", c)
	}

	// Two servers: a failure leaves one copy for good.
	two := []Server{
		{Name: "ms1", State: run, Sessions: 5, BackupSessions: 3, Backup: "ms2"},
		{Name: "ms2", State: run, Sessions: 3, BackupSessions: 5, Backup: "ms1"},
	}
	c = Assess("c1", two)
	if c.Healthy || !c.Servers[0].IfItFails.StaysSingleCopy || !strings.Contains(strings.Join(c.Warnings, ";"), "keep one copy") {
		t.Fatalf("two servers: %+v", c)
	}

	// A server without a running backup loses its sessions; a stopped
	// server has no impact; unprotected sessions are counted.
	c = Assess("c1", []Server{
		{Name: "ms1", State: run, Sessions: 7, Unprotected: 7, Backup: "ms2"},
		{Name: "ms2", State: domain.StateFailed, Sessions: 0},
		{Name: "ms3", State: run, Sessions: 2, Backup: "ms1"},
		{Name: "ms4", State: run, Backup: "ms3"},
	})
	if c.Healthy || c.Unprotected != 7 || c.Servers[0].IfItFails.TakesOver != "" || c.Servers[0].IfItFails.Lost != 7 || c.Servers[1].IfItFails != nil {
		t.Fatalf("failed backup: %+v %+v", c, c.Servers[0].IfItFails)
	}
}

// fakeSource is a fixed domain for the monitor's event logic (the store
// and live states are exercised by the admin server's process tests).
type fakeSource struct{ max int }

func (f *fakeSource) Clusters(context.Context) ([]domain.Cluster, error) {
	return []domain.Cluster{{Name: "c1"}}, nil
}
func (f *fakeSource) Servers(context.Context, string) ([]domain.Server, error) {
	return []domain.Server{{Name: "ms1", Cluster: "c1"}, {Name: "ms2", Cluster: "c1"}, {Name: "ms3", Cluster: "c1"}}, nil
}
func (f *fakeSource) EffectiveSessionConfigs(context.Context, string) (map[string]domain.SessionConfig, error) {
	c := domain.SessionConfig{MaxSessions: f.max}
	return map[string]domain.SessionConfig{"ms1": c, "ms2": c, "ms3": c}, nil
}

func TestMonitorRecordsStartAndEndAfterGrace(t *testing.T) {
	src := &fakeSource{max: 10}
	live := func(name string) (domain.LiveState, bool) {
		b := map[string]string{"ms1": "ms2", "ms2": "ms3", "ms3": "ms1"}[name]
		return domain.LiveState{State: domain.StateRunning, Sessions: 8, BackupSessions: 8, Backup: b}, true
	}
	var got []domain.Event
	m := New(Config{Source: src, Live: live, Grace: 5 * time.Second,
		Record: func(_ context.Context, e domain.Event) error { got = append(got, e); return nil }})
	states := map[string]*clusterState{}
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration, want int) {
		t.Helper()
		if err := m.check(context.Background(), states, t0.Add(at)); err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Fatalf("at %v: %d events %+v, want %d", at, len(got), got, want)
		}
	}
	step(0, 0)              // 16 > 10 on every backup: unhealthy, within grace
	step(3*time.Second, 0)  // still within grace
	step(6*time.Second, 1)  // reported
	step(8*time.Second, 1)  // unchanged: nothing new
	src.max = 0             // limits lifted
	step(9*time.Second, 1)  // healthy, within grace
	step(15*time.Second, 2) // the end is reported
	if got[0].Type != domain.EventCapacityWarning || !strings.Contains(got[0].Message, "over its max_sessions") || !strings.Contains(got[1].Message, "covered again") {
		t.Fatalf("events %+v", got)
	}
}
