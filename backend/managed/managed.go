// Package managed runs a managed server: the application behind the
// session middleware (an embedded Go handler, or the cluster's application
// process through apphost), the replication node that keeps every session
// on a primary and one backup, and the agent that talks to the admin server.
// The admin server is never in the request path: the server boots from its
// cached config when the admin server is down.
package managed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"tandem/backend/agent"
	"tandem/backend/apphost"
	"tandem/backend/artifacts"
	"tandem/backend/domain"
	"tandem/backend/metrics"
	"tandem/backend/replication"
	"tandem/backend/serve"
	"tandem/backend/session"
	"tandem/backend/wire"
)

// Config configures a managed server.
type Config struct {
	Name      string
	AdminURL  string
	NodeToken string
	DataDir   string
	// CAFingerprint pins the domain CA of an https AdminURL (TANDEM_CA_FINGERPRINT).
	CAFingerprint string
	// Advertise is the host other machines reach this server at
	// (--advertise, TANDEM_ADVERTISE); empty: the admin server takes the
	// address this server's connection comes from when listen binds every
	// address.
	Advertise string
	// DrainTimeout bounds the graceful stop's copy to the backup (default 10 s).
	DrainTimeout time.Duration
	// App builds the embedded application's handler; withSession wraps
	// the routes that use the session (the others, e.g. a health check,
	// stay outside it). It serves while the cluster sets no application
	// process. Required.
	App func(withSession func(http.Handler) http.Handler) http.Handler
	// Binary is what runs the embedded App: "" for `tandem server` (the
	// built-in sample app), domain.AppGo for an operator's binary built
	// with the sdk package.
	Binary string
}

// server is the agent's Handler.
type server struct {
	cfg    Config
	log    *slog.Logger
	node   *replication.Node
	mgr    *session.Manager
	agent  *agent.Agent
	host   *apphost.Host
	mu     sync.Mutex
	cur    *wire.Config
	first  chan struct{}
	listen string
	// serving is set once the application port accepts requests: until
	// then the heartbeats say "starting", so the admin server (and the web
	// servers it informs) do not count the server as running too early.
	serving atomic.Bool
	// requests counts the users' requests served (the admin server's
	// history derives requests per second from it).
	requests atomic.Uint64
}

