// Package rolling runs rolling restarts of a cluster: each server in turn is
// stopped gracefully through its node manager, waited down, started, waited
// running, and only when failback has finished and every session of the
// cluster has a live backup again does the next server follow. Progress is
// kept in the jobs table (migrations/002_jobs.sql) and reported as
// rolling.started / rolling.step / rolling.completed / rolling.failed
// events. A step that fails or times out ends the job there, leaving the
// remaining servers untouched. One rolling restart per cluster at a time.
//
// A job outlives the admin process that runs it. When that process stops
// (shutdown, crash, SIGKILL) during a job, the job stays "running" in the
// table and the next admin start resumes it from its persisted step
// (rolling.resumed): the server whose step was in progress is brought back
// to running (started through its node manager if it is stopped), the gate
// below is checked again from the step's persisted event mark, and the
// remaining servers follow in order. A step whose stop had not happened yet
// (the server still runs with the pid it had before) is run again from the
// start. If the job cannot be resumed (its cluster or one of its remaining
// servers was deleted, or lost its node manager), it is marked failed with
// the reason (rolling.failed), and the server the job had stopped is still
// started again when its node manager is reachable.
//
// Before each stop, every running server must report, in a heartbeat sent
// after the step began, that all its sessions have a live backup.
//
// The gate after each start, from the servers' heartbeats (domain.LiveState)
// and the events they report:
//   - the restarted server is running with a heartbeat newer than its stop;
//   - failback has finished: every server that reported a failover of the
//     restarted server's sessions during the step (before it came back) has
//     since reported the failback to it (when its effective session config
//     has failback on). A holder reports a failback only when it pushed at
//     least one session home; if the sessions it took over have moved on
//     (to another owner, by a request), it has nothing to push. So a holder
//     silent for Config.FailbackGrace after the restart (every other
//     condition holding) is passed, and the step's note says so;
//   - every running server of the cluster reports Unprotected == 0 in a
//     heartbeat sent after the restarted server came up.
//
// The restarted server's session count is not part of the gate: in
// "immediate" failover mode a request that still carries the takeover's
// cookie may move a failed-back session to the holder again, which is
// correct ownership handling, not an unfinished failback.
package rolling

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// ControlPlane is what the job needs of backend/control.
type ControlPlane interface {
	Command(ctx context.Context, nodeManager string, cmd wire.Command) (wire.CommandResult, error)
	Live(name string) (domain.LiveState, bool)
}

// Deployer moves servers between application versions
// (backend/store.Store); the caller of a deploy job pushes the configs
// (Changed, see Config.Push).
type Deployer interface {
	// SetServerApp pins a server to app@version.
	SetServerApp(ctx context.Context, actor, server, app, version string) error
	// FinishDeploy makes app@version the cluster's and unpins its servers;
	// kind is domain.DeployJob or domain.DeployRollback for the history.
	FinishDeploy(ctx context.Context, actor, cluster, app, version, kind string) error
}

// Recorder stores and publishes an event (backend/events.Recorder).
type Recorder interface {
	Record(ctx context.Context, e domain.Event) (domain.Event, error)
}

// Domain reads the cluster's definition (backend/store.Store).
type Domain interface {
	Cluster(ctx context.Context, name string) (domain.Cluster, error)
	Servers(ctx context.Context, cluster string) ([]domain.Server, error)
	ServerSessionConfig(ctx context.Context, name string) (domain.SessionOverride, domain.SessionConfig, int64, error)
	// Events lists recorded events (failover/failback reported by the servers).
	Events(ctx context.Context, f domain.EventFilter) ([]domain.Event, error)
}

// Config wires a Roller.
type Config struct {
	DB      *sql.DB // the admin database holding the jobs table (store.Store.SQL())
	Domain  Domain
	Control ControlPlane
	Events  Recorder
	Logger  *slog.Logger
	// DefaultStepTimeout applies when Options.StepTimeoutSeconds is 0;
	// default 120 s.
	DefaultStepTimeout time.Duration
	// PollInterval is how often live state is checked; default 100 ms.
	PollInterval time.Duration
	// FailbackGrace is how long after a restart a holder that reported no
	// failback is waited for; default 5 s.
	FailbackGrace time.Duration
	// ReconnectGrace is how long a resumed job waits, after the Roller
	// was created, for the cluster's servers to reconnect to the new admin
	// process before it trusts the gate (a server not connected yet
	// would be taken for one that does not run); default 5 s, more than
	// the nodes' longest reconnect backoff.
	ReconnectGrace time.Duration
	// StartRetry is how often a resumed step repeats the start command
	// while its server does not run (its node manager may still be
	// reconnecting; a start of a running process is a no-op); default 1 s.
	StartRetry time.Duration
	// Deployer and Push serve deploy jobs (nil: deploys are refused): Push
	// sends the cluster's changed configs to its nodes now.
	Deployer Deployer
	Push     func(ctx context.Context, cluster string)
}

