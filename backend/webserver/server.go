// Package webserver is the front tier of a Tandem cluster: an HTTP/1.1
// routing proxy that sends each request to the server named as its
// session's primary in the session cookie (or ;jsessionid= path parameter),
// then to its backup, then to any live member; requests without a session
// go to the live member with the fewest requests in flight.
//
// The forwarding path is its own HTTP/1.1 implementation, not
// net/http's Transport: one goroutine per client connection, headers
// forwarded as the bytes read (hop-by-hop ones removed, X-Forwarded-*
// added), a pinned upstream connection per client connection and per-member
// pools of idle connections, pooled buffers. The routing table comes from
// the admin server (Apply, called by the agent) and the last one is kept
// when the admin server is down.
//
// The web server's own endpoints live under the reserved prefix /_tandem/
// (/_tandem/healthz, /_tandem/metrics) on the proxy listener, so they never
// shadow application paths such as /healthz or /ping, and also at /healthz
// and /metrics on the optional admin listener (Config.AdminListen).
package webserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/backend/domain"
	"tandem/backend/metrics"
	"tandem/backend/route"
	"tandem/backend/serve"
	"tandem/backend/wire"
)

// ReservedPrefix is the path prefix of the web server's own endpoints on
// the proxy listener; everything else is forwarded.
const ReservedPrefix = "/_tandem/"

// ErrNoTable is returned by Run when ctx ends before any routing table
// arrived.
var ErrNoTable = errors.New("webserver: no routing table")

// ErrBadConfig wraps every rejected configuration.
var ErrBadConfig = errors.New("webserver: bad config")

// Config configures a web server. Zero durations and sizes take the
// defaults noted.
type Config struct {
	Name      string
	AdminURL  string
	NodeToken string
	DataDir   string
	// CAFingerprint pins the domain CA of an https AdminURL (TANDEM_CA_FINGERPRINT).
	CAFingerprint string

	// Listen overrides the listen address of the routing table.
	Listen string
	// AdminListen, if set, serves /healthz and /metrics on a second listener.
	AdminListen string
	// Pprof adds /debug/pprof/ to the admin listener (for profiling).
	Pprof bool

	// AccessLogEvery logs one request in N (1: every request; 0: none).
	AccessLogEvery int
	// MaxBodyBytes bounds a request body (default 8 MiB); larger is 413.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds a request or response head (default 64 KiB).
	MaxHeaderBytes int
	// ConnectTimeout bounds a dial to a member (default 2 s).
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds sending a request and reading the
	// response head (default 30 s).
	ResponseHeaderTimeout time.Duration
	// BodyTimeout bounds the silence while streaming a response body
	// (default 5 min).
	BodyTimeout time.Duration
	// IdleTimeout closes client connections idle that long, and pooled
	// upstream connections too (default 60 s).
	IdleTimeout time.Duration
	// ProbeInterval is the period of the active health checks (default 1 s).
	ProbeInterval time.Duration
	// EventLoops is the number of event loops serving client connections
	// (0: one per two GOMAXPROCS, at least one; negative: none, a goroutine
	// per connection).
	EventLoops int
	// MaxIdlePerMember bounds pooled connections per member (default 512).
	MaxIdlePerMember int
	// PollInterval is how often the cached config file is re-read when no
	// agent feeds the server (default 1 s).
	PollInterval time.Duration
}

func (c *Config) defaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.ResponseHeaderTimeout <= 0 {
		c.ResponseHeaderTimeout = 30 * time.Second
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 5 * time.Minute
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = time.Second
	}
	if c.MaxIdlePerMember <= 0 {
		c.MaxIdlePerMember = 512
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
}

// table is one immutable routing table.
type table struct {
	listen      string
	cookieNames []string
	members     []*member
	revision    int64
	checksum    string
	// suspectAfter is the cluster's heartbeat timeout: a member with
	// requests waiting that answers nothing for that long is suspect.
	suspectAfter time.Duration
}

type metricSet struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	failovers *prometheus.CounterVec
	up        *prometheus.GaugeVec
	inflight  prometheus.Gauge
	// loop counts requests by how the event loop took them: answered
	// itself, or handed over to the goroutine path (and at which point).
	loop *prometheus.CounterVec
}