// Run serves until ctx ends, then stops gracefully: no new sessions, every
// owned session copied to a live backup, then exit.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if cfg.Name == "" || !domain.ValidName(cfg.Name) {
		return fmt.Errorf("managed: invalid server name %q", cfg.Name)
	}
	if cfg.NodeToken == "" {
		return errors.New("managed: node token required (TANDEM_NODE_TOKEN or --node-token-file)")
	}
	if cfg.Advertise != "" && !domain.ValidHost(cfg.Advertise) {
		return fmt.Errorf("managed: --advertise %q: want an IP address or a host name (the ports are the configured ones)", cfg.Advertise)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.App == nil {
		return errors.New("managed: no embedded application handler")
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "."
	}
	reg := metrics.New()
	s := &server{cfg: cfg, log: logger, first: make(chan struct{})}
	s.agent = agent.New(agent.Config{AdminURL: cfg.AdminURL, NodeToken: cfg.NodeToken, Kind: wire.KindServer, Name: cfg.Name, DataDir: cfg.DataDir, CAFingerprint: cfg.CAFingerprint, Advertise: cfg.Advertise}, s, logger)
	// On an https domain the peers talk mutual TLS with their node
	// certificates; the node token is then no credential between them.
	peerServerTLS, peerClientTLS := s.agent.PeerTLS()
	s.node = replication.New(replication.Config{
		Name: cfg.Name, Token: cfg.NodeToken, Logger: logger, Registerer: reg, ClientTLS: peerClientTLS, Revoked: s.agent.Revoked,
		Emit: s.agent.Emit, Witness: s.agent.Witness,
	})
	host, err := apphost.New(apphost.Config{
		Server: cfg.Name, DataDir: cfg.DataDir, Logger: logger, Emit: s.node.Record,
		ScrubEnv: []string{"TANDEM_NODE_TOKEN", "TANDEM_NODE_TOKEN_FILE", "TANDEM_ADMIN_TOKEN", "TANDEM_ADMIN_TOKEN_FILE"},
		Fetch:    versionFetcher(cfg, s.agent.HTTPClient(0)),
	})
	if err != nil {
		return fmt.Errorf("managed: %w", err)
	}
	s.host = host
	hostCtx, stopHost := context.WithCancel(context.Background())
	hostDone := make(chan struct{})
	go func() { defer close(hostDone); host.Run(hostCtx) }()
	defer func() {
		// Last: the application outlives the drain, so sessions are safe first.
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := host.Close(sctx); err != nil {
			logger.Warn("managed: application not stopped cleanly", "err", err)
		}
		cancel()
		stopHost()
		<-hostDone
	}()

	agentCtx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		if err := s.agent.Run(agentCtx); err != nil {
			logger.Error("managed: agent stopped", "err", err)
		}
	}()
	defer func() { stopAgent(); <-agentDone }()

	if cached, err := agent.LoadCached(cfg.DataDir); err == nil {
		if err := s.Apply(ctx, cached); err != nil {
			logger.Warn("managed: cached config not usable", "err", err)
		} else {
			logger.Info("managed: booted from cached config", "revision", cached.Revision)
		}
	} else if !errors.Is(err, domain.ErrNotFound) {
		logger.Warn("managed: cached config", "err", err)
	}
	select {
	case <-s.first:
	case <-ctx.Done():
		return nil
	}
	s.mu.Lock()
	sc := *s.cur.Server
	s.mu.Unlock()

	ln, err := serve.Listen(ctx, sc.Self.Listen)
	if err != nil {
		return fmt.Errorf("managed: %w", err)
	}
	s.listen = sc.Self.Listen
	// The application port speaks TLS to a client that opens with it (on a
	// domain with certificates), and plain text unless the cluster sets
	// member_tls: the setting moves live, the web servers following it.
	appTLS := s.agent.AppTLS()
	ln = serve.SniffTLS(ln, func() *tls.Config { return appTLS }, func() bool { return !s.memberTLS() })
	mux := http.NewServeMux()
	reg.Mount(mux, nil)
	// The peers' endpoints have a listener of their own: the application
	// port (and so the web server) never reaches them.
	embedded := cfg.App(s.mgr.WrapLazy)
	proxied := s.mgr.WrapLazy(host)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.runsProcess() {
			proxied.ServeHTTP(w, r)
			return
		}
		embedded.ServeHTTP(w, r)
	})
	forwarded := s.node.ForwardHandler(app)
	var internal *http.Server
	var internalLn net.Listener
	if sc.Self.Internal != "" && sc.Self.Internal != sc.Self.Listen {
		if internalLn, err = serve.Listen(ctx, sc.Self.Internal); err != nil {
			ln.Close()
			return fmt.Errorf("managed: internal listener: %w", err)
		}
		if peerServerTLS != nil {
			internalLn = tls.NewListener(internalLn, peerServerTLS)
		}
		// A request forwarded to this server as its session's owner
		// arrives here too, from a member (certificate or node token).
		imux := http.NewServeMux()
		imux.Handle("/internal/v1/", s.node.Handler())
		imux.Handle("/", forwarded)
		internal = &http.Server{Handler: imux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, ConnContext: session.WithConn}
		// On the application port nobody may claim to be a forward.
		mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del(session.HeaderForwarded)
			r.Header.Del(session.HeaderPeerAuth)
			app.ServeHTTP(w, r)
		}))
	} else {
		// A config from before internal_listen existed serves the peers
		// beside the application.
		mux.Handle("/internal/v1/", s.node.Handler())
		mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(session.HeaderForwarded) != "" {
				forwarded.ServeHTTP(w, r)
				return
			}
			r.Header.Del(session.HeaderPeerAuth)
			app.ServeHTTP(w, r)
		}))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ConnContext: session.WithConn}

	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan struct{})
	go func() { defer close(nodeDone); _ = s.node.Run(nodeCtx) }()
	defer func() { stopNode(); <-nodeDone }()

	serveCtx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	errc := make(chan error, 1)
	go func() { errc <- serve.Run(serveCtx, srv, ln, 2*time.Second) }()
	// The peers' listener outlives the application's: a draining server
	// still answers its peers while its sessions are copied away.
	internalCtx, stopInternal := context.WithCancel(context.Background())
	var internalErr chan error // nil (never ready) without an internal listener
	if internal != nil {
		internalErr = make(chan error, 1)
		go func() { internalErr <- serve.Run(internalCtx, internal, internalLn, 2*time.Second) }()
		defer func() { stopInternal(); <-internalErr }()
	}
	defer stopInternal()
	s.serving.Store(true)
	logger.Info("managed: serving", "listen", sc.Self.Listen, "internal", sc.Self.PeerAddr(), "pid", os.Getpid())

	select {
	case err := <-errc:
		return err
	case err := <-internalErr:
		internalErr <- nil // for the deferred wait
		stopServe()
		<-errc
		if err == nil {
			err = errors.New("internal listener stopped")
		}
		return fmt.Errorf("managed: %w", err)
	case <-ctx.Done():
	}
	// Graceful stop: keep serving existing sessions and the peers while
	// every owned session reaches a live backup.
	logger.Info("managed: stopping: no new sessions; copying owned sessions to the backup")
	s.mgr.SetDraining(true)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	prot, unprot := s.node.Drain(dctx)
	cancel()
	logger.Info("managed: drained", "protected_sessions", prot, "unprotected_sessions", unprot, "backup", s.node.Status().Backup)
	stopServe()
	if err := <-errc; err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// Peers' pooled keep-alive connections that never carried a
			// request count as busy for 5 s; every session is safe by now.
			logger.Info("managed: closed the remaining connections")
			return nil
		}
		return err
	}
	return nil
}

