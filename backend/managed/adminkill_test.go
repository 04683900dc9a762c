package managed_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	apiclient "tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// TestAdminKilledFirst: a real admin server and four servers with
// sessions; SIGKILL the admin, then SIGKILL a server: every session goes
// on with count+1 through its backup; the killed server, restarted while
// the admin is still dead, gets its sessions back (failback), counts
// intact. The admin restarted on its data folder shows all four running
// again, the restarted server with its new pid, and records the failover
// and failback the servers emitted while it was away.
func TestAdminKilledFirst(t *testing.T) {
	const perServer = 250
	ctx := context.Background()
	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	ac := newAdminCluster(t, 4)
	phase("admin and 4 servers settled")
	cl := newClient(ac.cluster, "JSESSIONID")
	var all []*sess
	byServer := map[string][]*sess{}
	for _, m := range ac.members {
		ss := cl.create(t, m.Name, perServer, 16)
		byServer[m.Name] = ss
		all = append(all, ss...)
	}
	cl.step(t, all, 16)
	eventsBefore := ac.lastEventID(ctx)
	phase(fmt.Sprintf("%d sessions on 4 servers", len(all)))

	ac.admin.Proc.Kill()
	cl.step(t, all, 16) // the admin server is not in the request path
	phase("admin killed, every session served")

	victim := "ms2"
	backup := cl.killServing(t, all, byServer[victim], victim, ac.procs[victim].Kill, 16)
	ac.waitPeerEvents(domain.EventFailover, victim, perServer)

	phase("server killed, every session served, failover recorded on " + backup)

	// Restarted with the admin server still dead: it boots from its cache.
	ac.startServer(victim)
	ac.waitPeerEvents(domain.EventFailback, victim, perServer)
	cl.step(t, all, 16)
	for _, s := range byServer[victim] {
		if s.server != victim || primaryOf(s) != victim {
			t.Fatalf("after failback a session of %s was served by %s (cookie %s)", victim, s.server, s.cookie)
		}
	}

	phase("server restarted, failed back, every session served")

	// The admin server comes back on the same folder and address.
	ac.admin.Restart()
	revs := ac.desiredRevisions(ctx)
	c1 := ac.admin.WaitCluster("c1", 30*time.Second, func(c domain.TopologyCluster) error {
		if len(c.Servers) != 4 {
			return fmt.Errorf("%d servers in the topology", len(c.Servers))
		}
		copies := 0
		for _, s := range c.Servers {
			copies += s.BackupSessions
			switch {
			case s.PID != ac.procs[s.Name].PID():
				return fmt.Errorf("%s pid %d, want %d", s.Name, s.PID, ac.procs[s.Name].PID())
			case s.AppliedRevision != revs[s.Name] || s.DesiredRevision != revs[s.Name]:
				return fmt.Errorf("%s desired %d applied %d, want %d", s.Name, s.DesiredRevision, s.AppliedRevision, revs[s.Name])
			case s.Sessions != perServer:
				return fmt.Errorf("%s owns %d sessions, want %d", s.Name, s.Sessions, perServer)
			}
		}
		if copies != 4*perServer {
			return fmt.Errorf("%d backup copies in the cluster, want one per session (%d)", copies, 4*perServer)
		}
		return testenv.Settled(c)
	})
	phase("admin restarted, topology right")
	t.Logf("topology after the admin restart: %+v", c1.Servers)

	// What the servers emitted while the admin was dead reached it.
	testenv.Eventually(t, 20*time.Second, func() error {
		evs, err := ac.admin.API.Events(ctx, apiclient.EventQuery{Types: []string{domain.EventFailover, domain.EventFailback, domain.EventSessionLost},
			Cluster: "c1", AfterID: eventsBefore, Limit: 1000})
		if err != nil {
			return err
		}
		sum := map[string]int{}
		for _, e := range evs {
			if e.Type == domain.EventSessionLost {
				return fmt.Errorf("session.lost recorded: %+v", e)
			}
			if e.Server == backup && e.Peer == victim {
				sum[e.Type] += e.Sessions
			}
		}
		if sum[domain.EventFailover] != perServer || sum[domain.EventFailback] != perServer {
			return fmt.Errorf("recorded failover %d, failback %d sessions from %s about %s; want %d each",
				sum[domain.EventFailover], sum[domain.EventFailback], backup, victim, perServer)
		}
		return nil
	})

	cl.step(t, all, 16)
	phase("every session served again")
	for _, m := range ac.members {
		if n, err := ac.sumEvents(domain.EventSessionLost, "", m.Name); err != nil || n != 0 {
			t.Fatalf("session.lost on %s: %d (err %v)", m.Name, n, err)
		}
	}
}