func newMetricSet(reg prometheus.Registerer) *metricSet {
	m := &metricSet{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_webserver_requests_total",
			Help: "Requests answered, by upstream member (none: answered by the web server) and status code.",
		}, []string{"upstream", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_webserver_upstream_duration_seconds",
			Help:    "Time from sending a request to a member to its response head.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_webserver_failovers_total",
			Help: "Requests sent to another member than the first choice, by reason (primary_down, connect, upstream_error, timeout, unavailable, resent).",
		}, []string{"reason"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_webserver_member_up",
			Help: "1 while the web server considers the member live.",
		}, []string{"member"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_webserver_inflight_requests",
			Help: "Requests being forwarded.",
		}),
		loop: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_webserver_event_loop_requests_total",
			Help: "Requests the event loop took, by how: answered (forwarded and answered by the loop), request (handed over as read: body, upgrade, TLS or named member...), retry (handed over to retry after a failed attempt) or response (handed over to relay a streamed, large or 503 response).",
		}, []string{"how"}),
	}
	reg.MustRegister(m.requests, m.latency, m.failovers, m.up, m.inflight, m.loop)
	return m
}

// Failover reasons (metric label values).
const (
	reasonPrimaryDown   = "primary_down"
	reasonConnect       = "connect"
	reasonUpstreamError = "upstream_error"
	reasonTimeout       = "timeout"
	reasonUnavailable   = "unavailable" // a member answered 503 to an idempotent request
	reasonResent        = "resent"      // the member went down or silent while the request waited
)

// Server is a web server. Create it with New; Apply, Status and Command
// make it an agent.Handler. All methods are safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	reg    *metrics.Registry
	met    *metricSet
	fail   [6]prometheus.Counter
	none   sync.Map // code -> prometheus.Counter for answers without upstream
	tab    atomic.Pointer[table]
	ready  chan struct{}
	once   sync.Once
	tie    atomic.Uint32
	logSeq atomic.Uint64
	// ridPrefix and rid make each forwarded request's X-Tandem-Request-Id:
	// unique across web servers and restarts, the same on every retry.
	ridPrefix [17]byte
	rid       atomic.Uint64

	mu      sync.Mutex
	members map[string]*member // by name+"\x00"+route+"\x00"+listen (+"\x00tls")
	// adminStates is the admin server's last view of the members' states
	// (wire.MemberStates), by name.
	adminStates map[string]string

	conns    sync.Map // net.Conn -> *clientConn, for shutdown
	draining atomic.Bool
	// connWG counts the client connections being served, by a goroutine
	// or an event loop.
	connWG   sync.WaitGroup
	loops    []*evloop
	nextLoop atomic.Uint32
	pid      int
	// retried and failed count requests sent on to another member and
	// requests the web server answered with an error page itself (the
	// heartbeat reports them: failover drills read them).
	retried atomic.Uint64
	failed  atomic.Uint64
	// peerTLS is the node's client TLS (its agent's, on a domain with
	// certificates, checking the revocations): the base of the members'
	// TLS when their cluster sets member_tls.
	peerTLS atomic.Pointer[tls.Config]
}

