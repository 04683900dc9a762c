package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/api"
	"tandem/backend/auth"
	"tandem/backend/domain"
	"tandem/backend/events"
)

// TestEventStreamThroughAPI: the stream route authenticates (bearer or
// console cookie), hands the filter and since to the real hub, which
// replays from SQLite and then goes live.
func TestEventStreamThroughAPI(t *testing.T) {
	var hub *events.Hub
	e := newEnv(t, func(c *api.Config) {
		hub = events.NewHub(events.HubConfig{Log: c.Store})
		c.Events = hub
	})
	t.Cleanup(hub.Close)
	rec := events.NewRecorder(e.st, hub)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, typ := range []string{domain.EventServerUp, domain.EventFailover, domain.EventServerUp, domain.EventFailover} {
		if _, err := rec.Record(ctx, domain.Event{Type: typ, Cluster: "c1", Server: "ms1"}); err != nil {
			t.Fatal(err)
		}
	}
	wsURL := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/api/v1/events/stream"

	// No credential: refused before the upgrade.
	_, resp, err := websocket.Dial(ctx, wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream without token: %v %v", err, resp)
	}

	read := func(c *websocket.Conn) domain.Event {
		t.Helper()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var ev domain.Event
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type == events.HeartbeatType {
				continue
			}
			return ev
		}
	}

	// Viewer bearer, filtered, resumed after id 1: replays 2 and 4, then live.
	c, _, err := websocket.Dial(ctx, wsURL+"?since=1&type=failover", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + e.viewer}},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	for _, want := range []int64{2, 4} {
		if ev := read(c); ev.ID != want || ev.Type != domain.EventFailover {
			t.Fatalf("replayed %+v, want id %d", ev, want)
		}
	}
	if _, err := rec.Record(ctx, domain.Event{Type: domain.EventServerDown, Cluster: "c1", Server: "ms1"}); err != nil {
		t.Fatal(err)
	}
	live, err := rec.Record(ctx, domain.Event{Type: domain.EventFailover, Cluster: "c1", Server: "ms2", Peer: "ms1", Sessions: 9})
	if err != nil {
		t.Fatal(err)
	}
	if ev := read(c); ev.ID != live.ID || ev.Sessions != 9 {
		t.Fatalf("live %+v, want id %d", ev, live.ID)
	}

	// The console: cookie session, same origin.
	b := newBrowser(t, e)
	if r := b.do("POST", "/api/v1/login", `{"name":"admin","password":"`+adminToken+`"}`); r.Status != 200 {
		t.Fatalf("login: %d", r.Status)
	}
	cookies := b.client.Jar.Cookies(mustURL(t, e.srv.URL))
	var cookie string
	for _, ck := range cookies {
		if ck.Name == auth.CookieName {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	c2, _, err := websocket.Dial(ctx, wsURL+"?since="+itoa(live.ID-1), &websocket.DialOptions{
		HTTPHeader: http.Header{"Cookie": {cookie}, "Origin": {e.srv.URL}},
	})
	if err != nil {
		t.Fatalf("dial with cookie: %v", err)
	}
	defer c2.CloseNow()
	if ev := read(c2); ev.ID != live.ID {
		t.Fatalf("cookie stream got %+v", ev)
	}
}
