// Command push benchmarks the config push fan-out: a real admin server
// (backend/admin's Run, SQLite in a temp folder, running in a child process
// of this command so that its CPU can be measured and profiled on its own)
// and one in-process agent (backend/agent, real WebSocket control channel
// over loopback, own cache folder) per managed server. Each round changes a
// cluster's session config over REST, waits until every agent has applied
// the change the admin server re-sends by itself, then times
// POST /api/v1/clusters/{name}/push until its report says every node acked.
// Rounds alternate between a cluster of -servers servers and a cluster of
// one server, the baseline of the same run.
//
//	go run ./bench/push -servers 200 -rounds 20
//	go run ./bench/push -cpuprofile admin.prof -agents-cpuprofile agents.prof
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tandem/backend/admin"
	"tandem/backend/agent"
	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/wire"
)

// Environment of the admin child: the tokens (never on its command line).
const (
	envAdminToken = "TANDEM_BENCH_ADMIN_TOKEN"
	envNodeToken  = "TANDEM_BENCH_NODE_TOKEN"
)

type options struct {
	servers       int
	rounds        int
	heartbeatMS   int
	profilePushes int
	adminProfile  string
	agentsProfile string
}

func main() {
	var o options
	child := flag.String("admin-child", "", "internal: run the admin server on this data folder, driven through stdin")
	flag.IntVar(&o.servers, "servers", 200, "servers in the fan-out cluster")
	flag.IntVar(&o.rounds, "rounds", 20, "measured pushes per cluster (the clusters alternate)")
	flag.IntVar(&o.heartbeatMS, "heartbeat-ms", 0, "clusters' heartbeat interval (timeout 3x); 0: the default")
	flag.IntVar(&o.profilePushes, "profile-pushes", 20, "pushes to the large cluster while a CPU profile is taken")
	flag.StringVar(&o.adminProfile, "cpuprofile", "", "write a CPU profile of the admin server during the profiled pushes")
	flag.StringVar(&o.agentsProfile, "agents-cpuprofile", "", "write a CPU profile of the agents' process during the profiled pushes")
	flag.Parse()
	var err error
	if *child != "" {
		err = runAdminChild(*child)
	} else {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/push:", err)
		os.Exit(1)
	}
}

// ---- the admin server, in a child process ----

// runAdminChild runs the admin server on dataDir and answers commands read
// from stdin, one a line, on stdout: "cpu" → "cpu NANOSECONDS" (its user +
// system CPU so far), "profile-start FILE" and "profile-stop" → "ok" or
// "error TEXT". It prints "ready ADDR" once it listens, and stops at EOF on
// stdin or on SIGTERM.
func runAdminChild(dataDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	cmdDone := make(chan struct{})
	go func() { // ends at EOF on stdin, which the parent sends before it waits for this process
		defer close(cmdDone)
		defer stop() // EOF: shut down
		var prof *os.File
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmd, arg, _ := strings.Cut(sc.Text(), " ")
			switch cmd {
			case "cpu":
				var ru syscall.Rusage
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
				say("cpu %d", time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
			case "profile-start":
				f, err := os.Create(arg)
				if err == nil {
					if err = pprof.StartCPUProfile(f); err != nil {
						f.Close()
					} else {
						prof = f
					}
				}
				reply(say, err)
			case "profile-stop":
				var err error
				if prof != nil {
					pprof.StopCPUProfile()
					err = prof.Close()
					prof = nil
				}
				reply(say, err)
			default:
				say("error unknown command %q", cmd)
			}
		}
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
	}()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("role", "admin")
	err := admin.Run(ctx, admin.Config{
		Listen: "127.0.0.1:0", DataDir: dataDir, Stdout: io.Discard, PlainHTTP: true,
		AdminToken: os.Getenv(envAdminToken), NodeToken: os.Getenv(envNodeToken),
		Ready: func(addr string) { say("ready %s", addr) },
	}, logger)
	if err != nil {
		return err // the process ends, and the stdin reader with it
	}
	<-cmdDone // the parent closed stdin: a profile being taken is written
	return nil
}

