package webserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"tandem/backend/agent"
	"tandem/backend/domain"
	"tandem/backend/metrics"
	"tandem/backend/wire"
)

var metricsHealthz = metrics.Healthz

// CacheFile is the agent's cache of the last applied config in the data
// folder; the web server boots from it when the admin server is down.
const CacheFile = agent.CacheFile

// follow keeps the routing table current until ctx ends. Without an agent
// it polls the cached config file, so a table written there (by the agent
// of another process, or by hand) is applied live.
func (s *Server) follow(ctx context.Context) error {
	if s.cfg.DataDir != "" {
		if cfg, err := agent.LoadCached(s.cfg.DataDir); err == nil {
			if err := s.Apply(ctx, cfg); err != nil {
				s.log.Error("cached config rejected", "err", err)
			} else {
				s.log.Info("booted from the cached routing table", "revision", cfg.Revision)
			}
		} else if !errors.Is(err, domain.ErrNotFound) {
			s.log.Error("cached config unreadable", "err", err)
		}
	}
	if s.cfg.AdminURL != "" {
		a := agent.New(agent.Config{
			AdminURL:  s.cfg.AdminURL,
			NodeToken: s.cfg.NodeToken,
			Kind:      wire.KindWebServer,
			Name:      s.cfg.Name,
			DataDir:   s.cfg.DataDir,
			// An https admin server: the web server enrols like any node.
			CAFingerprint: s.cfg.CAFingerprint,
		}, s, s.log)
		if _, client := a.PeerTLS(); client != nil {
			s.peerTLS.Store(client)
		}
		return a.Run(ctx)
	}
	if s.cfg.DataDir == "" {
		<-ctx.Done()
		return nil
	}
	var lastMod time.Time
	var lastSize int64
	var lastErr string
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		st, err := os.Stat(filepath.Join(s.cfg.DataDir, CacheFile))
		if err == nil && (!st.ModTime().Equal(lastMod) || st.Size() != lastSize) {
			lastMod, lastSize = st.ModTime(), st.Size()
			cfg, err := agent.LoadCached(s.cfg.DataDir)
			if err == nil {
				cur := s.tab.Load()
				if cur == nil || cur.checksum != cfg.Checksum || cfg.Checksum == "" {
					err = s.Apply(ctx, cfg)
				}
			}
			if err != nil && err.Error() != lastErr {
				s.log.Error("cached config rejected", "err", err)
			}
			if err != nil {
				lastErr = err.Error()
			} else {
				lastErr = ""
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
