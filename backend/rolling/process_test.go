package rolling_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/rolling"
	"tandem/backend/store"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

const nodeToken = "rolling-test-node-token-0123456789"

type recorder struct{ s *store.Store }

func (r recorder) Record(ctx context.Context, e domain.Event) (domain.Event, error) {
	return r.s.AppendEvent(ctx, e)
}

// TestRollingRestartRealProcesses restarts three real `tandem server`
// processes, supervised by a real `tandem nodemanager`, behind a real
// `tandem webserver`, through the real control plane, under load.
func TestRollingRestartRealProcesses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	plane := control.New(control.Config{Store: st, Recorder: recorder{st}, NodeToken: nodeToken})
	planeDone := make(chan struct{})
	go func() { defer close(planeDone); _ = plane.Run(ctx) }()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/nodes/connect", plane.ServeNode)
	ts := httptest.NewServer(mux)
	defer func() { cancel(); <-planeDone; ts.Close() }()

	names := []string{"ms1", "ms2", "ms3"}
	addrs := map[string]string{}
	nmAddr, wsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateNodeManager(ctx, "test", domain.NodeManager{Name: "nm1", Listen: nmAddr}))
	must(st.CreateCluster(ctx, "test", domain.Cluster{Name: "c1", HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 1000}))
	for _, n := range names {
		addrs[n] = testenv.FreeAddr(t)
		must(st.CreateServer(ctx, "test", domain.Server{Name: n, Cluster: "c1", Listen: addrs[n], NodeManager: "nm1"}))
	}
	must(st.CreateWebServer(ctx, "test", domain.WebServer{Name: "ws1", Cluster: "c1", Listen: wsAddr}))

	roller, err := rolling.New(ctx, rolling.Config{DB: st.SQL(), Domain: st, Control: plane, Events: recorder{st}, PollInterval: 50 * time.Millisecond, FailbackGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer roller.Close()

	env := []string{"TANDEM_NODE_TOKEN=" + nodeToken}
	nmDir := t.TempDir()
	startNodeManager(t, env, ts.URL, nmDir, nmAddr, names)
	testenv.Eventually(t, 30*time.Second, func() error {
		if !plane.Connected("nm1") {
			return errors.New("node manager not connected")
		}
		if ps := plane.Processes("nm1"); len(ps) != len(names) {
			return fmt.Errorf("node manager has processes %+v", ps)
		}
		return nil
	})
	for _, n := range names {
		res, err := plane.Command(ctx, "nm1", cmd("start", n))
		if err != nil || !res.OK {
			t.Fatalf("start %s: %+v %v", n, res, err)
		}
	}
	testenv.Start(t, "ws1", env, "webserver", "--name", "ws1", "--admin", ts.URL, "--data-dir", t.TempDir())
	pids := map[string]int{}
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, n := range names {
			l, ok := plane.Live(n)
			if !ok || l.State != domain.StateRunning {
				return fmt.Errorf("%s: %+v", n, l)
			}
			pids[n] = l.PID
		}
		return nil
	})
	testenv.WaitHTTP(t, "http://"+wsAddr+"/_tandem/healthz", 30*time.Second)

	l, stopLoad := startLoad(t, "http://"+wsAddr, 60)
	defer stopLoad()

	job, err := roller.Start(ctx, "c1", rolling.Options{StepTimeoutSeconds: 60, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roller.Start(ctx, "c1", rolling.Options{}); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("second rolling restart: %v, want ErrConflict", err)
	}
	job = waitJob(t, roller.Job, job.ID)
	if job.State != rolling.JobCompleted {
		t.Fatalf("job %+v", job)
	}
	for _, s := range job.Steps {
		if s.PID == pids[s.Server] || s.State != rolling.StepDone {
			t.Fatalf("step %+v (old pid %d)", s, pids[s.Server])
		}
	}
	evs := rollingEvents(t, st, 0)
	want := []string{"rolling.started ", "rolling.step ms1", "rolling.step ms2", "rolling.step ms3", "rolling.completed "}
	if got := testenv.EventNames(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	l.Check(t, "rolling restart")

	// A server that cannot start fails its step; the
	// job stops there, the rest stays untouched and keeps serving.
	res, err := plane.Command(ctx, "nm1", cmd("stop", "ms2"))
	if err != nil || !res.OK {
		t.Fatalf("stop ms2: %+v %v", res, err)
	}
	// Its data folder becomes a file: the node manager cannot start it.
	msDir := filepath.Join(nmDir, "ms2")
	if err := os.Rename(msDir, msDir+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msDir, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := plane.Live("ms3")
	job, err = roller.Start(ctx, "c1", rolling.Options{StepTimeoutSeconds: 20})
	if err != nil {
		t.Fatal(err)
	}
	job = waitJob(t, roller.Job, job.ID)
	if job.State != rolling.JobFailed || job.Current != "ms2" || !strings.Contains(job.Error, "ms2") {
		t.Fatalf("job %+v, want failed at ms2", job)
	}
	if job.Steps[2].State != rolling.StepPending {
		t.Fatalf("ms3's step %+v, want pending", job.Steps[2])
	}
	want = []string{"rolling.started ", "rolling.step ms1", "rolling.failed ms2"}
	if got := testenv.EventNames(rollingEvents(t, st, evs[len(evs)-1].ID)); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if after, _ := plane.Live("ms3"); after.PID != before.PID || after.State != domain.StateRunning {
		t.Fatalf("ms3 touched: before %+v after %+v", before, after)
	}
	l.Check(t, "failed rolling restart")
	stopLoad()
	l.Check(t, "end")
}

// startNodeManager runs `tandem nodemanager` nm1 for the servers names
// and prints their logs if the test fails.
func startNodeManager(t *testing.T, env []string, adminURL, dir, listen string, names []string) *testenv.Proc {
	t.Helper()
	p := testenv.Start(t, "nm1", env, "nodemanager", "--name", "nm1", "--admin", adminURL, "--data-dir", dir,
		"--listen", listen, "--stop-processes-on-exit", "--restart-delay", "100ms")
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range names {
				b, _ := os.ReadFile(filepath.Join(dir, n, n+".log"))
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("---- %s.log ----\n%s", n, b)
			}
		}
	})
	return p
}

