package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"tandem/backend/domain"
)

// Process states reported by Status.
const (
	StateRunning    = domain.StateRunning
	StateStopped    = domain.StateStopped
	StateFailed     = domain.StateFailed // gave up restarting, or could not start
	StateStopping   = "stopping"
	StateRestarting = "restarting" // crashed, waiting for the backoff to pass
)

// Sentinel errors.
var (
	// ErrUnknown means no process of that name is registered.
	ErrUnknown = errors.New("supervise: unknown process")
	// ErrNoSpec means the process is known (re-adopted) but has no command
	// to start it with yet.
	ErrNoSpec = errors.New("supervise: process has no command yet")
	// ErrClosed means the supervisor was closed.
	ErrClosed = errors.New("supervise: closed")
	// ErrNotRunning means the process is not running now.
	ErrNotRunning = errors.New("supervise: process is not running")
)

// Spec is how to run one process.
type Spec struct {
	Name string   // unique: names the pid file and the log
	Kind string   // informational, e.g. "server" or "webserver"
	Path string   // executable
	Args []string // arguments (never secrets: they show in ps)
	// Env is added to the supervisor's environment, from which the
	// variables in Config.ScrubEnv are removed first. Secrets go here.
	Env []string
	Dir string // working directory; "" for the supervisor's
	// DieWithParent kills the process (SIGKILL) when the supervisor's
	// process dies, even by SIGKILL: for children that must not outlive
	// it (a managed server's application), unlike the node manager's
	// servers, which a new node manager re-adopts.
	DieWithParent bool
}

// Config configures a Supervisor.
type Config struct {
	// Dir holds DIR/<name>.pid and each process's folder DIR/<name>/ with
	// its log DIR/<name>/<name>.log.
	Dir         string
	Policy      Policy
	StopTimeout time.Duration // SIGTERM, then SIGKILL after this; default 10 s
	LogMaxBytes int64         // default 10 MiB
	LogKeep     int           // default 3
	// ScrubEnv lists environment variables not passed on to children
	// (secrets of the supervisor itself).
	ScrubEnv []string
	// OnEvent receives process.started / process.exited events. It is
	// called without locks held and must not block for long.
	OnEvent func(domain.Event)
	// PollInterval is how often exits are checked; default 100 ms.
	PollInterval time.Duration
	// LogPath, when set, names the log file of each process instead of
	// DIR/<name>/<name>.log (processes may share one).
	LogPath func(name string) string
}

// Status is one process as Status reports it.
type Status struct {
	Name     string
	Kind     string
	State    string
	PID      int
	Restarts int // automatic restarts so far
	Adopted  bool
	Message  string
}

// proc is one supervised process. Guarded by Supervisor.mu.
type proc struct {
	spec       Spec
	hasSpec    bool
	state      string
	pid        int
	pgid       int
	startTicks uint64
	own        bool          // our child: reap with wait4; else poll /proc
	cmd        *exec.Cmd     // when own
	exited     chan struct{} // closed when the current incarnation is gone
	wantStop   bool          // the exit was requested: do not restart
	restartAt  time.Time     // when state is restarting
	tracker    *Tracker
	message    string
	adopted    bool
	opMu       *sync.Mutex // serializes Start/Stop/Restart of this process
}

// Supervisor runs and watches child processes. All methods are safe for
// concurrent use. One goroutine, owned by the Supervisor and ended by
// Close, reaps exits, restarts crashed processes and rotates logs.
//
// Close does not stop the children: they keep running, and a new
// Supervisor on the same Dir re-adopts them from their pid files. StopAll
// stops them.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex
	procs  map[string]*proc
	cancel context.CancelFunc
	done   chan struct{}
	closed bool
}

