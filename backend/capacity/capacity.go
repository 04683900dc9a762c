// Package capacity answers "can we lose a server right now?": for each
// server of a cluster, what its death would do (who takes its sessions,
// the resulting count against max_sessions, how many sessions would be
// left with one copy), and it records a capacity.warning event when a
// cluster becomes unable to take one more failure and when it recovers.
package capacity

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"tandem/backend/domain"
)

// Server is one server's live load, as Assess needs it.
type Server struct {
	Name           string
	State          string
	Sessions       int
	BackupSessions int
	Unprotected    int
	Backup         string
	MaxSessions    int
}

// Assess is what one failure in the cluster would do now; pure.
func Assess(cluster string, servers []Server) domain.Capacity {
	out := domain.Capacity{Cluster: cluster, Healthy: true, Warnings: []string{}, Servers: make([]domain.ServerCapacity, 0, len(servers))}
	byName := map[string]Server{}
	running := 0
	for _, s := range servers {
		byName[s.Name] = s
		if s.State == domain.StateRunning {
			running++
			out.Unprotected += s.Unprotected
		}
	}
	if out.Unprotected > 0 {
		out.Warnings = append(out.Warnings, fmt.Sprintf("%d sessions have one copy now: their server's failure would lose them", out.Unprotected))
	}
	for _, s := range servers {
		sc := domain.ServerCapacity{Name: s.Name, State: s.State, Sessions: s.Sessions, BackupSessions: s.BackupSessions, MaxSessions: s.MaxSessions, Backup: s.Backup}
		if s.State == domain.StateRunning {
			imp := &domain.FailureImpact{TakesOver: s.Backup, SingleCopy: s.Sessions + s.BackupSessions - s.Unprotected,
				Lost: s.Unprotected, StaysSingleCopy: running-1 < 2}
			if b, ok := byName[s.Backup]; ok && b.State == domain.StateRunning {
				imp.ResultingSessions = b.Sessions + s.Sessions - s.Unprotected
				imp.MaxSessions = b.MaxSessions
				imp.Overflow = b.MaxSessions > 0 && imp.ResultingSessions > b.MaxSessions
			} else {
				imp.TakesOver = ""
				imp.Lost = s.Sessions
				imp.SingleCopy = s.BackupSessions
			}
			switch {
			case imp.Overflow:
				out.Warnings = append(out.Warnings, fmt.Sprintf("if %s fails, %s would hold %d sessions, over its max_sessions %d", s.Name, imp.TakesOver, imp.ResultingSessions, imp.MaxSessions))
			case imp.TakesOver == "" && s.Sessions > 0:
				out.Warnings = append(out.Warnings, fmt.Sprintf("if %s fails, its %d sessions are lost: it has no running backup", s.Name, s.Sessions))
			}
			if imp.StaysSingleCopy && imp.SingleCopy > 0 && s.Sessions+s.BackupSessions > 0 {
				out.Warnings = append(out.Warnings, fmt.Sprintf("if %s fails, %d sessions keep one copy: no other running server is left to copy them to", s.Name, imp.SingleCopy))
			}
			sc.IfItFails = imp
		}
		out.Servers = append(out.Servers, sc)
	}
	out.Healthy = len(out.Warnings) == 0
	return out
}

// Source is where the monitor reads a cluster's servers and live state.
type Source interface {
	Clusters(ctx context.Context) ([]domain.Cluster, error)
	Servers(ctx context.Context, cluster string) ([]domain.Server, error)
	EffectiveSessionConfigs(ctx context.Context, cluster string) (map[string]domain.SessionConfig, error)
}

// Config assembles a Monitor.
type Config struct {
	Source Source
	Live   func(name string) (domain.LiveState, bool)
	// Record stores an event (capacity.warning).
	Record func(ctx context.Context, e domain.Event) error
	// Every is how often the clusters are assessed; 0: 2 s.
	Every time.Duration
	// Grace is how long a cluster must stay unhealthy (or healthy again)
	// before the event: unprotected sessions appear for an instant on every
	// asynchronous write. 0: 6 s.
	Grace  time.Duration
	Logger *slog.Logger
}

// Monitor assesses every cluster periodically and records warnings.
type Monitor struct {
	cfg Config
}

// New returns a Monitor; call Run.
func New(cfg Config) *Monitor {
	if cfg.Every <= 0 {
		cfg.Every = 2 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 6 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Monitor{cfg: cfg}
}

// Report assesses the cluster now. An unknown cluster is domain.ErrNotFound.
func (m *Monitor) Report(ctx context.Context, cluster string) (domain.Capacity, error) {
	servers, err := m.cfg.Source.Servers(ctx, cluster)
	if err != nil {
		return domain.Capacity{}, err
	}
	effs, err := m.cfg.Source.EffectiveSessionConfigs(ctx, cluster)
	if err != nil {
		return domain.Capacity{}, err
	}
	in := make([]Server, 0, len(servers))
	for _, s := range servers {
		eff := effs[s.Name]
		l, _ := m.cfg.Live(s.Name)
		st := l.State
		if st == "" {
			st = domain.StateStopped
		}
		in = append(in, Server{Name: s.Name, State: st, Sessions: l.Sessions, BackupSessions: l.BackupSessions,
			Unprotected: l.Unprotected, Backup: l.Backup, MaxSessions: eff.MaxSessions})
	}
	return Assess(cluster, in), nil
}

// clusterState is what the monitor last said about a cluster.
type clusterState struct {
	warned  bool      // a warning event is open
	since   time.Time // when the current (unreported) condition began
	pending bool      // the condition differs from what was said
}

// Run assesses every cluster until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Every)
	defer t.Stop()
	states := map[string]*clusterState{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := m.check(ctx, states, time.Now()); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("capacity: check", "err", err)
		}
	}
}

// check assesses each cluster once and records the changes that lasted
// the grace period.
func (m *Monitor) check(ctx context.Context, states map[string]*clusterState, now time.Time) error {
	cs, err := m.cfg.Source.Clusters(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range cs {
		seen[c.Name] = true
		rep, err := m.Report(ctx, c.Name)
		if err != nil {
			return err
		}
		st := states[c.Name]
		if st == nil {
			st = &clusterState{}
			states[c.Name] = st
		}
		bad := !rep.Healthy
		if bad == st.warned {
			st.pending = false
			continue
		}
		if !st.pending {
			st.pending, st.since = true, now
		}
		if now.Sub(st.since) < m.cfg.Grace {
			continue
		}
		msg := "one more failure is covered again"
		if bad {
			msg = "one more failure would hurt: " + strings.Join(rep.Warnings, "; ")
		}
		e := domain.Event{Type: domain.EventCapacityWarning, Cluster: c.Name, Sessions: rep.Unprotected, Message: msg}
		if err := m.cfg.Record(ctx, e); err != nil {
			return fmt.Errorf("capacity: record: %w", err)
		}
		m.cfg.Logger.Info("capacity: "+msg, "cluster", c.Name)
		st.warned, st.pending = bad, false
	}
	for name := range states {
		if !seen[name] {
			delete(states, name)
		}
	}
	return nil
}