// New returns a Server with no routing table yet.
func New(cfg Config, logger *slog.Logger) *Server {
	cfg.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := metrics.New()
	s := &Server{
		cfg:     cfg,
		log:     logger,
		reg:     reg,
		met:     newMetricSet(reg),
		ready:   make(chan struct{}),
		members: map[string]*member{},
		pid:     os.Getpid(),
	}
	for i, r := range []string{reasonPrimaryDown, reasonConnect, reasonUpstreamError, reasonTimeout, reasonUnavailable, reasonResent} {
		s.fail[i] = s.met.failovers.WithLabelValues(r)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails
	hex.Encode(s.ridPrefix[:16], rnd[:])
	s.ridPrefix[16] = '-'
	return s
}

// Registry returns the server's metric registry.
func (s *Server) Registry() *metrics.Registry { return s.reg }

// Apply installs the routing table of cfg (its WebServer section) at once;
// requests in flight finish on the table they started with.
func (s *Server) Apply(_ context.Context, cfg wire.Config) error {
	wc := cfg.WebServer
	if wc == nil {
		return fmt.Errorf("%w: no webserver section", ErrBadConfig)
	}
	if wc.Listen == "" && s.cfg.Listen == "" {
		return fmt.Errorf("%w: no listen address", ErrBadConfig)
	}
	seen := map[string]bool{}
	for _, m := range wc.Members {
		if !route.ValidRoute(m.Route) {
			return fmt.Errorf("%w: member %q: route %q", ErrBadConfig, m.Name, m.Route)
		}
		if seen[m.Route] {
			return fmt.Errorf("%w: route %q used twice", ErrBadConfig, m.Route)
		}
		seen[m.Route] = true
		if _, _, err := net.SplitHostPort(m.Listen); err != nil {
			return fmt.Errorf("%w: member %q: listen %q: %w", ErrBadConfig, m.Name, m.Listen, err)
		}
	}
	names := append([]string(nil), wc.CookieNames...)
	if len(names) == 0 {
		names = []string{"JSESSIONID"}
	}
	t := &table{listen: wc.Listen, cookieNames: names, revision: cfg.Revision, checksum: cfg.Checksum,
		suspectAfter: time.Duration(wc.Cluster.HeartbeatTimeoutMS) * time.Millisecond}
	if t.suspectAfter <= 0 {
		t.suspectAfter = time.Duration(domain.DefaultHeartbeatTimeoutMS) * time.Millisecond
	}
	s.mu.Lock()
	keep := map[string]bool{}
	for _, wm := range wc.Members {
		key := wm.Name + "\x00" + wm.Route + "\x00" + wm.Listen
		if wc.Cluster.MemberTLS {
			key += "\x00tls"
		}
		m := s.members[key]
		if m == nil {
			m = &member{name: wm.Name, route: wm.Route, listen: wm.Listen, m: s.met, tls: wc.Cluster.MemberTLS}
			m.latency = s.met.latency.WithLabelValues(wm.Name)
			m.lastAnswer.Store(time.Now().UnixNano())
			// Optimistic unless the admin server has it down; the first
			// probe or connect corrects it.
			up := !adminDown(s.adminStates[wm.Name])
			m.live.Store(up)
			s.met.up.WithLabelValues(wm.Name).Set(b2f(up))
			s.members[key] = m
		}
		keep[key] = true
		t.members = append(t.members, m)
	}
	var gone []*member
	for key, m := range s.members {
		if !keep[key] {
			gone = append(gone, m)
			delete(s.members, key)
		}
	}
	s.mu.Unlock()
	old := s.tab.Swap(t)
	for _, m := range gone {
		m.closeIdle(true)
		if !s.hasMemberNamed(m.name) {
			s.met.up.DeleteLabelValues(m.name)
		}
	}
	if old != nil && old.listen != t.listen && s.cfg.Listen == "" {
		s.log.Warn("listen address changed; restart the web server to use it", "old", old.listen, "new", t.listen)
	}
	s.log.Info("routing table applied", "revision", cfg.Revision, "members", len(t.members), "cookies", len(names))
	s.once.Do(func() { close(s.ready) })
	return nil
}

func (s *Server) hasMemberNamed(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.members {
		if m.name == name {
			return true
		}
	}
	return false
}

// Status fills the agent's heartbeat.
func (s *Server) Status() wire.Heartbeat {
	hb := wire.Heartbeat{State: "running", PID: s.pid, Retried: s.retried.Load(), Failed: s.failed.Load()}
	if s.draining.Load() {
		hb.State = "stopping"
	}
	if t := s.tab.Load(); t != nil {
		hb.AppliedRevision, hb.AppliedChecksum = t.revision, t.checksum
		for _, m := range t.members {
			st := "running"
			if !m.live.Load() {
				st = "failed"
			}
			hb.Peers = append(hb.Peers, wire.PeerState{Name: m.name, State: st})
		}
	} else {
		hb.State = "starting"
	}
	return hb
}

// Command refuses: web servers run no node-manager commands.
func (s *Server) Command(_ context.Context, cmd wire.Command) wire.CommandResult {
	return wire.CommandResult{ID: cmd.ID, Error: "webserver: commands are for node managers"}
}

// Ready is closed once a routing table has been applied.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// markDown takes m out of the routing: new requests skip it, and every
// resendable request waiting on it is resent to the next member at once
// (with the same request id: a write it applied is answered from the reply
// its session stored, never applied twice).
func (s *Server) markDown(m *member, why string, err error) {
	if m.live.Swap(false) {
		s.met.up.WithLabelValues(m.name).Set(0)
		m.closeIdle(false)
		s.tellLoops(loopMsg{down: m})
		resent := s.abandonWaiting(m)
		s.log.Warn("member down", "member", m.name, "listen", m.listen, "reason", why, "err", err, "resent", resent)
	}
}

// abandonWaiting closes the connections on which resendable requests wait
// for m's answer; each request then goes on to the next member.
func (s *Server) abandonWaiting(m *member) int {
	n := 0
	s.conns.Range(func(_, v any) bool {
		cc := v.(*clientConn)
		if u := cc.waiting.Load(); u != nil && u.m == m && cc.waiting.CompareAndSwap(u, nil) {
			_ = u.c.Close()
			n++
		}
		return true
	})
	return n
}

func (s *Server) markUp(m *member, why string) {
	if !m.live.Swap(true) {
		s.met.up.WithLabelValues(m.name).Set(1)
		s.log.Info("member up", "member", m.name, "listen", m.listen, "reason", why)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// adminDown reports whether an admin-server state means the member
// cannot serve now.
func adminDown(state string) bool {
	switch state {
	case domain.StateSuspect, domain.StateFailed, domain.StateStopped:
		return true
	}
	return false
}

// adminTrustAfter: the admin server's "down" is acted on only for a member
// that has not answered this web server for this long (the admin may have
// lost only its control connection to a member that serves well).
const adminTrustAfter = 250 * time.Millisecond

// MemberStates takes the admin server's view of the members (see
// wire.MemberStates): a member it calls suspect, failed or stopped is
// taken out of the routing at once, one it calls running is tried again
// at once; this web server's own probes and requests decide after that.
func (s *Server) MemberStates(ms wire.MemberStates) {
	states := make(map[string]string, len(ms.Members))
	for _, p := range ms.Members {
		states[p.Name] = p.State
	}
	s.mu.Lock()
	s.adminStates = states
	s.mu.Unlock()
	t := s.tab.Load()
	if t == nil {
		return
	}
	now := time.Now().UnixNano()
	for _, m := range t.members {
		st, ok := states[m.name]
		switch {
		case !ok:
		case st == domain.StateRunning:
			s.markUp(m, "admin server: running")
		case adminDown(st) && now-m.lastAnswer.Load() > int64(adminTrustAfter):
			s.markDown(m, "admin server: "+st, nil)
		}
	}
}

// watchLoop marks suspect every member that has requests waiting and has
// answered nothing (no response, no probe) for the cluster's heartbeat
// timeout: a frozen process (GC pause, VM stall, SIGSTOP) accepts
// connections and answers nothing, and its users' requests are resent.
func (s *Server) watchLoop(ctx context.Context) {
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t := s.tab.Load()
			if t == nil {
				continue
			}
			for _, m := range t.members {
				silent := time.Duration(now.UnixNano() - m.lastAnswer.Load())
				if silent > t.suspectAfter && m.outstanding.Load() > 0 && m.live.Load() {
					s.markDown(m, "suspect", fmt.Errorf("no answer for %s with requests waiting", silent.Round(time.Millisecond)))
				}
			}
		}
	}
}

// watchEvery is the period of watchLoop.
const watchEvery = 50 * time.Millisecond

// probeLoop checks every member's GET /healthz each ProbeInterval (or
// half the cluster's heartbeat timeout, if shorter, so an idle member's
// answers keep it from looking silent to watchLoop) until ctx ends.
func (s *Server) probeLoop(ctx context.Context) {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: s.cfg.ConnectTimeout}).DialContext},
		Timeout:   max(s.cfg.ProbeInterval, time.Second),
	}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		every := s.cfg.ProbeInterval
		if t := s.tab.Load(); t != nil {
			every = min(every, t.suspectAfter/2)
			// Each member on its own: a member whose probe hangs (cut off
			// the network) must not hold up the others' probes, whose
			// answers keep them from looking silent to watchLoop.
			for _, m := range t.members {
				if !m.probing.CompareAndSwap(false, true) {
					continue // its last probe is still waiting
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer m.probing.Store(false)
					c, scheme, err := s.probeClient(m, client)
					if err == nil {
						err = probe(ctx, c, scheme, m.listen)
					}
					if err != nil {
						if ctx.Err() == nil {
							s.markDown(m, "probe", err)
						}
						return
					}
					m.answered(time.Now())
					s.markUp(m, "probe")
				}()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func probe(ctx context.Context, c *http.Client, scheme, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz status %d", resp.StatusCode)
	}
	return nil
}

// reapLoop closes pooled connections idle longer than IdleTimeout.
func (s *Server) reapLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.IdleTimeout / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		ms := make([]*member, 0, len(s.members))
		for _, m := range s.members {
			ms = append(ms, m)
		}
		s.mu.Unlock()
		for _, m := range ms {
			m.reap(s.cfg.IdleTimeout)
		}
	}
}

