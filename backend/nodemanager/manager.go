// Package nodemanager is `tandem nodemanager` (WebLogic / JEUS node
// manager): it supervises the managed servers and web servers the admin
// server assigns to it, and starts, stops and restarts them on command over
// the control channel.
//
// Choices, documented:
//   - Assignment is not a start order. Apply (a new process list) only
//     registers the processes; they start on a start/restart command, as
//     WebLogic's node manager does. A process removed from the assignment is
//     stopped and forgotten.
//   - A process that crashes is restarted with backoff, at most
//     Policy.MaxRestarts times in Policy.Interval, then reported failed.
//   - Stopping the node manager does not stop its processes (unless
//     Config.StopProcessesOnExit): they keep serving, and the next node
//     manager on the same data folder re-adopts them from their pid files
//     (DATA_DIR/<name>.pid, checked against /proc start times), or reports
//     them stopped if they died meanwhile.
//   - Each process runs the node manager's own executable
//     (`tandem server|webserver --name N --admin URL --data-dir DATA_DIR/N`),
//     with the node token in its environment (TANDEM_NODE_TOKEN), never in
//     its arguments; its output goes to DATA_DIR/N/N.log, rotated by size.
package nodemanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/backend/artifacts"
	"tandem/backend/domain"
	"tandem/backend/supervise"
	"tandem/backend/wire"
)

// Config configures a node manager.
type Config struct {
	Name      string // as defined in the admin server
	AdminURL  string // the admin server's base URL
	NodeToken string // the domain's node token (secret: passed to children by environment)
	// CAFingerprint pins the domain CA of an https AdminURL (TANDEM_CA_FINGERPRINT).
	CAFingerprint string
	// Advertise is this machine's host as the other machines reach it,
	// passed to the servers it starts (TANDEM_ADVERTISE).
	Advertise string
	DataDir   string // pid files, each process's folder, the applied-config cache
	Listen    string // host:port for /healthz and /metrics; "" to not listen

	Policy      supervise.Policy // crash restarts; zero value: supervise.DefaultPolicy()
	StopTimeout time.Duration    // graceful stop before SIGKILL; default 30 s
	LogMaxBytes int64            // per-process log rotation size; default 10 MiB
	LogKeep     int              // rotated logs kept; default 3
	LogLevel    string           // passed to children as --log-level when set

	// StopProcessesOnExit stops every supervised process when Run ends
	// (the demo uses it); by default they keep running.
	StopProcessesOnExit bool

	// Executable is the binary children run; default os.Executable().
	Executable string

	extraEnv []string // tests: more environment for children
}

// ErrConfig means the configuration is unusable.
var ErrConfig = errors.New("nodemanager: bad config")

func (c *Config) defaults() error {
	if !domain.ValidName(c.Name) {
		return fmt.Errorf("%w: name %q", ErrConfig, c.Name)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: data dir is required", ErrConfig)
	}
	if c.Policy == (supervise.Policy{}) {
		c.Policy = supervise.DefaultPolicy()
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 30 * time.Second
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("nodemanager: own executable: %w", err)
		}
		c.Executable = exe
	}
	return nil
}

// Manager is the node manager's agent.Handler: it turns assignments and
// commands into supervised processes. Safe for concurrent use.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	sup  *supervise.Supervisor
	host *domain.HostInfo // this machine, read once at start

	mu    sync.Mutex
	emit  func(domain.Event)
	http  *http.Client                // to the admin server as this node (its certificate on https)
	specs map[string]wire.ProcessSpec // the assigned processes, by name
}

// NewManager creates the manager and re-adopts processes still running from
// a previous node manager on the same data folder.
func NewManager(cfg Config, logger *slog.Logger) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: logger, host: ReadHost()}
	sup, err := supervise.New(supervise.Config{
		Dir:         cfg.DataDir,
		Policy:      cfg.Policy,
		StopTimeout: cfg.StopTimeout,
		LogMaxBytes: cfg.LogMaxBytes,
		LogKeep:     cfg.LogKeep,
		ScrubEnv:    []string{"TANDEM_NODE_TOKEN", "TANDEM_NODE_TOKEN_FILE", "TANDEM_ADMIN_TOKEN", "TANDEM_ADMIN_TOKEN_FILE"},
		OnEvent:     m.onEvent,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("nodemanager: %w", err)
	}
	m.sup = sup
	return m, nil
}

// SetEmitter sets where process events go (the agent's Emit).
// SetAdminClient sets the HTTP client archives are fetched with (the
// agent's: it presents the node's certificate to an https admin server).
func (m *Manager) SetAdminClient(c *http.Client) {
	m.mu.Lock()
	m.http = c
	m.mu.Unlock()
}

