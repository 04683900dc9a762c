package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/client"
	"tandem/backend/demo"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// freeBase is demo.FreePortBase for a test.
func freeBase(t *testing.T) int {
	t.Helper()
	base, err := demo.FreePortBase()
	if err != nil {
		t.Fatal(err)
	}
	return base
}

func waitJob(t *testing.T, api *client.Client, id int64, timeout time.Duration) client.Job {
	t.Helper()
	var j client.Job
	testenv.Eventually(t, timeout, func() error {
		var err error
		if j, err = api.Job(context.Background(), id); err != nil {
			return err
		}
		if j.State == "running" {
			return fmt.Errorf("job running: %+v", j.Steps)
		}
		return nil
	})
	return j
}

func rollingEvents(t *testing.T, api *client.Client, after int64) []domain.Event {
	t.Helper()
	evs, err := api.Events(context.Background(), client.EventQuery{Cluster: demo.ClusterName, AfterID: after, Limit: 1000,
		Types: []string{domain.EventRollingStarted, domain.EventRollingStep, domain.EventRollingCompleted, domain.EventRollingFailed}})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(evs, func(x, y domain.Event) int { return int(x.ID - y.ID) })
	return evs
}

func servers(t *testing.T, api *client.Client) map[string]client.TopologyServer {
	t.Helper()
	topo, err := api.Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]client.TopologyServer{}
	for _, c := range topo.Clusters {
		for _, s := range c.Servers {
			out[s.Name] = s
		}
	}
	return out
}

// followEvents follows the live event stream (WebSocket) and collects the
// rolling events of the demo cluster until ctx ends.
type eventStream struct {
	mu   sync.Mutex
	evs  []domain.Event
	done chan struct{}
	err  error
}

func followEvents(ctx context.Context, t *testing.T, api *client.Client, adminURL, token string) *eventStream {
	t.Helper()
	// Resume from the newest stored event: an event recorded while the
	// stream is being opened is replayed, not missed.
	newest, err := api.Events(ctx, client.EventQuery{Limit: 1})
	if err != nil || len(newest) == 0 {
		t.Fatalf("newest event: %v %v", newest, err)
	}
	u := "ws" + strings.TrimPrefix(adminURL, "http") + "/api/v1/events/stream?cluster=" + demo.ClusterName +
		"&type=rolling.started,rolling.step,rolling.completed,rolling.failed&since=" + strconv.FormatInt(newest[0].ID, 10)
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatalf("event stream: %v", err)
	}
	s := &eventStream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer c.CloseNow()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				return
			}
			var e domain.Event
			if err := json.Unmarshal(b, &e); err != nil || e.Type == "heartbeat" {
				continue
			}
			s.mu.Lock()
			s.evs = append(s.evs, e)
			s.mu.Unlock()
		}
	}()
	return s
}

// wait returns the events received once there are at least n.
func (s *eventStream) wait(t *testing.T, n int) []domain.Event {
	t.Helper()
	var evs []domain.Event
	testenv.Eventually(t, 30*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		evs = slices.Clone(s.evs)
		if len(evs) < n {
			return fmt.Errorf("%d of %d events on the stream (err %v): %q", len(evs), n, s.err, testenv.EventNames(evs))
		}
		return nil
	})
	return evs
}

// demoPIDs lists processes whose command line mentions dir (every process
// of the demo has its data folder under it).
func demoPIDs(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte(dir)) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if bytes.Contains(stat, []byte(") Z ")) {
			continue
		}
		out = append(out, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
	}
	return out
}

