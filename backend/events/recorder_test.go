package events_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"tandem/backend/domain"
	"tandem/backend/events"
	"tandem/backend/store"
	"tandem/backend/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "tandem.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestRecorderHistoryAndLiveAgree(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	st := openStore(t)
	hub := events.NewHub(events.HubConfig{Log: st})
	rec := events.NewRecorder(st, hub)
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dial(t, ctx, srv, "")
	waitSubscribers(t, hub, 1)

	const writers, each = 5, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := rec.Record(ctx, domain.Event{Type: domain.EventFailover, Cluster: "c1", Server: fmt.Sprintf("ms%d", w), Sessions: i}); err != nil {
					t.Errorf("Record: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var live []domain.Event
	for len(live) < writers*each {
		e, err := readEvent(ctx, c)
		if err != nil {
			t.Fatalf("after %d events: %v", len(live), err)
		}
		if n := len(live); n > 0 && e.ID <= live[n-1].ID {
			t.Fatalf("event %d after %d: out of order", e.ID, live[n-1].ID)
		}
		live = append(live, e)
	}
	history, err := st.Events(ctx, domain.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(history, live, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Fatalf("history and live view differ (-history +live):\n%s", diff)
	}
	if _, err := rec.Record(ctx, domain.Event{}); !errors.As(err, new(*domain.InvalidError)) {
		t.Fatalf("Record without type: %v, want invalid", err)
	}
	hub.Close()
}

func TestResumeAfterDropHasNoGapAndNoDuplicate(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	st := openStore(t)
	hub := events.NewHub(events.HubConfig{Log: st, Buffer: 16, WriteTimeout: time.Minute, ReplayPage: 50})
	rec := events.NewRecorder(st, hub)
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	slow := dial(t, ctx, srv, "")
	waitSubscribers(t, hub, 1)

	// A writer records events all along: before the drop, during the
	// replay and across the seam to live.
	payload := strings.Repeat("y", 8<<10)
	stop := make(chan struct{})
	lastWritten := make(chan int64, 1)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			<-lastWritten
		}
	}()
	go func() {
		var last int64
		defer func() { lastWritten <- last }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			e, err := rec.Record(ctx, domain.Event{Type: domain.EventServerUp, Cluster: "c1", Server: "ms1", Message: payload})
			if err != nil {
				t.Errorf("Record: %v", err)
				return
			}
			last = e.ID
		}
	}()
	testenv.Eventually(t, 60*time.Second, func() error {
		if s := hub.Stats(); s.Dropped == 0 {
			return fmt.Errorf("slow client not dropped yet (%d published)", s.Published)
		}
		return nil
	})

	seen := map[int64]int{}
	var last int64
	var err error
	for {
		var e domain.Event
		if e, err = readEvent(ctx, slow); err != nil {
			break
		}
		if e.ID != last+1 {
			t.Fatalf("first connection: id %d after %d", e.ID, last)
		}
		seen[e.ID]++
		last = e.ID
	}
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("slow client ended with %v, want 1008", err)
	}
	firstPart := last
	// Follow from the resume point until the writer's last event. A
	// resumed stream may itself be dropped (buffer 16, a busy writer): the
	// client then resumes again, exactly as a browser does.
	resumes := 0
	var resumed *websocket.Conn
	next := func() domain.Event {
		for {
			if resumed == nil {
				resumes++
				resumed = dial(t, ctx, srv, fmt.Sprintf("since=%d", last))
			}
			e, err := readEvent(ctx, resumed)
			if err == nil {
				return e
			}
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
				t.Fatalf("resumed stream after %d: %v", last, err)
			}
			resumed = nil
		}
	}
	check := func(e domain.Event) {
		if e.ID != last+1 {
			t.Fatalf("resumed stream: id %d after %d (gap or duplicate)", e.ID, last)
		}
		seen[e.ID]++
		last = e.ID
	}
	for range 200 {
		check(next())
	}
	close(stop)
	stopped = true
	final := <-lastWritten
	for last < final {
		check(next())
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %d seen %d times", id, n)
		}
	}
	if int64(len(seen)) != final {
		t.Fatalf("saw %d distinct events, %d were written", len(seen), final)
	}
	t.Logf("first connection got %d events before the drop; %d resumes delivered up to %d", firstPart, resumes, final)
	hub.Close()
}