func (m *Manager) SetEmitter(emit func(domain.Event)) {
	m.mu.Lock()
	m.emit = emit
	m.mu.Unlock()
}

func (m *Manager) onEvent(e domain.Event) {
	m.mu.Lock()
	emit := m.emit
	m.mu.Unlock()
	if emit != nil {
		emit(e)
	}
}

// Apply sets the assigned processes (wire.Config.NodeManager). New ones are
// registered but not started; removed ones are stopped.
func (m *Manager) Apply(ctx context.Context, cfg wire.Config) error {
	if cfg.NodeManager == nil {
		return fmt.Errorf("%w: not a node manager config", ErrConfig)
	}
	want := map[string]bool{}
	for _, p := range cfg.NodeManager.Processes {
		if p.Kind != wire.KindServer && p.Kind != wire.KindWebServer {
			return fmt.Errorf("%w: process %s has kind %q", ErrConfig, p.Name, p.Kind)
		}
		if !domain.ValidName(p.Name) {
			return fmt.Errorf("%w: process name %q", ErrConfig, p.Name)
		}
		want[p.Name] = true
	}
	specs := map[string]wire.ProcessSpec{}
	for _, p := range cfg.NodeManager.Processes {
		if err := m.sup.Register(m.spec(p)); err != nil {
			return fmt.Errorf("nodemanager: %w", err)
		}
		specs[p.Name] = p
	}
	m.mu.Lock()
	m.specs = specs
	m.mu.Unlock()
	for _, n := range m.sup.Names() {
		if !want[n] {
			m.log.Info("process no longer assigned: stopping it", "process", n)
			if err := m.sup.Remove(ctx, n); err != nil {
				return fmt.Errorf("nodemanager: remove %s: %w", n, err)
			}
		}
	}
	return nil
}

// spec is how to run p: `tandem server|webserver` with this binary, or,
// for a server of a cluster whose application has kind go, the
// application's binary (built with the sdk package) with the same flags.
func (m *Manager) spec(p wire.ProcessSpec) supervise.Spec {
	path := m.cfg.Executable
	args := []string{p.Kind}
	var appEnv []string
	var dir string
	if p.App != nil && p.App.Kind == domain.AppGo && len(p.App.Command) > 0 {
		path = p.App.Command[0]
		if p.App.SHA256 != "" { // an uploaded version: its binary is in the unpacked archive
			dir = m.appDir(*p.App)
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
		}
		args = append([]string{}, p.App.Command[1:]...)
		for k, v := range p.App.Env {
			appEnv = append(appEnv, k+"="+v)
		}
		sort.Strings(appEnv)
	}
	args = append(args, "--name", p.Name, "--data-dir", filepath.Join(m.cfg.DataDir, p.Name))
	if m.cfg.AdminURL != "" {
		args = append(args, "--admin", m.cfg.AdminURL)
	}
	if m.cfg.LogLevel != "" {
		args = append(args, "--log-level", m.cfg.LogLevel)
	}
	env := append(appEnv, m.cfg.extraEnv...)
	if m.cfg.NodeToken != "" {
		env = append(env, "TANDEM_NODE_TOKEN="+m.cfg.NodeToken)
		if m.cfg.CAFingerprint != "" {
			env = append(env, "TANDEM_CA_FINGERPRINT="+m.cfg.CAFingerprint)
		}
	}
	if m.cfg.Advertise != "" && p.Kind == wire.KindServer {
		env = append(env, "TANDEM_ADVERTISE="+m.cfg.Advertise)
	}
	return supervise.Spec{Name: p.Name, Kind: p.Kind, Path: path, Args: args, Env: env, Dir: dir}
}

// Status reports the node manager and every process for the heartbeat.
func (m *Manager) Status() wire.Heartbeat {
	st := m.sup.Status()
	ps := make([]wire.ProcessState, 0, len(st))
	for _, s := range st {
		kind := s.Kind
		if kind == "" {
			kind = wire.KindServer
		}
		ps = append(ps, wire.ProcessState{Name: s.Name, Kind: kind, State: s.State, PID: s.PID, Restarts: s.Restarts, Message: s.Message})
	}
	return wire.Heartbeat{State: domain.StateRunning, PID: os.Getpid(), Processes: ps, Host: m.host}
}