// Serve accepts client connections on ln until ctx ends, then stops
// accepting, lets requests in flight finish (at most grace) and returns.
// The health prober and the pool reaper run while Serve runs.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	s.startLoops()
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.probeLoop(bg) }()
	go func() { defer wg.Done(); s.reapLoop(bg) }()
	go func() { defer wg.Done(); s.watchLoop(bg) }()
	defer func() {
		s.stopLoops()
		stopBG()
		wg.Wait()
		s.mu.Lock()
		for _, m := range s.members {
			m.closeIdle(false)
		}
		s.mu.Unlock()
	}()

	connWG := &s.connWG
	errc := make(chan error, 1)
	go func() {
		var backoff time.Duration
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
					errc <- err
					return
				}
				// Out of file descriptors and the like: back off and go
				// on, as net/http does, instead of ending the process.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			backoff = 0
			connWG.Add(1)
			if s.adopt(c) {
				continue
			}
			go func() {
				defer connWG.Done()
				s.serveConn(c)
			}()
		}
	}()
	var runErr error
	select {
	case err := <-errc:
		if ctx.Err() == nil {
			runErr = fmt.Errorf("webserver: accept: %w", err)
		}
	case <-ctx.Done():
		_ = ln.Close()
		<-errc
	}
	// Drain: idle connections close now, busy ones after their request.
	s.draining.Store(true)
	s.tellLoops(loopMsg{drain: true})
	s.conns.Range(func(_, v any) bool {
		v.(*clientConn).wakeIdle()
		return true
	})
	done := make(chan struct{})
	go func() { connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.tellLoops(loopMsg{kill: true})
		s.conns.Range(func(k, _ any) bool {
			_ = k.(net.Conn).Close()
			return true
		})
		<-done
	}
	return runErr
}