// versionFetcher fetches an application's uploaded version from the admin
// server into DATA_DIR/apps/NAME/VERSION-SHA, keeping the newest three.
func versionFetcher(cfg Config, hc *http.Client) func(context.Context, wire.AppSpec) (string, error) {
	f := &artifacts.Fetcher{AdminURL: cfg.AdminURL, NodeToken: cfg.NodeToken, HTTP: hc}
	root := filepath.Join(cfg.DataDir, "apps")
	return func(ctx context.Context, spec wire.AppSpec) (string, error) {
		dest := artifacts.Dir(root, spec.Name, spec.Version, spec.SHA256)
		if err := f.Fetch(ctx, spec.SHA256, spec.Size, dest); err != nil {
			return "", err
		}
		now := time.Now()
		_ = os.Chtimes(dest, now, now) // the newest in use, for Prune
		artifacts.Prune(filepath.Dir(dest), 3, dest)
		return dest, nil
	}
}

// Apply implements agent.Handler: a new desired config, applied live.
func (s *server) Apply(_ context.Context, cfg wire.Config) error {
	if cfg.Server == nil {
		return errors.New("managed: config has no server section")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("managed: %w", err)
	}
	sc := *cfg.Server
	if sc.Self.Name != s.cfg.Name {
		return fmt.Errorf("managed: config is for %q", sc.Self.Name)
	}
	if err := domain.CheckListen("listen", sc.Self.Listen); err != nil {
		return fmt.Errorf("managed: %w", err)
	}
	if err := s.node.Apply(sc); err != nil {
		return err
	}
	var proc *wire.AppSpec
	if sc.App != nil && sc.App.Kind == domain.AppProcess {
		proc = sc.App
	}
	if err := s.host.Set(proc); err != nil {
		return fmt.Errorf("managed: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mgr == nil {
		s.mgr = session.NewManager(sc.Session, s.node, s.log)
		s.mgr.SetForwarding(s.node.Forwarding())
	} else {
		s.mgr.SetConfig(sc.Session)
	}
	if s.listen != "" && s.listen != sc.Self.Listen {
		s.log.Warn("managed: listen address changed; it takes effect at the next start", "now", s.listen, "new", sc.Self.Listen)
	}
	first := s.cur == nil
	c := cfg
	s.cur = &c
	if first {
		close(s.first)
	}
	s.log.Info("managed: config applied", "revision", cfg.Revision, "cookie", sc.Session.Cookie.Name, "replication", sc.Session.Replication, "members", len(sc.Members))
	return nil
}

// memberTLS reports whether the cluster requires TLS on the application port.
func (s *server) memberTLS() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil && s.cur.Server.Cluster.MemberTLS
}

