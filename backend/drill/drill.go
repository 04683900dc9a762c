// Package drill runs failover drills: a fault (SIGKILL, or SIGSTOP for a
// few seconds) applied to one managed server through its node manager
// under the live traffic, and a report of what the cluster did: how soon
// the fault was detected, the sessions taken over, the server back, its
// sessions failed back, what the web servers retried or failed, and
// whether any session was lost (it must not be).
package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// Store keeps drills and reads the domain (backend/store).
type Store interface {
	Server(ctx context.Context, name string) (domain.Server, error)
	Servers(ctx context.Context, cluster string) ([]domain.Server, error)
	WebServers(ctx context.Context, cluster string) ([]domain.WebServer, error)
	Events(ctx context.Context, f domain.EventFilter) ([]domain.Event, error)
	CreateDrill(ctx context.Context, d domain.Drill) (domain.Drill, error)
	SaveDrill(ctx context.Context, d domain.Drill) error
	Drill(ctx context.Context, id int64) (domain.Drill, error)
	Drills(ctx context.Context, cluster string, limit int) ([]domain.Drill, error)
	EndRunningDrills(ctx context.Context, why string) (int64, error)
}

// Control is the admin end of the control channel (backend/control).
type Control interface {
	Live(name string) (domain.LiveState, bool)
	Command(ctx context.Context, nodeManager string, cmd wire.Command) (wire.CommandResult, error)
}

// Capacity says whether the cluster can take a failure now.
type Capacity interface {
	Report(ctx context.Context, cluster string) (domain.Capacity, error)
}

// Config assembles a Runner.
type Config struct {
	Store    Store
	Control  Control
	Capacity Capacity
	// Record stores and publishes an event (drill.*).
	Record func(ctx context.Context, e domain.Event) error
	// Settle bounds how long a drill waits, after the fault ended, for the
	// server to be back and its sessions home; 0: 90 s.
	Settle time.Duration
	// Poll is how often a drill looks at the cluster; 0: 200 ms.
	Poll   time.Duration
	Logger *slog.Logger
}

// failbackRest is how long a drill waits, after the first failback, for
// the rest of the sessions taken over to come home (failback runs in
// batches, from each server that took some over; sessions that expired
// meanwhile never do).
const failbackRest = 3 * time.Second

// MaxFreezeSeconds bounds a freeze drill.
const MaxFreezeSeconds = 30

