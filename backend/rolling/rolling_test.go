package rolling

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/domain"
	"tandem/backend/store"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// cluster simulates the control plane's view of a cluster whose servers
// are restarted through a node manager: the admin's live state comes from
// heartbeats, which this stands in for (backend/control is tested with
// real nodes; the demo test drives this package end to end).
type cluster struct {
	mu        sync.Mutex
	live      map[string]*domain.LiveState
	polls     map[string]int // Live calls since the server's start
	cmds      []string
	violation string
	noStart   map[string]string // server → error of its start command
	neverUp   map[string]bool
	block     chan struct{} // if set, the first stop waits for it
	pid       int
	st        *store.Store
	holder    map[string]string // server → who took its sessions over
	noBack    map[string]bool   // server whose sessions are never failed back
	nmDown    int               // start/stop commands that fail as if the node manager were not connected (-1: all)
	absent    map[string]int    // server → Live calls that answer "not connected yet" (a restarted admin)
}

func newCluster(names ...string) *cluster {
	c := &cluster{live: map[string]*domain.LiveState{}, polls: map[string]int{}, noStart: map[string]string{}, neverUp: map[string]bool{}, pid: 100,
		holder: map[string]string{}, noBack: map[string]bool{}, absent: map[string]int{}}
	for _, n := range names {
		c.pid++
		c.live[n] = &domain.LiveState{State: domain.StateRunning, PID: c.pid, Sessions: 50}
	}
	return c
}

func (c *cluster) Command(ctx context.Context, nm string, cmd wire.Command) (wire.CommandResult, error) {
	c.mu.Lock()
	block := c.block
	c.cmds = append(c.cmds, cmd.Action+" "+cmd.Target)
	if c.nmDown != 0 {
		c.nmDown--
		c.mu.Unlock()
		return wire.CommandResult{}, fmt.Errorf("control: node manager %q is not connected: %w", nm, domain.ErrUnavailable)
	}
	if cmd.Action == wire.ActionStop {
		// The gate must have held before the next server goes down.
		for n, l := range c.live {
			if l.State == domain.StateRunning && (l.Unprotected > 0 || l.Sessions == 0) {
				c.violation = fmt.Sprintf("stop %s while %s has %d unprotected and %d sessions", cmd.Target, n, l.Unprotected, l.Sessions)
			}
		}
	}
	c.mu.Unlock()
	if block != nil && cmd.Action == wire.ActionStop {
		select {
		case <-block:
		case <-ctx.Done():
			return wire.CommandResult{}, ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.live[cmd.Target]
	switch cmd.Action {
	case wire.ActionStop:
		// Its sessions fail over to another server, which backs them up at once.
		if l.Sessions > 0 {
			for n, o := range c.live {
				if n != cmd.Target && o.State == domain.StateRunning {
					c.holder[cmd.Target] = n
					c.record(domain.Event{Type: domain.EventFailover, Server: n, Peer: cmd.Target, Sessions: l.Sessions})
					break
				}
			}
		}
		l.State, l.PID, l.Sessions = domain.StateStopped, 0, 0
	case wire.ActionStart:
		if msg := c.noStart[cmd.Target]; msg != "" {
			return wire.CommandResult{ID: cmd.ID, Error: msg}, nil
		}
		if l.State == domain.StateRunning { // as a node manager does: no-op, its pid
			return wire.CommandResult{ID: cmd.ID, OK: true, PID: l.PID}, nil
		}
		c.pid++
		if !c.neverUp[cmd.Target] {
			l.State, l.PID = domain.StateRunning, c.pid
			l.Unprotected = 3 // until failback and re-replication have run
			c.polls[cmd.Target] = 0
		}
	}
	return wire.CommandResult{ID: cmd.ID, OK: true, PID: c.pid}, nil
}

func (c *cluster) Live(name string) (domain.LiveState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.live[name]
	if !ok || c.absent[name] > 0 {
		c.absent[name]--
		return domain.LiveState{}, false
	}
	if l.State == domain.StateRunning {
		l.LastSeen = time.Now().Add(time.Millisecond)
		c.polls[name]++
		if l.Sessions == 0 && c.polls[name] > 5 && !c.noBack[name] { // failback done after a few heartbeats
			l.Sessions, l.Unprotected = 40, 0
			if h := c.holder[name]; h != "" {
				c.record(domain.Event{Type: domain.EventFailback, Server: h, Peer: name, Sessions: 40})
				delete(c.holder, name)
			}
		}
		if c.noBack[name] && c.polls[name] > 5 {
			l.Unprotected = 0 // everything backed up, but the failback never comes
		}
	}
	return *l, true
}

func (c *cluster) record(e domain.Event) {
	e.Cluster = "c1"
	if _, err := c.st.AppendEvent(context.Background(), e); err != nil {
		panic(err)
	}
}

func (c *cluster) commands() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.cmds)
}

