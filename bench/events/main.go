// Command events benchmarks the event hub: fan-out of events to many
// WebSocket clients over loopback, hub only and through the Recorder with a
// real SQLite store; and, with -failover, the latency from SIGKILL of a
// managed server to a stream client receiving the failover event.
//
//	go run ./bench/events -clients 100 -events 20000
//	go run ./bench/events -failover -kills 10 [-heartbeat-ms 100]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/domain"
	"tandem/backend/events"
	"tandem/backend/store"
)

func main() {
	clients := flag.Int("clients", 100, "stream clients")
	n := flag.Int("events", 2000, "events to publish (hub only)")
	nrec := flag.Int("recorded", 2000, "events to record through SQLite")
	failover := flag.Bool("failover", false, "measure SIGKILL → failover event latency with real processes")
	kills := flag.Int("kills", 10, "kills for -failover")
	hb := flag.Int("heartbeat-ms", 0, "cluster heartbeat interval for -failover (timeout 3x); 0: the defaults")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the fan-out cases to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if err := run(*clients, *n, *nrec, *failover, *kills, *hb); err != nil {
		fmt.Fprintln(os.Stderr, "bench/events:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(clients, n, nrec int, failover bool, kills, hb int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if failover {
		return benchFailover(ctx, kills, hb)
	}
	fmt.Printf("hub fan-out over loopback WebSocket, %d clients\n\n", clients)
	fmt.Printf("%-34s %10s %12s %14s %10s\n", "case", "events", "seconds", "events/s", "deliv/s")

	// Hub only: buffers sized so nobody is dropped; measures pure fan-out.
	// A burst of n events queues up to megabytes per socket; a pong would
	// wait behind all of it, so pings are off for the throughput cases.
	hub := events.NewHub(events.HubConfig{Buffer: n + 1, PingInterval: time.Hour})
	d, err := fanout(ctx, hub, clients, n, func(i int) error {
		hub.Publish(domain.Event{ID: int64(i), Time: time.Now(), Type: domain.EventFailover, Cluster: "cluster1", Server: "ms2", Peer: "ms1", Sessions: 1000, Message: "took over 1000 sessions of ms1"})
		return nil
	})
	hub.Close()
	if err != nil {
		return err
	}
	report("hub only (Publish)", n, clients, d)

	// Recorder: every event appended to SQLite, then published.
	dir, err := os.MkdirTemp("", "bench-events-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, filepath.Join(dir, "tandem.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer st.Close()
	hub = events.NewHub(events.HubConfig{Log: st, Buffer: nrec + 1, PingInterval: time.Hour})
	rec := events.NewRecorder(st, hub)
	d, err = fanout(ctx, hub, clients, nrec, func(i int) error {
		_, err := rec.Record(ctx, domain.Event{Type: domain.EventFailover, Cluster: "cluster1", Server: "ms2", Peer: "ms1", Sessions: 1000, Message: "took over 1000 sessions of ms1"})
		return err
	})
	hub.Close()
	if err != nil {
		return err
	}
	report("Recorder (SQLite append + publish)", nrec, clients, d)
	if s := hub.Stats(); s.Dropped > 0 {
		fmt.Printf("\nnote: %d clients were dropped as too slow\n", s.Dropped)
	}
	return nil
}

func report(name string, n, clients int, d time.Duration) {
	fmt.Printf("%-34s %10d %12.3f %14.0f %10.0f\n", name, n, d.Seconds(), float64(n)/d.Seconds(), float64(n*clients)/d.Seconds())
}

// fanout serves hub on loopback, connects clients, calls publish n times
// (IDs 1..n) and returns the time until every client has received all n.
func fanout(ctx context.Context, hub *events.Hub, clients, n int, publish func(i int) error) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.ServeStream(w, r, domain.EventFilter{}, 0)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	url := "ws://" + ln.Addr().String() + "/"

	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return 0, fmt.Errorf("dial: %w", err)
		}
		defer c.CloseNow()
		conns[i] = c
	}
	for hub.Stats().Subscribers < clients {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var e domain.Event
			for got := 0; got < n; {
				_, b, err := c.Read(ctx)
				if err != nil {
					errs <- fmt.Errorf("client after %d events: %w", got, err)
					return
				}
				if err := json.Unmarshal(b, &e); err != nil {
					errs <- err
					return
				}
				if e.Type != events.HeartbeatType {
					got++
				}
			}
		}()
	}
	for i := 1; i <= n; i++ {
		if err := publish(i); err != nil {
			return 0, err
		}
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	var all error
	for err := range errs {
		all = errors.Join(all, err)
	}
	return d, all
}