// Runner starts drills and owns their goroutines.
type Runner struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Runner. Drills a previous admin server left running are
// failed: nobody measured their end.
func New(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.Settle <= 0 {
		cfg.Settle = 90 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := cfg.Store.EndRunningDrills(ctx, "the admin server stopped during the drill"); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &Runner{cfg: cfg, ctx: rctx, cancel: cancel}, nil
}

// Close stops the running drills (they are saved as failed) and waits.
func (r *Runner) Close() {
	r.cancel()
	r.wg.Wait()
}

// Drill returns one drill.
func (r *Runner) Drill(ctx context.Context, id int64) (domain.Drill, error) {
	return r.cfg.Store.Drill(ctx, id)
}

// Drills lists a cluster's drills, newest first.
func (r *Runner) Drills(ctx context.Context, cluster string, limit int) ([]domain.Drill, error) {
	return r.cfg.Store.Drills(ctx, cluster, limit)
}

// Start checks the request and the cluster's health and starts the drill.
// Bad input is a *domain.InvalidError; a cluster that cannot take a
// failure now, or that runs a drill, a *domain.ConflictError saying why.
func (r *Runner) Start(ctx context.Context, cluster, actor string, req domain.DrillRequest) (domain.Drill, error) {
	switch req.Fault {
	case domain.FaultKill:
		req.Seconds = 0
	case domain.FaultFreeze:
		if req.Seconds < 1 || req.Seconds > MaxFreezeSeconds {
			return domain.Drill{}, domain.Invalid("seconds", "a freeze lasts 1 to %d seconds", MaxFreezeSeconds)
		}
	default:
		return domain.Drill{}, domain.Invalid("fault", "must be %q or %q", domain.FaultKill, domain.FaultFreeze)
	}
	if req.Server == "" {
		return domain.Drill{}, domain.Invalid("server", "is required")
	}
	sv, err := r.cfg.Store.Server(ctx, req.Server)
	if errors.Is(err, domain.ErrNotFound) || err == nil && sv.Cluster != cluster {
		return domain.Drill{}, domain.Invalid("server", "%q is not a server of cluster %q", req.Server, cluster)
	}
	if err != nil {
		return domain.Drill{}, err
	}
	if sv.NodeManager == "" {
		return domain.Drill{}, domain.Invalid("server", "%q has no node manager: a drill applies its fault through one", sv.Name)
	}
	if l, ok := r.cfg.Control.Live(sv.NodeManager); !ok || l.State != domain.StateRunning {
		return domain.Drill{}, domain.Conflict("server", "node manager %q of %s is not connected", sv.NodeManager, sv.Name)
	}
	servers, err := r.cfg.Store.Servers(ctx, cluster)
	if err != nil {
		return domain.Drill{}, err
	}
	for _, s := range servers {
		if l, _ := r.cfg.Control.Live(s.Name); l.State != domain.StateRunning {
			return domain.Drill{}, domain.Conflict("cluster", "cluster %q is not healthy: %s is %s", cluster, s.Name, orStopped(l.State))
		}
	}
	capy, err := r.cfg.Capacity.Report(ctx, cluster)
	if err != nil {
		return domain.Drill{}, err
	}
	if !capy.Healthy {
		return domain.Drill{}, domain.Conflict("cluster", "cluster %q is not healthy: %s", cluster, strings.Join(capy.Warnings, "; "))
	}
	d, err := r.cfg.Store.CreateDrill(ctx, domain.Drill{Cluster: cluster, Server: sv.Name, Fault: req.Fault, Seconds: req.Seconds, Actor: actor, Phase: "applying the fault"})
	if err != nil {
		return domain.Drill{}, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(r.ctx, d, sv.NodeManager)
	}()
	return d, nil
}

func orStopped(s string) string {
	if s == "" {
		return domain.StateStopped
	}
	return s
}

// observation is what a drill has seen so far.
type observation struct {
	t0                                       time.Time
	mark                                     int64 // the newest event read
	detected, takenOver, recovered, failback time.Time
	early                                    []domain.Event // failbacks home before the server was seen back
}

// maxReportEvents bounds the events a report keeps.
const maxReportEvents = 1000

func ms(t0, t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return max(t.Sub(t0).Milliseconds(), 0)
}

// run applies the fault and watches the cluster until the server is back
// and its sessions are home (or Settle passed), then saves the report.
func (r *Runner) run(ctx context.Context, d domain.Drill, nodeManager string) {
	log := r.cfg.Logger.With("drill", d.ID, "cluster", d.Cluster, "server", d.Server, "fault", d.Fault)
	rep := &d.Report
	rep.Events = []domain.Event{}
	mark := r.newestEvent(ctx)
	live, _ := r.cfg.Control.Live(d.Server)
	rep.ServerSessions, rep.TakesOver = live.Sessions, live.Backup
	rep.SessionsBefore = r.clusterSessions(ctx, d.Cluster)
	retried0, failed0 := r.webCounters(ctx, d.Cluster)
	r.record(ctx, domain.Event{Type: domain.EventDrillStarted, Cluster: d.Cluster, Server: d.Server, Sessions: live.Sessions,
		Message: fmt.Sprintf("drill %d: %s %s (%d sessions, backup %s)", d.ID, d.Fault, d.Server, live.Sessions, orNone(live.Backup))})

	o := observation{t0: time.Now(), mark: mark}
	cmd := wire.Command{Action: wire.ActionKill, Target: d.Server}
	if d.Fault == domain.FaultFreeze {
		cmd = wire.Command{Action: wire.ActionFreeze, Target: d.Server, Seconds: d.Seconds}
	}
	faultDone := make(chan error, 1)
	go func() { // ends when the node manager answers (after the thaw) or ctx ends
		res, err := r.cfg.Control.Command(ctx, nodeManager, cmd)
		if err == nil && !res.OK {
			err = errors.New(res.Error)
		}
		faultDone <- err
	}()
	d.Phase = "waiting for the fault to be detected"
	r.save(ctx, d)

	faultOver := time.Time{}
	tick := time.NewTicker(r.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if faultOver.IsZero() {
				<-faultDone
			}
			r.finish(context.WithoutCancel(ctx), &d, o, "the admin server stopped during the drill", retried0, failed0, log)
			return
		case err := <-faultDone:
			faultOver = time.Now()
			faultDone = nil
			if err != nil {
				r.finish(ctx, &d, o, "the fault could not be applied: "+err.Error(), retried0, failed0, log)
				return
			}
		case <-tick.C:
		}
		r.observe(ctx, &d, &o, live.PID)
		var phase string
		switch {
		case o.detected.IsZero():
			phase = "waiting for the fault to be detected"
		case o.takenOver.IsZero() && rep.ServerSessions > 0:
			phase = "waiting for the backup to take over"
		case o.recovered.IsZero():
			phase = "waiting for the server to be back"
		case rep.TakenOver > 0 && (o.failback.IsZero() || rep.FailedBack < rep.TakenOver && time.Since(o.failback) < failbackRest):
			phase = "waiting for its sessions to fail back"
		default:
			r.finish(ctx, &d, o, "", retried0, failed0, log)
			return
		}
		if phase != d.Phase {
			d.Phase = phase
			r.save(ctx, d)
		}
		if !faultOver.IsZero() && time.Since(faultOver) > r.cfg.Settle {
			r.finish(ctx, &d, o, "timed out "+phase, retried0, failed0, log)
			return
		}
	}
}

