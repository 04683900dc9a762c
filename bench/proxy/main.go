// Command proxy benchmarks the Tandem web server against HAProxy in the
// same run: GET /counter with session cookies over 4 servers and GET /ping,
// (a) directly against one server, (b) through `tandem webserver`,
// (c) through HAProxy with the config rendered by backend/haproxy, using
// wrk with keep-alive. It prints req/s, p50/p99 and the ratios b/a, b/c.
//
// Run it with bench/proxy/run.sh (or go run ./bench/proxy). Flags set the
// wrk duration, connections and threads.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"tandem/backend/domain"
	"tandem/backend/haproxy"
	"tandem/backend/wire"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/proxy:", err)
		os.Exit(1)
	}
}

type opts struct {
	duration   time.Duration
	conns      int
	threads    int
	sessions   int
	standin    bool
	profile    string
	onlyTandem bool
	wsEnv      string
	eventLoops int
	hpThreads  int
	rounds     int
	routed     bool
	pin        bool
}

var procs []*exec.Cmd

// pinCPU is the CPU list each process (by name) is pinned to with -pin.
var pinCPU map[string]string

func run() error {
	var o opts
	flag.DurationVar(&o.duration, "d", 5*time.Second, "wrk duration per measurement")
	flag.IntVar(&o.conns, "c", 64, "wrk connections")
	flag.IntVar(&o.threads, "t", 2, "wrk threads")
	flag.IntVar(&o.sessions, "sessions", 64, "sessions per server")
	flag.BoolVar(&o.standin, "standin", false, "use the stand-in upstream instead of tandem server")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the web server during (b) /counter to this file")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; medians are reported")
	flag.BoolVar(&o.onlyTandem, "only-tandem", false, "measure only (b)")
	flag.IntVar(&o.hpThreads, "haproxy-threads", 0, "HAProxy's nbthread (0: its default, one per CPU)")
	flag.IntVar(&o.eventLoops, "event-loops", 0, "the web server's --event-loops (0: one per core, -1: none)")
	flag.StringVar(&o.wsEnv, "ws-env", "", "extra environment for the web server, e.g. GOMAXPROCS=1")
	flag.BoolVar(&o.routed, "routed", false, "measure only GET /ping with one routed session cookie (the proxy's own path), tandem vs haproxy")
	flag.BoolVar(&o.pin, "pin", false, "pin each proxy to CPU 1 (one thread each), wrk and the servers to CPU 0 (needs taskset and 2 CPUs)")
	flag.Parse()
	if o.pin {
		// Each proxy alone on CPU 1 (HAProxy then runs one thread, the web
		// server GOMAXPROCS=1); wrk and the servers on CPU 0.
		pinCPU = map[string]string{"ws1": "1", "haproxy": "1", "wrk": "0", "ms1": "0", "ms2": "0", "ms3": "0", "ms4": "0"}
	}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(os.Interrupt)
			_, _ = p.Process.Wait()
		}
	}()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tandem-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "tandem")
	if out, err := goCmd(root, "build", "-o", bin, "./cmd/tandem").CombinedOutput(); err != nil {
		return fmt.Errorf("build tandem: %w\n%s", err, out)
	}

	// Four servers.
	routes := []string{"ms1", "ms2", "ms3", "ms4"}
	var members []wire.Member
	for _, r := range routes {
		members = append(members, wire.Member{Name: r, Route: r, Listen: freeAddr()})
	}
	kind := "tandem server"
	if o.standin || !startManaged(bin, work, members) {
		kind = "stand-in (bench/proxy/standin)"
		sbin := filepath.Join(work, "standin")
		if out, err := goCmd(root, "build", "-o", sbin, "./bench/proxy/standin").CombinedOutput(); err != nil {
			return fmt.Errorf("build standin: %w\n%s", err, out)
		}
		for _, m := range members {
			start(work, m.Name, sbin, "-listen", m.Listen, "-name", m.Name, "-route", m.Route)
		}
		for _, m := range members {
			if err := waitOK("http://"+m.Listen+"/healthz", 10*time.Second); err != nil {
				return fmt.Errorf("upstream %s: %w", m.Name, err)
			}
		}
	}

	// The Tandem web server, booted from a cached routing table.
	wsListen := freeAddr()
	wsDir := filepath.Join(work, "ws1")
	wsCfg := wire.Config{Revision: 1, Checksum: "bench", WebServer: &wire.WebServerConfig{
		Name: "ws1", Listen: wsListen, Cluster: wire.ClusterSettings{Name: "c1"},
		CookieNames: []string{"JSESSIONID"}, Members: members,
	}}
	if err := writeJSON(filepath.Join(wsDir, "applied-config.json"), wsCfg); err != nil {
		return err
	}
	wsAdmin := freeAddr()
	var wsExtra []string
	if o.wsEnv != "" {
		wsExtra = strings.Fields(o.wsEnv)
	}
	wsProc := startEnv(work, "ws1", wsExtra, bin, "webserver", "--name", "ws1", "--data-dir", wsDir, "--access-log-every", "0", "--admin-listen", wsAdmin, "--pprof", "--event-loops", strconv.Itoa(o.eventLoops))
	if err := waitOK("http://"+wsListen+"/_tandem/healthz", 10*time.Second); err != nil {
		return fmt.Errorf("web server: %w", err)
	}

	// HAProxy with the rendered config.
	hpListen := freeAddr()
	var hpProc *exec.Cmd
	var hpURL string
	if !o.onlyTandem {
		cfg, err := haproxy.RenderWith(hpListen, wire.ClusterSettings{Name: "c1"}, []string{"JSESSIONID"}, members, haproxy.Options{Threads: o.hpThreads})
		if err != nil {
			return err
		}
		cfgPath := filepath.Join(work, "haproxy.cfg")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return err
		}
		hpProc = start(work, "haproxy", "haproxy", "-db", "-f", cfgPath)
		if err := waitOK("http://"+hpListen+"/ping", 10*time.Second); err != nil {
			return fmt.Errorf("haproxy: %w", err)
		}
		hpURL = "http://" + hpListen
	}

	// Real sessions: ask each server directly for a few.
	cookies := map[string][]string{}
	for _, m := range members {
		for i := 0; i < o.sessions; i++ {
			c, err := newSession("http://" + m.Listen + "/counter")
			if err != nil {
				return fmt.Errorf("session on %s: %w", m.Name, err)
			}
			cookies[m.Name] = append(cookies[m.Name], c)
		}
	}
	var all []string
	for i := 0; i < o.sessions; i++ {
		for _, m := range members {
			all = append(all, cookies[m.Name][i])
		}
	}
	oneScript := filepath.Join(work, "one.lua")
	allScript := filepath.Join(work, "all.lua")
	if err := writeScript(oneScript, "/counter", cookies[members[0].Name]); err != nil {
		return err
	}
	if err := writeScript(allScript, "/counter", all); err != nil {
		return err
	}

	fmt.Printf("# Tandem proxy benchmark, %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("# upstreams: 4 x %s; wrk -t%d -c%d -d%s --latency (keep-alive); %d CPUs\n", kind, o.threads, o.conns, o.duration, numCPU())
	fmt.Printf("# /counter: cookies of %d real sessions cycled per request (a: the %d of ms1)\n\n", len(all), o.sessions)
	upstreams := append([]*exec.Cmd(nil), procs[:len(members)]...)
	upCPU := func() time.Duration {
		var d time.Duration
		for _, p := range upstreams {
			d += cpuTime(p)
		}
		return d
	}
	fmt.Printf("%-28s %12s %10s %10s %14s %14s\n", "target", "req/s", "p50", "p99", "proxy CPU/req", "servers CPU/req")
	type res struct{ rps, p50, p99, cpuPerReq float64 }
	measure := func(label, url, script string, proc *exec.Cmd) (res, error) {
		before, upBefore := cpuTime(proc), upCPU()
		r, err := wrk(o, url, script)
		if err != nil {
			return res{}, fmt.Errorf("%s: %w", label, err)
		}
		perReq, cpuPerReq := "-", 0.0
		if proc != nil && r.rps > 0 {
			used := cpuTime(proc) - before
			cpuPerReq = used.Seconds() * 1e6 / (r.rps * o.duration.Seconds())
			perReq = fmt.Sprintf("%.1fus", cpuPerReq)
		}
		upPerReq := (upCPU() - upBefore).Seconds() * 1e6 / (r.rps * o.duration.Seconds())
		fmt.Printf("%-28s %12.0f %9.2fms %9.2fms %14s %13.1fus\n", label, r.rps, r.p50, r.p99, perReq, upPerReq)
		return res{r.rps, r.p50, r.p99, cpuPerReq}, nil
	}
	direct := "http://" + members[0].Listen
	tandem := "http://" + wsListen
	results := map[string]res{}
	type job struct{ key, label, url, script string }
	routedScript := filepath.Join(work, "routed.lua")
	if err := writeScript(routedScript, "/ping", cookies[members[0].Name][:1]); err != nil {
		return err
	}
	jobs := []job{
		{"a", "(a) direct ms1 /counter", direct + "/counter", oneScript},
		{"b", "(b) tandem /counter", tandem + "/counter", allScript},
		{"c", "(c) haproxy /counter", hpURL + "/counter", allScript},
		{"ap", "(a) direct ms1 /ping", direct + "/ping", ""},
		{"bp", "(b) tandem /ping", tandem + "/ping", ""},
		{"cp", "(c) haproxy /ping", hpURL + "/ping", ""},
	}
	if o.routed {
		jobs = []job{
			{"br", "(b) tandem /ping routed", tandem + "/ping", routedScript},
			{"cr", "(c) haproxy /ping routed", hpURL + "/ping", routedScript},
		}
	}
	// Rounds interleave the targets so that load from elsewhere on the
	// machine hits all of them alike; the summary takes medians.
	all3 := map[string][]res{}
	for round := 1; round <= o.rounds; round++ {
		if o.rounds > 1 {
			fmt.Printf("-- round %d\n", round)
		}
		for _, j := range jobs {
			if o.onlyTandem && j.key[0] != 'b' {
				continue
			}
			if (j.key == "b" || j.key == "br") && o.profile != "" && round == 1 {
				go profile(wsAdmin, o.duration, o.profile)
			}
			var proc *exec.Cmd
			switch j.key[0] {
			case 'b':
				proc = wsProc
			case 'c':
				proc = hpProc
			}
			r, err := measure(j.label, j.url, j.script, proc)
			if err != nil {
				return err
			}
			all3[j.key] = append(all3[j.key], r)
		}
	}
	for k, rs := range all3 {
		results[k] = median(rs, func(r res) float64 { return r.rps })
	}
	if o.onlyTandem {
		return nil
	}
	fmt.Println()
	fmt.Printf("medians over %d round(s):\n", o.rounds)
	for _, j := range jobs {
		r := results[j.key]
		fmt.Printf("%-28s %12.0f %9.2fms %9.2fms\n", j.label, r.rps, r.p50, r.p99)
	}
	if o.routed {
		// CPU per request: each target's median over the rounds (not the
		// CPU of its median-req/s round), and the ratio in each round,
		// whose two measurements ran back to back.
		cpu := func(r res) float64 { return r.cpuPerReq }
		bc, cc := median(all3["br"], cpu).cpuPerReq, median(all3["cr"], cpu).cpuPerReq
		var perRound []string
		for i := range all3["br"] {
			perRound = append(perRound, fmt.Sprintf("%.2f", all3["cr"][i].cpuPerReq/all3["br"][i].cpuPerReq))
		}
		fmt.Printf("/ping routed  b/c req/s = %.2f   b/c req/s per core (1 / CPU per request) = %.2f   (CPU/req %.1fus vs %.1fus; by round %s)\n",
			results["br"].rps/results["cr"].rps, cc/bc, bc, cc, strings.Join(perRound, " "))
		return nil
	}
	fmt.Printf("/counter  b/a = %.2f   b/c = %.2f\n", results["b"].rps/results["a"].rps, results["b"].rps/results["c"].rps)
	fmt.Printf("/ping     b/a = %.2f   b/c = %.2f\n", results["bp"].rps/results["ap"].rps, results["bp"].rps/results["cp"].rps)
	return nil
}

