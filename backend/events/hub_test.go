package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"tandem/backend/domain"
	"tandem/backend/events"
	"tandem/backend/testenv"
)

// streamServer serves hub's stream at / with the query parameters of the
// REST API (since, type, cluster, server).
func streamServer(t *testing.T, hub *events.Hub) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		since, _ := strconv.ParseInt(q.Get("since"), 10, 64)
		f := domain.EventFilter{Cluster: q.Get("cluster"), Server: q.Get("server")}
		if ty := q.Get("type"); ty != "" {
			f.Types = strings.Split(ty, ",")
		}
		hub.ServeStream(w, r, f, since)
	}))
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	return srv
}

func dial(t *testing.T, ctx context.Context, srv *httptest.Server, query string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/?"+query, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readFrame(ctx context.Context, c *websocket.Conn) (domain.Event, error) {
	_, b, err := c.Read(ctx)
	if err != nil {
		return domain.Event{}, err
	}
	var e domain.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return domain.Event{}, fmt.Errorf("decode %q: %w", b, err)
	}
	return e, nil
}

// readEvent reads the next frame that is not a heartbeat.
func readEvent(ctx context.Context, c *websocket.Conn) (domain.Event, error) {
	for {
		e, err := readFrame(ctx, c)
		if err != nil || e.Type != events.HeartbeatType {
			return e, err
		}
	}
}

func waitSubscribers(t *testing.T, hub *events.Hub, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := hub.Stats().Subscribers; got != n {
			return fmt.Errorf("%d subscribers, want %d", got, n)
		}
		return nil
	})
}

func TestHundredClientsReceiveEveryEventInOrder(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const clients, n = 100, 1000
	hub := events.NewHub(events.HubConfig{Buffer: n})
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, ctx, srv, "")
	}
	waitSubscribers(t, hub, clients)

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := int64(1); want <= n; want++ {
				e, err := readEvent(ctx, c)
				if err != nil {
					errs <- fmt.Errorf("client %d: after %d events: %w", i, want-1, err)
					return
				}
				if e.ID != want || e.Type != domain.EventFailover || e.Sessions != int(want) {
					errs <- fmt.Errorf("client %d: got event %+v, want id %d", i, e, want)
					return
				}
			}
		}()
	}
	for id := int64(1); id <= n; id++ {
		hub.Publish(domain.Event{ID: id, Type: domain.EventFailover, Cluster: "c1", Server: "ms1", Sessions: int(id), Time: time.Now()})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := hub.Stats(); s.Dropped != 0 || s.Published != n {
		t.Errorf("stats %+v, want no drops and %d published", s, n)
	}
	hub.Close()
}

func TestFilterOnStream(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	hub := events.NewHub(events.HubConfig{})
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	byType := dial(t, ctx, srv, "type=failover,failback")
	byCluster := dial(t, ctx, srv, "cluster=c2")
	byServer := dial(t, ctx, srv, "server=ms2")
	waitSubscribers(t, hub, 3)
	all := []domain.Event{
		{ID: 1, Type: domain.EventServerDown, Cluster: "c1", Server: "ms1"},
		{ID: 2, Type: domain.EventFailover, Cluster: "c1", Server: "ms2", Peer: "ms1"},
		{ID: 3, Type: domain.EventServerUp, Cluster: "c2", Server: "ms9"},
		{ID: 4, Type: domain.EventFailback, Cluster: "c2", Server: "ms9"},
		{ID: 5, Type: domain.EventBackupChanged, Cluster: "c1", Server: "ms3", Peer: "ms2"},
	}
	for _, e := range all {
		hub.Publish(e)
	}
	for _, tc := range []struct {
		c    *websocket.Conn
		want []int64
	}{{byType, []int64{2, 4}}, {byCluster, []int64{3, 4}}, {byServer, []int64{2, 5}}} {
		for _, id := range tc.want {
			e, err := readEvent(ctx, tc.c)
			if err != nil || e.ID != id {
				t.Fatalf("got %+v, %v; want id %d", e, err, id)
			}
		}
	}
	hub.Close()
}

func TestHeartbeatOnQuietStream(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	hub := events.NewHub(events.HubConfig{HeartbeatInterval: 50 * time.Millisecond})
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, ctx, srv, "since=0")
	waitSubscribers(t, hub, 1)
	hub.Publish(domain.Event{ID: 7, Type: domain.EventServerUp})
	e, err := readFrame(ctx, c)
	if err != nil || e.ID != 7 {
		t.Fatalf("first frame %+v, %v", e, err)
	}
	e, err = readFrame(ctx, c)
	if err != nil || e.Type != events.HeartbeatType || e.ID != 7 {
		t.Fatalf("want heartbeat with id 7, got %+v, %v", e, err)
	}
	hub.Close()
	// After Close the stream ends with "going away".
	for {
		if _, err = readFrame(ctx, c); err != nil {
			break
		}
	}
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Fatalf("close status %v (%v), want going away", got, err)
	}
}