func reply(say func(string, ...any), err error) {
	if err != nil {
		say("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	say("ok")
}

// adminProc is the parent's handle on the admin child.
type adminProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	addr string
	done chan struct{}
}

func startAdmin(ctx context.Context, dataDir, adminToken, nodeToken string) (*adminProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-admin-child", dataDir)
	cmd.Env = append(os.Environ(), envAdminToken+"="+adminToken, envNodeToken+"="+nodeToken)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the benchmark
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start admin: %w", err)
	}
	p := &adminProc{cmd: cmd, in: in, out: bufio.NewScanner(out), done: make(chan struct{})}
	go func() { // owned by p: ends when the child exits
		_ = cmd.Wait()
		close(p.done)
	}()
	ready := make(chan error, 1)
	go func() { // ends with the first line or the child's stdout
		line, err := p.line()
		if err == nil && !strings.HasPrefix(line, "ready ") {
			err = fmt.Errorf("admin said %q", line)
		}
		p.addr = strings.TrimPrefix(line, "ready ")
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(60 * time.Second):
		err = errors.New("admin not ready within 60 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("start admin: %w", err)
	}
	return p, nil
}

func (p *adminProc) line() (string, error) {
	if !p.out.Scan() {
		if err := p.out.Err(); err != nil {
			return "", err
		}
		return "", errors.New("admin exited")
	}
	return p.out.Text(), nil
}

// ask sends one command and returns the answer line. Only one goroutine asks.
func (p *adminProc) ask(cmd string) (string, error) {
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		return "", fmt.Errorf("admin %s: %w", cmd, err)
	}
	ans, err := p.line()
	if err != nil {
		return "", fmt.Errorf("admin %s: %w", cmd, err)
	}
	if rest, ok := strings.CutPrefix(ans, "error "); ok {
		return "", fmt.Errorf("admin %s: %s", cmd, rest)
	}
	return ans, nil
}

// cpu returns the admin process's user + system CPU time so far.
func (p *adminProc) cpu() (time.Duration, error) {
	ans, err := p.ask("cpu")
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimPrefix(ans, "cpu "), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("admin cpu: %q: %w", ans, err)
	}
	return time.Duration(ns), nil
}

// idleRate returns the admin's CPU use while nothing but heartbeats
// happens, in cores: the lowest of several 500 ms windows.
func (p *adminProc) idleRate(ctx context.Context) (float64, error) {
	rate := -1.0
	for range 6 {
		r, err := p.rate(ctx, 500*time.Millisecond)
		if err != nil {
			return 0, err
		}
		if rate < 0 || r < rate {
			rate = r
		}
	}
	return rate, nil
}

// rate measures the admin's CPU use over the next window, in cores.
func (p *adminProc) rate(ctx context.Context, window time.Duration) (float64, error) {
	c0, err := p.cpu()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	c1, err := p.cpu()
	if err != nil {
		return 0, err
	}
	return float64(c1-c0) / float64(time.Since(t0)), nil
}

// settleSlack is how far above its idle rate the admin may run and still
// count as quiet, in cores.
const settleSlack = 0.05

// settle waits until the admin server is quiet again: its CPU use over a
// 200 ms window is within settleSlack of idle (at most a minute). A REST
// write ends with control.Plane.Changed for the nodes it touched, which
// re-sends the configs that changed (a push triggers none: it delivered
// them); settle returns the CPU of whatever work a request left behind,
// beyond the idle rate, so that each push is measured from a quiet admin
// server and that work is reported on its own.
func (p *adminProc) settle(ctx context.Context, idle float64) (time.Duration, error) {
	start := time.Now()
	first, err := p.cpu()
	if err != nil {
		return 0, err
	}
	for {
		r, err := p.rate(ctx, 200*time.Millisecond)
		if err != nil {
			return 0, err
		}
		if r <= idle+settleSlack {
			break
		}
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("admin still busy after a minute (%.0f %% of a core)", r*100)
		}
	}
	last, err := p.cpu()
	if err != nil {
		return 0, err
	}
	return max(last-first-time.Duration(idle*float64(time.Since(start))), 0), nil
}

