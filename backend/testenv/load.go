package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// CounterLoad drives sessions of the sample application's GET /counter
// (through a web server, usually) and checks every answer: 200, the same
// session id as before, and a count exactly one higher than the last.
type CounterLoad struct {
	url      string
	hc       *http.Client
	mu       sync.Mutex
	cookies  []string // session cookie header per session
	ids      []string
	counts   []int
	servers  []string // the server that answered the session's last request
	errs     []string
	requests int
	worst    time.Duration // the slowest answered or failed request
}

// NewCounterLoad returns a load of n sessions against base URL url.
func NewCounterLoad(url string, n int) *CounterLoad {
	return &CounterLoad{url: url, hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		cookies: make([]string, n), ids: make([]string, n), counts: make([]int, n), servers: make([]string, n)}
}

func (l *CounterLoad) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

// Hit sends one /counter request for session i and checks the answer.
func (l *CounterLoad) Hit(i int) {
	req, _ := http.NewRequest(http.MethodGet, l.url+"/counter", nil)
	l.mu.Lock()
	if l.cookies[i] != "" {
		req.Header.Set("Cookie", l.cookies[i])
	}
	l.mu.Unlock()
	start := time.Now()
	defer func() {
		d := time.Since(start)
		l.mu.Lock()
		l.worst = max(l.worst, d)
		l.mu.Unlock()
	}()
	resp, err := l.hc.Do(req)
	if err != nil {
		l.fail("session %d: %v", i, err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		l.fail("session %d: status %d: %s", i, resp.StatusCode, b)
		return
	}
	var ans struct {
		Server  string `json:"server"`
		Session string `json:"session"`
		Count   int    `json:"count"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		l.fail("session %d: %v: %s", i, err, b)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	for _, c := range resp.Cookies() {
		if c.Name == "JSESSIONID" {
			l.cookies[i] = c.Name + "=" + c.Value
		}
	}
	switch {
	case l.ids[i] != "" && ans.Session != l.ids[i]:
		l.errs = append(l.errs, fmt.Sprintf("session %d lost: id %s became %s (count %d) on %s", i, l.ids[i], ans.Session, ans.Count, ans.Server))
	case ans.Count != l.counts[i]+1:
		l.errs = append(l.errs, fmt.Sprintf("session %d: count %d after %d on %s", i, ans.Count, l.counts[i], ans.Server))
	}
	l.ids[i], l.counts[i], l.servers[i] = ans.Session, ans.Count, ans.Server
}

// Servers counts the sessions by the server that answered their last
// request.
func (l *CounterLoad) Servers() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, s := range l.servers {
		if s != "" {
			out[s]++
		}
	}
	return out
}

// Cookies returns a copy of every session's cookie header now.
func (l *CounterLoad) Cookies() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.cookies...)
}

// SetCookies makes the next request of each session send cookies[i]
// (an old cookie, replayed as a browser tab left open would).
func (l *CounterLoad) SetCookies(cookies []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	copy(l.cookies, cookies)
}

// Errors returns every bad answer so far (failed, lost or gone back).
func (l *CounterLoad) Errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// Requests returns how many requests were answered well so far.
func (l *CounterLoad) Requests() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests
}

// Worst returns the slowest request so far and resets it.
func (l *CounterLoad) Worst() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.worst
	l.worst = 0
	return w
}

// Run drives every session with workers until stop is closed.
func (l *CounterLoad) Run(workers int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	n := len(l.counts)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for i := w; i < n; i += workers {
					select {
					case <-stop:
						return
					default:
					}
					l.Hit(i)
				}
			}
		}()
	}
	wg.Wait()
}

// Check fails the test if any answer so far was bad, showing the first ones.
func (l *CounterLoad) Check(t testing.TB, phase string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		n := min(len(l.errs), 15)
		t.Fatalf("%s: %d bad answers in %d requests, first:\n%s", phase, len(l.errs), l.requests, strings.Join(l.errs[:n], "\n"))
	}
	t.Logf("%s: %d requests, all good", phase, l.requests)
}