// Options are the optional parameters of a rolling restart.
type Options struct {
	Order              []string `json:"order,omitempty"`                // servers in restart order; default: all, by name
	StepTimeoutSeconds int      `json:"step_timeout_seconds,omitempty"` // per server; default Config.DefaultStepTimeout
	Actor              string   `json:"-"`                              // who asked
	// Deploy makes the job a deploy: each step moves its server to
	// Deploy's application@version (a process application in place, a go
	// one by restarting the server); the first step that fails goes back.
	Deploy *Deploy `json:"-"`
}

// MaxStepTimeoutSeconds bounds Options.StepTimeoutSeconds.
const MaxStepTimeoutSeconds = 3600

// Roller starts and runs rolling-restart jobs. Safe for concurrent use; it
// owns one goroutine per running job, all ended by Close.
type Roller struct {
	cfg     Config
	log     *slog.Logger
	jobs    jobs
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	now     func() time.Time
	created time.Time
}

// New returns a Roller and resumes, in the background, every job a
// previous admin process left running (see the package comment).
func New(ctx context.Context, cfg Config) (*Roller, error) {
	if cfg.DB == nil || cfg.Domain == nil || cfg.Control == nil || cfg.Events == nil {
		return nil, errors.New("rolling: DB, Domain, Control and Events are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultStepTimeout <= 0 {
		cfg.DefaultStepTimeout = 120 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.FailbackGrace <= 0 {
		cfg.FailbackGrace = 5 * time.Second
	}
	if cfg.ReconnectGrace <= 0 {
		cfg.ReconnectGrace = 5 * time.Second
	}
	if cfg.StartRetry <= 0 {
		cfg.StartRetry = time.Second
	}
	r := &Roller{cfg: cfg, log: cfg.Logger, jobs: jobs{cfg.DB}, now: time.Now}
	r.created = r.now()
	interrupted, err := r.jobs.running(ctx)
	if err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for _, job := range interrupted {
		r.log.Warn("resuming a rolling restart the previous admin process left running", "job", job.ID, "cluster", job.Cluster, "current", job.Current)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.resume(job)
		}()
	}
	return r, nil
}

// Close stops running jobs where they are and waits for their goroutines.
// A job stopped so stays "running" in the table: the next Roller on the
// same database (the next admin start) resumes it.
func (r *Roller) Close() {
	r.cancel()
	r.wg.Wait()
}

// Job returns a job by id (domain.ErrNotFound if there is none).
func (r *Roller) Job(ctx context.Context, id int64) (Job, error) {
	return r.jobs.get(ctx, id)
}

// Start validates the request, records the job and runs it in the
// background. Errors: domain.ErrNotFound (cluster), *domain.InvalidError
// (order, step_timeout_seconds), domain.ErrConflict (one already running).
func (r *Roller) Start(ctx context.Context, cluster string, opts Options) (Job, error) {
	if _, err := r.cfg.Domain.Cluster(ctx, cluster); err != nil {
		return Job{}, err
	}
	servers, err := r.cfg.Domain.Servers(ctx, cluster)
	if err != nil {
		return Job{}, err
	}
	byName := map[string]domain.Server{}
	for _, s := range servers {
		byName[s.Name] = s
	}
	order := opts.Order
	if len(order) == 0 {
		for _, s := range servers {
			order = append(order, s.Name)
		}
		slices.Sort(order)
	}
	if len(order) == 0 {
		return Job{}, domain.Invalid("order", "cluster %q has no servers", cluster)
	}
	seen := map[string]bool{}
	for _, n := range order {
		s, ok := byName[n]
		switch {
		case !ok:
			return Job{}, domain.Invalid("order", "%q is not a server of cluster %q", n, cluster)
		case seen[n]:
			return Job{}, domain.Invalid("order", "%q appears twice", n)
		case s.NodeManager == "" && (opts.Deploy == nil || !inPlace(opts.Deploy)):
			return Job{}, domain.Invalid("order", "server %q has no node manager to restart it", n)
		}
		seen[n] = true
	}
	timeout := opts.StepTimeoutSeconds
	switch {
	case timeout < 0 || timeout > MaxStepTimeoutSeconds:
		return Job{}, domain.Invalid("step_timeout_seconds", "must be from 1 to %d", MaxStepTimeoutSeconds)
	case timeout == 0:
		timeout = int(r.cfg.DefaultStepTimeout / time.Second)
	}
	if opts.Deploy != nil && (r.cfg.Deployer == nil || r.cfg.Push == nil) {
		return Job{}, fmt.Errorf("rolling: deploys: %w", domain.ErrUnavailable)
	}
	now := r.now().UTC()
	job := Job{Type: TypeRollingRestart, Cluster: cluster, State: JobRunning, Actor: opts.Actor, StepTimeoutSeconds: timeout,
		CreatedAt: now, UpdatedAt: now, Deploy: opts.Deploy}
	if opts.Deploy != nil {
		job.Type = TypeDeploy
	}
	for _, n := range order {
		job.Steps = append(job.Steps, Step{Server: n, State: StepPending})
	}
	job.derive()
	job, err = r.jobs.create(ctx, job)
	if err != nil {
		return Job{}, err
	}
	what := "rolling restart"
	if d := job.Deploy; d != nil {
		what = fmt.Sprintf("deploy of %s (was %s)", label(d.Application, d.Version), label(d.FromApplication, d.FromVersion))
	}
	if _, err := r.cfg.Events.Record(ctx, domain.Event{Type: eventType(job, domain.EventRollingStarted), Cluster: cluster,
		Message: fmt.Sprintf("job %d: %s of %s", job.ID, what, strings.Join(order, ", "))}); err != nil {
		r.log.Error("rolling.started not recorded", "job", job.ID, "err", err)
	}
	r.log.Info("rolling restart started", "job", job.ID, "cluster", cluster, "order", order)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(job, byName, 0, false)
	}()
	return job, nil
}