type recorder struct{ s *store.Store }

func (r recorder) Record(ctx context.Context, e domain.Event) (domain.Event, error) {
	return r.s.AppendEvent(ctx, e)
}

func setup(t *testing.T, names ...string) (*store.Store, *Roller, *cluster) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateNodeManager(ctx, "test", domain.NodeManager{Name: "nm1", Listen: "127.0.0.1:9740"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateCluster(ctx, "test", domain.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		if _, err := st.CreateServer(ctx, "test", domain.Server{Name: n, Cluster: "c1", Listen: fmt.Sprintf("127.0.0.1:%d", 9741+i), NodeManager: "nm1"}); err != nil {
			t.Fatal(err)
		}
	}
	cl := newCluster(names...)
	cl.st = st
	r, err := New(ctx, Config{DB: st.SQL(), Domain: st, Control: cl, Events: recorder{st}, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return st, r, cl
}

func waitJob(t *testing.T, r *Roller, id int64) Job {
	t.Helper()
	var job Job
	testenv.Eventually(t, 30*time.Second, func() error {
		var err error
		job, err = r.Job(context.Background(), id)
		if err != nil {
			return err
		}
		if job.State == JobRunning {
			return fmt.Errorf("job still running at %s: %+v", job.Current, job.Steps)
		}
		return nil
	})
	return job
}

func eventsOf(t *testing.T, st *store.Store) []domain.Event {
	t.Helper()
	evs, err := st.Events(context.Background(), domain.EventFilter{Cluster: "c1", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(evs, func(a, b domain.Event) int { return int(a.ID - b.ID) })
	return evs
}

func rollingOnly(evs []domain.Event) []domain.Event {
	var out []domain.Event
	for _, e := range evs {
		if strings.HasPrefix(e.Type, "rolling.") {
			out = append(out, e)
		}
	}
	return out
}

func types(evs []domain.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type+" "+e.Server)
	}
	return out
}

// A node manager that is not connected yet (it reconnects after an admin
// restart) is asked again until the step's deadline, not failed at once.
func TestNodeManagerReconnectingIsWaitedFor(t *testing.T) {
	t.Parallel()
	_, r, cl := setup(t, "ms1", "ms2")
	cl.mu.Lock()
	cl.nmDown = 3
	cl.mu.Unlock()
	job, err := r.Start(context.Background(), "c1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if job = waitJob(t, r, job.ID); job.State != JobCompleted || job.Error != "" {
		t.Fatalf("job %+v", job)
	}
	want := []string{"stop ms1", "stop ms1", "stop ms1", "stop ms1", "start ms1", "stop ms2", "start ms2"}
	if got := cl.commands(); !slices.Equal(got, want) {
		t.Fatalf("commands %v, want %v", got, want)
	}
}

func TestRollingRestartInOrderWithGate(t *testing.T) {
	t.Parallel()
	st, r, cl := setup(t, "ms1", "ms2", "ms3")
	job, err := r.Start(context.Background(), "c1", Options{Order: []string{"ms2", "ms3", "ms1"}, Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if job.ID == 0 || job.State != JobRunning || len(job.Steps) != 3 {
		t.Fatalf("job %+v", job)
	}
	job = waitJob(t, r, job.ID)
	if job.State != JobCompleted || job.FinishedAt == nil || job.Error != "" || job.Actor != "alice" {
		t.Fatalf("job %+v", job)
	}
	if !slices.Equal(job.Order, []string{"ms2", "ms3", "ms1"}) {
		t.Fatalf("order %v", job.Order)
	}
	for _, s := range job.Steps {
		if s.State != StepDone || s.PID == 0 || s.SessionsBefore != 50 || s.SessionsAfter == 0 || s.StartedAt == nil || s.FinishedAt == nil {
			t.Fatalf("step %+v", s)
		}
	}
	want := []string{"stop ms2", "start ms2", "stop ms3", "start ms3", "stop ms1", "start ms1"}
	if got := cl.commands(); !slices.Equal(got, want) {
		t.Fatalf("commands %v, want %v", got, want)
	}
	if cl.violation != "" {
		t.Fatalf("gate not respected: %s", cl.violation)
	}
	wantEv := []string{"rolling.started ", "rolling.step ms2", "rolling.step ms3", "rolling.step ms1", "rolling.completed "}
	if got := types(rollingOnly(eventsOf(t, st))); !slices.Equal(got, wantEv) {
		t.Fatalf("events %v, want %v", got, wantEv)
	}
	// The cluster is free again.
	job2, err := r.Start(context.Background(), "c1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if job2 = waitJob(t, r, job2.ID); job2.State != JobCompleted || !slices.Equal(job2.Order, []string{"ms1", "ms2", "ms3"}) {
		t.Fatalf("second job %+v", job2)
	}
}

func TestOneRollingRestartPerCluster(t *testing.T) {
	t.Parallel()
	st, r, cl := setup(t, "ms1", "ms2")
	block := make(chan struct{})
	cl.block = block
	job, err := r.Start(context.Background(), "c1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Start(context.Background(), "c1", Options{})
	if !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("second start: %v, want ErrConflict", err)
	}
	close(block)
	if job = waitJob(t, r, job.ID); job.State != JobCompleted {
		t.Fatalf("job %+v", job)
	}
	n := 0
	for _, e := range eventsOf(t, st) {
		if e.Type == domain.EventRollingStarted {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d rolling.started events, want 1", n)
	}
}

func TestFailedStepStopsJob(t *testing.T) {
	t.Parallel()
	st, r, cl := setup(t, "ms1", "ms2", "ms3")
	cl.noStart["ms2"] = "exec: cannot start"
	job, err := r.Start(context.Background(), "c1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	job = waitJob(t, r, job.ID)
	if job.State != JobFailed || !strings.Contains(job.Error, "cannot start") || job.Current != "ms2" {
		t.Fatalf("job %+v", job)
	}
	if job.Steps[0].State != StepDone || job.Steps[1].State != StepFailed || job.Steps[2].State != StepPending {
		t.Fatalf("steps %+v", job.Steps)
	}
	want := []string{"stop ms1", "start ms1", "stop ms2", "start ms2"}
	if got := cl.commands(); !slices.Equal(got, want) {
		t.Fatalf("commands %v, want %v (ms3 untouched)", got, want)
	}
	evs := rollingOnly(eventsOf(t, st))
	wantEv := []string{"rolling.started ", "rolling.step ms1", "rolling.failed ms2"}
	if got := types(evs); !slices.Equal(got, wantEv) {
		t.Fatalf("events %v, want %v", got, wantEv)
	}
	if !strings.Contains(evs[2].Message, "cannot start") {
		t.Fatalf("failed event message %q", evs[2].Message)
	}
}

func TestStepTimeout(t *testing.T) {
	t.Parallel()
	_, r, cl := setup(t, "ms1", "ms2")
	cl.neverUp["ms1"] = true
	job, err := r.Start(context.Background(), "c1", Options{StepTimeoutSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	job = waitJob(t, r, job.ID)
	if job.State != JobFailed || !strings.Contains(job.Error, "timed out waiting for server running") {
		t.Fatalf("job %+v", job)
	}
	if got := cl.commands(); !slices.Equal(got, []string{"stop ms1", "start ms1"}) {
		t.Fatalf("commands %v", got)
	}
}

func TestGateWaitsForFailback(t *testing.T) {
	t.Parallel()
	_, r, cl := setup(t, "ms1", "ms2")
	cl.noBack["ms1"] = true
	job, err := r.Start(context.Background(), "c1", Options{StepTimeoutSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	job = waitJob(t, r, job.ID)
	if job.State != JobFailed || !strings.Contains(job.Error, "failback to ms1 not finished by ms2") {
		t.Fatalf("job %+v", job)
	}
	if got := cl.commands(); !slices.Equal(got, []string{"stop ms1", "start ms1"}) {
		t.Fatalf("commands %v: ms2 must not be stopped before ms1's failback", got)
	}
}

func TestSilentHolderPassedAfterGrace(t *testing.T) {
	t.Parallel()
	st, _, cl := setup(t, "ms1", "ms2")
	cl.noBack["ms1"] = true
	r, err := New(context.Background(), Config{DB: st.SQL(), Domain: st, Control: cl, Events: recorder{st}, PollInterval: 5 * time.Millisecond, FailbackGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	job, err := r.Start(context.Background(), "c1", Options{Order: []string{"ms1"}, StepTimeoutSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	job = waitJob(t, r, job.ID)
	if job.State != JobCompleted || !strings.Contains(job.Steps[0].Note, "no failback reported by ms2") {
		t.Fatalf("job %+v", job)
	}
}

func TestStartValidation(t *testing.T) {
	t.Parallel()
	_, r, _ := setup(t, "ms1", "ms2")
	ctx := context.Background()
	var inv *domain.InvalidError
	for _, tc := range []struct {
		opts  Options
		field string
	}{
		{Options{Order: []string{"ms1", "nope"}}, "order"},
		{Options{Order: []string{"ms1", "ms1"}}, "order"},
		{Options{StepTimeoutSeconds: -1}, "step_timeout_seconds"},
	} {
		if _, err := r.Start(ctx, "c1", tc.opts); !errors.As(err, &inv) || inv.Field != tc.field {
			t.Errorf("%+v: %v, want invalid %s", tc.opts, err, tc.field)
		}
	}
	if _, err := r.Start(ctx, "nope", Options{}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown cluster: %v", err)
	}
	if _, err := r.Job(ctx, 999); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
}

// restarted returns a Roller as a new admin process on the same database
// builds it: it resumes the jobs left running.
func restarted(t *testing.T, st *store.Store, cl *cluster) *Roller {
	t.Helper()
	r, err := New(context.Background(), Config{DB: st.SQL(), Domain: st, Control: cl, Events: recorder{st}, PollInterval: 5 * time.Millisecond,
		FailbackGrace: 2 * time.Second, ReconnectGrace: 300 * time.Millisecond, StartRetry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// leftRunning stores a running job of c1 as an admin process killed
// during its step `current` leaves it: the steps before are done, that
// one is in state `state` (its server ran as pidBefore before the step),
// and the newest event is its mark.
func leftRunning(t *testing.T, st *store.Store, r *Roller, order []string, current, state string, pidBefore int) Job {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	job := Job{Type: TypeRollingRestart, Cluster: "c1", State: JobRunning, Actor: "alice", StepTimeoutSeconds: 3, CreatedAt: now, UpdatedAt: now}
	phase := StepDone
	for _, n := range order {
		s := Step{Server: n, State: phase}
		if n == current {
			s.State, s.PIDBefore, s.SessionsBefore, s.StartedAt = state, pidBefore, 50, &now
			phase = StepPending
		} else if phase == StepDone {
			s.PID, s.StartedAt, s.FinishedAt = 500, &now, &now
		}
		job.Steps = append(job.Steps, s)
	}
	job, err := r.jobs.create(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	job.Current = current
	if evs := eventsOf(t, st); len(evs) > 0 {
		job.eventMark = evs[len(evs)-1].ID
	}
	if err := r.jobs.update(ctx, job); err != nil {
		t.Fatal(err)
	}
	return job
}

// TestResumeAfterAdminKilled: a job the admin process left running (it was
// SIGKILLed in the middle of a step) is resumed by the next one from its
// persisted step: the server is brought back, the gate (failback included)
// is checked again, and the remaining servers follow in order.
func TestResumeAfterAdminKilled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		state string
		// what the killed admin had done to ms2 already
		stopped, restarted bool
		noBack             bool   // ms1 never reports the failback
		note               string // in ms2's step note
		want               []string
	}{
		{name: "stop done", state: StepStopping, stopped: true,
			want: []string{"start ms2", "stop ms3", "start ms3"}},
		// The failover before the kill is found from the step's mark: the
		// gate waits for its failback (here in vain, for the grace).
		{name: "failback never reported", state: StepStarting, stopped: true, noBack: true, note: "no failback reported by ms1",
			want: []string{"start ms2", "stop ms3", "start ms3"}},
		{name: "stop never sent", state: StepStopping,
			want: []string{"stop ms2", "start ms2", "stop ms3", "start ms3"}},
		{name: "start not sent", state: StepStarting, stopped: true,
			want: []string{"start ms2", "stop ms3", "start ms3"}},
		{name: "waiting for the gate", state: StepWaiting, stopped: true, restarted: true,
			want: []string{"stop ms3", "start ms3"}},
		{name: "between steps", state: StepPending,
			want: []string{"stop ms2", "start ms2", "stop ms3", "start ms3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, r, cl := setup(t, "ms1", "ms2", "ms3")
			pidBefore := cl.live["ms2"].PID
			job := leftRunning(t, st, r, []string{"ms1", "ms2", "ms3"}, "ms2", tc.state, pidBefore)
			if tc.stopped { // its sessions failed over to ms1 after the step's mark
				cl.live["ms2"].State, cl.live["ms2"].PID, cl.live["ms2"].Sessions = domain.StateStopped, 0, 0
				cl.holder["ms2"] = "ms1"
				cl.record(domain.Event{Type: domain.EventFailover, Server: "ms1", Peer: "ms2", Sessions: 50})
			}
			if tc.restarted { // a new process, failback not finished
				cl.pid++
				cl.live["ms2"].State, cl.live["ms2"].PID, cl.live["ms2"].Unprotected = domain.StateRunning, cl.pid, 3
			}
			cl.noBack["ms2"] = tc.noBack
			for _, n := range []string{"ms1", "ms2", "ms3"} {
				cl.absent[n] = 3 // not reconnected to the new admin yet
			}
			r2 := restarted(t, st, cl)
			got := waitJob(t, r2, job.ID)
			if got.State != JobCompleted || got.Resumes != 1 || got.Step != 3 || got.Error != "" {
				t.Fatalf("job %+v", got)
			}
			for _, s := range got.Steps {
				if s.State != StepDone {
					t.Fatalf("step %+v", s)
				}
			}
			if s := got.Steps[1]; (tc.state != StepPending && !strings.Contains(s.Note, "resumed after an admin restart")) || !strings.Contains(s.Note, tc.note) ||
				s.PID == pidBefore || s.PID == 0 {
				t.Fatalf("ms2's step %+v (pid before %d)", s, pidBefore)
			}
			if cmds := cl.commands(); !slices.Equal(cmds, tc.want) {
				t.Fatalf("commands %v, want %v", cmds, tc.want)
			}
			// (Without the failback, ms2 never gets sessions back in this fake.)
			if cl.violation != "" && !tc.noBack {
				t.Fatalf("gate not respected: %s", cl.violation)
			}
			if h := cl.holder["ms2"]; h != "" && !tc.noBack {
				t.Fatalf("ms3 stopped before %s failed ms2's sessions back", h)
			}
			wantEv := []string{"rolling.resumed ms2", "rolling.step ms2", "rolling.step ms3", "rolling.completed "}
			evs := rollingOnly(eventsOf(t, st))
			if got := types(evs); !slices.Equal(got, wantEv) {
				t.Fatalf("events %v, want %v", got, wantEv)
			}
			if !strings.Contains(evs[0].Message, "step 2 of 3 (ms2, "+tc.state+")") {
				t.Fatalf("resumed event %q", evs[0].Message)
			}
		})
	}
}

// TestResumeImpossible: a job that cannot go on fails with the reason, and
// the server it had stopped runs again when its node manager answers.
func TestResumeImpossible(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		prepare  func(t *testing.T, st *store.Store, cl *cluster)
		errs     []string // in the job's error
		wantCmds []string
		wantEv   []string
		ms2      string // ms2's state at the end
	}{
		{name: "remaining server deleted",
			prepare: func(t *testing.T, st *store.Store, cl *cluster) {
				if err := st.DeleteServer(context.Background(), "test", "ms3"); err != nil {
					t.Fatal(err)
				}
			},
			errs:     []string{`server "ms3" is no longer in cluster "c1"`, "ms2 running again (pid"},
			wantCmds: []string{"start ms2"},
			wantEv:   []string{"rolling.failed ms2"},
			ms2:      domain.StateRunning},
		{name: "its own server deleted",
			prepare: func(t *testing.T, st *store.Store, cl *cluster) {
				if err := st.DeleteServer(context.Background(), "test", "ms2"); err != nil {
					t.Fatal(err)
				}
			},
			errs:     []string{`server "ms2" is no longer in cluster "c1"`},
			wantCmds: []string{},
			wantEv:   []string{"rolling.failed ms2"},
			ms2:      domain.StateStopped},
		{name: "node manager gone",
			prepare: func(t *testing.T, st *store.Store, cl *cluster) { cl.nmDown = -1 },
			errs:    []string{"timed out waiting for ms2 running again", "not connected"},
			wantEv:  []string{"rolling.resumed ms2", "rolling.failed ms2"},
			ms2:     domain.StateStopped},
		{name: "node manager back late",
			prepare:  func(t *testing.T, st *store.Store, cl *cluster) { cl.nmDown = 5 },
			wantCmds: []string{"start ms2", "start ms2", "start ms2", "start ms2", "start ms2", "start ms2", "stop ms3", "start ms3"},
			wantEv:   []string{"rolling.resumed ms2", "rolling.step ms2", "rolling.step ms3", "rolling.completed "},
			ms2:      domain.StateRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, r, cl := setup(t, "ms1", "ms2", "ms3")
			job := leftRunning(t, st, r, []string{"ms1", "ms2", "ms3"}, "ms2", StepStarting, cl.live["ms2"].PID)
			cl.live["ms2"].State, cl.live["ms2"].PID, cl.live["ms2"].Sessions = domain.StateStopped, 0, 0
			tc.prepare(t, st, cl)
			r2 := restarted(t, st, cl)
			got := waitJob(t, r2, job.ID)
			if len(tc.errs) == 0 {
				if got.State != JobCompleted {
					t.Fatalf("job %+v", got)
				}
			} else {
				if got.State != JobFailed || got.Step != 2 || got.Steps[1].State != StepFailed || got.Steps[2].State != StepPending {
					t.Fatalf("job %+v", got)
				}
				for _, e := range tc.errs {
					if !strings.Contains(got.Error, e) {
						t.Fatalf("job error %q, want %q in it", got.Error, e)
					}
				}
			}
			cmds := cl.commands()
			if tc.wantCmds != nil && !slices.Equal(cmds, tc.wantCmds) {
				t.Fatalf("commands %v, want %v", cmds, tc.wantCmds)
			}
			for _, c := range cmds {
				if strings.HasPrefix(c, "stop") && got.State == JobFailed {
					t.Fatalf("commands %v: nothing may be stopped by a job that cannot resume", cmds)
				}
			}
			if l, _ := cl.Live("ms2"); l.State != tc.ms2 {
				t.Fatalf("ms2 is %s, want %s", l.State, tc.ms2)
			}
			evs := rollingOnly(eventsOf(t, st))
			if got := types(evs); !slices.Equal(got, tc.wantEv) {
				t.Fatalf("events %v, want %v", got, tc.wantEv)
			}
			if last := evs[len(evs)-1]; len(tc.errs) > 0 && !strings.Contains(last.Message, tc.errs[0]) {
				t.Fatalf("failed event %q, want %q in it", last.Message, tc.errs[0])
			}
			// The cluster is free again either way.
			if _, err := r2.Start(context.Background(), "c1", Options{Order: []string{"ms1"}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestShutdownLeavesJobToResume: an admin shutdown (Close) in the middle of
// a job leaves it running; the next Roller on the database resumes it, and
// the cluster stays taken meanwhile.
func TestShutdownLeavesJobToResume(t *testing.T) {
	t.Parallel()
	st, r, cl := setup(t, "ms1", "ms2")
	cl.block = make(chan struct{}) // the first stop hangs until the shutdown
	job, err := r.Start(context.Background(), "c1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if cmds := cl.commands(); len(cmds) == 0 {
			return errors.New("no stop sent yet")
		}
		return nil
	})
	r.Close()
	got, err := r.Job(context.Background(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != JobRunning || got.Current != "ms1" || got.Step != 1 || got.Steps[0].State != StepStopping || got.Steps[0].PIDBefore == 0 {
		t.Fatalf("job after the shutdown %+v", got)
	}
	cl.mu.Lock()
	cl.block = nil
	cl.mu.Unlock()
	r2 := restarted(t, st, cl)
	if _, err := r2.Start(context.Background(), "c1", Options{}); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("start while the job resumes: %v, want ErrConflict", err)
	}
	got = waitJob(t, r2, job.ID)
	if got.State != JobCompleted || got.Resumes != 1 {
		t.Fatalf("job %+v", got)
	}
	// The hung stop never happened: ms1 is restarted by the resumed step.
	want := []string{"stop ms1", "stop ms1", "start ms1", "stop ms2", "start ms2"}
	if cmds := cl.commands(); !slices.Equal(cmds, want) {
		t.Fatalf("commands %v, want %v", cmds, want)
	}
	wantEv := []string{"rolling.started ", "rolling.resumed ms1", "rolling.step ms1", "rolling.step ms2", "rolling.completed "}
	if got := types(rollingOnly(eventsOf(t, st))); !slices.Equal(got, wantEv) {
		t.Fatalf("events %v, want %v", got, wantEv)
	}
}