// median returns the element with the median key.
func median[T any](xs []T, key func(T) float64) T {
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return key(s[i]) < key(s[j]) })
	return s[len(s)/2]
}

func profile(adminAddr string, d time.Duration, out string) {
	secs := int(d.Seconds()) - 2
	if secs < 1 {
		secs = 1
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", adminAddr, secs))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(out)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(c *exec.Cmd) time.Duration {
	if c == nil || c.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

// startManaged tries `tandem server` for each member with a cached config;
// false when the managed server cannot run here (yet).
func startManaged(bin, work string, members []wire.Member) bool {
	for _, m := range members {
		dir := filepath.Join(work, m.Name)
		cfg := wire.Config{Revision: 1, Checksum: "bench", Server: &wire.ServerConfig{
			Self:    m,
			Cluster: wire.ClusterSettings{Name: "c1", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 500, HeartbeatTimeoutMS: 2000},
			Members: members,
			Session: domain.DefaultSessionConfig(),
		}}
		if err := writeJSON(filepath.Join(dir, "applied-config.json"), cfg); err != nil {
			return false
		}
		start(work, m.Name, bin, "server", "--name", m.Name, "--data-dir", dir, "--admin", "http://127.0.0.1:1", "--log-level", "warn")
	}
	for _, m := range members {
		if err := waitOK("http://"+m.Listen+"/healthz", 20*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "tandem server %s not usable (%v); using the stand-in\n", m.Name, err)
			for _, p := range procs {
				_ = p.Process.Kill()
				_, _ = p.Process.Wait()
			}
			procs = nil
			return false
		}
	}
	return true
}

func start(work, name, bin string, args ...string) *exec.Cmd {
	return startEnv(work, name, nil, bin, args...)
}

func startEnv(work, name string, env []string, bin string, args ...string) *exec.Cmd {
	logf, _ := os.Create(filepath.Join(work, name+".log"))
	if cpu := pinCPU[name]; cpu != "" {
		args, bin = append([]string{"-c", cpu, bin}, args...), "taskset" // taskset execs bin: same pid
	}
	c := exec.Command(bin, args...)
	c.Stdout, c.Stderr = logf, logf
	c.Env = append(append(os.Environ(), "TANDEM_NODE_TOKEN=bench-node-token"), env...)
	if err := c.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "start %s: %v\n", name, err)
		return c
	}
	procs = append(procs, c)
	return c
}