// New creates the supervisor, re-adopts the processes whose pid files in
// cfg.Dir name a still-running process, and starts watching.
func New(cfg Config, logger *slog.Logger) (*Supervisor, error) {
	if cfg.Dir == "" {
		return nil, errors.New("supervise: Dir is required")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.LogMaxBytes == 0 {
		cfg.LogMaxBytes = 10 << 20
	}
	if cfg.LogKeep <= 0 {
		cfg.LogKeep = 3
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	s := &Supervisor{cfg: cfg, log: logger, procs: map[string]*proc{}, done: make(chan struct{})}
	if err := s.adoptAll(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.loop(ctx)
	return s, nil
}

func (s *Supervisor) newProc(name string) *proc {
	return &proc{spec: Spec{Name: name}, state: StateStopped, tracker: NewTracker(s.cfg.Policy), opMu: &sync.Mutex{}}
}

// adoptAll reads every pid file in Dir.
func (s *Supervisor) adoptAll() error {
	files, err := filepath.Glob(filepath.Join(s.cfg.Dir, "*.pid"))
	if err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	for _, f := range files {
		pf, err := readPidFile(f)
		if err != nil || !domain.ValidName(pf.Name) || filepath.Base(f) != pf.Name+".pid" {
			s.log.Warn("ignoring unreadable pid file", "file", f, "err", err)
			continue
		}
		p := s.newProc(pf.Name)
		p.spec.Kind = pf.Kind
		if alive(pf.PID, pf.StartTicks) {
			p.state, p.pid, p.pgid, p.startTicks = StateRunning, pf.PID, pf.PGID, pf.StartTicks
			p.exited = make(chan struct{})
			p.adopted = true
			p.message = "re-adopted running process"
			s.log.Info("re-adopted running process", "process", pf.Name, "pid", pf.PID)
		} else {
			p.message = "exited while no supervisor was running"
			s.log.Warn("process from pid file is gone", "process", pf.Name, "pid", pf.PID)
			_ = os.Remove(f)
		}
		s.procs[pf.Name] = p
	}
	return nil
}

// Register adds a process or updates its spec without starting it. A
// re-adopted process gets the spec it will be restarted with.
func (s *Supervisor) Register(spec Spec) error {
	if !domain.ValidName(spec.Name) {
		return fmt.Errorf("supervise: bad process name %q", spec.Name)
	}
	if spec.Path == "" {
		return fmt.Errorf("supervise: process %s: no path", spec.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.procs[spec.Name]
	if !ok {
		p = s.newProc(spec.Name)
		s.procs[spec.Name] = p
	}
	p.spec, p.hasSpec = spec, true
	return nil
}

// Names lists the registered (and re-adopted) processes.
func (s *Supervisor) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Remove stops the process if it runs and forgets it.
func (s *Supervisor) Remove(ctx context.Context, name string) error {
	if err := s.Stop(ctx, name); err != nil && !errors.Is(err, ErrUnknown) {
		return err
	}
	s.mu.Lock()
	delete(s.procs, name)
	s.mu.Unlock()
	return nil
}

func (s *Supervisor) get(name string) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	p, ok := s.procs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknown, name)
	}
	return p, nil
}

// Start starts the process unless it already runs, and returns its pid.
// A start by command resets the restart count of the policy window.
func (s *Supervisor) Start(ctx context.Context, name string) (int, error) {
	p, err := s.get(name)
	if err != nil {
		return 0, err
	}
	p.opMu.Lock()
	defer p.opMu.Unlock()
	s.mu.Lock()
	if p.pid != 0 { // running (a stop in progress holds opMu, so not stopping)
		pid := p.pid
		s.mu.Unlock()
		return pid, nil
	}
	p.tracker.Reset()
	ev, err := s.startLocked(p)
	pid := p.pid
	s.mu.Unlock()
	s.emit(ev)
	return pid, err
}

// startLocked forks the process; s.mu is held.
func (s *Supervisor) startLocked(p *proc) ([]domain.Event, error) {
	if !p.hasSpec {
		p.state, p.message = StateFailed, "no command to start it with"
		return nil, fmt.Errorf("%w: %s", ErrNoSpec, p.spec.Name)
	}
	pid, err := s.fork(p)
	if err != nil {
		p.state, p.message = StateFailed, err.Error()
		s.log.Error("start failed", "process", p.spec.Name, "err", err)
		return nil, err
	}
	p.state, p.message, p.adopted, p.wantStop = StateRunning, "", false, false
	s.log.Info("process started", "process", p.spec.Name, "pid", pid)
	return []domain.Event{{Type: domain.EventProcessStarted, Server: p.spec.Name, Message: fmt.Sprintf("pid %d", pid)}}, nil
}

func (s *Supervisor) dataDir(name string) string { return filepath.Join(s.cfg.Dir, name) }

func (s *Supervisor) logFile(name string) LogFile {
	path := filepath.Join(s.dataDir(name), name+".log")
	if s.cfg.LogPath != nil {
		path = s.cfg.LogPath(name)
	}
	return LogFile{Path: path, MaxBytes: s.cfg.LogMaxBytes, Keep: s.cfg.LogKeep}
}

// LogPath returns where the named process's output goes.
func (s *Supervisor) LogPath(name string) string { return s.logFile(name).Path }

func (s *Supervisor) fork(p *proc) (int, error) {
	if err := os.MkdirAll(s.dataDir(p.spec.Name), 0o700); err != nil {
		return 0, fmt.Errorf("supervise: %w", err)
	}
	lf, err := s.logFile(p.spec.Name).Open()
	if err != nil {
		return 0, err
	}
	defer lf.Close() // the child has its own copy of the descriptor
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Dir = p.spec.Dir
	cmd.Env = append(s.childEnv(), p.spec.Env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Own process group: signals reach everything the child started, and
	// a terminal's Ctrl-C to the supervisor does not reach the children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.spec.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("supervise: start %s: %w", p.spec.Name, err)
	}
	pid := cmd.Process.Pid
	pi, err := readProc(pid)
	if err != nil {
		// It died at once; the poll loop reaps it.
		pi = procInfo{}
	}
	p.pid, p.pgid, p.startTicks, p.own, p.cmd = pid, pid, pi.startTicks, true, cmd
	p.exited = make(chan struct{})
	pf := pidFile{Name: p.spec.Name, Kind: p.spec.Kind, PID: pid, PGID: pid, StartTicks: pi.startTicks, Log: s.logFile(p.spec.Name).Path}
	if err := writePidFile(s.pidPath(p.spec.Name), pf); err != nil {
		s.log.Error("pid file not written: a new supervisor will not re-adopt this process", "process", p.spec.Name, "err", err)
	}
	return pid, nil
}

func (s *Supervisor) pidPath(name string) string { return filepath.Join(s.cfg.Dir, name+".pid") }

func (s *Supervisor) childEnv() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		scrub := false
		for _, x := range s.cfg.ScrubEnv {
			if k == x {
				scrub = true
			}
		}
		if !scrub {
			out = append(out, kv)
		}
	}
	return out
}