// observe reads the events recorded since it last looked (the report's
// counts grow with them) and the server's state.
func (r *Runner) observe(ctx context.Context, d *domain.Drill, o *observation, pid0 int) {
	evs, err := r.cfg.Store.Events(ctx, domain.EventFilter{Cluster: d.Cluster, AfterID: o.mark, Limit: 1000})
	if err != nil {
		return
	}
	rep := &d.Report
	failedBack := func(e domain.Event, at time.Time) {
		rep.FailedBack += e.Sessions
		if o.failback.IsZero() {
			o.failback = at
		}
	}
	for _, e := range evs {
		o.mark = e.ID
		if e.Type == domain.EventDrillStarted {
			continue
		}
		if len(rep.Events) < maxReportEvents {
			rep.Events = append(rep.Events, e)
		}
		at := e.Time
		if at.Before(o.t0) {
			at = o.t0 // a node's clock a little behind the admin's
		}
		switch {
		case (e.Type == domain.EventServerSuspect || e.Type == domain.EventServerDown) && e.Server == d.Server,
			e.Type == domain.EventFailover && e.Peer == d.Server:
			if o.detected.IsZero() || at.Before(o.detected) {
				o.detected = at
			}
		}
		switch {
		case e.Type == domain.EventFailover && e.Peer == d.Server:
			rep.TakenOver += e.Sessions
			if o.takenOver.IsZero() {
				o.takenOver = at
			}
		case e.Type == domain.EventFailback && e.Peer == d.Server && o.recovered.IsZero():
			o.early = append(o.early, e)
		case e.Type == domain.EventFailback && e.Peer == d.Server:
			failedBack(e, at)
		case e.Type == domain.EventSessionLost:
			rep.SessionsLost += e.Sessions
		}
	}
	if o.recovered.IsZero() && !o.detected.IsZero() {
		l, _ := r.cfg.Control.Live(d.Server)
		back := l.State == domain.StateRunning
		if d.Fault == domain.FaultKill {
			back = back && l.PID != 0 && l.PID != pid0
		}
		if back {
			o.recovered = time.Now()
			// Failbacks recorded before we saw it running count too.
			for _, e := range o.early {
				failedBack(e, e.Time)
			}
			o.early = nil
		}
	}
}

