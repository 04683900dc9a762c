// Package apphost runs the operator's application as a child process of a
// managed server and proxies users' requests to it, exchanging the session
// in headers (the contract for applications in any language):
//
//   - to the application: Tandem-Session-Id and Tandem-Session (base64url
//     of a JSON object of the attributes);
//   - from it, optional: Tandem-Session-Set (base64url of a JSON merge
//     patch; null deletes) and Tandem-Session-Invalidate: 1.
//
// Sessions stay in the managed server (the session middleware wraps the
// Host), so they outlive the application process. The process is
// supervised with the node manager's restart policy; a new application
// spec starts a new process beside the old one and switches over when it
// answers its health path, so a change of application moves no session.
//
// Concurrency: every method is safe for concurrent use. Run owns the one
// goroutine that follows the processes (and the health checks it starts);
// Close stops the processes.
package apphost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"tandem/backend/domain"
	"tandem/backend/serve"
	"tandem/backend/supervise"
	"tandem/backend/wire"
)

// Config configures a Host.
type Config struct {
	Server  string // the managed server's name, given to the app as TANDEM_SERVER
	DataDir string // the app's log (app.log) and pid files (app/) go here
	Logger  *slog.Logger
	// Emit receives app.started, app.exited and app.unhealthy events.
	Emit func(domain.Event)
	// Policy is the restart policy; zero: supervise.DefaultPolicy().
	Policy supervise.Policy
	// ScrubEnv lists the server's own secrets, never passed to the app.
	ScrubEnv []string
	// Fetch makes an uploaded version (spec.SHA256) ready to run and
	// returns the folder it is unpacked in: the command runs relative to it.
	// Nil: specs with a version are refused.
	Fetch func(ctx context.Context, spec wire.AppSpec) (string, error)
}

// Host runs and fronts one application at a time.
type Host struct {
	cfg    Config
	log    *slog.Logger
	sup    *supervise.Supervisor
	events chan domain.Event
	wg     sync.WaitGroup // health checks

	mu     sync.Mutex
	spec   *wire.AppSpec // desired; nil: no application process
	cur    *instance     // serving
	next   *instance     // starting, replaces cur once healthy
	gen    int
	closed bool
	// preparing is the spec whose version is being fetched; fetchErr why
	// the last fetch failed.
	preparing *wire.AppSpec
	fetchErr  string

	ctx    context.Context // health checks end with it (Close cancels it)
	cancel context.CancelFunc
}

// instance is one process generation of an application.
type instance struct {
	name   string // supervise name, app-N
	spec   wire.AppSpec
	addr   string    // 127.0.0.1:PORT
	up     *upstream // the keep-alive connections requests go over
	health *http.Client
	// Guarded by Host.mu:
	state    string // domain.AppState*
	message  string // last exit or health failure
	pid      int
	ready    chan struct{} // closed while the process answers its health path
	starts   int           // process starts so far; a health check follows one
	retired  bool          // replaced or removed: stopping once its requests are answered
	inflight int           // requests on it now
}

// LogName is the application's log file in the server's data folder.
const LogName = "app.log"

// New prepares a Host; Run must be running for processes to be followed.
// Application processes a previous incarnation of this server left behind
// (it was killed before it could stop them) are stopped first.
func New(cfg Config) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy == (supervise.Policy{}) {
		cfg.Policy = supervise.DefaultPolicy()
	}
	h := &Host{cfg: cfg, log: cfg.Logger, events: make(chan domain.Event, 256)}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	sup, err := supervise.New(supervise.Config{
		Dir:         filepath.Join(cfg.DataDir, "app"),
		Policy:      cfg.Policy,
		StopTimeout: 10 * time.Second,
		ScrubEnv:    cfg.ScrubEnv,
		LogPath:     func(string) string { return filepath.Join(cfg.DataDir, LogName) },
		OnEvent: func(e domain.Event) {
			select {
			case h.events <- e:
			default: // Run is behind; the next poll of Status catches up
			}
		},
		PollInterval: 50 * time.Millisecond,
	}, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("apphost: %w", err)
	}
	if err := sup.StopAll(context.Background()); err != nil {
		cfg.Logger.Warn("apphost: leftover application processes not stopped", "err", err)
	}
	for _, n := range sup.Names() {
		_ = sup.Remove(context.Background(), n)
	}
	h.sup = sup
	return h, nil
}