// Command starts, stops or restarts one assigned process and answers with
// its pid (0 after a stop). A stop waits until the process is gone.
func (m *Manager) Command(ctx context.Context, cmd wire.Command) wire.CommandResult {
	res := wire.CommandResult{ID: cmd.ID}
	var pid int
	var err error
	if cmd.Action == wire.ActionStart || cmd.Action == wire.ActionRestart {
		// An uploaded version is fetched before the running process stops.
		if err := m.prepare(ctx, cmd.Target); err != nil {
			m.log.Error("command: application version not fetched", "target", cmd.Target, "err", err)
			res.Error = "application version not fetched: " + err.Error()
			return res
		}
	}
	switch cmd.Action {
	case wire.ActionStart:
		pid, err = m.sup.Start(ctx, cmd.Target)
	case wire.ActionStop:
		err = m.sup.Stop(ctx, cmd.Target)
	case wire.ActionRestart:
		pid, err = m.sup.Restart(ctx, cmd.Target)
	case wire.ActionKill:
		pid, err = m.sup.Signal(cmd.Target, syscall.SIGKILL)
	case wire.ActionFreeze:
		pid, err = m.freeze(ctx, cmd.Target, time.Duration(cmd.Seconds)*time.Second)
	default:
		err = fmt.Errorf("nodemanager: unknown action %q", cmd.Action)
	}
	m.log.Info("command", "action", cmd.Action, "target", cmd.Target, "pid", pid, "err", err)
	if err != nil {
		res.Error = commandError(err)
		return res
	}
	res.OK, res.PID = true, pid
	return res
}

// freeze stops the process (SIGSTOP) for d, then lets it go on (SIGCONT),
// as a long GC pause or a VM stall would; the command answers once it is
// thawed. The thaw happens even if ctx ends first.
func (m *Manager) freeze(ctx context.Context, name string, d time.Duration) (int, error) {
	pid, err := m.sup.Signal(name, syscall.SIGSTOP)
	if err != nil {
		return 0, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	if _, err := m.sup.Signal(name, syscall.SIGCONT); err != nil {
		return pid, fmt.Errorf("nodemanager: thaw %s: %w", name, err)
	}
	return pid, nil
}

// appDir is where an uploaded version of a go application is unpacked.
func (m *Manager) appDir(app wire.AppSpec) string {
	return artifacts.Dir(filepath.Join(m.cfg.DataDir, "apps"), app.Name, app.Version, app.SHA256)
}

// prepare fetches the uploaded version a process runs, if any, from the
// admin server (checked by its SHA-256), keeping the newest three.
func (m *Manager) prepare(ctx context.Context, name string) error {
	m.mu.Lock()
	p, ok := m.specs[name]
	m.mu.Unlock()
	if !ok || p.App == nil || p.App.Kind != domain.AppGo || p.App.SHA256 == "" {
		return nil
	}
	dest := m.appDir(*p.App)
	m.mu.Lock()
	hc := m.http
	m.mu.Unlock()
	f := &artifacts.Fetcher{AdminURL: m.cfg.AdminURL, NodeToken: m.cfg.NodeToken, HTTP: hc}
	if err := f.Fetch(ctx, p.App.SHA256, p.App.Size, dest); err != nil {
		return err
	}
	now := time.Now()
	_ = os.Chtimes(dest, now, now)
	artifacts.Prune(filepath.Dir(dest), 3, dest)
	return nil
}

// commandError turns an error into a short message for the admin server.
func commandError(err error) string {
	switch {
	case errors.Is(err, supervise.ErrUnknown):
		return "not assigned to this node manager"
	case errors.Is(err, supervise.ErrNoSpec):
		return "no command known for this process yet"
	case errors.Is(err, supervise.ErrNotRunning):
		return "not running"
	}
	return err.Error()
}

// Process returns one process's status.
func (m *Manager) Process(name string) (supervise.Status, bool) {
	for _, s := range m.sup.Status() {
		if s.Name == name {
			return s, true
		}
	}
	return supervise.Status{}, false
}

// Close stops watching; with StopProcessesOnExit it first stops every
// process (bounded by ctx).
func (m *Manager) Close(ctx context.Context) error {
	var err error
	if m.cfg.StopProcessesOnExit {
		err = m.sup.StopAll(ctx)
	}
	m.sup.Close()
	return err
}

// Collector exports per-process metrics.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

var (
	descUp       = prometheus.NewDesc("tandem_nodemanager_process_up", "1 if the supervised process is running.", []string{"process", "kind"}, nil)
	descRestarts = prometheus.NewDesc("tandem_nodemanager_process_restarts_total", "Automatic restarts of the supervised process.", []string{"process", "kind"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descUp
	ch <- descRestarts
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.m.sup.Status() {
		up := 0.0
		if s.State == supervise.StateRunning {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.Name, s.Kind)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(s.Restarts), s.Name, s.Kind)
	}
}
