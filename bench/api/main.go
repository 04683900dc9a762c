// Command api benchmarks the admin REST API: reads/s and writes/s through
// the real gin engine over loopback HTTP, against a real SQLite file (WAL,
// immediate write transactions), with concurrent clients.
//
//	go run ./bench/api -duration 5s -clients 8 -servers 20
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/backend/api"
	"tandem/backend/auth"
	"tandem/backend/domain"
	"tandem/backend/store"
)

const token = "bench-admin-token-0123456789abcdef"

func main() {
	dur := flag.Duration("duration", 5*time.Second, "time per case")
	clients := flag.Int("clients", 8, "concurrent HTTP clients")
	servers := flag.Int("servers", 20, "managed servers in the benchmark cluster")
	syncModes := flag.String("synchronous", "FULL,NORMAL", "SQLite synchronous settings to measure, in turn, in the same run")
	flag.Parse()
	rates := map[string]map[string]float64{}
	modes := strings.Split(*syncModes, ",")
	for _, mode := range modes {
		r, err := run(*dur, *clients, *servers, strings.TrimSpace(mode))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/api:", err)
			os.Exit(1)
		}
		rates[mode] = r
		fmt.Println()
	}
	if len(modes) == 2 {
		a, b := modes[0], modes[1]
		fmt.Printf("req/s %s / %s, same run:\n", a, b)
		names := make([]string, 0, len(rates[a]))
		for name := range rates[a] {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if rb := rates[b][name]; rb > 0 {
				fmt.Printf("  %-58s %.2f\n", name, rates[a][name]/rb)
			}
		}
	}
}

type request struct {
	method, path string
	body         []byte
	want         int
}

type benchCase struct {
	name string
	next func(worker, i int) request
}

func run(dur time.Duration, clients, nServers int, syncMode string) (map[string]float64, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tandem-bench-api-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := store.OpenWith(ctx, filepath.Join(dir, "tandem.db"), nil, store.Options{Synchronous: syncMode})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	nodeTok, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: dir, AdminToken: token})
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(api.New(api.Config{Store: st, Auth: auth.New(st, nodeTok, nil)}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}

	if _, err := st.CreateCluster(ctx, "bench", domain.Cluster{Name: "c1"}); err != nil {
		return nil, err
	}
	for i := range nServers {
		if _, err := st.CreateServer(ctx, "bench", domain.Server{Name: fmt.Sprintf("ms%d", i), Cluster: "c1", Listen: fmt.Sprintf("127.0.0.1:%d", 20000+i)}); err != nil {
			return nil, err
		}
	}

	var created atomic.Int64
	cases := []benchCase{
		{"read  GET /servers/{name}", func(w, i int) request {
			return request{"GET", fmt.Sprintf("/api/v1/servers/ms%d", i%nServers), nil, 200}
		}},
		{"read  GET /servers/{name}/session-config", func(w, i int) request {
			return request{"GET", fmt.Sprintf("/api/v1/servers/ms%d/session-config", i%nServers), nil, 200}
		}},
		{fmt.Sprintf("read  GET /topology (%d servers)", nServers), func(w, i int) request {
			return request{"GET", "/api/v1/topology", nil, 200}
		}},
		{"write POST /clusters", func(w, i int) request {
			n := created.Add(1)
			return request{"POST", "/api/v1/clusters", fmt.Appendf(nil, `{"name":"b%d"}`, n), 201}
		}},
		{"write PUT /servers/{name}/session-config", func(w, i int) request {
			return request{"PUT", fmt.Sprintf("/api/v1/servers/ms%d/session-config", (w*7919+i)%nServers), fmt.Appendf(nil, `{"max_sessions":%d}`, i), 200}
		}},
		{fmt.Sprintf("write PUT /clusters/{name}/session-config (%d revisions)", nServers), func(w, i int) request {
			return request{"PUT", "/api/v1/clusters/c1/session-config", fmt.Appendf(nil, `{"timeout_seconds":%d}`, 60+(w*100000+i)%600000), 200}
		}},
	}
	fmt.Printf("admin API over loopback HTTP, real SQLite (WAL, synchronous=%s), %d clients, %s per case\n\n", syncMode, clients, dur)
	rates := map[string]float64{}
	fmt.Printf("%-58s %9s %10s %9s %9s\n", "case", "requests", "req/s", "p50 ms", "p99 ms")
	for _, c := range cases {
		n, rate, p50, p99, err := measure(hc, srv.URL, c, clients, dur)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		rates[c.name] = rate
		fmt.Printf("%-58s %9d %10.0f %9.2f %9.2f\n", c.name, n, rate, p50, p99)
	}
	return rates, nil
}

func measure(hc *http.Client, base string, c benchCase, clients int, dur time.Duration) (int, float64, float64, float64, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lats     []time.Duration
		firstErr error
	)
	deadline := time.Now().Add(dur)
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				r := c.next(w, i)
				t0 := time.Now()
				if err := send(hc, base, r); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, 0, 0, firstErr
	}
	if len(lats) == 0 {
		return 0, 0, 0, 0, errors.New("no requests completed")
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	ms := func(q float64) float64 {
		return float64(lats[int(q*float64(len(lats)-1))].Microseconds()) / 1000
	}
	return len(lats), float64(len(lats)) / elapsed.Seconds(), ms(0.50), ms(0.99), nil
}

func send(hc *http.Client, base string, r request) error {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != r.want {
		return fmt.Errorf("%s %s: status %d: %s", r.method, r.path, resp.StatusCode, b)
	}
	return nil
}
