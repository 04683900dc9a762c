package webserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"tandem/backend/domain"
	"tandem/backend/metrics"
	"tandem/backend/wire"
)

var metricsHealthz = metrics.Healthz

// CacheFile is the agent's cache of the last applied config in the data
// folder; the web server boots from it when the admin server is down.
const CacheFile = "applied-config.json"

// LoadCached reads DATA_DIR/applied-config.json strictly; domain.ErrNotFound
// when there is none.
func LoadCached(dataDir string) (wire.Config, error) {
	var cfg wire.Config
	b, err := os.ReadFile(filepath.Join(dataDir, CacheFile))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, domain.ErrNotFound
	}
	if err != nil {
		return cfg, fmt.Errorf("webserver: read cached config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("%w: cached config: %w", ErrBadConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: cached config: %w", ErrBadConfig, err)
	}
	return cfg, nil
}

// follow keeps the routing table current until ctx ends. Without an agent
// it polls the cached config file, so a table written there (by the agent
// of another process, or by hand) is applied live.
func (s *Server) follow(ctx context.Context) error {
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
			cfg, err := LoadCached(s.cfg.DataDir)
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