// run executes the job's steps from index from on; it owns job. With
// resuming, step from is one an earlier admin process left in progress
// (unless still pending): it is finished by resumeStep.
func (r *Roller) run(job Job, servers map[string]domain.Server, from int, resuming bool) {
	ctx := r.ctx
	timeout := time.Duration(job.StepTimeoutSeconds) * time.Second
	for i := from; i < len(job.Steps); i++ {
		st := &job.Steps[i]
		sv, ok := servers[st.Server]
		resumeStep := resuming && i == from && st.State != StepPending
		if !resumeStep {
			t := r.now().UTC()
			st.StartedAt = &t
		}
		job.Current = st.Server
		job.derive()
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("%w: server %q no longer exists", errStep, st.Server)
		case resumeStep:
			err = r.resumeStep(ctx, &job, st, sv, timeout)
		default:
			err = r.step(ctx, &job, st, sv, timeout)
		}
		if err != nil && ctx.Err() != nil {
			// Close: the admin server is stopping. The job stays running
			// where it is; the next start resumes it.
			job.UpdatedAt = r.now().UTC()
			r.save(job)
			r.log.Warn("rolling restart left for the next admin start to resume", "job", job.ID, "server", st.Server, "step", st.State)
			return
		}
		f := r.now().UTC()
		st.FinishedAt = &f
		if live, ok := r.cfg.Control.Live(sv.Name); ok {
			st.SessionsAfter = live.Sessions
		}
		if err != nil {
			if job.Deploy != nil {
				err = r.revert(&job, st, sv, err)
			}
			st.State, st.Error = StepFailed, err.Error()
			job.State, job.Error, job.FinishedAt, job.UpdatedAt = JobFailed, fmt.Sprintf("%s: %s", st.Server, err), &f, f
			// The event first: whoever sees the job ended finds its events.
			r.record(domain.Event{Type: eventType(job, domain.EventRollingFailed), Cluster: job.Cluster, Server: st.Server,
				Message: fmt.Sprintf("job %d: step %d of %d (%s) failed: %s; remaining servers untouched", job.ID, i+1, len(job.Steps), st.Server, err)})
			r.save(job)
			r.log.Error("rolling restart failed", "job", job.ID, "server", st.Server, "err", err)
			return
		}
		st.State = StepDone
		job.UpdatedAt = f
		did := fmt.Sprintf("restarted (pid %d)", st.PID)
		if d := job.Deploy; d != nil {
			did = "runs " + label(d.Application, d.Version)
		}
		r.record(domain.Event{Type: eventType(job, domain.EventRollingStep), Cluster: job.Cluster, Server: st.Server, Sessions: st.SessionsAfter,
			Message: fmt.Sprintf("job %d: step %d of %d: %s %s in %s", job.ID, i+1, len(job.Steps), st.Server, did, f.Sub(*st.StartedAt).Round(time.Millisecond))})
		r.save(job)
	}
	r.complete(job)
}

