package supervise

import (
	"testing"
	"time"
)

func TestTrackerExited(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pol := Policy{MaxRestarts: 3, Interval: time.Minute, Delay: time.Second, MaxDelay: 3 * time.Second}
	type exit struct {
		at        time.Duration // since base
		requested bool
		restart   bool
		delay     time.Duration
	}
	tests := []struct {
		name   string
		policy Policy
		exits  []exit
	}{
		{"requested stop never restarts", pol, []exit{{0, true, false, 0}}},
		{"disabled", Policy{}, []exit{{0, false, false, 0}}},
		{"backoff doubles then caps", pol, []exit{
			{0, false, true, time.Second},
			{time.Second, false, true, 2 * time.Second},
			{3 * time.Second, false, true, 3 * time.Second},
		}},
		{"limit within window gives up", pol, []exit{
			{0, false, true, time.Second},
			{time.Second, false, true, 2 * time.Second},
			{2 * time.Second, false, true, 3 * time.Second},
			{3 * time.Second, false, false, 0},
			{4 * time.Second, false, false, 0},
		}},
		{"window slides", pol, []exit{
			{0, false, true, time.Second},
			{10 * time.Second, false, true, 2 * time.Second},
			{20 * time.Second, false, true, 3 * time.Second},
			{30 * time.Second, false, false, 0},
			{61 * time.Second, false, true, 3 * time.Second}, // first fell out: 2 in window
			{75 * time.Second, false, true, 3 * time.Second}, // second fell out
		}},
		{"no delay", Policy{MaxRestarts: 1, Interval: time.Hour}, []exit{
			{0, false, true, 0},
			{time.Minute, false, false, 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := NewTracker(tc.policy)
			for i, e := range tc.exits {
				d := tr.Exited(base.Add(e.at), e.requested)
				if d.Restart != e.restart || d.Delay != e.delay {
					t.Fatalf("exit %d: got restart=%v delay=%s (%s), want restart=%v delay=%s", i, d.Restart, d.Delay, d.Reason, e.restart, e.delay)
				}
				if d.Reason == "" {
					t.Fatalf("exit %d: empty reason", i)
				}
			}
		})
	}
}

func TestTrackerReset(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := NewTracker(Policy{MaxRestarts: 1, Interval: time.Hour})
	if d := tr.Exited(base, false); !d.Restart {
		t.Fatal("first exit should restart")
	}
	if d := tr.Exited(base.Add(time.Second), false); d.Restart {
		t.Fatal("second exit should give up")
	}
	tr.Reset()
	if d := tr.Exited(base.Add(2*time.Second), false); !d.Restart {
		t.Fatal("after Reset the process should restart again")
	}
	if tr.Total() != 2 {
		t.Fatalf("total %d, want 2", tr.Total())
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	bad := []Policy{
		{MaxRestarts: -1},
		{MaxRestarts: 1},
		{MaxRestarts: 1, Interval: time.Second, Delay: -1},
		{MaxRestarts: 1, Interval: time.Second, Delay: time.Minute, MaxDelay: time.Second},
	}
	for i, p := range bad {
		if p.Validate() == nil {
			t.Errorf("policy %d %+v: want error", i, p)
		}
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}