// stop closes the child's stdin (it shuts down) and waits, killing it
// after 20 s.
func (p *adminProc) stop() {
	p.in.Close()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// ---- the nodes: real agents in this process ----

// role is the agent.Handler of a benchmark node: it applies everything and
// remembers when it last did.
type role struct {
	lastApply atomic.Int64 // unix ns
}

func (r *role) Apply(ctx context.Context, cfg wire.Config) error {
	r.lastApply.Store(time.Now().UnixNano())
	return nil
}

func (r *role) Status() wire.Heartbeat { return wire.Heartbeat{State: domain.StateRunning} }

func (r *role) Command(ctx context.Context, cmd wire.Command) wire.CommandResult {
	return wire.CommandResult{ID: cmd.ID, Error: "not a node manager"}
}

type node struct {
	agent *agent.Agent
	role  *role
}

// cluster is one benchmark cluster and its nodes.
type cluster struct {
	name  string
	nodes []*node
	// figures of the measured rounds
	push, lastApply, changed, put []time.Duration
	cpu                           []time.Duration // admin CPU during the push request
	cpuAfter                      []time.Duration // admin CPU beyond idle after it (a re-check, if any)
}

// appliedAbove reports whether every node applied a revision above revs[i]
// (nil: any revision), returning the first that did not.
func (c *cluster) appliedAbove(revs []int64) (string, bool) {
	for i, n := range c.nodes {
		rev, _ := n.agent.Applied()
		if (revs == nil && rev == 0) || (revs != nil && rev <= revs[i]) {
			return fmt.Sprintf("node %d at revision %d", i, rev), false
		}
	}
	return "", true
}

func (c *cluster) revisions() []int64 {
	revs := make([]int64, len(c.nodes))
	for i, n := range c.nodes {
		revs[i], _ = n.agent.Applied()
	}
	return revs
}

// waitApplied polls (every 2 ms) until every node applied a revision above revs.
func (c *cluster) waitApplied(ctx context.Context, revs []int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		what, ok := c.appliedAbove(revs)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster %s: not applied within %s: %s", c.name, timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ---- the benchmark ----

func run(o options) error {
	if o.servers < 1 || o.rounds < 1 {
		return errors.New("-servers and -rounds must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "tandem-bench-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	adminToken, nodeToken := "bench-admin-token-0123456789abcdef", "bench-node-token-0123456789abcdef"
	ap, err := startAdmin(ctx, filepath.Join(dir, "admin"), adminToken, nodeToken)
	if err != nil {
		return err
	}
	defer ap.stop()
	api := client.New("http://"+ap.addr, adminToken)

	big := &cluster{name: "fan"}
	one := &cluster{name: "one"}
	hb := o.heartbeatMS
	for _, c := range []*cluster{big, one} {
		cl := domain.Cluster{Name: c.name}
		if hb > 0 {
			cl.HeartbeatIntervalMS, cl.HeartbeatTimeoutMS = hb, 3*hb
		}
		if _, err := api.CreateCluster(ctx, cl); err != nil {
			return fmt.Errorf("create cluster: %w", err)
		}
	}
	setupStart := time.Now()
	var names []string
	for i := range o.servers + 1 {
		c, name := big, fmt.Sprintf("fan-%03d", i+1)
		if i == o.servers {
			c, name = one, "one-1"
		}
		if _, err := api.CreateServer(ctx, domain.Server{Name: name, Cluster: c.name, Listen: fmt.Sprintf("127.0.0.1:%d", 20000+i)}); err != nil {
			return fmt.Errorf("create server %s: %w", name, err)
		}
		names = append(names, name)
	}

	// Agents: every one owned by agentsWG, stopped by stopAgents.
	agentsCtx, stopAgents := context.WithCancel(context.Background())
	var agentsWG sync.WaitGroup
	defer func() {
		stopAgents()
		agentsWG.Wait()
	}()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("role", "agent")
	for i, name := range names {
		c := big
		if i == o.servers {
			c = one
		}
		r := &role{}
		a := agent.New(agent.Config{AdminURL: "http://" + ap.addr, NodeToken: nodeToken, Kind: wire.KindServer, Name: name,
			DataDir: filepath.Join(dir, "nodes", name)}, r, logger.With("name", name))
		c.nodes = append(c.nodes, &node{agent: a, role: r})
		agentsWG.Add(1)
		go func() {
			defer agentsWG.Done()
			if err := a.Run(agentsCtx); err != nil {
				logger.Error("agent stopped", "name", name, "err", err)
			}
		}()
	}
	for _, c := range []*cluster{big, one} {
		if err := c.waitApplied(ctx, nil, 120*time.Second); err != nil {
			return fmt.Errorf("first config: %w", err)
		}
	}
	setup := time.Since(setupStart)
	// Idle: every node connected and heartbeating, nothing pending.
	idle, err := ap.idleRate(ctx)
	if err != nil {
		return err
	}
	// A first push to each, unmeasured: every node connected and acking.
	for _, c := range []*cluster{big, one} {
		if _, err := pushAll(ctx, api, c); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}

	for i := range o.rounds {
		for _, c := range []*cluster{big, one} {
			if err := round(ctx, api, ap, c, 1800+i+1, idle); err != nil {
				return fmt.Errorf("round %d, cluster %s: %w", i+1, c.name, err)
			}
		}
	}

	var profiled time.Duration
	if o.adminProfile != "" || o.agentsProfile != "" {
		profiled, err = profile(ctx, api, ap, big, o)
		if err != nil {
			return err
		}
	}

	printReport(o, setup, idle, big, one, profiled)
	return nil
}

// round changes c's session config and waits until every node applied
// what the admin server re-sent by itself; then, from a quiet admin server,
// it times a push, and measures the admin CPU the push leaves behind (a
// re-check, if one ran; see settle).
func round(ctx context.Context, api *client.Client, ap *adminProc, c *cluster, timeout int, idle float64) error {
	if _, err := ap.settle(ctx, idle); err != nil {
		return err
	}
	revs := c.revisions()
	t0 := time.Now()
	if _, err := api.SetClusterSessionConfig(ctx, c.name, domain.SessionOverride{TimeoutSeconds: &timeout}); err != nil {
		return fmt.Errorf("change session config: %w", err)
	}
	put := time.Since(t0)
	if err := c.waitApplied(ctx, revs, 60*time.Second); err != nil {
		return fmt.Errorf("after the change: %w", err)
	}
	changed := time.Since(t0)
	if _, err := ap.settle(ctx, idle); err != nil {
		return err
	}

	cpu0, err := ap.cpu()
	if err != nil {
		return err
	}
	t1 := time.Now()
	if _, err := pushAll(ctx, api, c); err != nil {
		return err
	}
	took := time.Since(t1)
	cpu1, err := ap.cpu()
	if err != nil {
		return err
	}
	after, err := ap.settle(ctx, idle)
	if err != nil {
		return err
	}
	var last int64
	for _, n := range c.nodes {
		last = max(last, n.role.lastApply.Load())
	}
	c.push = append(c.push, took)
	c.lastApply = append(c.lastApply, time.Duration(last-t1.UnixNano()))
	c.changed = append(c.changed, changed)
	c.put = append(c.put, put)
	c.cpu = append(c.cpu, max(cpu1-cpu0-time.Duration(idle*float64(took)), 0))
	c.cpuAfter = append(c.cpuAfter, after)
	return nil
}

// pushAll pushes to c over REST and requires an OK result from every node.
func pushAll(ctx context.Context, api *client.Client, c *cluster) (client.PushResponse, error) {
	res, err := api.Push(ctx, c.name)
	if err != nil {
		return res, fmt.Errorf("push: %w", err)
	}
	if len(res.Results) != len(c.nodes) {
		return res, fmt.Errorf("push: %d results for %d nodes", len(res.Results), len(c.nodes))
	}
	for _, r := range res.Results {
		if !r.OK {
			return res, fmt.Errorf("push: %s: %s", r.Node, r.Error)
		}
	}
	return res, nil
}

// profile takes the CPU profiles during o.profilePushes pushes to c (the
// config is unchanged: every node is sent, applies and acks it again).
func profile(ctx context.Context, api *client.Client, ap *adminProc, c *cluster, o options) (time.Duration, error) {
	if o.adminProfile != "" {
		path, err := filepath.Abs(o.adminProfile)
		if err != nil {
			return 0, err
		}
		if _, err := ap.ask("profile-start " + path); err != nil {
			return 0, err
		}
	}
	if o.agentsProfile != "" {
		f, err := os.Create(o.agentsProfile)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	var perr error
	for range o.profilePushes {
		if _, perr = pushAll(ctx, api, c); perr != nil {
			break
		}
	}
	took := time.Since(start)
	if o.agentsProfile != "" {
		pprof.StopCPUProfile()
	}
	if o.adminProfile != "" {
		if _, err := ap.ask("profile-stop"); err != nil && perr == nil {
			perr = err
		}
	}
	return took, perr
}

// ---- report ----

// quantile returns the nearest-rank q-quantile of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

func printReport(o options, setup time.Duration, idle float64, big, one *cluster, profiled time.Duration) {
	load, _ := os.ReadFile("/proc/loadavg")
	hb := "default heartbeat"
	if o.heartbeatMS > 0 {
		hb = fmt.Sprintf("heartbeat %d ms / timeout %d ms", o.heartbeatMS, 3*o.heartbeatMS)
	}
	fmt.Printf("admin server (admin.Run, SQLite WAL in a temp folder) in a child process; %d in-process agents over\n", o.servers+1)
	fmt.Printf("loopback WebSockets (each caches its config with fsync); %s; %d rounds, the clusters alternating\n", hb, o.rounds)
	fmt.Printf("setup (%d servers created over REST, agents connected, first configs applied): %s; load average at the end %s\n\n",
		o.servers+1, setup.Round(time.Millisecond), strings.Join(strings.Fields(string(load))[:3], " "))
	cs := []*cluster{big, one}
	fmt.Printf("%-50s", "")
	for _, c := range cs {
		fmt.Printf(" %24s", fmt.Sprintf("%d server(s)", len(c.nodes)))
	}
	fmt.Println()
	row := func(what string, f func(c *cluster) string) {
		fmt.Printf("%-50s", what)
		for _, c := range cs {
			fmt.Printf(" %24s", f(c))
		}
		fmt.Println()
	}
	spread := func(ds []time.Duration) string {
		return ms(quantile(ds, .5)) + " / " + ms(quantile(ds, .99)) + " / " + ms(quantile(ds, 1))
	}
	mean := func(ds []time.Duration) time.Duration {
		var t time.Duration
		for _, d := range ds {
			t += d
		}
		return t / time.Duration(len(ds))
	}
	row("push → all acked, ms p50 / p99 / max", func(c *cluster) string { return spread(c.push) })
	row("push → last node applied, ms p50 / p99 / max", func(c *cluster) string { return spread(c.lastApply) })
	row("admin CPU in the push (beyond idle), ms mean", func(c *cluster) string { return ms(mean(c.cpu)) })
	row("admin CPU in the push, µs per node", func(c *cluster) string {
		return strconv.FormatInt(mean(c.cpu).Microseconds()/int64(len(c.nodes)), 10)
	})
	row("admin CPU after it (re-check, if any), ms mean", func(c *cluster) string { return ms(mean(c.cpuAfter)) })
	row("change: PUT session-config, ms p50 / max", func(c *cluster) string {
		return ms(quantile(c.put, .5)) + " / " + ms(quantile(c.put, 1))
	})
	row("change → all applied (via Changed), ms p50 / max", func(c *cluster) string {
		return ms(quantile(c.changed, .5)) + " / " + ms(quantile(c.changed, 1))
	})
	b, s := quantile(big.push, .5), quantile(one.push, .5)
	fmt.Printf("\nratio %d vs 1 server, p50 push → all acked: %.1fx (%.2f ms per extra node)\n",
		len(big.nodes), float64(b)/float64(s), float64((b-s).Microseconds())/1000/float64(len(big.nodes)-1))
	fmt.Printf("admin CPU while idle (heartbeats of %d nodes): %.1f %% of one core\n", o.servers+1, idle*100)
	if profiled > 0 {
		fmt.Printf("profiled: %d pushes to %d servers, back to back, in %s\n", o.profilePushes, len(big.nodes), profiled.Round(time.Millisecond))
	}
}