// complete marks the job completed; it owns job.
func (r *Roller) complete(job Job) {
	if d := job.Deploy; d != nil {
		// The cluster's application is the new one from now on; the pins go.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		kind := domain.DeployJob
		if d.Rollback {
			kind = domain.DeployRollback
		}
		err := r.cfg.Deployer.FinishDeploy(ctx, job.Actor, job.Cluster, d.Application, d.Version, kind)
		if err == nil {
			r.cfg.Push(ctx, job.Cluster)
		}
		cancel()
		if err != nil {
			r.log.Error("deploy: cluster application not updated", "job", job.ID, "err", err)
		}
	}
	f := r.now().UTC()
	job.State, job.Current, job.FinishedAt, job.UpdatedAt = JobCompleted, "", &f, f
	job.derive()
	did := "restarted"
	if d := job.Deploy; d != nil {
		did = "moved to " + label(d.Application, d.Version)
	}
	r.record(domain.Event{Type: eventType(job, domain.EventRollingCompleted), Cluster: job.Cluster,
		Message: fmt.Sprintf("job %d: %d servers %s in %s", job.ID, len(job.Steps), did, f.Sub(job.CreatedAt).Round(time.Millisecond))})
	r.save(job)
	r.log.Info("rolling restart completed", "job", job.ID, "cluster", job.Cluster)
}

func (r *Roller) save(job Job) {
	// Saved with a fresh context: a job cancelled by Close still records
	// how it ended.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.jobs.update(ctx, job); err != nil {
		r.log.Error("job progress not saved", "job", job.ID, "err", err)
	}
}

func (r *Roller) record(e domain.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.cfg.Events.Record(ctx, e); err != nil {
		r.log.Error("event not recorded", "type", e.Type, "err", err)
	}
}

// errStep wraps every step failure.
var errStep = errors.New("step failed")

// step restarts one server and waits for the gate.
func (r *Roller) step(parent context.Context, job *Job, st *Step, sv domain.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	before, _ := r.cfg.Control.Live(sv.Name)
	st.SessionsBefore = before.Sessions

	members, err := r.cfg.Domain.Servers(ctx, job.Cluster)
	if err != nil {
		return fmt.Errorf("%w: %w", errStep, err)
	}
	// Before taking a server down, every session must have a live backup
	// (the first step too: a server may have gone down just before).
	began := r.now()
	if err := r.wait(ctx, "every session backed up before the stop", func() (bool, string) {
		return r.protected(members, began)
	}); err != nil {
		return err
	}
	if d := job.Deploy; d != nil {
		if err := r.pin(ctx, job, sv.Name, d.Application, d.Version); err != nil {
			return err
		}
		if inPlace(d) {
			// A process application switches in place: the new process
			// starts beside the old one, which serves until it is healthy.
			st.State = StepStarting
			r.save(*job)
			if err := r.waitVersion(ctx, sv.Name, d, began); err != nil {
				return err
			}
			st.State = StepWaiting
			r.save(*job)
			upAt := r.now()
			return r.wait(ctx, "every session backed up", func() (bool, string) { return r.protected(members, upAt) })
		}
	}
	mark, err := r.lastEventID(ctx)
	if err != nil {
		return err
	}
	// What a resumed step needs is saved before the stop is sent.
	st.State, job.eventMark = StepStopping, mark
	if l, ok := r.cfg.Control.Live(sv.Name); ok {
		st.PIDBefore = l.PID
	}
	r.save(*job)
	stopAt := r.now()
	if err := r.command(ctx, sv, wire.ActionStop, job.ID); err != nil {
		return err
	}
	if err := r.wait(ctx, "server down", func() (bool, string) {
		l, ok := r.cfg.Control.Live(sv.Name)
		if !ok {
			return true, ""
		}
		return l.State == domain.StateStopped || l.State == domain.StateFailed, "state " + l.State
	}); err != nil {
		return err
	}

	st.State = StepStarting
	r.save(*job)
	pid, err := r.commandPID(ctx, sv, wire.ActionStart, job.ID)
	if err != nil {
		return err
	}
	st.PID = pid
	if err := r.wait(ctx, "server running", func() (bool, string) {
		return r.running(sv.Name, stopAt, pid)
	}); err != nil {
		return err
	}
	if d := job.Deploy; d != nil {
		if err := r.waitVersion(ctx, sv.Name, d, stopAt); err != nil {
			return err
		}
	}
	return r.gate(ctx, job, st, sv, members, mark)
}