func TestReplayHonoursFilterThenGoesLive(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	st := openStore(t)
	hub := events.NewHub(events.HubConfig{Log: st, ReplayPage: 2})
	rec := events.NewRecorder(st, hub)
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	record := func(typ, cluster, server string) int64 {
		e, err := rec.Record(ctx, domain.Event{Type: typ, Cluster: cluster, Server: server})
		if err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	first := record(domain.EventServerUp, "c1", "ms1")
	var want []int64
	for i := range 7 {
		if i%2 == 0 {
			want = append(want, record(domain.EventFailover, "c1", "ms2"))
		} else {
			record(domain.EventFailover, "c2", "ms9")
		}
	}
	c := dial(t, ctx, srv, fmt.Sprintf("since=%d&cluster=c1", first))
	for _, id := range want {
		e, err := readEvent(ctx, c)
		if err != nil || e.ID != id || e.Cluster != "c1" {
			t.Fatalf("replay: got %+v, %v; want id %d", e, err, id)
		}
	}
	waitSubscribers(t, hub, 1)
	record(domain.EventServerDown, "c2", "ms9")
	id := record(domain.EventServerDown, "c1", "ms2")
	if e, err := readEvent(ctx, c); err != nil || e.ID != id {
		t.Fatalf("live: got %+v, %v; want id %d", e, err, id)
	}
	hub.Close()
}

func TestRetentionPrunesByCountAndAge(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	st := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := time.Now().Add(-48 * time.Hour)
	for i := range 30 {
		e := domain.Event{Type: domain.EventServerUp, Server: fmt.Sprintf("ms%d", i)}
		if i < 5 {
			e.Time = old
		}
		if _, err := st.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Age only: the five old events go.
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() {
		adone <- events.RunRetention(actx, st, events.Retention{MaxAge: 24 * time.Hour, Interval: 10 * time.Millisecond}, quiet)
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		evs, err := st.Events(ctx, domain.EventFilter{})
		if err != nil {
			return err
		}
		if len(evs) != 25 || evs[0].ID != 6 {
			return fmt.Errorf("%d events left, first id %d", len(evs), evs[0].ID)
		}
		return nil
	})
	acancel()
	if err := <-adone; err != nil {
		t.Fatalf("RunRetention: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		done <- events.RunRetention(ctx, st, events.Retention{MaxAge: 24 * time.Hour, MaxCount: 20, Interval: 10 * time.Millisecond}, quiet)
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		evs, err := st.Events(ctx, domain.EventFilter{})
		if err != nil {
			return err
		}
		if len(evs) != 20 || evs[0].ID != 11 {
			return fmt.Errorf("%d events left, first %v", len(evs), evs)
		}
		return nil
	})
	// New events are pruned on the next rounds too.
	for range 5 {
		if _, err := st.AppendEvent(ctx, domain.Event{Type: domain.EventServerDown}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		evs, err := st.Events(ctx, domain.EventFilter{})
		if err != nil {
			return err
		}
		if len(evs) != 20 || evs[0].ID != 16 {
			return fmt.Errorf("%d events left, first id %d", len(evs), evs[0].ID)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunRetention: %v", err)
	}
}

func TestResumeFromUnknownIDGoesLive(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	st := openStore(t)
	hub := events.NewHub(events.HubConfig{Log: st, HeartbeatInterval: 50 * time.Millisecond})
	rec := events.NewRecorder(st, hub)
	srv := streamServer(t, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := rec.Record(ctx, domain.Event{Type: domain.EventServerUp})
	if err != nil {
		t.Fatal(err)
	}
	// A browser that saw event 500 of a database that no longer exists.
	c := dial(t, ctx, srv, "since=500")
	hb, err := readFrame(ctx, c)
	if err != nil || hb.Type != events.HeartbeatType || hb.ID != first.ID {
		t.Fatalf("first frame %+v, %v; want a heartbeat naming %d", hb, err, first.ID)
	}
	next, err := rec.Record(ctx, domain.Event{Type: domain.EventServerDown})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := readEvent(ctx, c); err != nil || e.ID != next.ID {
		t.Fatalf("got %+v, %v; want event %d", e, err, next.ID)
	}
	hub.Close()
}