// Run follows the application processes until ctx ends or Close.
func (h *Host) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.ctx.Done():
			return
		case e := <-h.events:
			h.onProcessEvent(e)
		}
	}
}

// Set makes spec the application (nil: none). A changed spec starts a new
// process; the current one keeps serving until the new one is healthy.
func (h *Host) Set(spec *wire.AppSpec) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("apphost: closed")
	}
	if reflect.DeepEqual(spec, h.spec) {
		return nil
	}
	h.spec = spec
	if h.next != nil {
		h.retireLocked(h.next)
		h.next = nil
	}
	h.preparing, h.fetchErr = nil, ""
	if spec == nil {
		if h.cur != nil {
			h.retireLocked(h.cur)
			h.cur = nil
		}
		return nil
	}
	if spec.SHA256 != "" {
		if h.cfg.Fetch == nil {
			return errors.New("apphost: this server cannot fetch application versions")
		}
		// Fetching may take long: the current process serves meanwhile.
		h.preparing = spec
		s := *spec
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.prepare(s)
		}()
		return nil
	}
	return h.startLocked(*spec, "")
}

// prepare fetches spec's version, then starts it unless another spec was
// set meanwhile.
func (h *Host) prepare(spec wire.AppSpec) {
	dir, err := h.cfg.Fetch(h.ctx, spec)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.spec == nil || !reflect.DeepEqual(*h.spec, spec) {
		return // superseded
	}
	h.preparing = nil
	if err != nil {
		h.fetchErr = fmt.Sprintf("version %s not started: %s", spec.Version, rootCause(err))
		h.log.Error("apphost: application version not fetched", "application", spec.Name, "version", spec.Version, "err", err)
		h.emitSpec(domain.EventAppFetchFailed, spec.Name, h.fetchErr)
		return
	}
	if err := h.startLocked(spec, dir); err != nil {
		h.log.Error("apphost: application version not started", "application", spec.Name, "version", spec.Version, "err", err)
	}
}

// startLocked starts a new generation of the application (in dir, an
// unpacked version, when set): it serves at once when nothing does, else
// once it is healthy.
func (h *Host) startLocked(spec wire.AppSpec, dir string) error {
	inst, err := h.forkLocked(spec, dir)
	if err != nil {
		return err
	}
	if h.cur == nil {
		h.cur = inst
	} else {
		h.next = inst
	}
	return nil
}

// forkLocked registers and forks a new generation of the application.
func (h *Host) forkLocked(spec wire.AppSpec, dir string) (*instance, error) {
	port, err := serve.FreePort()
	if err != nil {
		return nil, fmt.Errorf("apphost: pick a port: %w", err)
	}
	h.gen++
	inst := &instance{
		name:  "app-" + strconv.Itoa(h.gen),
		spec:  spec,
		addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		state: domain.AppStateStarting,
		ready: make(chan struct{}),
	}
	inst.up = newUpstream(inst.addr, time.Duration(spec.RequestTimeoutSeconds)*time.Second)
	inst.health = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	env := []string{"PORT=" + strconv.Itoa(port), "TANDEM_SERVER=" + h.cfg.Server}
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	program := spec.Command[0]
	if dir != "" && strings.Contains(program, "/") && !filepath.IsAbs(program) {
		program = filepath.Join(dir, program) // a program inside the archive
	}
	if err := h.sup.Register(supervise.Spec{
		Name: inst.name, Kind: "app", Path: program, Args: spec.Command[1:], Env: env, Dir: dir, DieWithParent: true,
	}); err != nil {
		return nil, fmt.Errorf("apphost: %w", err)
	}
	pid, err := h.sup.Start(context.Background(), inst.name)
	if err != nil {
		inst.state, inst.message = domain.AppStateFailed, "cannot start "+spec.Command[0]+": "+rootCause(err)
		h.emit(domain.EventAppExited, inst, inst.message)
		return inst, nil // reported, not an error of the config: a later Set may fix it
	}
	inst.pid = pid
	h.log.Info("apphost: application started", "application", spec.Name, "process", inst.name, "pid", pid, "addr", inst.addr)
	h.checkLocked(inst)
	return inst, nil
}

// checkLocked starts the health check of inst's process that just started;
// it ends when that process is gone (the next start has its own).
func (h *Host) checkLocked(inst *instance) {
	inst.starts++
	start := inst.starts
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.awaitHealthy(h.ctx, inst, start)
	}()
}

