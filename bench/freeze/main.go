// Command freeze measures what a frozen managed server (SIGSTOP: a GC
// pause, a VM stall) costs users, through the demo's web server and
// through HAProxy with the configuration Tandem exports, in the same run;
// and how evenly new users are spread right after the demo starts.
//
// For each front tier: -users users click (GET /counter, one session
// each); the server that answered most of them is SIGSTOPped for -freeze,
// then SIGCONT; the users go on clicking. Then every user's cookie from
// before the freeze (naming the frozen server) is replayed once. Every
// answer is checked: 200, the same session, the count one higher than the
// last (lost and gone-back sessions are errors). It prints the requests,
// the errors, and the worst request time from the freeze on.
//
//	go run ./bench/freeze -users 200 -freeze 6s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"tandem/backend/demo"
	"tandem/backend/domain"
	"tandem/backend/testenv"
	"tandem/bench/procs"
)

func main() {
	users := flag.Int("users", 200, "clicking users")
	newUsers := flag.Int("new-users", 400, "new users right after start (spread)")
	freeze := flag.Duration("freeze", 6*time.Second, "how long the busiest server is frozen")
	flag.Parse()
	if err := run(*users, *newUsers, *freeze); err != nil {
		fmt.Fprintln(os.Stderr, "bench/freeze:", err)
		os.Exit(1)
	}
}

func run(users, newUsers int, freeze time.Duration) error {
	tmp, err := os.MkdirTemp("", "tandem-bench-freeze-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	d, err := procs.StartDemo(tmp)
	if err != nil {
		return err
	}
	defer d.Stop()
	ctx := context.Background()
	fmt.Printf("# Tandem frozen-server benchmark: %d CPUs, demo cluster of %d servers (heartbeat timeout %d ms), load average %s\n\n",
		runtime.NumCPU(), len(demo.ServerNames), domain.DefaultHeartbeatTimeoutMS, procs.LoadAverage())

	// New users right after start, 8 at a time.
	spread := testenv.NewCounterLoad(d.Web, newUsers)
	done := make(chan struct{})
	for w := range 8 {
		go func() {
			for i := w; i < newUsers; i += 8 {
				spread.Hit(i)
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	by := spread.Servers()
	least, most := newUsers, 0
	for _, n := range demo.ServerNames {
		least, most = min(least, by[n]), max(most, by[n])
	}
	fmt.Printf("%d new users right after start: %v, busiest/least busy = %.2f, %d errors\n\n", newUsers, by, float64(most)/float64(max(least, 1)), len(spread.Errors()))

	// HAProxy with the exported configuration, beside the web server.
	hpListen := fmt.Sprintf("127.0.0.1:%d", d.Ports.WebServer+2)
	cfg, err := d.API.HAProxyConfig(ctx, demo.ClusterName, hpListen)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(tmp, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	hp := exec.Command("haproxy", "-db", "-f", cfgPath)
	if _, err := exec.LookPath("haproxy"); err != nil {
		hp = exec.Command("/usr/sbin/haproxy", "-db", "-f", cfgPath)
	}
	if err := hp.Start(); err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	defer func() { _ = hp.Process.Kill(); _, _ = hp.Process.Wait() }()
	if err := procs.WaitHTTP("http://" + hpListen + "/ping"); err != nil {
		return err
	}

	fmt.Printf("| front tier | frozen | requests | errors (failed, lost, gone back) | worst request | replayed old cookies: stale |\n| --- | --- | ---: | ---: | ---: | ---: |\n")
	for _, tier := range []struct{ name, url string }{{"tandem webserver", d.Web}, {"haproxy (export)", "http://" + hpListen}} {
		if err := healthy(ctx, d); err != nil {
			return err
		}
		l := testenv.NewCounterLoad(tier.url, users)
		for i := range users {
			l.Hit(i)
		}
		stop := make(chan struct{})
		loadDone := make(chan struct{})
		go func() { l.Run(users, stop); close(loadDone) }()
		time.Sleep(3 * time.Second) // clicking before the freeze
		old := l.Cookies()
		by := l.Servers()
		busiest := demo.ServerNames[0]
		for _, n := range demo.ServerNames {
			if by[n] > by[busiest] {
				busiest = n
			}
		}
		pid, err := pidOf(ctx, d, busiest)
		if err != nil {
			return err
		}
		_ = l.Worst()
		before := len(l.Errors())
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(freeze)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return err
		}
		time.Sleep(5 * time.Second) // clicking after the freeze (failback)
		close(stop)
		<-loadDone
		worst := l.Worst() // of every request from the freeze on
		errs := l.Errors()
		if err := healthy(ctx, d); err != nil {
			return err
		}
		l.SetCookies(old)
		for i := range old {
			l.Hit(i)
		}
		stale := len(l.Errors()) - len(errs)
		fmt.Printf("| %s | %s (%d of %d users) for %s | %d | %d | %s | %d |\n", tier.name, busiest, by[busiest], users, freeze, l.Requests(), len(errs)-before, worst.Round(time.Millisecond), stale)
		for i, e := range l.Errors() {
			if i == 5 {
				break
			}
			fmt.Println("  ", e)
		}
	}
	return nil
}

// healthy waits until every server of the demo runs.
func healthy(ctx context.Context, d *procs.Demo) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		topo, err := d.API.Topology(ctx)
		if err == nil {
			var bad []string
			for _, c := range topo.Clusters {
				for _, s := range c.Servers {
					if s.State != domain.StateRunning {
						bad = append(bad, s.Name+" "+s.State)
					}
				}
			}
			if len(bad) == 0 {
				return nil
			}
			err = fmt.Errorf("%s", strings.Join(bad, ", "))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo not healthy: %w", err)
		}
		time.Sleep(200 * time.Millisecond) // polling the admin server
	}
}

func pidOf(ctx context.Context, d *procs.Demo, name string) (int, error) {
	topo, err := d.API.Topology(ctx)
	if err != nil {
		return 0, err
	}
	for _, c := range topo.Clusters {
		for _, s := range c.Servers {
			if s.Name == name && s.PID > 0 {
				return s.PID, nil
			}
		}
	}
	return 0, fmt.Errorf("no pid for %s", name)
}
