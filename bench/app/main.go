// Command app benchmarks a session write (a counter in the session) through
// the operator's application in the same run, three ways:
//
//   - process: `tandem server` fronting procapp, a Go program speaking the
//     Tandem-Session* header contract, as any language would;
//   - embedded: sdkapp, the same counter built with the sdk package (the
//     binary is the managed server);
//   - alone: procapp on its own port, no Tandem (the client carries the
//     session header itself): the baseline of the application's own cost.
//
// One managed server (no peer: replication has nothing to copy to, so the
// figures are the application path alone), -clients sessions over
// keep-alive connections, -duration each, after a warm-up.
//
//	go run ./bench/app -duration 10s -clients 64
package main

import (
	"context"
	"encoding/base64"
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
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"tandem/bench/procs"
	"time"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

const token = "bench-app-node-token-0123456789"

func main() {
	duration := flag.Duration("duration", 10*time.Second, "load per mode")
	clients := flag.Int("clients", 64, "concurrent clients (one session each)")
	flag.Parse()
	if err := run(*duration, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "bench/app:", err)
		os.Exit(1)
	}
}

type result struct {
	mode          string
	rps           float64
	p50, p99      time.Duration
	errors, total int
	cpu           time.Duration // server-side CPU (Tandem and the application) per request
}

