package webserver

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// freezable is an upstream that, while frozen, answers nothing (requests
// and health checks wait) as a SIGSTOPped process does, and records the
// request id of every request it got (and the ids that came marked as
// resent).
type freezable struct {
	*upstream
	mu     sync.Mutex
	frozen chan struct{} // nil: serving
	ids    []string
	resent map[string]bool
	probes atomic.Int64 // health checks received
}

func newFreezable(t *testing.T, name, rt string) *freezable {
	f := &freezable{resent: map[string]bool{}}
	// waitIfFrozen blocks while frozen: requests and health checks alike.
	waitIfFrozen := func() {
		f.mu.Lock()
		ch := f.frozen
		f.mu.Unlock()
		if ch != nil {
			<-ch
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		f.probes.Add(1)
		waitIfFrozen()
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.ids = append(f.ids, r.Header.Get("X-Tandem-Request-Id"))
		if r.Header.Get("X-Tandem-Resent") == "1" {
			f.resent[r.Header.Get("X-Tandem-Request-Id")] = true
		}
		f.mu.Unlock()
		waitIfFrozen()
		w.Header().Set("X-Tandem-Server", name)
		io.WriteString(w, name)
	})
	f.upstream = &upstream{name: name, route: rt, srv: httptest.NewServer(mux)}
	t.Cleanup(f.upstream.srv.Close)
	t.Cleanup(f.thaw) // runs first: frozen handlers return before Close waits for them
	return f
}

func (f *freezable) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen == nil {
		f.frozen = make(chan struct{})
	}
}

func (f *freezable) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen != nil {
		close(f.frozen)
		f.frozen = nil
	}
}

func (f *freezable) wasResent(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resent[id]
}

func (f *freezable) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

