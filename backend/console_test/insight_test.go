package console_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tandem/backend/demo"
	"tandem/backend/domain"
	"tandem/backend/route"
	"tandem/backend/testenv"
)

// TestConsoleInsight runs `tandem demo` under a clicking load and checks
// the operator insight end to end: the session inspector (REST and
// console), capacity and its warning, kill and freeze drills, the
// history with its failover marks, and the acknowledgement of failures.
func TestConsoleInsight(t *testing.T) {
	dir := t.TempDir()
	base, err := demo.FreePortBase()
	if err != nil {
		t.Fatal(err)
	}
	ports := demo.PortsFor(base)
	p := testenv.Start(t, "demo", nil, "demo", "--data-dir", dir, "--port-base", strconv.Itoa(base))
	testenv.Eventually(t, 120*time.Second, func() error {
		if b, _ := os.ReadFile(p.LogPath); !bytes.Contains(b, []byte("Press Ctrl-C")) {
			return fmt.Errorf("demo not ready")
		}
		return nil
	})
	t.Cleanup(func() {
		_ = p.Signal(syscall.SIGINT)
		select {
		case <-p.Done():
		case <-time.After(60 * time.Second):
		}
	})
	// Registered last, so it runs first: the demo still runs.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The admin server's goroutines, for a test that waited in vain.
		var pf struct {
			PID int `json:"pid"`
		}
		logPath := filepath.Join(dir, "admin", "admin.log")
		before, _ := os.ReadFile(logPath)
		if b, err := os.ReadFile(filepath.Join(dir, "admin.pid")); err == nil && json.Unmarshal(b, &pf) == nil && pf.PID > 0 {
			_ = syscall.Kill(pf.PID, syscall.SIGQUIT)
			testenv.Eventually(t, 10*time.Second, func() error {
				if syscall.Kill(pf.PID, 0) == nil { // the dump is whole once it exited
					return fmt.Errorf("admin server still writing its goroutines")
				}
				return nil
			})
		}
		for _, n := range append(append([]string{}, demo.ServerNames...), demo.WebServerName) {
			b, _ := os.ReadFile(filepath.Join(dir, demo.NodeManagerName, n, n+".log"))
			t.Logf("---- %s.log (last 8000 bytes) ----\n%s", n, b[max(0, len(b)-8000):])
		}
		b, _ := os.ReadFile(logPath)
		t.Logf("---- admin.log (last 6000 bytes before the dump) ----\n%s", before[max(0, len(before)-6000):])
		t.Logf("---- admin goroutines ----\n%s", b[min(len(before), len(b)):])
	})
	tok, err := os.ReadFile(filepath.Join(dir, demo.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	a := &adminProc{URL: fmt.Sprintf("http://127.0.0.1:%d", ports.Admin), Token: strings.TrimSpace(string(tok))}
	web := fmt.Sprintf("http://127.0.0.1:%d", ports.WebServer)
	cluster := demo.ClusterName

	// 80 users clicking through the web server for the whole test.
	l := testenv.NewCounterLoad(web, 80)
	for i := range 80 {
		l.Hit(i)
	}
	l.Check(t, "sessions created")
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() { l.Run(6, stop); close(loadDone) }()
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop); <-loadDone }) }
	t.Cleanup(stopLoad)

	routes := map[string]string{} // route -> server
	var topo domain.Topology
	a.call(t, http.MethodGet, "/topology", nil, &topo)
	for _, c := range topo.Clusters {
		for _, s := range c.Servers {
			routes[s.Route] = s.Name
		}
	}

	// ---- Inspector: a session made through the web server ----
	// A session of its own (the load's counters must only move by its clicks).
	c := &http.Client{Timeout: 10 * time.Second}
	cookie := ""
	click := func(value string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, web+"/counter", nil)
		if value != "" {
			req.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: value})
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /counter: %d", resp.StatusCode)
		}
		for _, ck := range resp.Cookies() {
			if ck.Name == "JSESSIONID" {
				value = ck.Value
			}
		}
		return value
	}
	waitRunning(t, a, cluster) // a new session gets a backup from its first request
	cookie = click("")
	cv, err := route.Parse(cookie)
	if err != nil || cv.Backup == "" {
		t.Fatalf("cookie %q: %v", cookie, err)
	}
	var s0 sessionView
	if st := a.call(t, http.MethodGet, "/sessions/"+cookie, nil, &s0); st != http.StatusOK {
		t.Fatalf("inspect: %d", st)
	}
	if s0.ID != cv.ID || s0.Owner != routes[cv.Primary] || s0.Backup != routes[cv.Backup] || s0.Cluster != cluster || s0.Bytes <= 0 ||
		len(s0.Attributes) == 0 || s0.Values != nil || len(s0.Copies) != 2 {
		t.Fatalf("inspector %+v for cookie %q (routes %v)", s0, cookie, routes)
	}
	if st := a.callAs(t, "", http.MethodGet, "/sessions/"+cv.ID, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", st)
	}
	if st := a.call(t, http.MethodGet, "/sessions/"+route.NewID(), nil, nil); st != http.StatusNotFound {
		t.Fatalf("unknown id: %d, want 404", st)
	}
	var newTok struct {
		Token string `json:"token"`
	}
	if st := a.call(t, http.MethodPost, "/tokens", map[string]any{"name": "viewer1", "role": "viewer"}, &newTok); st != http.StatusCreated || newTok.Token == "" {
		t.Fatalf("viewer token: %d", st)
	}
	if st := a.callAs(t, newTok.Token, http.MethodGet, "/sessions/"+cv.ID+"?values=1", nil, nil); st != http.StatusForbidden {
		t.Fatalf("values for a viewer: %d, want 403", st)
	}
	var sv sessionView
	if st := a.callAs(t, newTok.Token, http.MethodGet, "/sessions/"+cv.ID, nil, &sv); st != http.StatusOK || sv.Values != nil {
		t.Fatalf("viewer inspect: %d %+v", st, sv.Values)
	}
	if st := a.call(t, http.MethodGet, "/sessions/"+cv.ID+"?values=1", nil, &sv); st != http.StatusOK || sv.Values["count"] == nil {
		t.Fatalf("admin values: %d %+v", st, sv.Values)
	}
	var audit []struct {
		Action string `json:"action"`
	}
	a.call(t, http.MethodGet, "/audit?limit=20", nil, &audit)
	if !strings.Contains(fmt.Sprint(audit), "session.read_values") {
		t.Fatalf("reading values is not audited: %+v", audit)
	}
	var page struct {
		Total    int           `json:"total"`
		Sessions []sessionView `json:"sessions"`
	}
	if st := a.call(t, http.MethodGet, "/servers/"+s0.Owner+"/sessions?limit=5", nil, &page); st != http.StatusOK || page.Total < 1 || len(page.Sessions) == 0 || page.Sessions[0].Bytes <= 0 {
		t.Fatalf("sessions of %s: %d %+v", s0.Owner, st, page)
	}

	// SIGKILL the session's owner: the inspector follows the session to
	// its backup, under a higher epoch, as the cookie the user gets says.
	owner := serverInfo(t, a, s0.Owner)
	if err := syscall.Kill(owner.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cur := cookie
	var moved sessionView
	testenv.Eventually(t, 30*time.Second, func() error {
		cur = click(cur)
		v, _ := route.Parse(cur)
		moved = sessionView{}
		a.call(t, http.MethodGet, "/sessions/"+cv.ID, nil, &moved)
		if moved.Owner == s0.Owner || moved.Epoch <= s0.Epoch || moved.Owner != routes[v.Primary] {
			return fmt.Errorf("owner %s epoch %d, cookie %s", moved.Owner, moved.Epoch, cur)
		}
		return nil
	})
	t.Logf("inspector: %s owned by %s (epoch %d), then by %s (epoch %d) after SIGKILL", shortID(cv.ID), s0.Owner, s0.Epoch, moved.Owner, moved.Epoch)
	waitRunning(t, a, cluster)

	// ---- Drills under the load ----
	killed := busiest(t, a, cluster)
	kill := runDrill(t, a, cluster, map[string]any{"server": killed, "fault": "kill"})
	frozen := busiest(t, a, cluster)
	backupBefore := frozenBackup(t, a, cluster, frozen)
	freeze := runDrill(t, a, cluster, map[string]any{"server": frozen, "fault": "freeze", "seconds": 6})
	for _, d := range []drillView{kill, freeze} {
		r := d.Report
		if r.DetectionMS < 0 || r.DetectionMS > 30000 || r.RecoveryMS < r.DetectionMS || r.ServerSessions > 0 && (r.TakeoverMS < 0 || r.TakenOver == 0) {
			t.Fatalf("drill %d (%s %s) times: %+v", d.ID, d.Fault, d.Server, r)
		}
	}
	if freeze.Report.DetectionMS <= 0 || freeze.Report.DetectionMS > 6000 || freeze.Report.RecoveryMS < 6000 {
		t.Fatalf("a 6 s freeze detected after %d ms, back after %d ms", freeze.Report.DetectionMS, freeze.Report.RecoveryMS)
	}
	l.Check(t, "drills")

	// ---- History: the sessions moved and the failovers are marked ----
	var hist struct {
		Series map[string][]domain.Sample `json:"series"`
		Marks  []domain.Event             `json:"marks"`
	}
	from := time.Now().Add(-10 * time.Minute).UTC().Format(time.RFC3339)
	if st := a.call(t, http.MethodGet, "/series?cluster="+cluster+"&from="+from+"&step=1", nil, &hist); st != http.StatusOK || len(hist.Series) != len(demo.ServerNames) {
		t.Fatalf("series: %d, %d servers", st, len(hist.Series))
	}
	var down, grew bool
	maxBackup := 0.0
	for _, x := range hist.Series[frozen] {
		if x.State != domain.StateRunning && x.Time.After(freeze.StartedAt) {
			down = true
		}
	}
	for _, x := range hist.Series[backupBefore.name] {
		if x.Time.After(freeze.StartedAt) {
			maxBackup = max(maxBackup, x.Sessions)
		}
	}
	grew = maxBackup > float64(backupBefore.sessions)
	if !down || !grew {
		t.Fatalf("history during the freeze of %s: down %v; its backup %s went from %d to at most %.0f sessions", frozen, down, backupBefore.name, backupBefore.sessions, maxBackup)
	}
	marked := map[string]bool{}
	for _, m := range hist.Marks {
		if m.Type == domain.EventFailover {
			marked[m.Peer] = true
		}
	}
	if !marked[killed] || !marked[frozen] {
		t.Fatalf("failover marks %v, want %s and %s", marked, killed, frozen)
	}

	// ---- Capacity: a limit one failure would overflow ----
	var scv struct {
		Override map[string]any `json:"override"`
	}
	a.call(t, http.MethodGet, "/clusters/"+cluster+"/session-config", nil, &scv)
	waitRunning(t, a, cluster) // every copy made again after the drills
	var capy domain.Capacity
	a.call(t, http.MethodGet, "/clusters/"+cluster+"/capacity", nil, &capy)
	total := 0
	for _, s := range capy.Servers {
		total += s.Sessions
	}
	limited := map[string]any{}
	for k, v := range scv.Override {
		limited[k] = v
	}
	// The four servers back each other up in a ring: the pairs (server,
	// its backup) hold 2*total sessions between them, so one pair holds at
	// least total/2 however failbacks still move sessions around; a limit
	// below that is overflowed by some failure at every moment.
	limited["max_sessions"] = total * 3 / 8
	if st := a.call(t, http.MethodPut, "/clusters/"+cluster+"/session-config", limited, nil); st != http.StatusOK {
		t.Fatalf("set max_sessions: %d", st)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		a.call(t, http.MethodGet, "/clusters/"+cluster+"/capacity", nil, &capy)
		if capy.Healthy || !strings.Contains(strings.Join(capy.Warnings, ";"), "over its max_sessions") {
			return fmt.Errorf("capacity %+v", capy.Warnings)
		}
		return nil
	})
	waitEvent(t, a, "capacity.warning", "would hurt")
	var refused struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if st := a.call(t, http.MethodPost, "/clusters/"+cluster+"/drills", map[string]any{"server": killed, "fault": "kill"}, &refused); st != http.StatusConflict || !strings.Contains(refused.Error.Message, "not healthy") {
		t.Fatalf("drill on an unhealthy cluster: %d %q", st, refused.Error.Message)
	}

	// ---- The console: warning, failures, inspector, history, drills ----
	b := newBrowser(t)
	b.do("log in", 20*time.Second,
		chromedp.Navigate(a.URL+"/"),
		fill("#login-name", "admin"), fill("#login-password", a.Token),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#topology")))
	b.do("capacity warning and failures on the dashboard", 30*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#capacity-warnings .capacity-warning[data-cluster="`+cluster+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#failures .failure[data-server="`+killed+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#chart-sessions-dash canvas`)))
	if got := b.text(`#capacity-warnings .capacity-warning`); !strings.Contains(got, "max_sessions") {
		t.Fatalf("dashboard warning: %q", got)
	}
	b.screenshot("dashboard-warning")
	b.do("acknowledge a failure", 20*time.Second,
		chromedp.Click(chromedp.CSS(`#failures .failure[data-server="`+killed+`"] button.ack`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#failures .failure[data-server="`+killed+`"]`)))
	var fs []domain.Failure
	a.call(t, http.MethodGet, "/failures", nil, &fs)
	for _, f := range fs {
		if f.Server == killed {
			t.Fatalf("%s still unacknowledged: %+v", killed, fs)
		}
	}

	b.do("inspector", 30*time.Second,
		chromedp.Navigate(a.URL+"/#/sessions"),
		fill("#session-search-q", "JSESSIONID="+cur+"; Path=/"),
		chromedp.Click(chromedp.CSS("#session-search-submit")),
		chromedp.WaitVisible(chromedp.CSS("#session-owner")))
	var now sessionView
	a.call(t, http.MethodGet, "/sessions/"+cv.ID, nil, &now)
	if got := b.text("#session-owner"); got != now.Owner {
		t.Fatalf("console owner %q, REST %q", got, now.Owner)
	}
	if b.count("#session-history li[data-type=failover]") == 0 || b.count("#session-copies tr[data-server]") != 2 {
		t.Fatalf("inspector history or copies missing")
	}
	b.do("attribute values", 20*time.Second,
		chromedp.Click(chromedp.CSS("#session-values")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-attr="count"] code.value`)))
	b.screenshot("inspector")

	b.do("history charts", 30*time.Second,
		chromedp.Navigate(a.URL+"/#/history?hours=1&cluster="+cluster),
		chromedp.WaitVisible(chromedp.CSS("#chart-sessions canvas")),
		chromedp.WaitVisible(chromedp.CSS("#chart-rps canvas")))
	b.waitJS("plotted series", `(() => { const c = document.querySelector('#chart-sessions'); return c && Number(c.dataset.points) > 10 && c.dataset.series.split(',').length === 4 && Number(c.dataset.marks) >= 2; })()`, 20*time.Second)
	for _, n := range demo.ServerNames {
		if !b.eval(fmt.Sprintf(`[...document.querySelectorAll('#history-sessions .u-legend .u-series')].some((e) => e.textContent.includes(%q))`, n)) {
			t.Fatalf("chart legend lacks %s", n)
		}
	}
	if b.count("#marks-sessions li[data-type=failover]") < 2 {
		t.Fatal("failover marks missing under the chart")
	}
	shot := b.screenshot("history")
	checkPNG(t, shot, 1000, 600)

	b.do("drills page", 30*time.Second,
		chromedp.Navigate(a.URL+"/#/drills?cluster="+cluster),
		chromedp.WaitVisible(chromedp.CSS(`#drills tr[data-id="`+strconv.FormatInt(freeze.ID, 10)+`"][data-state="passed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#capacity table.capacity`)))
	b.screenshot("drills")
	b.do("drill report", 30*time.Second,
		chromedp.Navigate(a.URL+"/#/drills/"+strconv.FormatInt(kill.ID, 10)),
		chromedp.WaitVisible(chromedp.CSS("#drill-verdict")))
	if got := b.text("#drill-lost"); got != "0" {
		t.Fatalf("drill page: %q sessions lost", got)
	}
	b.screenshot("drill")
	b.checkConsole()

	// The limit lifted: the warning ends, with an event.
	if st := a.call(t, http.MethodPut, "/clusters/"+cluster+"/session-config", scv.Override, nil); st != http.StatusOK {
		t.Fatalf("restore session config: %d", st)
	}
	waitEvent(t, a, "capacity.warning", "covered again")
	stopLoad()
	l.Check(t, "end")
	t.Logf("load: %d requests, worst %s", l.Requests(), l.Worst())
}

type sessionView struct {
	domain.SessionInfo
	History []domain.Event `json:"history"`
}

type drillView = domain.Drill

func shortID(id string) string { return id[:8] + "…" }

// callAs is call with another bearer token ("" sends none).
func (a *adminProc) callAs(t *testing.T, token, method, path string, in, out any) int {
	t.Helper()
	b := &adminProc{URL: a.URL, Token: token}
	if token == "" {
		req, _ := http.NewRequest(method, a.URL+"/api/v1"+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	return b.call(t, method, path, in, out)
}

func serverInfo(t *testing.T, a *adminProc, name string) domain.TopologyServer {
	t.Helper()
	var topo domain.Topology
	a.call(t, http.MethodGet, "/topology", nil, &topo)
	for _, c := range topo.Clusters {
		for _, s := range c.Servers {
			if s.Name == name {
				return s
			}
		}
	}
	t.Fatalf("no server %s", name)
	return domain.TopologyServer{}
}

// waitRunning waits until every server of the cluster runs and the
// capacity says one more failure is covered (drills need that).
func waitRunning(t *testing.T, a *adminProc, cluster string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		var c domain.Capacity
		a.call(t, http.MethodGet, "/clusters/"+cluster+"/capacity", nil, &c)
		for _, s := range c.Servers {
			if s.State != domain.StateRunning {
				return fmt.Errorf("%s is %s", s.Name, s.State)
			}
		}
		if !c.Healthy {
			return fmt.Errorf("capacity: %v", c.Warnings)
		}
		return nil
	})
}

// busiest is the running server of the cluster with the most sessions.
func busiest(t *testing.T, a *adminProc, cluster string) string {
	t.Helper()
	var c domain.Capacity
	a.call(t, http.MethodGet, "/clusters/"+cluster+"/capacity", nil, &c)
	best, n := "", -1
	for _, s := range c.Servers {
		if s.Sessions > n {
			best, n = s.Name, s.Sessions
		}
	}
	return best
}

type serverLoad struct {
	name     string
	sessions int
}

// frozenBackup is the server's backup and that backup's sessions now.
func frozenBackup(t *testing.T, a *adminProc, cluster, server string) serverLoad {
	t.Helper()
	var c domain.Capacity
	a.call(t, http.MethodGet, "/clusters/"+cluster+"/capacity", nil, &c)
	by := map[string]domain.ServerCapacity{}
	for _, s := range c.Servers {
		by[s.Name] = s
	}
	b := by[server].Backup
	return serverLoad{name: b, sessions: by[b].Sessions}
}

// runDrill starts a drill once the cluster is healthy, waits for its end,
// and checks it passed with no session lost.
func runDrill(t *testing.T, a *adminProc, cluster string, req map[string]any) drillView {
	t.Helper()
	waitRunning(t, a, cluster)
	var d drillView
	if st := a.call(t, http.MethodPost, "/clusters/"+cluster+"/drills", req, &d); st != http.StatusAccepted || d.ID == 0 {
		t.Fatalf("start drill %v: %d", req, st)
	}
	testenv.Eventually(t, 150*time.Second, func() error {
		a.call(t, http.MethodGet, "/drills/"+strconv.FormatInt(d.ID, 10), nil, &d)
		if d.State == domain.DrillRunning {
			return fmt.Errorf("drill %d: %s", d.ID, d.Phase)
		}
		return nil
	})
	r := d.Report
	t.Logf("drill %d %s %s (%d sessions, backup %s): %s; detected %d ms, taken over %d ms (%d), back %d ms, failed back %d ms (%d), retried %d, failed %d, lost %d",
		d.ID, d.Fault, d.Server, r.ServerSessions, r.TakesOver, d.State, r.DetectionMS, r.TakeoverMS, r.TakenOver, r.RecoveryMS, r.FailbackMS, r.FailedBack, r.Retried, r.Failed, r.SessionsLost)
	if d.State != domain.DrillPassed || r.SessionsLost != 0 || r.Failed != 0 {
		b, _ := json.MarshalIndent(d, "", " ")
		t.Fatalf("drill did not pass:\n%s", b)
	}
	return d
}

// waitEvent waits for an event of type typ whose message contains text.
func waitEvent(t *testing.T, a *adminProc, typ, text string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		var evs []domain.Event
		a.call(t, http.MethodGet, "/events?type="+typ+"&limit=20", nil, &evs)
		for _, e := range evs {
			if strings.Contains(e.Message, text) {
				return nil
			}
		}
		return fmt.Errorf("no %s event with %q: %+v", typ, text, evs)
	})
}

// checkPNG fails unless the file is a PNG of at least w×h pixels.
func checkPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil || cfg.Width < w || cfg.Height < h {
		t.Fatalf("screenshot %s: %dx%d %v", path, cfg.Width, cfg.Height, err)
	}
}
