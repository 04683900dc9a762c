package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/faults"
	"tandem/backend/route"
	"tandem/backend/sampleapp"
	tsession "tandem/backend/session"
)

var (
	flagDuration = flag.Duration("faults.duration", 40*time.Second, "how long the fault harness injects faults (bench/faults runs it longer)")
	flagSeed     = flag.Uint64("faults.seed", 0, "random seed of the nemesis schedule (0: from the clock)")
	flagNemeses  = flag.String("faults.nemeses", "", "comma-separated nemeses to run (default all): kill-server, pause-server, cut-route, kill-admin-during-push, kill-admin-during-rolling-restart")
	flagReport   = flag.String("faults.report", "", "write the result as JSON to this file")
)

const cookieName = "JSESSIONID"

// webClient drives sessions through the web server, one request per
// session at a time, and records every request in the history.
type webClient struct {
	base string
	hc   *http.Client
	h    *faults.History
}

func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}}
}

// errStatus: the server answered, with an error status.
var errStatus = errors.New("status")

// counter sends GET /counter to addr with cookie and returns the answer
// and the new cookie value (or cookie unchanged). A non-empty rid is sent
// as the request id, as a front tier that may resend a request must do.
func counter(ctx context.Context, hc *http.Client, addr, cookie, rid string) (sampleapp.Counter, string, error) {
	var out sampleapp.Counter
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/counter", nil)
	if err != nil {
		return out, cookie, err
	}
	if rid != "" {
		req.Header.Set(tsession.HeaderRequestID, rid)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	}
	resp, err := hc.Do(req)
	if err != nil {
		return out, cookie, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, cookie, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, cookie, fmt.Errorf("%w %d: %.200s", errStatus, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, cookie, fmt.Errorf("body %.200q: %w", body, err)
	}
	if got := resp.Header.Get(sampleapp.HeaderServer); got != out.Server {
		return out, cookie, fmt.Errorf("%s %q but body says %q", sampleapp.HeaderServer, got, out.Server)
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			cookie = c.Value
		}
	}
	return out, cookie, nil
}

// session is one logical session of a client.
type session struct {
	key      int
	cookie   string // current cookie value
	original string // the first cookie (direct clients replay it, as a second tab would)
	home     string // direct clients: the member that created it
}

func (s *session) record(h *faults.History, via string, start time.Time, out sampleapp.Counter, err error) {
	op := faults.Op{Key: s.key, Start: start, End: time.Now(), Via: via}
	if err != nil {
		op.Err = err.Error()
	} else {
		op.OK, op.Session, op.Count, op.Server = true, out.Session, out.Count, out.Server
	}
	h.Add(op)
}

func (w *webClient) hit(ctx context.Context, s *session) {
	start := time.Now()
	out, cookie, err := counter(ctx, w.hc, w.base, s.cookie, "")
	// A request cut short by the end of the run is recorded as failed:
	// the server may have applied it.
	s.cookie = cookie
	s.record(w.h, "webserver", start, out, err)
}

// directClient routes by the cookie on its own, as a second front tier
// would: primary, then backup, then any member, moving on after any
// transport error (refused, reset, timeout), never after an answer. Like
// the web server it sends one request id per logical request, the same on
// every resend, so a request that reached a member before the error is
// answered from its stored reply, not applied twice (its HTTP transport,
// like a browser's, also silently resends a GET whose reused connection
// closed before the answer). One member is reached only through a proxy the
// nemesis can cut. Some requests replay the session's first cookie to its
// first primary (a stale tab): the answer must still be the newest count.
type directClient struct {
	d     *tdomain
	addr  map[string]string // by route: member address (or the proxy's)
	hc    *http.Client
	h     *faults.History
	rng   *rand.Rand
	stale int // replays so far
}

