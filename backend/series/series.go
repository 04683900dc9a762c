// Package series keeps the history the console draws: every few seconds
// it samples each server's state, sessions, requests per second and
// replication lag from what the heartbeats already report, stores the
// samples in SQLite, and folds old ones into 5-minute averages (24 hours
// at full resolution, 30 days downsampled).
package series

import (
	"context"
	"log/slog"
	"time"

	"tandem/backend/domain"
)

// Defaults.
const (
	DefaultEvery        = 5 * time.Second
	DefaultKeepFull     = 24 * time.Hour
	DefaultKeepDown     = 30 * 24 * time.Hour
	DefaultCompactEvery = 5 * time.Minute
)

// Store is where samples go (backend/store).
type Store interface {
	Servers(ctx context.Context, cluster string) ([]domain.Server, error)
	AppendSamples(ctx context.Context, ss []domain.Sample) error
	CompactSeries(ctx context.Context, now time.Time, keepFull, keepDown time.Duration) (int64, error)
}

// Config assembles a Sampler.
type Config struct {
	Store Store
	// Live returns the live state of every connected node (the control
	// plane's Snapshot).
	Live         func() map[string]domain.LiveState
	Every        time.Duration
	KeepFull     time.Duration
	KeepDown     time.Duration
	CompactEvery time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// Sampler samples the servers until its Run ends.
type Sampler struct {
	cfg  Config
	last map[string]counter // per server: the previous request counter
}

type counter struct {
	at       time.Time
	requests uint64
	pid      int
}

// New returns a Sampler with defaults filled in.
func New(cfg Config) *Sampler {
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.KeepFull <= 0 {
		cfg.KeepFull = DefaultKeepFull
	}
	if cfg.KeepDown <= 0 {
		cfg.KeepDown = DefaultKeepDown
	}
	if cfg.CompactEvery <= 0 {
		cfg.CompactEvery = DefaultCompactEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sampler{cfg: cfg, last: map[string]counter{}}
}

// Run samples every Every and compacts every CompactEvery until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.Every)
	defer tick.Stop()
	compact := time.NewTicker(s.cfg.CompactEvery)
	defer compact.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := s.Sample(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("series: sample", "err", err)
			}
		case <-compact.C:
			n, err := s.cfg.Store.CompactSeries(ctx, s.cfg.Now(), s.cfg.KeepFull, s.cfg.KeepDown)
			if err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("series: compact", "err", err)
			} else if n > 0 {
				s.cfg.Logger.Debug("series: compacted", "rows", n)
			}
		}
	}
}

// Sample stores one sample of every defined server.
func (s *Sampler) Sample(ctx context.Context) error {
	servers, err := s.cfg.Store.Servers(ctx, "")
	if err != nil {
		return err
	}
	live := s.cfg.Live()
	now := s.cfg.Now().UTC()
	out := make([]domain.Sample, 0, len(servers))
	for _, sv := range servers {
		l, ok := live[sv.Name]
		x := domain.Sample{Time: now, Cluster: sv.Cluster, Server: sv.Name, State: l.State}
		if !ok || l.State == "" {
			x.State = domain.StateStopped
		}
		if l.State == domain.StateRunning || l.State == domain.StateSuspect {
			x.Sessions, x.BackupSessions, x.Unprotected, x.LagMS = float64(l.Sessions), float64(l.BackupSessions), float64(l.Unprotected), l.LagMS
		}
		x.RPS = s.rate(sv.Name, l, now)
		out = append(out, x)
	}
	return s.cfg.Store.AppendSamples(ctx, out)
}

// rate is the server's requests per second since the previous sample; a
// restarted process (another pid, or a counter that went back) starts over.
func (s *Sampler) rate(name string, l domain.LiveState, now time.Time) float64 {
	prev, seen := s.last[name]
	s.last[name] = counter{at: now, requests: l.Requests, pid: l.PID}
	if !seen || l.PID == 0 || prev.pid != l.PID || l.Requests < prev.requests {
		return 0
	}
	dt := now.Sub(prev.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(l.Requests-prev.requests) / dt
}