// pin moves one server to app@version and pushes its config now.
func (r *Roller) pin(ctx context.Context, job *Job, server, app, version string) error {
	if err := r.cfg.Deployer.SetServerApp(ctx, job.Actor, server, app, version); err != nil {
		return fmt.Errorf("%w: %s: %w", errStep, label(app, version), err)
	}
	r.cfg.Push(ctx, job.Cluster)
	return nil
}

// waitVersion waits until the server reports d's application and version
// answering its health path (a go one: the server's own process).
func (r *Roller) waitVersion(ctx context.Context, server string, d *Deploy, since time.Time) error {
	return r.wait(ctx, server+" running "+label(d.Application, d.Version), func() (bool, string) {
		l, ok := r.cfg.Control.Live(server)
		if !ok {
			return false, "not connected"
		}
		a := l.App
		want := domain.AppStateRunning
		if d.Kind == domain.AppGo || d.Application == "" {
			want = domain.AppStateEmbedded
		}
		if a.Name == d.Application && a.Version == d.Version && a.State == want && l.LastSeen.After(since) {
			return true, ""
		}
		return false, fmt.Sprintf("it reports %s %s%s", label(a.Name, a.Version), a.State, cmp.Or(": "+a.Message, ""))
	})
}

// revert moves a server whose deploy step failed back to what it ran (a go
// application: restarted on it) and returns the step's error with the
// application's last report (app.exited, app.unhealthy, app.fetch_failed).
func (r *Roller) revert(job *Job, st *Step, sv domain.Server, stepErr error) error {
	d := job.Deploy
	ctx, cancel := context.WithTimeout(r.ctx, time.Duration(job.StepTimeoutSeconds)*time.Second)
	defer cancel()
	why := stepErr.Error()
	if st.StartedAt != nil {
		evs, err := r.cfg.Domain.Events(ctx, domain.EventFilter{Server: sv.Name, Types: []string{domain.EventAppExited, domain.EventAppUnhealthy, domain.EventAppFetchFailed}, Limit: 50})
		var last *domain.Event
		for i := range evs {
			if e := &evs[i]; !e.Time.Before(*st.StartedAt) && (last == nil || e.ID > last.ID) {
				last = e
			}
		}
		if err == nil && last != nil {
			why += "; the application said: " + last.Type + ": " + last.Message
		}
	}
	if err := r.pin(ctx, job, sv.Name, d.FromApplication, d.FromVersion); err != nil {
		return fmt.Errorf("%w: %s; going back to %s failed too: %w", errStep, why, label(d.FromApplication, d.FromVersion), err)
	}
	if d.Kind == domain.AppGo || d.FromKind == domain.AppGo {
		if err := r.command(ctx, sv, wire.ActionRestart, job.ID); err != nil {
			return fmt.Errorf("%w: %s; the restart on %s failed: %w", errStep, why, label(d.FromApplication, d.FromVersion), err)
		}
	}
	back := &Deploy{Application: d.FromApplication, Version: d.FromVersion, Kind: d.FromKind}
	if err := r.waitVersion(ctx, sv.Name, back, r.now()); err != nil {
		return fmt.Errorf("%w: %s; %s not back on %s yet: %w", errStep, why, sv.Name, label(d.FromApplication, d.FromVersion), err)
	}
	return fmt.Errorf("%w: %s; %s is back on %s", errStep, why, sv.Name, label(d.FromApplication, d.FromVersion))
}

// inPlace reports whether a deploy step switches the application process
// without restarting the server (neither side is a go binary).
func inPlace(d *Deploy) bool { return d.Kind != domain.AppGo && d.FromKind != domain.AppGo }

// label names an application at a version ("" = the sample app).
func label(app, version string) string {
	switch {
	case app == "":
		return "the sample app"
	case version == "":
		return app
	}
	return app + "@" + version
}