// runsProcess reports whether requests go to the application process.
func (s *server) runsProcess() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil && s.cur.Server.App != nil && s.cur.Server.App.Kind == domain.AppProcess
}

// Status implements agent.Handler.
func (s *server) Status() wire.Heartbeat {
	hb := s.node.Status()
	if !s.serving.Load() && hb.State == "running" {
		hb.State = domain.StateStarting
	}
	hb.PID = os.Getpid()
	hb.Requests = s.requests.Load()
	s.mu.Lock()
	var spec *wire.AppSpec
	if s.cur != nil {
		hb.AppliedRevision, hb.AppliedChecksum = s.cur.Revision, s.cur.Checksum
		spec = s.cur.Server.App
	}
	s.mu.Unlock()
	app := s.embeddedStatus(spec)
	if st, ok := s.host.Status(); ok {
		app = st
	}
	hb.App = &app
	return hb
}

// embeddedStatus is the app status when no application process runs.
func (s *server) embeddedStatus(spec *wire.AppSpec) domain.AppStatus {
	switch {
	case spec == nil:
		if s.cfg.Binary == domain.AppGo {
			return domain.AppStatus{Kind: domain.AppGo, State: domain.AppStateEmbedded, Message: "the cluster sets no application: this binary serves its own handler"}
		}
		return domain.AppStatus{State: domain.AppStateEmbedded}
	case spec.Kind == domain.AppGo && s.cfg.Binary == domain.AppGo:
		return domain.AppStatus{Name: spec.Name, Kind: domain.AppGo, Version: spec.Version, State: domain.AppStateEmbedded, PID: os.Getpid()}
	case spec.Kind == domain.AppGo:
		return domain.AppStatus{Name: spec.Name, Kind: domain.AppGo, State: domain.AppStateFailed,
			Message: "this process is tandem server (the sample app): a go application runs when its node manager restarts this server with the application's binary"}
	}
	return domain.AppStatus{Name: spec.Name, Kind: spec.Kind, State: domain.AppStateStarting}
}

// Command implements agent.Handler; managed servers take no commands.
func (s *server) Command(_ context.Context, cmd wire.Command) wire.CommandResult {
	return wire.CommandResult{ID: cmd.ID, Error: "managed servers take no commands"}
}

// Query implements agent.QueryHandler: the session inspector's questions.
func (s *server) Query(_ context.Context, q wire.Query) wire.QueryResult {
	switch q.Kind {
	case wire.QuerySession:
		info, ok := s.node.Inspect(q.Session, q.Values)
		if !ok {
			return wire.QueryResult{OK: true}
		}
		return wire.QueryResult{OK: true, Sessions: []domain.SessionInfo{info}, Total: 1}
	case wire.QuerySessions:
		page, total := s.node.Owned(q.Offset, q.Limit)
		return wire.QueryResult{OK: true, Sessions: page, Total: total}
	}
	return wire.QueryResult{Error: "unknown query " + q.Kind}
}