// startLoad creates n counter sessions through the web server at url and
// drives them with 6 workers until the returned stop (idempotent) is called.
func startLoad(t *testing.T, url string, n int) (*testenv.CounterLoad, func()) {
	t.Helper()
	l := testenv.NewCounterLoad(url, n)
	for i := range n {
		l.Hit(i)
	}
	l.Check(t, "sessions created")
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() { l.Run(6, stop); close(loadDone) }()
	var once sync.Once
	return l, func() { once.Do(func() { close(stop) }); <-loadDone }
}

func cmd(action, target string) wire.Command { return wire.Command{Action: action, Target: target} }

// waitJob polls get (a Roller's Job, or GET /api/v1/jobs/{id}) until
// the job no longer runs.
func waitJob(t *testing.T, get func(context.Context, int64) (rolling.Job, error), id int64) rolling.Job {
	t.Helper()
	var job rolling.Job
	testenv.Eventually(t, 120*time.Second, func() error {
		var err error
		if job, err = get(context.Background(), id); err != nil {
			return err
		}
		if job.State == rolling.JobRunning {
			return fmt.Errorf("job running at %s: %+v", job.Current, job.Steps)
		}
		return nil
	})
	return job
}

func rollingEvents(t *testing.T, st *store.Store, after int64) []domain.Event {
	t.Helper()
	evs, err := st.Events(context.Background(), domain.EventFilter{Cluster: "c1", AfterID: after, Limit: 500,
		Types: []string{domain.EventRollingStarted, domain.EventRollingStep, domain.EventRollingCompleted, domain.EventRollingFailed}})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(evs, func(a, b domain.Event) int { return int(a.ID - b.ID) })
	return evs
}