func TestDemoRollingRestartKeepsEverySession(t *testing.T) {
	dir := t.TempDir()
	base := freeBase(t)
	ports := demo.PortsFor(base)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"admin/admin.log", "nm1/nm1.log", "nm1/ws1/ws1.log", "nm1/ms1/ms1.log", "nm1/ms2/ms2.log", "nm1/ms3/ms3.log", "nm1/ms4/ms4.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, n))
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("---- %s ----\n%s", n, b)
			}
		}
	})
	p := testenv.Start(t, "demo", nil, "demo", "--data-dir", dir, "--port-base", strconv.Itoa(base))
	waitReady(t, p)
	out, _ := os.ReadFile(p.LogPath)
	tokFile := filepath.Join(dir, demo.AdminTokenFile)
	for _, want := range []string{fmt.Sprintf("http://127.0.0.1:%d/", ports.Admin), fmt.Sprintf("http://127.0.0.1:%d/", ports.WebServer), tokFile} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	if st, err := os.Stat(tokFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", st, err)
	}
	tok, _ := os.ReadFile(tokFile)
	token := strings.TrimSpace(string(tok))
	api := client.New(fmt.Sprintf("http://127.0.0.1:%d", ports.Admin), token)
	if bytes.Contains(out, []byte(token)) {
		t.Fatal("the admin token was printed")
	}
	srv := servers(t, api)
	for _, n := range demo.ServerNames {
		if srv[n].State != domain.StateRunning || srv[n].PID == 0 {
			t.Fatalf("server %s: %+v", n, srv[n])
		}
	}
	// The node manager reports its machine; the servers it runs are on it.
	topo, err := api.Topology(context.Background())
	if err != nil || len(topo.NodeManagers) != 1 {
		t.Fatalf("topology: %+v %v", topo.NodeManagers, err)
	}
	hi := topo.NodeManagers[0].HostInfo
	if hi == nil || hi.Name == "" || hi.CPUs < 1 || hi.MemoryBytes == 0 {
		t.Fatalf("node manager host: %+v", hi)
	}
	for _, n := range demo.ServerNames {
		if srv[n].Host != hi.Name {
			t.Fatalf("server %s on host %q, its node manager on %q", n, srv[n].Host, hi.Name)
		}
	}

	// 400 new users right after start, a few at a time: every running
	// server gets some of them (the web server spreads new sessions from
	// its first request, on the admin server's view until its own probe).
	const sessions = 400
	l := testenv.NewCounterLoad(fmt.Sprintf("http://127.0.0.1:%d", ports.WebServer), sessions)
	var created sync.WaitGroup
	for w := range 8 {
		created.Add(1)
		go func() {
			defer created.Done()
			for i := w; i < sessions; i += 8 {
				l.Hit(i)
			}
		}()
	}
	created.Wait()
	l.Check(t, "sessions created")
	spread := l.Servers()
	least, most := sessions, 0
	for _, n := range demo.ServerNames {
		least, most = min(least, spread[n]), max(most, spread[n])
	}
	t.Logf("spread of %d new users: %v (busiest/least busy %.2f)", sessions, spread, float64(most)/float64(max(least, 1)))
	if least == 0 {
		t.Fatalf("a running server got no new user: %v", spread)
	}

	frozenServerUnderLoad(t, l, api, fmt.Sprintf("http://127.0.0.1:%d", ports.WebServer))

	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() { l.Run(8, stop); close(loadDone) }()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-loadDone
	}
	t.Cleanup(stopLoad)

	// Phase 1: a rolling restart under load keeps every session.
	ctx := context.Background()
	sctx, stopStream := context.WithCancel(ctx)
	stream := followEvents(sctx, t, api, fmt.Sprintf("http://127.0.0.1:%d", ports.Admin), token)
	t.Cleanup(func() { stopStream(); <-stream.done })
	j, err := api.RollingRestart(ctx, demo.ClusterName, 60*time.Second)
	if err != nil {
		t.Fatalf("rolling restart: %v", err)
	}
	if _, err := api.RollingRestart(ctx, demo.ClusterName, 0); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("second rolling restart while one runs: %v, want 409", err)
	}
	j = waitJob(t, api, j.ID, 150*time.Second)
	if j.State != "completed" {
		t.Fatalf("job %+v", j)
	}
	after := servers(t, api)
	for _, n := range demo.ServerNames {
		if after[n].PID == srv[n].PID || after[n].State != domain.StateRunning {
			t.Fatalf("%s not restarted: before %+v after %+v", n, srv[n], after[n])
		}
	}
	evs := rollingEvents(t, api, 0)
	got := testenv.EventNames(evs)
	want := []string{"rolling.started ", "rolling.step ms1", "rolling.step ms2", "rolling.step ms3", "rolling.step ms4", "rolling.completed "}
	if !slices.Equal(got, want) {
		t.Fatalf("rolling events %q, want %q", got, want)
	}
	// The live stream delivered the same events, in the same order.
	live := stream.wait(t, len(want))
	if got := testenv.EventNames(live); !slices.Equal(got, want) {
		t.Fatalf("streamed rolling events %q, want %q", got, want)
	}
	for i := range live {
		if live[i].ID != evs[i].ID {
			t.Fatalf("streamed event %d has id %d, stored %d", i, live[i].ID, evs[i].ID)
		}
	}
	l.Check(t, "rolling restart")

	// Phase 2: a server that cannot start fails its step; the job stops
	// there and the others keep serving.
	if _, err := api.StopServer(ctx, "ms3"); err != nil {
		t.Fatalf("stop ms3: %v", err)
	}
	// Its data folder becomes a file: the node manager cannot start it.
	msDir := filepath.Join(dir, demo.NodeManagerName, "ms3")
	if err := os.Rename(msDir, msDir+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msDir, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	lastID := evs[len(evs)-1].ID
	before := servers(t, api)
	if j, err = api.RollingRestart(ctx, demo.ClusterName, 20*time.Second); err != nil {
		t.Fatalf("rolling restart: %v", err)
	}
	j = waitJob(t, api, j.ID, 150*time.Second)
	if j.State != "failed" || !strings.Contains(j.Error, "ms3") {
		t.Fatalf("job %+v, want failed at ms3", j)
	}
	got = testenv.EventNames(rollingEvents(t, api, lastID))
	want = []string{"rolling.started ", "rolling.step ms1", "rolling.step ms2", "rolling.failed ms3"}
	if !slices.Equal(got, want) {
		t.Fatalf("rolling events %q, want %q", got, want)
	}
	if now := servers(t, api); now["ms4"].PID != before["ms4"].PID || now["ms4"].State != domain.StateRunning {
		t.Fatalf("ms4 touched: before %+v after %+v", before["ms4"], now["ms4"])
	}
	l.Check(t, "failed rolling restart")
	stopLoad()
	l.Check(t, "end")

	// Ctrl-C: everything stops, nothing is left.
	if left := demoPIDs(dir); len(left) < 6 {
		t.Fatalf("expected the demo's processes to be found before stopping, got %q", left)
	}
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("demo did not exit within 90 s of SIGINT")
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("demo exit code %d", code)
	}
	if left := demoPIDs(dir); len(left) > 0 {
		t.Fatalf("processes left after Ctrl-C: %q", left)
	}

	// A second run reuses the data: same token, nothing defined twice.
	if err := os.Remove(msDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(msDir+".moved", msDir); err != nil {
		t.Fatal(err)
	}
	p2 := testenv.Start(t, "demo-again", nil, "demo", "--data-dir", dir, "--port-base", strconv.Itoa(base))
	waitReady(t, p2)
	if tok2, _ := os.ReadFile(tokFile); string(tok2) != string(tok) {
		t.Fatal("the second run changed the admin token")
	}
	if list, err := api.Servers(ctx, demo.ClusterName); err != nil || len(list) != len(demo.ServerNames) {
		t.Fatalf("servers after the second start: %v %v", list, err)
	}
	if err := p2.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p2.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("second demo did not exit within 90 s of SIGTERM")
	}
	if left := demoPIDs(dir); len(left) > 0 {
		t.Fatalf("processes left after SIGTERM: %q", left)
	}
}

