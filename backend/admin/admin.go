// Package admin assembles the admin server (`tandem admin`): it opens the
// store in the data folder, bootstraps the first admin token and the node
// token, builds the event hub, the REST API and the console, runs the
// background loops, and serves until its context ends, then shuts down in
// order: HTTP first, then the loops, then the store.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"tandem/backend/api"
	"tandem/backend/artifacts"
	"tandem/backend/auth"
	"tandem/backend/domain"
	"tandem/backend/events"
	"tandem/backend/metrics"
	"tandem/backend/serve"
	"tandem/backend/store"
	"tandem/web"
)

// DefaultListen is the admin server's default address.
const DefaultListen = "127.0.0.1:9736"

// DBFile is the database's file name in the data folder.
const DBFile = "tandem.db"

// DefaultBackupKeep is how many periodic backups are kept.
const DefaultBackupKeep = 7

// Config configures the admin server.
type Config struct {
	Listen  string // host:port; default DefaultListen
	DataDir string // holds tandem.db and node.token; created if missing
	// AdminToken (TANDEM_ADMIN_TOKEN) sets the bootstrap admin token on
	// first start instead of generating and printing one.
	AdminToken string
	// NodeToken (TANDEM_NODE_TOKEN) sets the node token instead of
	// DataDir/node.token.
	NodeToken string
	// TrustedOrigins may send cookie-authenticated writes besides the
	// admin server's own origin (a console behind a proxy).
	TrustedOrigins []string
	// Stdout receives the generated bootstrap token, once; nil: os.Stdout.
	Stdout io.Writer
	// MaxArtifactBytes bounds an uploaded application version (compressed);
	// 0: artifacts.DefaultMaxBytes. Archives live in DataDir/artifacts.
	MaxArtifactBytes int64
	// ShutdownGrace bounds the wait for in-flight requests; 0: 10 s.
	ShutdownGrace time.Duration
	// Retention of stored events; zero: events.DefaultRetention.
	Retention events.Retention
	// BackupEvery, when positive, writes an online backup of the database
	// to DataDir/backups that often, keeping the newest BackupKeep (0:
	// DefaultBackupKeep).
	BackupEvery time.Duration
	BackupKeep  int
	// HistoryEvery is how often servers are sampled for the history; 0:
	// series.DefaultEvery.
	HistoryEvery time.Duration
	// PlainHTTP serves without TLS (the demo on loopback); nodes then
	// authenticate with the node token alone. Otherwise the server speaks
	// HTTPS with TLSCert/TLSKey, or a certificate from the domain CA, and
	// nodes use certificates they enrol for.
	PlainHTTP bool
	TLSCert   string
	TLSKey    string
	// NodeCertLifetime is how long an enrolled node's certificate lasts; 0:
	// pki.LeafLifetime. Nodes renew at two thirds of it.
	NodeCertLifetime time.Duration
	// Extend plugs in the parts built on the store and the event recorder:
	// the control plane and rolling restarts. Nil: DefaultExtensions
	// (backend/control and backend/rolling). Nil fields in what it returns:
	// their routes answer 503.
	Extend func(ctx context.Context, d Deps) (Extensions, error)
	// Ready, if set, is called with the listening address once the server
	// accepts connections.
	Ready func(addr string)
}

// Deps are what extensions are built from.
type Deps struct {
	Store     *store.Store
	Recorder  *events.Recorder
	Hub       *events.Hub
	NodeToken string
	Logger    *slog.Logger
	Metrics   *metrics.Registry
	// HistoryEvery is Config.HistoryEvery.
	HistoryEvery time.Duration
}

// Extensions are the optional parts of the admin server.
type Extensions struct {
	Control  api.ControlPlane
	Roller   api.Roller
	Capacity api.CapacityReporter
	Drills   api.Driller
	// Loops run from start until shutdown (after HTTP stopped); Run waits
	// for them. A loop that fails stops the server.
	Loops []func(ctx context.Context) error
	// Close, if set, runs after the loops ended, before the store closes.
	Close func()
}