func goCmd(dir string, args ...string) *exec.Cmd {
	c := exec.Command("go", args...)
	c.Dir = dir
	return c
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func waitOK(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready: %w", url, last)
}

func newSession(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == "JSESSIONID" {
			return c.Value, nil
		}
	}
	return "", errors.New("no JSESSIONID cookie")
}

func writeScript(path, reqPath string, cookies []string) error {
	var b strings.Builder
	b.WriteString("local reqs = {}\n")
	b.WriteString("local cookies = {\n")
	for _, c := range cookies {
		fmt.Fprintf(&b, "  %q,\n", c)
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, `init = function(args)
  for k, c in ipairs(cookies) do
    reqs[k] = wrk.format("GET", %q, {["Cookie"] = "JSESSIONID=" .. c})
  end
end
local i = 0
request = function()
  i = i + 1
  return reqs[(i %% #reqs) + 1]
end
`, reqPath)
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

var (
	rpsRe = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pRe   = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	errRe = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

type wrkResult struct{ rps, p50, p99 float64 }

func wrk(o opts, url, script string) (wrkResult, error) {
	args := []string{"-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.conns), "-d", o.duration.String(), "--latency"}
	if script != "" {
		args = append(args, "-s", script)
	}
	args = append(args, url)
	cmd := exec.Command("wrk", args...)
	if cpu := pinCPU["wrk"]; cpu != "" {
		cmd = exec.Command("taskset", append([]string{"-c", cpu, "wrk"}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	var r wrkResult
	m := rpsRe.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output without Requests/sec:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, pm := range pRe.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(pm[2]), 64)
		switch string(pm[3]) {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if string(pm[1]) == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if e := errRe.FindAll(out, -1); len(e) > 0 {
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if errRe.MatchString(sc.Text()) {
				fmt.Fprintf(os.Stderr, "  wrk %s: %s\n", url, strings.TrimSpace(sc.Text()))
			}
		}
	}
	return r, nil
}