// Health checking: after start, the health path is polled until it answers
// 2xx (or start_timeout_seconds pass); then every liveInterval, and
// liveFailures failures in a row mark the application unhealthy. Either way
// an unhealthy process is killed and the restart policy decides.
const (
	liveInterval = 2 * time.Second
	liveFailures = 3
)

// awaitHealthy watches the process of inst's start number `start` until it
// exits, or inst is retired.
func (h *Host) awaitHealthy(ctx context.Context, inst *instance, start int) {
	began := time.Now()
	deadline := began.Add(time.Duration(inst.spec.StartTimeoutSeconds) * time.Second)
	url := "http://" + inst.addr + inst.spec.HealthPath
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	running, failures, why := false, 0, "no answer yet"
	for {
		ok, reason := probe(ctx, inst.health, url)
		h.mu.Lock()
		gone := inst.retired || inst.starts != start || inst.pid == 0
		h.mu.Unlock()
		if gone || ctx.Err() != nil {
			return
		}
		switch {
		case ok && !running:
			running = true
			h.healthy(inst, start, time.Since(began))
			tick.Reset(liveInterval)
		case ok:
			failures = 0
		case !running && time.Now().After(deadline):
			h.unhealthy(inst, start, fmt.Sprintf("did not answer GET %s with 2xx within %ds: %s", inst.spec.HealthPath, inst.spec.StartTimeoutSeconds, reason))
			return
		case running:
			failures++
			why = reason
			if failures >= liveFailures {
				h.unhealthy(inst, start, fmt.Sprintf("GET %s failed %d times in a row: %s", inst.spec.HealthPath, failures, why))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// unhealthy reports inst and kills its process group; the restart policy
// decides what follows (the exit is reported as app.exited).
func (h *Host) unhealthy(inst *instance, start int, reason string) {
	h.mu.Lock()
	if inst.retired || inst.starts != start || inst.pid == 0 {
		h.mu.Unlock()
		return // that process is gone already
	}
	inst.state, inst.message = domain.AppStateUnhealthy, reason
	select {
	case <-inst.ready:
		inst.ready = make(chan struct{}) // no new requests until healthy again
	default:
	}
	pid := inst.pid
	h.emit(domain.EventAppUnhealthy, inst, reason+"; killing it")
	h.mu.Unlock()
	h.log.Warn("apphost: application unhealthy: killing it", "process", inst.name, "reason", reason)
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL) // its own group
	}
}

func probe(ctx context.Context, c *http.Client, url string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, rootCause(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, "answered " + resp.Status
	}
	return true, ""
}

// healthy marks inst serving; a new generation replaces the old one.
func (h *Host) healthy(inst *instance, start int, took time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if inst.retired || inst.starts != start || inst.pid == 0 {
		return // that process is gone already
	}
	inst.state, inst.message = domain.AppStateRunning, ""
	select {
	case <-inst.ready:
	default:
		close(inst.ready)
	}
	h.emit(domain.EventAppStarted, inst, fmt.Sprintf("pid %d answers GET %s (after %d ms) on %s", inst.pid, inst.spec.HealthPath, took.Milliseconds(), inst.addr))
	if h.next == inst {
		old := h.cur
		h.cur, h.next = inst, nil
		if old != nil {
			h.retireLocked(old)
		}
	}
}

// retireLocked stops inst in the background (it finishes its requests
// within the stop timeout) and forgets it.
func (h *Host) retireLocked(inst *instance) {
	inst.retired = true
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		// The requests it has finish first (bounded by the request timeout).
		deadline := time.Now().Add(time.Duration(inst.spec.RequestTimeoutSeconds)*time.Second + time.Second)
		for time.Now().Before(deadline) && h.ctx.Err() == nil {
			h.mu.Lock()
			n := inst.inflight
			h.mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond) // polling a counter a request decrements
		}
		_ = h.sup.Remove(context.Background(), inst.name)
		inst.up.close()
	}()
}

// hold counts a request on inst unless it was retired meanwhile.
func (h *Host) hold(inst *instance) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if inst.retired {
		return false
	}
	inst.inflight++
	return true
}

func (h *Host) release(inst *instance) {
	h.mu.Lock()
	inst.inflight--
	h.mu.Unlock()
}