func run(duration time.Duration, clients int) error {
	tmp, err := os.MkdirTemp("", "tandem-bench-app-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bins := map[string]string{}
	for name, pkg := range map[string]string{"tandem": "./cmd/tandem", "procapp": "./bench/app/procapp", "sdkapp": "./bench/app/sdkapp"} {
		bins[name] = filepath.Join(tmp, name)
		build := exec.Command("go", "build", "-o", bins[name], pkg)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	fmt.Printf("# Tandem application benchmark: %d CPUs, %s per mode, %d clients (one session each), load average %s\n\n",
		runtime.NumCPU(), duration, clients, procs.LoadAverage())

	var results []result
	// process: tandem server fronting procapp
	{
		addr, dir := freeAddr(), filepath.Join(tmp, "process")
		spec := &wire.AppSpec{Name: "procapp", Kind: domain.AppProcess, Command: []string{bins["procapp"]}, HealthPath: "/healthz", StartTimeoutSeconds: 30, RequestTimeoutSeconds: 30}
		stop, pid, err := startServer(bins["tandem"], []string{"server"}, dir, addr, spec)
		if err != nil {
			return err
		}
		pids := append([]int{pid}, children(pid)...)
		r, err := measured(pids, func() (result, error) {
			return load("process (tandem server → procapp)", "http://"+addr+"/count", clients, duration, false)
		})
		stop()
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	// embedded: the sdk binary is the managed server
	{
		addr, dir := freeAddr(), filepath.Join(tmp, "embedded")
		stop, pid, err := startServer(bins["sdkapp"], nil, dir, addr, nil)
		if err != nil {
			return err
		}
		r, err := measured([]int{pid}, func() (result, error) {
			return load("embedded (sdk)", "http://"+addr+"/count", clients, duration, false)
		})
		stop()
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	// alone: procapp without Tandem
	{
		addr := freeAddr()
		_, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(bins["procapp"])
		cmd.Env = append(os.Environ(), "PORT="+port)
		if err := cmd.Start(); err != nil {
			return err
		}
		if err := procs.WaitHTTP("http://" + addr + "/healthz"); err != nil {
			_ = cmd.Process.Kill()
			return err
		}
		r, err := measured([]int{cmd.Process.Pid}, func() (result, error) {
			return load("alone (procapp, no Tandem)", "http://"+addr+"/count", clients, duration, true)
		})
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err != nil {
			return err
		}
		results = append(results, r)
	}

	fmt.Printf("| mode | req/s | p50 | p99 | server CPU per request | errors |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %s | %s | %.1f µs | %d of %d |\n", r.mode, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond),
			float64(r.cpu.Nanoseconds())/1000, r.errors, r.total)
	}
	p, e, a := results[0], results[1], results[2]
	fmt.Printf("\nprocess / embedded: %.2fx req/s (target >= 0.7x), p99 %.2fx\n", p.rps/e.rps, float64(p.p99)/float64(e.p99))
	fmt.Printf("process / alone:    %.2fx req/s; embedded / alone: %.2fx req/s\n", p.rps/a.rps, e.rps/a.rps)
	fmt.Printf("server CPU per request: process %.2fx embedded\n", float64(p.cpu)/float64(e.cpu))
	return nil
}

// startServer runs bin as managed server ms1 booting from a cached config
// (a one-member cluster) and waits until GET /count answers.
func startServer(bin string, lead []string, dir, addr string, app *wire.AppSpec) (func(), int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, err
	}
	m := wire.Member{Name: "ms1", Route: "ms1", Listen: addr}
	sc := wire.ServerConfig{Self: m, Members: []wire.Member{m}, Session: domain.DefaultSessionConfig(), App: app,
		Cluster: wire.ClusterSettings{Name: "c1", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 500, HeartbeatTimeoutMS: 1500}}
	b, _ := json.Marshal(wire.Config{Revision: 1, Checksum: "bench", Server: &sc})
	if err := os.WriteFile(filepath.Join(dir, "applied-config.json"), b, 0o600); err != nil {
		return nil, 0, err
	}
	args := append(append([]string{}, lead...), "--name", "ms1", "--admin", "http://127.0.0.1:1", "--data-dir", dir, "--log-level", "error")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TANDEM_NODE_TOKEN="+token)
	if dir := os.Getenv("BENCH_PROFILE_DIR"); dir != "" {
		cmd.Env = append(cmd.Env, "TANDEM_CPU_PROFILE="+filepath.Join(dir, filepath.Base(filepath.Dir(dir+"/x"))+"-"+filepath.Base(bin)+".pprof"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if err := procs.WaitHTTP("http://" + addr + "/count"); err != nil {
		stop()
		return nil, 0, err
	}
	return stop, cmd.Process.Pid, nil
}

// measured runs fn and sets the CPU the processes pids used per request.
func measured(pids []int, fn func() (result, error)) (result, error) {
	before := cpuOf(pids)
	r, err := fn()
	if err == nil && r.total > 0 {
		r.cpu = (cpuOf(pids) - before) / time.Duration(r.total)
	}
	return r, err
}

// cpuOf adds up user and system CPU of the processes (/proc/PID/stat, clock ticks of 10 ms).
func cpuOf(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}

// children lists the child processes of pid (any of its threads).
func children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// load runs clients loops of GET url for d (after a 1 s warm-up), each
// with its own session: the cookie Tandem sets, or, alone, the session
// header the client carries itself.
func load(mode, url string, clients int, d time.Duration, alone bool) (result, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxIdleConns: clients, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var lat []time.Duration
	errs, total := 0, 0
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Second)
	defer cancel()
	measureFrom := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cookie := ""
			var count int64
			var mine []time.Duration
			myErr, myTotal := 0, 0
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if cookie != "" {
					req.Header.Set("Cookie", cookie)
				}
				if alone {
					req.Header.Set("Tandem-Session", base64.RawURLEncoding.EncodeToString([]byte(`{"count":`+strconv.FormatInt(count, 10)+`}`)))
				}
				start := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if c := resp.Header.Get("Set-Cookie"); c != "" {
						cookie = c[:indexOr(c, ';')]
					}
					if resp.StatusCode != http.StatusOK {
						err = errors.New(resp.Status)
					}
				}
				if ctx.Err() != nil {
					break
				}
				count++
				if start.Before(measureFrom) {
					continue
				}
				myTotal++
				if err != nil {
					myErr++
					continue
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += myErr
			total += myTotal
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return result{}, fmt.Errorf("%s: no successful request (%d errors)", mode, errs)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return result{mode: mode, rps: float64(len(lat)) / d.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], errors: errs, total: total}, nil
}

func indexOr(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return len(s)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