// eventType is the event of a deploy job for a rolling.* type.
func eventType(job Job, rollingType string) string {
	if job.Type != TypeDeploy {
		return rollingType
	}
	return "deploy." + strings.TrimPrefix(rollingType, "rolling.")
}

// running reports whether the server is running with a heartbeat newer
// than since and, when pid is not 0, as that process.
func (r *Roller) running(name string, since time.Time, pid int) (bool, string) {
	l, ok := r.cfg.Control.Live(name)
	if !ok {
		return false, "not connected"
	}
	if l.State != domain.StateRunning || !l.LastSeen.After(since) {
		return false, "state " + l.State
	}
	if pid != 0 && l.PID != 0 && l.PID != pid {
		return false, fmt.Sprintf("pid %d, want %d", l.PID, pid)
	}
	return true, ""
}

// gate waits, once the restarted server runs, until every session of the
// cluster is backed up and the failback to the server has finished
// (failovers of its sessions reported after event mark).
func (r *Roller) gate(ctx context.Context, job *Job, st *Step, sv domain.Server, members []domain.Server, mark int64) error {
	failback := true
	if _, eff, _, err := r.cfg.Domain.ServerSessionConfig(ctx, sv.Name); err == nil {
		failback = eff.Failback && eff.Shared
	}
	st.State = StepWaiting
	r.save(*job)
	upAt := r.now()
	upMark, err := r.lastEventID(ctx)
	if err != nil {
		return err
	}
	return r.wait(ctx, "every session backed up and failback finished", func() (bool, string) {
		if ok, why := r.protected(members, upAt); !ok {
			return false, why
		}
		if failback {
			holders, err := r.failbackPending(ctx, sv.Name, mark, upMark)
			if err != nil {
				return false, err.Error()
			}
			if len(holders) > 0 {
				if r.now().Sub(upAt) < r.cfg.FailbackGrace {
					return false, fmt.Sprintf("failback to %s not finished by %s", sv.Name, strings.Join(holders, ", "))
				}
				st.Note = joinNote(st.Note, fmt.Sprintf("no failback reported by %s within %s; every session is backed up", strings.Join(holders, ", "), r.cfg.FailbackGrace))
			}
		}
		return true, ""
	})
}

func joinNote(a, b string) string {
	if a == "" || strings.Contains(a, b) {
		return cmp.Or(a, b)
	}
	return a + "; " + b
}

// resume continues a job an earlier admin process left running; it owns
// job.
func (r *Roller) resume(job Job) {
	ctx := r.ctx
	i := slices.IndexFunc(job.Steps, func(s Step) bool { return s.State != StepDone })
	if i < 0 { // every step done; only the completion was not saved
		r.complete(job)
		return
	}
	st := &job.Steps[i]
	was := st.State
	job.Current = st.Server
	job.derive()
	servers, problem := r.resumable(ctx, job, i)
	if ctx.Err() != nil {
		return
	}
	if problem != "" {
		r.abandon(job, i, servers, problem)
		return
	}
	job.Resumes++
	job.UpdatedAt = r.now().UTC()
	msg := fmt.Sprintf("job %d: resumed after an admin restart at step %d of %d (%s, %s)", job.ID, i+1, len(job.Steps), st.Server, was)
	if was != StepPending {
		st.Note = joinNote(st.Note, fmt.Sprintf("resumed after an admin restart (%s)", was))
	}
	r.record(domain.Event{Type: eventType(job, domain.EventRollingResumed), Cluster: job.Cluster, Server: st.Server, Message: msg})
	r.save(job)
	r.log.Info("rolling restart resumed", "job", job.ID, "cluster", job.Cluster, "server", st.Server, "step", was)
	r.waitReconnect(ctx, servers)
	r.run(job, servers, i, true)
}

// resumable reads the job's cluster again and says why the job cannot go
// on from step i ("" when it can): the cluster or a remaining server is
// gone, or a remaining server has no node manager any more. It returns the
// cluster's servers by name.
func (r *Roller) resumable(ctx context.Context, job Job, i int) (map[string]domain.Server, string) {
	if _, err := r.cfg.Domain.Cluster(ctx, job.Cluster); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return nil, fmt.Sprintf("cluster %q no longer exists", job.Cluster)
		}
		return nil, err.Error()
	}
	list, err := r.cfg.Domain.Servers(ctx, job.Cluster)
	if err != nil {
		return nil, err.Error()
	}
	servers := map[string]domain.Server{}
	for _, s := range list {
		servers[s.Name] = s
	}
	var problems []string
	for _, st := range job.Steps[i:] {
		switch sv, ok := servers[st.Server]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("server %q is no longer in cluster %q", st.Server, job.Cluster))
		case sv.NodeManager == "":
			problems = append(problems, fmt.Sprintf("server %q has no node manager any more", st.Server))
		}
	}
	return servers, strings.Join(problems, "; ")
}

