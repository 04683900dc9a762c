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
}

func newCluster(names ...string) *cluster {
	c := &cluster{live: map[string]*domain.LiveState{}, polls: map[string]int{}, noStart: map[string]string{}, neverUp: map[string]bool{}, pid: 100,
		holder: map[string]string{}, noBack: map[string]bool{}}
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
	if !ok {
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

func TestInterruptedJobMarkedFailed(t *testing.T) {
	t.Parallel()
	st, r, cl := setup(t, "ms1")
	cl.block = make(chan struct{}) // never released: the job hangs in its first stop
	job, err := r.Start(context.Background(), "c1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		j, err := r.Job(context.Background(), job.ID)
		if err != nil || j.Steps[0].State != StepStopping {
			return fmt.Errorf("job %+v %v", j, err)
		}
		return nil
	})
	// A new admin process (a new Roller on the same database) finds it.
	r2, err := New(context.Background(), Config{DB: st.SQL(), Domain: st, Control: cl, Events: recorder{st}})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got, err := r2.Job(context.Background(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != JobFailed || !strings.Contains(got.Error, "interrupted") {
		t.Fatalf("job %+v", got)
	}
	if _, err := r2.Start(context.Background(), "c1", Options{}); errors.Is(err, domain.ErrConflict) {
		t.Fatal("an interrupted job must not block the cluster")
	}
	r.Close()
}
