package nodemanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"tandem/backend/agent"
	"tandem/backend/domain"
	"tandem/backend/metrics"
	"tandem/backend/serve"
	"tandem/backend/wire"
)

// Run runs the node manager until ctx ends: re-adopts running processes,
// applies the cached assignment, connects to the admin server (reconnecting
// forever) and serves /healthz and /metrics on cfg.Listen. When ctx ends it
// leaves the processes running, unless cfg.StopProcessesOnExit.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AdminURL == "" {
		return fmt.Errorf("%w: admin URL is required", ErrConfig)
	}
	if cfg.NodeToken == "" {
		return fmt.Errorf("%w: node token is required (TANDEM_NODE_TOKEN or --node-token-file)", ErrConfig)
	}
	m, err := NewManager(cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), m.cfg.StopTimeout+5*time.Second)
		defer cancel()
		if err := m.Close(sctx); err != nil {
			logger.Error("stopping processes", "err", err)
		}
	}()
	if cached, err := agent.LoadCached(cfg.DataDir); err == nil {
		if err := m.Apply(ctx, cached); err != nil {
			logger.Warn("cached assignment not applied", "err", err)
		}
	} else if !errors.Is(err, domain.ErrNotFound) {
		logger.Warn("cached assignment unreadable", "err", err)
	}

	a := agent.New(agent.Config{AdminURL: cfg.AdminURL, NodeToken: cfg.NodeToken, Kind: wire.KindNodeManager, Name: cfg.Name, DataDir: cfg.DataDir, CAFingerprint: cfg.CAFingerprint}, m, logger)
	m.SetEmitter(a.Emit)
	m.SetAdminClient(a.HTTPClient(0))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if cfg.Listen != "" {
		ln, err := serve.Listen(ctx, cfg.Listen)
		if err != nil {
			return err
		}
		reg := metrics.New()
		reg.MustRegister(m.Collector())
		mux := http.NewServeMux()
		reg.Mount(mux, nil)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve.Run(ctx, srv, ln, 5*time.Second); err != nil {
				errc <- err
			}
			cancel()
		}()
		logger.Info("node manager listening", "listen", ln.Addr().String())
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil {
			errc <- err
		}
		cancel()
	}()
	wg.Wait()
	close(errc)
	var errs []error
	for e := range errc {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}
