package managed_test

import (
	"fmt"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/replication"
	"tandem/backend/testenv"
)

// TestKillFailoverFailback: 4 servers, N sessions each; SIGKILL one; every
// session goes on with count+1 through its backup; restart it; failback
// brings its sessions home, counts intact; failover/failback events carry
// the right counts; no session.lost anywhere.
func TestKillFailoverFailback(t *testing.T) {
	const perServer = 1000
	c := newCluster(t, 4, domain.FailoverImmediate, domain.DefaultSessionConfig())
	t.Logf("%s: starting", time.Now().Format("15:04:05.000"))
	c.startAll()
	t.Logf("%s: started", time.Now().Format("15:04:05.000"))
	cl := newClient(c, "JSESSIONID")
	var all []*sess
	byServer := map[string][]*sess{}
	for _, m := range c.members {
		ss := cl.create(t, m.Name, perServer, 32)
		byServer[m.Name] = ss
		all = append(all, ss...)
	}
	t.Logf("%s: %d sessions created", time.Now().Format("15:04:05.000"), len(all))
	cl.step(t, all, 32)
	t.Logf("%s: one step done", time.Now().Format("15:04:05.000"))
	victim := "ms2"
	backup := cl.killServing(t, all, byServer[victim], victim, c.procs[victim].Kill, 32)
	testenv.Eventually(t, 10*time.Second, func() error {
		n, err := c.sumEvents(domain.EventFailover, victim, backup)
		if err != nil || n != perServer {
			return fmt.Errorf("failover events on %s count %d sessions (err %v), want %d", backup, n, err, perServer)
		}
		return nil
	})
	t.Logf("%s: failed over", time.Now().Format("15:04:05.000"))
	// Restart: failback brings them home.
	c.start(victim)
	t.Logf("%s: restarted", time.Now().Format("15:04:05.000"))
	testenv.Eventually(t, 20*time.Second, func() error {
		n, err := c.sumEvents(domain.EventFailback, victim, backup)
		if err != nil || n != perServer {
			return fmt.Errorf("failback events on %s count %d sessions (err %v), want %d", backup, n, err, perServer)
		}
		return nil
	})
	t.Logf("%s: failed back", time.Now().Format("15:04:05.000"))
	cl.step(t, all, 32)
	for _, s := range byServer[victim] {
		if s.server != victim {
			t.Fatalf("after failback a session of %s was served by %s (cookie %s)", victim, s.server, s.cookie)
		}
	}
	cl.step(t, all, 32)
	for _, m := range c.members {
		if n, err := c.sumEvents(domain.EventSessionLost, "", m.Name); err != nil || n != 0 {
			t.Fatalf("session.lost on %s: %d (err %v)", m.Name, n, err)
		}
	}
}

// TestFailbackOff: with failback off, the sessions stay with the server
// that took them over when their home server returns; cookies name it.
func TestFailbackOff(t *testing.T) {
	const n = 200
	sc := domain.DefaultSessionConfig()
	sc.Failback = false
	c := newCluster(t, 3, domain.FailoverImmediate, sc)
	c.startAll()
	cl := newClient(c, "JSESSIONID")
	ss := cl.create(t, "ms1", n, 16)
	c.procs["ms1"].Kill()
	cl.step(t, ss, 16)
	c.start("ms1")
	c.waitStatus("ms2", func(hb replication.StatusInfo) error {
		for _, p := range hb.Peers {
			if p.Name == "ms1" && p.State != domain.StateRunning {
				return fmt.Errorf("ms1 is %s for ms2", p.State)
			}
		}
		return nil
	})
	cl.step(t, ss, 16)
	for _, s := range ss {
		if s.server != "ms2" || primaryOf(s) != "ms2" {
			t.Fatalf("served by %s with cookie %s, want ms2 (failback is off)", s.server, s.cookie)
		}
	}
	if got, err := c.sumEvents(domain.EventFailback, "", "ms2", "ms3"); err != nil || got != 0 {
		t.Fatalf("failback events: %d (err %v)", got, err)
	}
}