func (c *directClient) hit(ctx context.Context, s *session) {
	start := time.Now()
	var order []string
	replay := s.original != "" && c.rng.IntN(4) == 0
	cookie := s.cookie
	if replay {
		cookie = s.original
	}
	if cookie == "" {
		order = append(order, s.home)
	} else if v, err := route.Parse(cookie); err == nil {
		order = append(order, v.Primary)
		if v.Backup != "" {
			order = append(order, v.Backup)
		}
	}
	order = append(order, c.d.servers...)
	var (
		out sampleapp.Counter
		err error
		got string
	)
	rid := route.NewID()
	for _, r := range order {
		out, got, err = counter(ctx, c.hc, c.addr[r], cookie, rid)
		// A server that answered (even with an error) is not asked again;
		// a transport error moves on with the same request id.
		if err == nil || errors.Is(err, errStatus) || ctx.Err() != nil {
			break
		}
	}
	if err == nil {
		if replay {
			c.stale++
		}
		s.cookie = got
		if s.original == "" {
			s.original = got
		}
	}
	via := "direct"
	if replay {
		via = "direct-stale-cookie"
	}
	s.record(c.h, via, start, out, err)
}

// drive runs workers that each own a share of sessions and hit them in
// turn until ctx ends.
func drive(ctx context.Context, wg *sync.WaitGroup, ss []*session, workers int, hit func(context.Context, *session)) {
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for i := w; i < len(ss); i += workers {
					if ctx.Err() != nil {
						return
					}
					hit(ctx, ss[i])
				}
			}
		}()
	}
}

// nemesis is one fault: it injects it, heals it, and returns what it did.
type nemesis struct {
	name string
	run  func(ctx context.Context) (string, error)
}

// report is the harness's result.
type report struct {
	Duration      string         `json:"duration"`
	Seed          uint64         `json:"seed"`
	Operations    int            `json:"operations"`
	Acknowledged  int            `json:"acknowledged"`
	Indeterminate int            `json:"indeterminate"`
	StaleReplays  int            `json:"stale_cookie_replays"`
	Sessions      int            `json:"sessions"`
	Faults        map[string]int `json:"faults"`
	FaultsTotal   int            `json:"faults_total"`
	Anomalies     int            `json:"anomalies"`
	SessionLost   int            `json:"session_lost_events"`
	Failovers     int            `json:"failover_events"`
	Failbacks     int            `json:"failback_events"`
	Notes         []string       `json:"notes,omitempty"`
	// Failed counts the failed requests by route and error (the numbers
	// and addresses of the message blanked out).
	Failed map[string]int `json:"failed,omitempty"`
}

// failedBy counts failed requests by route and error kind.
func failedBy(ops []faults.Op) map[string]int {
	out := map[string]int{}
	for _, op := range ops {
		if op.OK {
			continue
		}
		msg := op.Err
		if len(msg) > 90 {
			msg = msg[:90]
		}
		msg = strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, msg)
		out[op.Via+": "+msg]++
	}
	return out
}

// summary is the report in a few lines for people (bench/faults/run.sh).
func (r report) summary() string {
	kinds := make([]string, 0, len(r.Faults))
	for k, v := range r.Faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("\nduration      %s (seed %d)\noperations    %d (%d acknowledged, %d indeterminate)\nsessions      %d (%d stale-cookie replays)\nfaults        %d: %s\nevents        failover %d, failback %d, session.lost %d\nanomalies     %d",
		r.Duration, r.Seed, r.Operations, r.Acknowledged, r.Indeterminate, r.Sessions, r.StaleReplays,
		r.FaultsTotal, strings.Join(kinds, ", "), r.Failovers, r.Failbacks, r.SessionLost, r.Anomalies)
}

// TestFaultHarness runs a domain of 4 managed servers behind a web server
// under load while nemeses SIGKILL servers (the node manager restarts
// them), SIGSTOP them past the heartbeat timeout, cut the route to one
// member, and SIGKILL the admin server during a config push and during a
// rolling restart. Between two faults it waits until every session has a
// live backup again. Then it checks the whole history: no acknowledged
// write lost or gone backwards, no stale copy served, no session.lost.
// `make test` runs it for 40 s of faults; bench/faults/run.sh runs it longer.
func TestFaultHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("fault harness: real processes for about a minute")
	}
	var only []string
	if *flagNemeses != "" {
		only = strings.Split(*flagNemeses, ",")
	}
	runHarness(t, *flagDuration, only)
}