// withHeartbeatTimeout re-applies p's table with the cluster's heartbeat
// timeout set.
func withHeartbeatTimeout(t *testing.T, p *proxy, d time.Duration, members ...wire.Member) {
	t.Helper()
	err := p.s.Apply(context.Background(), wire.Config{WebServer: &wire.WebServerConfig{
		Name: "ws1", Listen: p.addr, CookieNames: []string{"JSESSIONID"}, Members: members,
		Cluster: wire.ClusterSettings{HeartbeatTimeoutMS: int(d / time.Millisecond)},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

type answer struct {
	code     int
	body     string
	took     time.Duration
	err      error
	cookieOf int
}

func fire(c *http.Client, method, url, cookie string, i int, out chan<- answer) {
	start := time.Now()
	req, _ := http.NewRequest(method, url, strings.NewReader(""))
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		out <- answer{err: err, took: time.Since(start), cookieOf: i}
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out <- answer{code: resp.StatusCode, body: string(b), took: time.Since(start), cookieOf: i}
}

// A member that stops answering (frozen) while requests wait on it: the
// web server finds it silent after the cluster's heartbeat timeout and
// resends every waiting request that names a session to the next member,
// with the same request id; a request that cannot be resent (a POST
// without a session) keeps waiting for its member.
func TestSilentMemberWaitingRequestsAreResent(t *testing.T) {
	t.Parallel()
	a := newFreezable(t, "ms1", "a")
	b := newFreezable(t, "ms2", "b")
	// Probes every 5 s with a 5 s timeout: only the silence watch can
	// find the frozen member within this test.
	p := startProxy(t, Config{ProbeInterval: 5 * time.Second}, a.member(), b.member())
	withHeartbeatTimeout(t, p, 600*time.Millisecond, a.member(), b.member())
	c := &http.Client{Timeout: 20 * time.Second}

	// Warm up: a answers.
	if code, body, _ := get(t, c, p.url+"/x", sessionCookie("JSESSIONID", "a", "b")); code != 200 || body != "ms1" {
		t.Fatalf("before the freeze: %d %q", code, body)
	}
	a.freeze()
	out := make(chan answer, 32)
	const n = 10
	cookies := make([]string, n)
	for i := range n {
		cookies[i] = sessionCookie("JSESSIONID", "a", "b")
		go fire(c, http.MethodPost, p.url+"/write", cookies[i], i, out)
	}
	// A POST without a session cannot be resent: through a web server
	// whose only member is a, it waits for a.
	p2 := startProxy(t, Config{ProbeInterval: 5 * time.Second}, a.member())
	withHeartbeatTimeout(t, p2, 600*time.Millisecond, a.member())
	go fire(c, http.MethodPost, p2.url+"/login", "", -1, out)
	for range n {
		r := <-out
		if r.err != nil || r.code != 200 || r.body != "ms2" {
			t.Fatalf("request %d: %v %d %q after %s", r.cookieOf, r.err, r.code, r.body, r.took)
		}
		t.Logf("request %d answered by ms2 after %s", r.cookieOf, r.took.Round(time.Millisecond))
	}
	if live := p.s.tab.Load().members[0].live.Load(); live {
		t.Fatal("the frozen member is still live")
	}
	// Every session request a got was resent to b with the same id.
	idsB := map[string]bool{}
	for _, id := range b.seen() {
		idsB[id] = true
	}
	// Each resend says so (X-Tandem-Resent: the first attempt may still be
	// applied later, so the session keeps the id long); a first attempt
	// does not.
	resent := 0
	for _, id := range a.seen()[1:] {
		if idsB[id] {
			resent++
			if !b.wasResent(id) {
				t.Errorf("request %s was resent without X-Tandem-Resent", id)
			}
		}
		if a.wasResent(id) {
			t.Errorf("first attempt %s marked as resent", id)
		}
	}
	if resent < n {
		t.Fatalf("%d of the frozen member's requests were resent with their id, want %d (a %q, b %q)", resent, n, a.seen(), b.seen())
	}
	// The POST without a session is still waiting on a, although a is
	// found silent too; it is answered by a once a thaws.
	deadline := time.Now().Add(10 * time.Second)
	for p2.s.tab.Load().members[0].live.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the second web server never found ms1 silent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-out:
		t.Fatalf("the sessionless POST was not left waiting: %+v", r)
	default:
	}
	a.thaw()
	r := <-out
	if r.cookieOf != -1 || r.err != nil || r.code != 200 || r.body != "ms1" {
		t.Fatalf("sessionless POST: %+v", r)
	}
	var met dto.Metric
	if err := p.s.fail[5].Write(&met); err != nil {
		t.Fatal(err)
	}
	if got := met.GetCounter().GetValue(); got < n {
		t.Fatalf("resent failovers %v, want at least %d", got, n)
	}
}

// The admin server's view steers the routing before this web server's own
// probes: a member it calls failed is skipped and its waiting requests are
// resent at once; one it calls running is tried at once.
func TestAdminMemberStatesSteerRouting(t *testing.T) {
	t.Parallel()
	a := newFreezable(t, "ms1", "a")
	b := newUpstream(t, "ms2", "b", nil)
	p := startProxy(t, Config{ProbeInterval: 5 * time.Second}, a.member(), b.member())
	// A long heartbeat timeout: the silence watch stays out of it.
	withHeartbeatTimeout(t, p, time.Minute, a.member(), b.member())
	c := &http.Client{Timeout: 20 * time.Second}
	a.freeze()
	out := make(chan answer, 8)
	go fire(c, http.MethodGet, p.url+"/x", sessionCookie("JSESSIONID", "a", "b"), 0, out)
	// Wait until the request waits on a.
	deadline := time.Now().Add(10 * time.Second)
	for len(a.seen()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached ms1")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// a's last answer is older than adminTrustAfter only after a while;
	// the admin's news is acted on then.
	m := p.s.tab.Load().members[0]
	m.lastAnswer.Store(time.Now().Add(-time.Second).UnixNano())
	p.s.MemberStates(wire.MemberStates{Cluster: "c1", Members: []wire.PeerState{{Name: "ms1", State: domain.StateFailed}, {Name: "ms2", State: domain.StateRunning}}})
	r := <-out
	if r.err != nil || r.code != 200 || r.body != "ms2" {
		t.Fatalf("waiting request after the admin's failed: %+v", r)
	}
	if m.live.Load() {
		t.Fatal("ms1 still live after the admin called it failed")
	}
	// New requests without a session skip it.
	for range 4 {
		if code, body, _ := get(t, c, p.url+"/new", ""); code != 200 || body != "ms2" {
			t.Fatalf("new request while ms1 is failed: %d %q", code, body)
		}
	}
	a.thaw()
	p.s.MemberStates(wire.MemberStates{Cluster: "c1", Members: []wire.PeerState{{Name: "ms1", State: domain.StateRunning}, {Name: "ms2", State: domain.StateRunning}}})
	if !m.live.Load() {
		t.Fatal("ms1 not live after the admin called it running")
	}
	// A member the admin calls stopped starts out of the routing when it
	// joins a new table.
	p.s.MemberStates(wire.MemberStates{Cluster: "c1", Members: []wire.PeerState{{Name: "ms3", State: domain.StateStopped}}})
	c3 := newUpstream(t, "ms3", "c", nil)
	withHeartbeatTimeout(t, p, time.Minute, a.member(), b.member(), c3.member())
	for _, mm := range p.s.tab.Load().members {
		if mm.name == "ms3" && mm.live.Load() {
			t.Fatal("ms3 joined live although the admin calls it stopped")
		}
	}
}

// A member whose health check hangs (cut off the network) does not hold
// up the probes of the others: while its probe waits, the other member is
// probed again and again, its answers keeping it from looking silent.
func TestHungProbeHoldsUpNoOtherMember(t *testing.T) {
	t.Parallel()
	a := newFreezable(t, "ms1", "a")
	b := newFreezable(t, "ms2", "b")
	startProxy(t, Config{ProbeInterval: 50 * time.Millisecond}, a.member(), b.member())
	a.freeze()
	a0, b0 := a.probes.Load(), b.probes.Load()
	deadline := time.Now().Add(10 * time.Second)
	for {
		da, db := a.probes.Load()-a0, b.probes.Load()-b0
		if db >= da+5 {
			t.Logf("while ms1's probes hung: ms2 probed %d times, ms1 %d", db, da)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ms2 probed %d times, ms1 %d: the hung probe holds up the others", db, da)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