// Run runs the admin server until ctx ends or it fails.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) (err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.DataDir == "" {
		return errors.New("admin: data folder is required")
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.Retention == (events.Retention{}) {
		cfg.Retention = events.DefaultRetention
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("admin: data folder: %w", err)
	}
	release, err := LockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer release()
	if cfg.BackupEvery < 0 || cfg.BackupKeep < 0 {
		return errors.New("admin: backup period and count must not be negative")
	}
	if cfg.BackupKeep == 0 {
		cfg.BackupKeep = DefaultBackupKeep
	}
	st, err := store.Open(ctx, filepath.Join(cfg.DataDir, DBFile), logger)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	nodeToken, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: cfg.DataDir, AdminToken: cfg.AdminToken, NodeToken: cfg.NodeToken, Stdout: cfg.Stdout})
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	authn := auth.New(st, nodeToken, logger)
	ca, err := domainCA(cfg.DataDir, logger)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	var tlsCfg *tls.Config
	if !cfg.PlainHTTP {
		if tlsCfg, err = serverTLS(cfg, ca); err != nil {
			return err
		}
		authn.RequireNodeCerts()
	} else {
		ca = nil // no enrolment on plain HTTP: nodes use the token
	}
	for _, o := range cfg.TrustedOrigins {
		if err := authn.TrustOrigin(o); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
	}

	reg := metrics.New()
	hub := events.NewHub(events.HubConfig{Log: st, Logger: logger})
	defer hub.Close()
	reg.MustRegister(hub.Collector()) // stream subscribers, published, slow consumers dropped
	rec := events.NewRecorder(st, hub)
	authn.OnLockout(func(ctx context.Context, e domain.Event) {
		if _, err := rec.Record(ctx, e); err != nil {
			logger.Error("admin: record a login lockout", "err", err)
		}
	})

	// serveCtx ends on shutdown or when a loop fails; loopCtx ends after
	// the HTTP server stopped, so loops outlive in-flight requests.
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()

	extend := cfg.Extend
	if extend == nil {
		extend = DefaultExtensions
	}
	ext, err := extend(loopCtx, Deps{Store: st, Recorder: rec, Hub: hub, NodeToken: nodeToken, Logger: logger, Metrics: reg, HistoryEvery: cfg.HistoryEvery})
	if err != nil {
		return fmt.Errorf("admin: extensions: %w", err)
	}
	if ext.Close != nil {
		defer ext.Close()
	}

	arts, err := artifacts.Open(filepath.Join(cfg.DataDir, "artifacts"), cfg.MaxArtifactBytes)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	engine := api.New(api.Config{Store: st, Auth: authn, Control: ext.Control, Events: hub, Roller: ext.Roller,
		Metrics: reg, Console: web.Handler(), Logger: logger, Artifacts: arts, Capacity: ext.Capacity, Drills: ext.Drills,
		PKI: ca, NodeCertLifetime: cfg.NodeCertLifetime})

	ln, err := serve.Listen(ctx, cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	} else {
		logger.Warn("admin: serving plain HTTP: nodes authenticate with the node token alone; use it on loopback or a trusted network only")
	}
	var (
		wg      sync.WaitGroup
		loopMu  sync.Mutex
		loopErr error
	)
	loops := append([]func(context.Context) error{func(ctx context.Context) error {
		return events.RunRetention(ctx, st, cfg.Retention, logger)
	}}, ext.Loops...)
	if cfg.BackupEvery > 0 {
		loops = append(loops, func(ctx context.Context) error {
			return backupLoop(ctx, st, cfg.DataDir, cfg.BackupEvery, cfg.BackupKeep, logger)
		})
	}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(loopCtx); err != nil && loopCtx.Err() == nil {
				logger.Error("admin: background loop failed", "err", err)
				loopMu.Lock()
				if loopErr == nil {
					loopErr = err
				}
				loopMu.Unlock()
				stopServe()
			}
		}()
	}
	srv := &http.Server{
		Handler:           engine,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("admin: listening", "addr", ln.Addr().String(), "data_dir", cfg.DataDir)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	serveErr := serve.Run(serveCtx, srv, ln, cfg.ShutdownGrace)
	hub.Close() // ends the event streams (hijacked: Shutdown does not wait for them)
	stopLoops()
	wg.Wait()
	logger.Info("admin: stopped")
	if serveErr != nil {
		return fmt.Errorf("admin: %w", serveErr)
	}
	if loopErr != nil {
		return fmt.Errorf("admin: %w", loopErr)
	}
	return nil
}