// finish fills in the report, decides the verdict and saves the drill.
func (r *Runner) finish(ctx context.Context, d *domain.Drill, o observation, problem string, retried0, failed0 uint64, log *slog.Logger) {
	rep := &d.Report
	rep.DetectionMS, rep.TakeoverMS = ms(o.t0, o.detected), ms(o.t0, o.takenOver)
	rep.RecoveryMS, rep.FailbackMS = ms(o.t0, o.recovered), ms(o.t0, o.failback)
	rep.SessionsAfter = r.clusterSessions(ctx, d.Cluster)
	retried, failed := r.webCounters(ctx, d.Cluster)
	rep.Retried, rep.Failed = sub(retried, retried0), sub(failed, failed0)
	var faults []string
	if problem != "" {
		faults = append(faults, problem)
	}
	if rep.SessionsLost > 0 {
		faults = append(faults, fmt.Sprintf("%d sessions lost", rep.SessionsLost))
	}
	if rep.Failed > 0 {
		faults = append(faults, fmt.Sprintf("the web servers failed %d requests", rep.Failed))
	}
	d.State, d.Phase = domain.DrillPassed, "done"
	rep.Verdict = fmt.Sprintf("passed: detected in %s, taken over in %s, back in %s, 0 sessions lost", msText(rep.DetectionMS), msText(rep.TakeoverMS), msText(rep.RecoveryMS))
	if len(faults) > 0 {
		d.State = domain.DrillFailed
		d.Error = strings.Join(faults, "; ")
		rep.Verdict = "failed: " + d.Error
	}
	now := time.Now().UTC()
	d.FinishedAt = &now
	r.save(ctx, *d)
	typ := domain.EventDrillCompleted
	if d.State == domain.DrillFailed {
		typ = domain.EventDrillFailed
	}
	r.record(ctx, domain.Event{Type: typ, Cluster: d.Cluster, Server: d.Server, Sessions: rep.SessionsLost, Message: fmt.Sprintf("drill %d: %s", d.ID, rep.Verdict)})
	log.Info("drill finished", "state", d.State, "verdict", rep.Verdict)
}

func msText(v int64) string {
	if v < 0 {
		return "never"
	}
	return (time.Duration(v) * time.Millisecond).String()
}

func sub(a, b uint64) uint64 {
	if a < b {
		return a // a web server restarted: its counter started over
	}
	return a - b
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (r *Runner) save(ctx context.Context, d domain.Drill) {
	if err := r.cfg.Store.SaveDrill(ctx, d); err != nil {
		r.cfg.Logger.Error("drill: save", "drill", d.ID, "err", err)
	}
}

func (r *Runner) record(ctx context.Context, e domain.Event) {
	if err := r.cfg.Record(ctx, e); err != nil {
		r.cfg.Logger.Error("drill: record event", "type", e.Type, "err", err)
	}
}

func (r *Runner) newestEvent(ctx context.Context) int64 {
	es, err := r.cfg.Store.Events(ctx, domain.EventFilter{Limit: 1})
	if err != nil || len(es) == 0 {
		return 0
	}
	return es[0].ID
}

func (r *Runner) clusterSessions(ctx context.Context, cluster string) int {
	servers, err := r.cfg.Store.Servers(ctx, cluster)
	if err != nil {
		return 0
	}
	n := 0
	for _, s := range servers {
		if l, ok := r.cfg.Control.Live(s.Name); ok && l.State == domain.StateRunning {
			n += l.Sessions
		}
	}
	return n
}

func (r *Runner) webCounters(ctx context.Context, cluster string) (retried, failed uint64) {
	ws, err := r.cfg.Store.WebServers(ctx, cluster)
	if err != nil {
		return 0, 0
	}
	for _, w := range ws {
		if l, ok := r.cfg.Control.Live(w.Name); ok {
			retried += l.Retried
			failed += l.Failed
		}
	}
	return retried, failed
}