func TestSlowClientIsDroppedWithoutSlowingOthers(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	// A long write timeout: the slow client must be dropped by the bounded
	// buffer, not by a failing write.
	hub := events.NewHub(events.HubConfig{Buffer: 16, WriteTimeout: time.Minute})
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const fast = 4
	slow := dial(t, ctx, srv, "")
	got := make([]chan int64, fast)
	for i := range got {
		got[i] = make(chan int64, 1)
		c := dial(t, ctx, srv, "")
		go func() {
			for {
				e, err := readEvent(ctx, c)
				if err != nil {
					close(got[i])
					return
				}
				got[i] <- e.ID
			}
		}()
	}
	waitSubscribers(t, hub, fast+1)

	// Publish in step with the fast clients while the slow one reads
	// nothing, until the hub drops the slow one (its socket buffers fill,
	// then its bounded buffer).
	payload := strings.Repeat("x", 8<<10)
	var id int64
	for hub.Stats().Dropped == 0 {
		if id == 20000 {
			t.Fatalf("slow client not dropped after %d events", id)
		}
		id++
		hub.Publish(domain.Event{ID: id, Type: domain.EventServerUp, Message: payload})
		for i := range got {
			if g, ok := <-got[i]; !ok || g != id {
				t.Fatalf("fast client %d got %d (open %v), want %d", i, g, ok, id)
			}
		}
	}
	if s := hub.Stats(); s.Dropped != 1 || s.Subscribers != fast {
		t.Fatalf("stats %+v, want 1 dropped and %d subscribers", s, fast)
	}
	// The fast clients keep receiving everything.
	for range 50 {
		id++
		hub.Publish(domain.Event{ID: id, Type: domain.EventServerUp})
		for i := range got {
			if g := <-got[i]; g != id {
				t.Fatalf("fast client %d got %d, want %d", i, g, id)
			}
		}
	}

	// The slow client now reads: a gapless prefix, then close 1008 naming
	// the last ID it was sent.
	var last int64
	var err error
	for {
		var e domain.Event
		if e, err = readEvent(ctx, slow); err != nil {
			break
		}
		if e.ID != last+1 {
			t.Fatalf("slow client got id %d after %d", e.ID, last)
		}
		last = e.ID
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation {
		t.Fatalf("slow client ended with %v, want close 1008", err)
	}
	if want := fmt.Sprintf("since=%d", last); !strings.Contains(ce.Reason, want) {
		t.Fatalf("close reason %q does not name %s", ce.Reason, want)
	}
	if last == 0 || last >= id {
		t.Fatalf("slow client received %d of %d events", last, id)
	}
	t.Logf("slow client dropped after %d of %d events: %q", last, id, ce.Reason)
	hub.Close()
}

func TestDeadPeerIsDroppedByPing(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	hub := events.NewHub(events.HubConfig{PingInterval: 50 * time.Millisecond, PongTimeout: 200 * time.Millisecond})
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// This client never reads, so it never answers a ping: to the server
	// it is a dead peer that must not keep its subscription.
	dial(t, ctx, srv, "")
	waitSubscribers(t, hub, 1)
	waitSubscribers(t, hub, 0)
	hub.Close()
}

func TestBrowserFromAnotherOriginIsRefused(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	hub := events.NewHub(events.HubConfig{})
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
	_, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": []string{"http://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin dial: %v, %v; want 403", resp, err)
	}
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": []string{srv.URL}}})
	if err != nil {
		t.Fatalf("same-origin dial: %v", err)
	}
	c.CloseNow()
	hub.Close()
}

func TestCollectorReportsStats(t *testing.T) {
	hub := events.NewHub(events.HubConfig{Buffer: 1})
	defer hub.Close()
	sub := hub.Subscribe(domain.EventFilter{})
	defer sub.Close()
	hub.Publish(domain.Event{ID: 1, Type: domain.EventServerUp})
	hub.Publish(domain.Event{ID: 2, Type: domain.EventServerUp}) // buffer full: dropped
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(hub.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			got[mf.GetName()] = m.GetCounter().GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"tandem_events_published_total":              2,
		"tandem_events_slow_consumers_dropped_total": 1,
		"tandem_events_stream_subscribers":           0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("metrics (-want +got):\n%s", diff)
	}
}