// TestPausedServerKeepsAcknowledgedWrites is the harness with one nemesis
// only: SIGSTOP of a random server for three heartbeat timeouts, then
// SIGCONT, repeated for 20 s. It is the focused reproduction of the
// "backwards" anomalies the full harness found (a session's count going
// back by up to ~50 acknowledged writes right after a pause healed). It
// is skipped when -faults.nemeses or -faults.duration choose a run of
// TestFaultHarness.
func TestPausedServerKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	if *flagNemeses != "" || flagSet("faults.duration") {
		t.Skip("a chosen harness run (-faults.nemeses / -faults.duration) is running instead")
	}
	runHarness(t, 20*time.Second, []string{"pause-server"})
}

// flagSet reports whether the named flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runHarness drives the domain under load for about duration, injecting
// the named nemeses (all when only is empty), and checks the history.
func runHarness(t *testing.T, duration time.Duration, only []string) {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d (rerun with -faults.seed=%d)", seed, seed)

	d := startDomain(t, 4, domain.FailoverImmediate)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := faults.NewHistory()

	// Load: 160 sessions through the web server, 40 routed directly
	// (their home ms1 only through a proxy that can be cut).
	px := newCutProxy(t, d.listen["ms1"])
	addr := map[string]string{}
	for n, a := range d.listen {
		addr[n] = a
	}
	addr["ms1"] = px.addr
	web := &webClient{base: d.wsAddr, hc: newHTTPClient(), h: h}
	direct := &directClient{d: d, addr: addr, hc: newHTTPClient(), h: h, rng: rand.New(rand.NewPCG(seed, 8))}
	var webSS, directSS []*session
	for i := range 160 {
		webSS = append(webSS, &session{key: i})
	}
	for i := range 40 {
		directSS = append(directSS, &session{key: 1000 + i, home: "ms1"})
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadWG sync.WaitGroup
	drive(loadCtx, &loadWG, webSS, 8, web.hit)
	drive(loadCtx, &loadWG, directSS, 1, direct.hit) // one worker: direct.rng is not shared
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopLoad()
			loadWG.Wait()
		}
	}
	defer stop()

	faultsDone := map[string]int{}
	var notes []string
	pick := func() string { return d.servers[rng.IntN(len(d.servers))] }
	nemeses := []nemesis{
		{"kill-server", func(ctx context.Context) (string, error) {
			name := pick()
			pid, err := d.pidOf(ctx, name)
			if err != nil {
				return "", err
			}
			if err := signal(pid, syscall.SIGKILL); err != nil {
				return "", err
			}
			// The node manager restarts it; wait for the new process.
			err = waitFor(ctx, 30*time.Second, func() error {
				p, err := d.pidOf(ctx, name)
				if err == nil && p == pid {
					err = fmt.Errorf("%s still has pid %d", name, pid)
				}
				return err
			})
			return fmt.Sprintf("SIGKILL %s (pid %d)", name, pid), err
		}},
		{"pause-server", func(ctx context.Context) (string, error) {
			name := pick()
			pid, err := d.pidOf(ctx, name)
			if err != nil {
				return "", err
			}
			if err := signal(pid, syscall.SIGSTOP); err != nil {
				return "", err
			}
			// Paused well past the heartbeat timeout: its backup takes over.
			pause := 3 * time.Duration(d.cluster.HeartbeatTimeoutMS) * time.Millisecond
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			return fmt.Sprintf("SIGSTOP %s for %s", name, pause), signal(pid, syscall.SIGCONT)
		}},
		{"cut-route", func(ctx context.Context) (string, error) {
			px.cut()
			window := 3 * time.Duration(d.cluster.HeartbeatTimeoutMS) * time.Millisecond
			select {
			case <-ctx.Done():
			case <-time.After(window):
			}
			return fmt.Sprintf("route to ms1 cut for %s (members still see each other)", window), px.heal(ctx)
		}},
		{"kill-admin-during-push", func(ctx context.Context) (string, error) {
			// A config change and a push in flight when the admin dies.
			tmo := 1800 + rng.IntN(100)
			pushCtx, cancelPush := context.WithTimeout(ctx, 10*time.Second)
			defer cancelPush()
			pushed := make(chan error, 1)
			go func() {
				_, err := d.api.SetClusterSessionConfig(pushCtx, "c1", domain.SessionOverride{TimeoutSeconds: &tmo})
				if err == nil {
					_, err = d.api.Push(pushCtx, "c1")
				}
				pushed <- err
			}()
			// Kill while the push is on its way (or just done: either must be safe).
			done := false
			select {
			case <-pushed:
				done = true
			case <-time.After(time.Duration(rng.IntN(50)) * time.Millisecond):
			}
			d.admin.Kill()
			cancelPush()
			if !done {
				<-pushed // the request goroutine ends with the dead connection
			}
			d.startAdmin()
			return fmt.Sprintf("SIGKILL admin during PUT session-config (timeout %d) + push; restarted", tmo), nil
		}},
		{"kill-admin-during-rolling-restart", func(ctx context.Context) (string, error) {
			job, err := d.api.RollingRestart(ctx, "c1", 60*time.Second)
			if err != nil {
				return "", fmt.Errorf("rolling restart: %w", err)
			}
			// Kill the admin once the job is on its second step.
			err = waitFor(ctx, 90*time.Second, func() error {
				j, err := d.api.Job(ctx, job.ID)
				if err != nil {
					return err
				}
				if j.State != "running" {
					return nil
				}
				if len(j.Order) > 1 && j.Current != j.Order[0] {
					return nil
				}
				return fmt.Errorf("job at %q", j.Current)
			})
			if err != nil {
				return "", err
			}
			d.admin.Kill()
			d.startAdmin()
			var last client.Job
			err = waitFor(ctx, 180*time.Second, func() error {
				j, err := d.api.Job(ctx, job.ID)
				if err != nil {
					return err
				}
				last = j
				if j.State == "running" {
					return fmt.Errorf("job %d still running at %s", j.ID, j.Current)
				}
				return nil
			})
			if err != nil {
				return "", fmt.Errorf("rolling restart after the admin restart: %w", err)
			}
			if last.State != "completed" {
				notes = append(notes, fmt.Sprintf("rolling job %d after the admin SIGKILL ended %s: %s", last.ID, last.State, last.Error))
				// As an operator would: start what the job left stopped. The
				// new admin server first has to hear from every node: a
				// server that is still not running 15 s after its node
				// manager reconnected was left stopped.
				var c client.TopologyCluster
				_ = waitFor(ctx, 15*time.Second, func() error {
					var err error
					if c, err = d.cluster1(ctx); err != nil {
						return err
					}
					for _, s := range c.Servers {
						if s.State != domain.StateRunning {
							return fmt.Errorf("%s is %s", s.Name, s.State)
						}
					}
					return nil
				})
				for _, s := range c.Servers {
					if s.State != domain.StateRunning {
						notes = append(notes, fmt.Sprintf("job %d left %s %s; started it again over REST", last.ID, s.Name, s.State))
						// The node manager may still be reconnecting to the new admin.
						if err := waitFor(ctx, 60*time.Second, func() error {
							_, err := d.api.StartServer(ctx, s.Name)
							return err
						}); err != nil {
							return "", fmt.Errorf("start %s: %w", s.Name, err)
						}
					}
				}
			}
			return fmt.Sprintf("SIGKILL admin during rolling restart job %d (ended %s)", last.ID, last.State), nil
		}},
	}

	if len(only) > 0 {
		var keep []nemesis
		for _, nm := range nemeses {
			if slices.Contains(only, nm.name) {
				keep = append(keep, nm)
			}
		}
		if len(keep) == 0 {
			t.Fatalf("no nemesis named in %q", only)
		}
		nemeses = keep
	}
	begin := time.Now()
	deadline := begin.Add(duration)
	// Let the load create its sessions before the first fault.
	if err := waitFor(ctx, 30*time.Second, func() error {
		if got := len(h.Ops()); got < 2*(len(webSS)+len(directSS)) {
			return fmt.Errorf("%d requests so far", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	order := rng.Perm(len(nemeses))
	for round := 0; ; round++ {
		// Every nemesis runs at least once; then random ones until the deadline.
		if round >= len(nemeses) && time.Now().After(deadline) {
			break
		}
		var nm nemesis
		if round < len(nemeses) {
			nm = nemeses[order[round]]
		} else {
			nm = nemeses[rng.IntN(len(nemeses))]
		}
		what, err := nm.run(ctx)
		if err != nil {
			t.Errorf("nemesis %s: %v", nm.name, err)
			break
		}
		healed := time.Now()
		faultsDone[nm.name]++
		t.Logf("%6.1fs fault %d: %s", time.Since(begin).Seconds(), round+1, what)
		if err := d.settle(ctx, healed, 90*time.Second); err != nil {
			t.Errorf("after %s: %v", what, err)
			break
		}
	}
	// One more request for every session after the last fault healed.
	stop()
	for _, s := range webSS {
		web.hit(ctx, s)
	}
	for _, s := range directSS {
		direct.hit(ctx, s)
	}
	elapsed := time.Since(begin)

	res := faults.Check(h.Ops())
	lost, err := d.api.Events(ctx, client.EventQuery{Types: []string{domain.EventSessionLost}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	fo, _ := d.api.Events(ctx, client.EventQuery{Types: []string{domain.EventFailover}, Limit: 1000})
	fb, _ := d.api.Events(ctx, client.EventQuery{Types: []string{domain.EventFailback}, Limit: 1000})
	rep := report{Duration: elapsed.Round(time.Second).String(), Seed: seed, Operations: res.Ops,
		Acknowledged: res.Acknowledged, Indeterminate: res.Indeterminate, StaleReplays: direct.stale,
		Sessions: res.Sessions, Faults: faultsDone, Anomalies: len(res.Anomalies), SessionLost: len(lost),
		Failovers: len(fo), Failbacks: len(fb), Notes: notes}
	for _, n := range faultsDone {
		rep.FaultsTotal += n
	}
	rep.Failed = failedBy(h.Ops())
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("RESULT %s", b)
	t.Logf("SUMMARY %s", rep.summary())
	if *flagReport != "" {
		if err := os.WriteFile(*flagReport, b, 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, n := range notes {
		t.Log("note:", n)
	}
	if res.Acknowledged == 0 || res.Acknowledged < len(webSS)+len(directSS) {
		t.Errorf("only %d acknowledged requests", res.Acknowledged)
	}
	if len(res.Anomalies) > 0 {
		// Keep the whole history for the post-mortem.
		if f, err := os.CreateTemp("", "tandem-faults-history-*.jsonl"); err == nil {
			enc := json.NewEncoder(f)
			for _, op := range h.Ops() {
				_ = enc.Encode(op)
			}
			f.Close()
			t.Logf("history of %d ops kept in %s", res.Ops, f.Name())
		}
	}
	sort.Slice(res.Anomalies, func(i, j int) bool { return res.Anomalies[i].Key < res.Anomalies[j].Key })
	for i, a := range res.Anomalies {
		if i == 30 {
			t.Errorf("... and %d more anomalies", len(res.Anomalies)-30)
			break
		}
		t.Errorf("ANOMALY %s", a)
	}
	for i, e := range lost {
		if i == 10 {
			break
		}
		t.Errorf("session.lost event: %+v", e)
	}
}

// waitFor polls check until it returns nil or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
