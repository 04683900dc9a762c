package console_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tandem/backend/testenv"
)

// TestConsoleHosts: a real node manager reports its machine; the
// dashboard shows it in the node managers table and groups the cluster's
// servers by host.
func TestConsoleHosts(t *testing.T) {
	a := startAdmin(t)
	b := newBrowser(t)
	nmAddr := testenv.FreeAddr(t)
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/clusters", map[string]any{"name": "c1"}},
		{"/node-managers", map[string]any{"name": "nm1", "listen": nmAddr}},
		{"/servers", map[string]any{"name": "ms1", "cluster": "c1", "listen": testenv.FreeAddr(t), "node_manager": "nm1"}},
		{"/servers", map[string]any{"name": "ms2", "cluster": "c1", "listen": testenv.FreeAddr(t), "node_manager": "nm1"}},
	} {
		if st := a.call(t, http.MethodPost, c.path, c.body, nil); st != http.StatusCreated {
			t.Fatalf("POST %s: %d", c.path, st)
		}
	}
	testenv.Start(t, "nm1", a.env, "nodemanager", "--name", "nm1", "--admin", a.URL, "--data-dir", t.TempDir(), "--listen", nmAddr)
	host, _ := os.Hostname()
	testenv.Eventually(t, 30*time.Second, func() error {
		var topo struct {
			NodeManagers []struct {
				Host string `json:"host"`
			} `json:"node_managers"`
		}
		if a.call(t, http.MethodGet, "/topology", nil, &topo); len(topo.NodeManagers) != 1 || topo.NodeManagers[0].Host != host {
			return fmt.Errorf("node managers %+v, want host %q", topo.NodeManagers, host)
		}
		return nil
	})
	b.do("log in", 20*time.Second,
		chromedp.Navigate(a.URL+"/"),
		fill("#login-name", "admin"), fill("#login-password", a.Token),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#topology")))
	b.do("hosts on the dashboard", 30*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#node-managers td[data-host="`+host+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.hosts span[data-host="`+host+`"]`)))
	if got := b.text(`.hosts span[data-host="` + host + `"]`); !strings.Contains(got, "ms1, ms2") {
		t.Fatalf("servers by host: %q", got)
	}
	if got := b.text(`#node-managers td[data-host="` + host + `"]`); !strings.Contains(got, "CPUs") || !strings.Contains(got, "GiB") {
		t.Fatalf("node manager host cell: %q", got)
	}
	b.screenshot("dashboard-hosts")
}