// Stop stops the process: SIGTERM to its process group, then SIGKILL after
// StopTimeout. It returns when the process is gone (or ctx ends). Stopping
// a stopped process is not an error; a pending automatic restart is
// cancelled.
func (s *Supervisor) Stop(ctx context.Context, name string) error {
	p, err := s.get(name)
	if err != nil {
		return err
	}
	p.opMu.Lock()
	defer p.opMu.Unlock()
	return s.stop(ctx, p)
}

func (s *Supervisor) stop(ctx context.Context, p *proc) error {
	s.mu.Lock()
	if p.pid == 0 {
		if p.state == StateRestarting {
			p.state, p.message = StateStopped, "pending restart cancelled by stop"
		}
		s.mu.Unlock()
		return nil
	}
	p.wantStop = true
	p.state = StateStopping
	pid, pgid, exited := p.pid, p.pgid, p.exited
	s.mu.Unlock()

	s.log.Info("stopping process", "process", p.spec.Name, "pid", pid)
	signalGroup(pid, pgid, syscall.SIGTERM)
	t := time.NewTimer(s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		s.log.Warn("process did not stop in time: killing it", "process", p.spec.Name, "pid", pid, "timeout", s.cfg.StopTimeout)
		signalGroup(pid, pgid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-ctx.Done():
			return fmt.Errorf("supervise: stop %s: %w", p.spec.Name, ctx.Err())
		}
	case <-ctx.Done():
		return fmt.Errorf("supervise: stop %s: %w", p.spec.Name, ctx.Err())
	}
	// Leave nothing of the group behind (a grandchild that ignored TERM).
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return nil
}

// Signal sends sig to the running process's group, as a fault would (a
// SIGKILL is a crash: the restart policy applies). A process that is not
// running is ErrNotRunning.
func (s *Supervisor) Signal(name string, sig syscall.Signal) (int, error) {
	p, err := s.get(name)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	pid, pgid := p.pid, p.pgid
	s.mu.Unlock()
	if pid == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNotRunning, name)
	}
	s.log.Info("signalling process", "process", name, "pid", pid, "signal", sig.String())
	signalGroup(pid, pgid, sig)
	return pid, nil
}

// signalGroup signals the process group, or the process alone if it has none.
func signalGroup(pid, pgid int, sig syscall.Signal) {
	if pgid > 0 {
		if err := syscall.Kill(-pgid, sig); err == nil {
			return
		}
	}
	_ = syscall.Kill(pid, sig)
}