func waitReady(t *testing.T, p *testenv.Proc) {
	t.Helper()
	testenv.Eventually(t, 120*time.Second, func() error {
		select {
		case <-p.Done():
			b, _ := os.ReadFile(p.LogPath)
			t.Fatalf("demo exited early:\n%s", b)
		default:
		}
		b, _ := os.ReadFile(p.LogPath)
		if !bytes.Contains(b, []byte("Press Ctrl-C")) {
			return fmt.Errorf("demo not ready")
		}
		return nil
	})
}

// TestDemoFailedStartLeavesNothing: the admin server cannot start (its
// port is taken): the demo says so, exits non-zero, and stops what it
// started.
func TestDemoFailedStartLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	base := freeBase(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := testenv.Start(t, "demo", nil, "demo", "--data-dir", dir, "--port-base", strconv.Itoa(base))
	select {
	case <-p.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("demo did not give up on an admin server that cannot start")
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	b, _ := os.ReadFile(p.LogPath)
	if !bytes.Contains(b, []byte("admin failed")) {
		t.Fatalf("no reason given:\n%s", b)
	}
	if left := demoPIDs(dir); len(left) > 0 {
		t.Fatalf("processes left: %q", left)
	}
}

// frozenServerUnderLoad: SIGSTOP the server that serves the most sessions
// for 6 s while 200 users click: no request fails, none is lost or goes
// back. After SIGCONT, the users' cookies from before the freeze (naming
// the frozen server as primary) are replayed: nothing stale is served.
func frozenServerUnderLoad(t *testing.T, l *testenv.CounterLoad, api *client.Client, wsURL string) {
	t.Helper()
	spread := l.Servers()
	busiest := demo.ServerNames[0]
	for _, n := range demo.ServerNames {
		if spread[n] > spread[busiest] {
			busiest = n
		}
	}
	pid := servers(t, api)[busiest].PID
	if pid == 0 {
		t.Fatalf("no pid for %s", busiest)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.Run(200, stop); close(done) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	l.Check(t, "before the freeze")
	// A few rounds of clicks before the freeze.
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := l.Requests(); n < 3*len(spread) {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	old := l.Cookies()
	_ = l.Worst()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	// 6 s frozen, waiting on the load's own progress, not on a sleep.
	before := l.Requests()
	testenv.Eventually(t, 60*time.Second, func() error {
		if time.Since(frozen) < 6*time.Second {
			return fmt.Errorf("frozen for %s", time.Since(frozen))
		}
		return nil
	})
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s frozen for %s: %d requests answered meanwhile, worst request %s", busiest, time.Since(frozen).Round(time.Millisecond), l.Requests()-before, l.Worst().Round(time.Millisecond))
	l.Check(t, "frozen "+busiest)
	if resp, err := http.Get(wsURL + "/_tandem/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "tandem_webserver_failovers_total") {
				t.Log(line)
			}
		}
	}
	close(stop)
	<-done
	// The woken server is back in the cluster before the replay.
	testenv.Eventually(t, 30*time.Second, func() error {
		if s := servers(t, api)[busiest]; s.State != domain.StateRunning {
			return fmt.Errorf("%s %s", busiest, s.State)
		}
		return nil
	})
	l.SetCookies(old)
	for i := range old {
		l.Hit(i)
	}
	l.Check(t, "old cookies replayed after SIGCONT")
}