// abandon fails a job that cannot be resumed at step i, after starting
// again the server the step had stopped, if its node manager answers; it
// owns job.
func (r *Roller) abandon(job Job, i int, servers map[string]domain.Server, problem string) {
	st := &job.Steps[i]
	reason := "cannot resume after an admin restart: " + problem
	if st.State != StepPending {
		if sv, ok := servers[st.Server]; ok && sv.NodeManager != "" {
			ctx, cancel := context.WithTimeout(r.ctx, time.Duration(job.StepTimeoutSeconds)*time.Second)
			pid, err := r.bringBack(ctx, job.ID, sv)
			cancel()
			if r.ctx.Err() != nil {
				return // the admin is stopping: the next start tries again
			}
			if err != nil {
				reason += fmt.Sprintf("; %s not started again: %s", sv.Name, err)
			} else {
				reason += fmt.Sprintf("; %s running again (pid %d)", sv.Name, pid)
				st.PID = pid
			}
		}
		st.State, st.Error = StepFailed, problem
	}
	f := r.now().UTC()
	if st.StartedAt != nil {
		st.FinishedAt = &f
	}
	job.State, job.Error, job.FinishedAt, job.UpdatedAt = JobFailed, fmt.Sprintf("%s: %s", st.Server, reason), &f, f
	r.record(domain.Event{Type: eventType(job, domain.EventRollingFailed), Cluster: job.Cluster, Server: st.Server,
		Message: fmt.Sprintf("job %d: step %d of %d (%s): %s", job.ID, i+1, len(job.Steps), st.Server, reason)})
	r.save(job)
	r.log.Error("rolling restart not resumable", "job", job.ID, "server", st.Server, "reason", reason)
}

// waitReconnect waits until every server with a node manager has
// connected to this admin process, or until Config.ReconnectGrace after
// the Roller's creation: a server still silent then is taken as not
// running.
func (r *Roller) waitReconnect(ctx context.Context, servers map[string]domain.Server) {
	ctx, cancel := context.WithDeadline(ctx, r.created.Add(r.cfg.ReconnectGrace))
	defer cancel()
	_ = r.wait(ctx, "the servers to reconnect", func() (bool, string) {
		for _, sv := range servers {
			if _, ok := r.cfg.Control.Live(sv.Name); !ok && sv.NodeManager != "" {
				return false, sv.Name + " not connected"
			}
		}
		return true, ""
	})
}