// onProcessEvent follows a process start or exit reported by supervise.
func (h *Host) onProcessEvent(e domain.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	inst := h.byName(e.Server)
	if inst == nil || inst.retired {
		return
	}
	switch e.Type {
	case domain.EventProcessStarted:
		inst.pid = h.pidOf(inst.name)
		inst.state = domain.AppStateStarting
		h.checkLocked(inst)
	case domain.EventProcessExited:
		inst.up.dropIdle()
		select {
		case <-inst.ready:
			inst.ready = make(chan struct{}) // not serving until healthy again
		default:
		}
		inst.pid = 0
		st := h.status(inst.name)
		inst.state = domain.AppStateExited
		if st.State == supervise.StateFailed {
			inst.state = domain.AppStateFailed
		}
		inst.message = st.Message
		tail := lastLines(filepath.Join(h.cfg.DataDir, LogName), 10)
		msg := e.Message
		if tail != "" {
			msg += "; last output:\n" + tail
		}
		h.emit(domain.EventAppExited, inst, msg)
		h.log.Warn("apphost: application exited", "process", inst.name, "how", e.Message, "state", inst.state)
	}
}

func (h *Host) byName(name string) *instance {
	for _, i := range []*instance{h.cur, h.next} {
		if i != nil && i.name == name {
			return i
		}
	}
	return nil
}

func (h *Host) status(name string) supervise.Status {
	for _, s := range h.sup.Status() {
		if s.Name == name {
			return s
		}
	}
	return supervise.Status{}
}

func (h *Host) pidOf(name string) int { return h.status(name).PID }

// emit sends an app event about inst; h.mu may be held (Emit never blocks).
func (h *Host) emit(typ string, inst *instance, msg string) {
	h.emitSpec(typ, versionLabel(inst.spec)+" ("+inst.name+")", msg)
}

func (h *Host) emitSpec(typ, label, msg string) {
	if h.cfg.Emit == nil {
		return
	}
	if len(msg) > 4000 {
		msg = msg[:4000]
	}
	h.cfg.Emit(domain.Event{Type: typ, Server: h.cfg.Server, Message: label + ": " + msg})
}

// Status reports the application as the heartbeat carries it; ok is false
// when no application process is set.
func (h *Host) Status() (domain.AppStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.spec == nil {
		return domain.AppStatus{}, false
	}
	inst := h.cur
	if h.next != nil && (inst == nil || inst.state != domain.AppStateRunning) {
		inst = h.next
	}
	switch {
	case h.fetchErr != "" && inst == nil:
		return domain.AppStatus{Name: h.spec.Name, Kind: h.spec.Kind, State: domain.AppStateFailed, Message: h.fetchErr}, true
	case h.preparing != nil && (inst == nil || inst.spec.Version != h.preparing.Version):
		st := domain.AppStatus{Name: h.spec.Name, Kind: h.spec.Kind, State: domain.AppStateStarting, Message: "fetching version " + h.preparing.Version}
		if inst != nil {
			st.State, st.PID, st.Message = inst.state, inst.pid, "serving "+inst.spec.Version+"; fetching version "+h.preparing.Version
		}
		return st, true
	case inst == nil:
		return domain.AppStatus{Name: h.spec.Name, Kind: h.spec.Kind, State: domain.AppStateStarting}, true
	}
	st := h.status(inst.name)
	msg := inst.message
	if n := h.next; n != nil && inst == h.cur && n.state != domain.AppStateRunning && n.message != "" {
		// A new version that does not come up: the current one serves on.
		msg = fmt.Sprintf("serving %s; %s is %s: %s", versionLabel(inst.spec), versionLabel(n.spec), n.state, n.message)
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return domain.AppStatus{Name: inst.spec.Name, Kind: inst.spec.Kind, Version: inst.spec.Version, State: inst.state, PID: inst.pid, Restarts: st.Restarts, Message: msg}, true
}

func versionLabel(spec wire.AppSpec) string {
	if spec.Version == "" {
		return spec.Name
	}
	return spec.Name + "@" + spec.Version
}

// Close stops every application process and the supervisor.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	for _, i := range []*instance{h.cur, h.next} {
		if i != nil {
			i.retired = true
		}
	}
	h.mu.Unlock()
	h.cancel()
	err := h.sup.StopAll(ctx)
	h.wg.Wait()
	h.sup.Close()
	return err
}

// rootCause is the innermost error's text (no URLs or wrapping noise).
func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// lastLines returns up to n last lines of the file (from its last 8 KiB).
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-8192, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if off > 0 {
		lines = lines[1:] // a partial first line
	}
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
