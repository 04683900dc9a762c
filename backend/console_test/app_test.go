package console_test

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tandem/backend/testenv"
)

// TestConsoleApplications: an application is created in its form (a bad
// env variable is shown beside the field first), set on a cluster from the
// cluster's page, and the servers table shows it running on a real
// managed server.
func TestConsoleApplications(t *testing.T) {
	a := startAdmin(t)
	b := newBrowser(t)
	ms1Addr := testenv.FreeAddr(t)
	if st := a.call(t, http.MethodPost, "/clusters", map[string]any{"name": "c1", "heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 500}, nil); st != http.StatusCreated {
		t.Fatalf("create c1: %d", st)
	}
	if st := a.call(t, http.MethodPost, "/servers", map[string]any{"name": "ms1", "cluster": "c1", "listen": ms1Addr}, nil); st != http.StatusCreated {
		t.Fatalf("create ms1: %d", st)
	}
	a.startServer(t, "ms1")

	b.do("log in", 20*time.Second,
		chromedp.Navigate(a.URL+"/"),
		fill("#login-name", "admin"), fill("#login-password", a.Token),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#topology")))

	py := filepath.Join(testenv.RepoRoot(), "examples", "cart-python", "app.py")
	b.do("application form with a bad env", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/applications"),
		fill("#app-new-name", "cart"),
		fill("#app-new-command", "python3\n"+py),
		fill("#app-new-env", "PORT=1"),
		chromedp.Click(chromedp.CSS("#app-new-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#app-new-env-error:not([hidden])`)))
	if msg := b.text("#app-new-env-error"); !strings.Contains(msg, "PORT") {
		t.Fatalf("env error says %q", msg)
	}
	b.screenshot("application-invalid-env")
	b.do("create the application", 20*time.Second,
		fill("#app-new-env", "APP_VERSION=v7"),
		chromedp.Click(chromedp.CSS("#app-new-submit")),
		chromedp.WaitVisible(chromedp.CSS("#app-edit-submit")))
	var app struct {
		Kind    string            `json:"kind"`
		Command []string          `json:"command"`
		Env     map[string]string `json:"env"`
	}
	if st := a.call(t, http.MethodGet, "/applications/cart", nil, &app); st != http.StatusOK || app.Kind != "process" || len(app.Command) != 2 || app.Command[1] != py || app.Env["APP_VERSION"] != "v7" {
		t.Fatalf("application as stored: %d %+v", st, app)
	}

	b.do("set it on c1", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/clusters/c1"),
		chromedp.WaitVisible(chromedp.CSS("#cluster-app")),
		chromedp.SetValue(chromedp.CSS("#cluster-app"), "cart"),
		chromedp.Click(chromedp.CSS("#cluster-app-set")),
		chromedp.WaitVisible(chromedp.CSS("#cluster-app-out .notice.ok")))
	if got := b.text("#cluster-app-out"); !strings.Contains(got, "1 server(s) got a new revision") {
		t.Fatalf("set application says %q", got)
	}
	var cl struct {
		Application string `json:"application"`
	}
	if a.call(t, http.MethodGet, "/clusters/c1", nil, &cl); cl.Application != "cart" {
		t.Fatalf("cluster application %q", cl.Application)
	}
	// The cluster page's servers table names the application at once (its
	// state follows as the server reports it).
	b.do("cluster's servers table names the application", 20*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#cluster-servers tr[data-server="ms1"] [data-application="cart"]`)))
	b.screenshot("cluster-application")

	// Deleting an application a cluster runs is refused (409), and the
	// console says why.
	b.do("delete cart while c1 runs it", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/applications/cart"),
		chromedp.WaitVisible(chromedp.CSS("#app-edit-submit")),
		chromedp.Click(chromedp.CSS("#app-edit button.danger")),
		chromedp.WaitVisible(chromedp.CSS(`#app-edit button.danger`)),
		chromedp.Click(chromedp.CSS("#app-edit button.danger")),
		chromedp.WaitVisible(chromedp.CSS("#app-edit-name-error:not([hidden])")))
	if got := b.text("#app-edit-name-error"); !strings.Contains(got, "c1") {
		t.Fatalf("delete in use says %q", got)
	}
	if st := a.call(t, http.MethodGet, "/applications/cart", nil, nil); st != http.StatusOK {
		t.Fatalf("cart after a refused delete: %d", st)
	}
	b.screenshot("application-delete-in-use")

	testenv.Eventually(t, 60*time.Second, func() error {
		var topo struct {
			Clusters []struct {
				Servers []struct {
					Name string `json:"name"`
					App  struct {
						State string `json:"state"`
					} `json:"app"`
				} `json:"servers"`
			} `json:"clusters"`
		}
		a.call(t, http.MethodGet, "/topology", nil, &topo)
		for _, c := range topo.Clusters {
			for _, s := range c.Servers {
				if s.Name == "ms1" && s.App.State == "running" {
					return nil
				}
			}
		}
		return fmt.Errorf("ms1's application not running yet: %+v", topo)
	})
	b.do("servers table shows the application running", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/servers"),
		chromedp.WaitVisible(chromedp.CSS(`#servers-table tr[data-server="ms1"] [data-application="cart"] [data-app-state="running"]`)))
	b.screenshot("servers-application")

	// Upload a version in the application's page, then run it from the cluster's page.
	archive := filepath.Join(t.TempDir(), "cart-v9.tar.gz")
	writeTarGz(t, archive, map[string]string{"app.py": "# the console test's archive\n", "VERSION": "v9"})
	b.do("upload version v9", 30*time.Second,
		chromedp.Navigate(a.URL+"/#/applications/cart"),
		fill("#version-name", "v9"),
		chromedp.SetUploadFiles(chromedp.CSS("#version-file"), []string{archive}),
		chromedp.Click(chromedp.CSS("#version-upload")),
		chromedp.WaitVisible(chromedp.CSS("#version-upload-out .notice.ok")))
	b.screenshot("application-version-uploaded")
	b.do("run v9 on c1", 30*time.Second,
		chromedp.Navigate(a.URL+"/#/clusters/c1"),
		chromedp.WaitReady(chromedp.CSS(`#cluster-app-version option[value="v9"]`)),
		chromedp.SetValue(chromedp.CSS("#cluster-app-version"), "v9"),
		chromedp.Click(chromedp.CSS("#cluster-app-set")),
		chromedp.WaitVisible(chromedp.CSS("#cluster-app-out .notice.ok")))
	if got := b.text("#cluster-app-out"); !strings.Contains(got, "cart@v9") {
		t.Fatalf("set version says %q", got)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		var topo struct {
			Clusters []struct {
				Servers []struct {
					App struct {
						Version, State string
					} `json:"app"`
				} `json:"servers"`
			} `json:"clusters"`
		}
		a.call(t, http.MethodGet, "/topology", nil, &topo)
		if s := topo.Clusters[0].Servers[0].App; s.Version != "v9" || s.State != "running" {
			return fmt.Errorf("ms1 runs %+v", s)
		}
		return nil
	})
	b.do("servers table shows the version", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/servers"),
		chromedp.WaitVisible(chromedp.CSS(`#servers-table tr[data-server="ms1"] [data-app-state="running"]`)))
	if got := b.text(`#servers-table tr[data-server="ms1"] .app-name`); got != "cart@v9" {
		t.Fatalf("servers table shows %q, want cart@v9", got)
	}

	// Deploy the command as defined (no archive) one server at a time from
	// the cluster's page, and watch the job to its end; then roll back.
	t.Cleanup(func() {
		if t.Failed() {
			var job json.RawMessage
			a.call(t, http.MethodGet, "/jobs/1", nil, &job)
			t.Logf("job 1: %s", job)
		}
	})
	b.do("deploy from the cluster page", 60*time.Second,
		chromedp.Navigate(a.URL+"/#/clusters/c1"),
		chromedp.WaitReady(chromedp.CSS(`#cluster-app-version option[value="v9"]`)),
		chromedp.SetValue(chromedp.CSS("#cluster-app-version"), ""),
		chromedp.Click(chromedp.CSS("#cluster-app-deploy")),
		chromedp.WaitVisible(chromedp.CSS("#job-progress")),
		pollTrue(`(document.querySelector('#job-status')||{}).textContent.includes('completed')`))
	if got := b.text("#job-status"); !strings.Contains(got, "deploy of cart") || !strings.Contains(got, "1 of 1") {
		t.Fatalf("job status says %q", got)
	}
	b.screenshot("deploy-completed")
	b.do("roll back from the cluster page", 60*time.Second,
		chromedp.Click(chromedp.CSS("#cluster-app-rollback")),
		pollTrue(`(document.querySelector('#job-status')||{}).textContent.includes('deploy of cart@v9') && document.querySelector('#job-status').textContent.includes('completed')`))
	var cl2 struct {
		AppVersion string `json:"app_version"`
	}
	if a.call(t, http.MethodGet, "/clusters/c1", nil, &cl2); cl2.AppVersion != "v9" {
		t.Fatalf("after the rollback the cluster runs version %q, want v9", cl2.AppVersion)
	}
	b.checkConsole()
}

// writeTarGz writes a gzipped tar of name → content to path.
func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}