// resumeStep finishes a step an earlier admin process left in progress:
// the server is brought back to running, then, when it was restarted, the
// gate is checked from the step's event mark. A step whose stop had not
// happened yet (the server runs as the process it was before the step, or
// that pid is unknown) runs again from the start.
func (r *Roller) resumeStep(parent context.Context, job *Job, st *Step, sv domain.Server, timeout time.Duration) error {
	if d := job.Deploy; d != nil && inPlace(d) {
		return r.step(parent, job, st, sv, timeout) // pinning again is a no-op; the waits follow
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	pid, err := r.bringBack(ctx, job.ID, sv)
	if err != nil {
		return err
	}
	if st.State == StepStopping && (st.PIDBefore == 0 || pid == st.PIDBefore) {
		cancel()
		return r.step(parent, job, st, sv, timeout)
	}
	st.PID = pid
	members, err := r.cfg.Domain.Servers(ctx, job.Cluster)
	if err != nil {
		return fmt.Errorf("%w: %w", errStep, err)
	}
	if d := job.Deploy; d != nil {
		if err := r.waitVersion(ctx, sv.Name, d, time.Time{}); err != nil {
			return err
		}
	}
	return r.gate(ctx, job, st, sv, members, job.eventMark)
}

// bringBack makes sure the server runs and returns its pid: it waits for
// a heartbeat from a running process and meanwhile sends the start
// command to its node manager, again every Config.StartRetry (the node
// manager may refuse it while it finishes a stop; one that is still
// reconnecting is waited for inside commandPID; starting a running
// process is a no-op that answers its pid).
func (r *Roller) bringBack(ctx context.Context, jobID int64, sv domain.Server) (int, error) {
	since := r.now()
	var (
		lastStart time.Time
		started   string // what the last start command answered
		pid       int
	)
	err := r.wait(ctx, sv.Name+" running again", func() (bool, string) {
		ok, why := r.running(sv.Name, since, 0)
		if ok {
			l, _ := r.cfg.Control.Live(sv.Name)
			pid = l.PID
			return true, ""
		}
		if r.now().Sub(lastStart) >= r.cfg.StartRetry {
			lastStart = r.now()
			started = "started, waiting for its heartbeat"
			if _, err := r.commandPID(ctx, sv, wire.ActionStart, jobID); err != nil {
				started = strings.TrimPrefix(err.Error(), errStep.Error()+": ")
			}
		}
		return false, why + "; " + started
	})
	return pid, err
}

// protected reports whether every running member has sent a heartbeat
// since the given time, each with no session lacking a live backup.
func (r *Roller) protected(members []domain.Server, since time.Time) (bool, string) {
	for _, m := range members {
		l, ok := r.cfg.Control.Live(m.Name)
		if !ok || l.State != domain.StateRunning {
			continue // a server that is not running holds no sessions to protect
		}
		if !l.LastSeen.After(since) {
			return false, m.Name + ": no fresh heartbeat yet"
		}
		if l.Unprotected > 0 {
			return false, fmt.Sprintf("%s: %d sessions without a live backup", m.Name, l.Unprotected)
		}
	}
	return true, ""
}

// lastEventID is the newest recorded event's ID (0 if none).
func (r *Roller) lastEventID(ctx context.Context) (int64, error) {
	evs, err := r.cfg.Domain.Events(ctx, domain.EventFilter{Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errStep, err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	return evs[len(evs)-1].ID, nil
}

// failbackPending lists the servers that took over sessions of server after
// event mark and before upMark (while it was down) and have not reported
// failing them back since.
func (r *Roller) failbackPending(ctx context.Context, server string, mark, upMark int64) ([]string, error) {
	evs, err := r.cfg.Domain.Events(ctx, domain.EventFilter{Types: []string{domain.EventFailover, domain.EventFailback}, Server: server, AfterID: mark})
	if err != nil {
		return nil, err
	}
	pending := map[string]bool{}
	for _, e := range evs { // in ID order
		switch {
		case e.Peer != server || e.Server == server:
		case e.Type == domain.EventFailover && e.ID <= upMark && e.Sessions > 0:
			pending[e.Server] = true
		case e.Type == domain.EventFailback:
			delete(pending, e.Server)
		}
	}
	out := make([]string, 0, len(pending))
	for h := range pending {
		out = append(out, h)
	}
	slices.Sort(out)
	return out, nil
}

func (r *Roller) command(ctx context.Context, sv domain.Server, action string, jobID int64) error {
	_, err := r.commandPID(ctx, sv, action, jobID)
	return err
}

// commandPID sends action for sv to its node manager. A node manager that
// is not connected (it reconnects after an admin restart) or goes away
// before answering is asked again until ctx (the step's deadline) ends:
// start and stop are idempotent, and the command id is the same each time.
func (r *Roller) commandPID(ctx context.Context, sv domain.Server, action string, jobID int64) (int, error) {
	cmd := wire.Command{ID: "job-" + strconv.FormatInt(jobID, 10) + "-" + action + "-" + sv.Name, Action: action, Target: sv.Name}
	var res wire.CommandResult
	var err error
	for {
		res, err = r.cfg.Control.Command(ctx, sv.NodeManager, cmd)
		if !errors.Is(err, domain.ErrUnavailable) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(r.cfg.PollInterval):
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %s via node manager %s: %w", errStep, action, sv.NodeManager, err)
	}
	if !res.OK {
		return 0, fmt.Errorf("%w: %s via node manager %s: %s", errStep, action, sv.NodeManager, res.Error)
	}
	return res.PID, nil
}

// wait polls cond until it holds, or fails with what it saw last when ctx ends.
func (r *Roller) wait(ctx context.Context, what string, cond func() (bool, string)) error {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	last := ""
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if ctx.Err() == nil || last == "" {
			last = why // a check cut short by the deadline says less than the one before
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: timed out waiting for %s (last: %s)", errStep, what, last)
			}
			return fmt.Errorf("%w: cancelled waiting for %s: %w", errStep, what, ctx.Err())
		case <-t.C:
		}
	}
}