// Run runs a web server: it boots from the cached routing table in DataDir
// (DATA_DIR/applied-config.json, the agent's cache) when there is one,
// follows new tables, waits for the first table, then serves on its listen
// address (or cfg.Listen) until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	s := New(cfg, logger)
	return s.Run(ctx)
}

// Run is the package-level Run on an existing Server.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.cfg
	var wg sync.WaitGroup
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer func() { stopSrc(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.follow(srcCtx); err != nil && srcCtx.Err() == nil {
			s.log.Error("config source stopped", "err", err)
		}
	}()

	select {
	case <-ctx.Done():
		return ErrNoTable
	case <-s.ready:
	}
	addr := cfg.Listen
	if addr == "" {
		addr = s.tab.Load().listen
	}
	ln, err := serve.Listen(ctx, addr)
	if err != nil {
		return err
	}
	s.log.Info("web server listening", "addr", ln.Addr().String(), "reserved", ReservedPrefix)
	if cfg.AdminListen != "" {
		aln, err := serve.Listen(ctx, cfg.AdminListen)
		if err != nil {
			_ = ln.Close()
			return err
		}
		mux := http.NewServeMux()
		s.reg.Mount(mux, s.readyErr)
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve.Run(srcCtx, srv, aln, 5*time.Second); err != nil {
				s.log.Error("admin listener", "err", err)
			}
		}()
	}
	return s.Serve(ctx, ln, 10*time.Second)
}

func (s *Server) readyErr() error {
	t := s.tab.Load()
	if t == nil {
		return errors.New("no routing table")
	}
	if s.draining.Load() {
		return errors.New("stopping")
	}
	return nil
}