// Restart stops the process (if running) and starts it again; it returns
// the new pid.
func (s *Supervisor) Restart(ctx context.Context, name string) (int, error) {
	p, err := s.get(name)
	if err != nil {
		return 0, err
	}
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if err := s.stop(ctx, p); err != nil {
		return 0, err
	}
	s.mu.Lock()
	p.tracker.Reset()
	ev, err := s.startLocked(p)
	pid := p.pid
	s.mu.Unlock()
	s.emit(ev)
	return pid, err
}

// StopAll stops every running process, in parallel.
func (s *Supervisor) StopAll(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, n := range s.Names() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Stop(ctx, n); err != nil && !errors.Is(err, ErrUnknown) {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

// Status lists every process by name.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, Status{Name: p.spec.Name, Kind: p.spec.Kind, State: p.state, PID: p.pid, Restarts: p.tracker.Total(), Adopted: p.adopted, Message: p.message})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close stops watching. The children keep running (their pid files stay,
// for the next supervisor to re-adopt). Close waits for the watcher to end.
func (s *Supervisor) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.cmd != nil && p.cmd.Process != nil && p.exited != nil {
			select {
			case <-p.exited:
			default:
				_ = p.cmd.Process.Release()
			}
		}
	}
}

func (s *Supervisor) emit(evs []domain.Event) {
	if s.cfg.OnEvent == nil {
		return
	}
	for _, e := range evs {
		s.cfg.OnEvent(e)
	}
}

func (s *Supervisor) loop(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	lastRotate := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.emit(s.poll(now))
			if now.Sub(lastRotate) >= time.Second {
				lastRotate = now
				s.rotate()
			}
		}
	}
}

// poll reaps exits and runs due restarts.
func (s *Supervisor) poll(now time.Time) []domain.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []domain.Event
	for _, p := range s.procs {
		if p.pid != 0 {
			gone, how := s.checkExit(p)
			if gone {
				evs = append(evs, s.exitedLocked(p, now, how)...)
			}
		}
		if p.state == StateRestarting && !now.Before(p.restartAt) {
			if ev, err := s.startLocked(p); err == nil {
				evs = append(evs, ev...)
			}
		}
	}
	return evs
}

// checkExit reports whether p's current incarnation has ended, and how.
func (s *Supervisor) checkExit(p *proc) (bool, string) {
	if p.own {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil)
		switch {
		case err == nil && wpid == p.pid:
			_ = p.cmd.Process.Release()
			switch {
			case ws.Exited():
				return true, fmt.Sprintf("exit status %d", ws.ExitStatus())
			case ws.Signaled():
				return true, fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
			default:
				return true, "ended"
			}
		case err == nil:
			return false, ""
		case errors.Is(err, syscall.EINTR):
			return false, ""
		default:
			// ECHILD: reaped elsewhere; fall back to /proc.
			p.own = false
		}
	}
	if !alive(p.pid, p.startTicks) {
		return true, "gone"
	}
	return false, ""
}

func (s *Supervisor) exitedLocked(p *proc, now time.Time, how string) []domain.Event {
	pid := p.pid
	close(p.exited)
	p.pid, p.cmd, p.own = 0, nil, false
	_ = os.Remove(s.pidPath(p.spec.Name))
	if p.pgid > 0 && p.wantStop {
		_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	}
	d := p.tracker.Exited(now, p.wantStop)
	msg := fmt.Sprintf("pid %d %s", pid, how)
	switch {
	case p.wantStop:
		p.state, p.message = StateStopped, "stopped: "+how
	case d.Restart && p.hasSpec:
		p.state, p.restartAt, p.message = StateRestarting, now.Add(d.Delay), how+"; "+d.Reason
		msg += "; " + d.Reason
	case d.Restart:
		p.state, p.message = StateFailed, how+"; no command to restart it with"
		msg += "; not restarted: no command"
	default:
		p.state, p.message = StateFailed, how+"; "+d.Reason
		msg += "; " + d.Reason
	}
	s.log.Info("process exited", "process", p.spec.Name, "pid", pid, "how", how, "state", p.state, "decision", d.Reason)
	return []domain.Event{{Type: domain.EventProcessExited, Server: p.spec.Name, Message: msg}}
}

func (s *Supervisor) rotate() {
	for _, n := range s.Names() {
		if _, err := s.logFile(n).RotateIfNeeded(); err != nil {
			s.log.Warn("log rotation failed", "process", n, "err", err)
		}
	}
}
