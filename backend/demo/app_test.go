package demo_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/demo"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// shopper is one browser with a cookie jar and the items acknowledged.
type shopper struct {
	hc    *http.Client
	items []string
}

type cart struct {
	Server  string   `json:"server"`
	App     string   `json:"app"`
	Version string   `json:"version"`
	Cart    []string `json:"cart"`
}

// tgz builds a gzipped tar of name, content pairs.
func tgz(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i := 0; i+1 < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Mode: 0o644, Size: int64(len(files[i+1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (s *shopper) do(t *testing.T, method, url string) cart {
	t.Helper()
	var c cart
	testenv.Eventually(t, 30*time.Second, func() error {
		req, _ := http.NewRequest(method, url, nil)
		resp, err := s.hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, b)
		}
		return json.Unmarshal(b, &c)
	})
	return c
}

// TestDemoWithApplication runs `tandem demo --app` with the Python example,
// then switches the cluster to the Go example (kind go, a rolling restart
// through the node manager) and back to the sample app: the carts survive
// both switches, topology shows each server's application and state, and
// the app.* events reach the admin server.
func TestDemoWithApplication(t *testing.T) {
	dir := t.TempDir()
	base := freeBase(t)
	ports := demo.PortsFor(base)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"admin/admin.log", "nm1/nm1.log", "nm1/ms1/ms1.log", "nm1/ms1/app.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, n))
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("---- %s ----\n%s", n, b)
			}
		}
	})
	py := filepath.Join(testenv.RepoRoot(), "examples", "cart-python", "app.py")
	p := testenv.Start(t, "demo", nil, "demo", "--data-dir", dir, "--port-base", strconv.Itoa(base), "--app", "python3 "+py)
	waitReady(t, p)
	tok, _ := os.ReadFile(filepath.Join(dir, demo.AdminTokenFile))
	api := client.New(fmt.Sprintf("http://127.0.0.1:%d", ports.Admin), strings.TrimSpace(string(tok)))
	ctx := context.Background()
	web := fmt.Sprintf("http://127.0.0.1:%d", ports.WebServer)

	waitApps := func(name, kind, state string) {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, func() error {
			for _, n := range demo.ServerNames {
				s := servers(t, api)[n]
				if s.Application != name || s.App.Name != name || s.App.Kind != kind || s.App.State != state {
					return fmt.Errorf("%s: application %q, app %+v; want %s %s %s", n, s.Application, s.App, name, kind, state)
				}
			}
			return nil
		})
	}
	waitApps(demo.AppName, domain.AppProcess, domain.AppStateRunning)
	evs, err := api.Events(ctx, client.EventQuery{Cluster: demo.ClusterName, Types: []string{domain.EventAppStarted}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < len(demo.ServerNames) {
		t.Fatalf("%d app.started events, want one per server: %+v", len(evs), evs)
	}

	shoppers := make([]*shopper, 200)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	for i := range shoppers {
		jar, _ := cookiejar.New(nil)
		s := &shopper{hc: &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: tr}}
		for k := 1; k <= 2; k++ {
			item := fmt.Sprintf("s%d-%d", i, k)
			c := s.do(t, http.MethodPost, web+"/cart/add?item="+item)
			s.items = append(s.items, item)
			if c.App != "cart-python" || strings.Join(c.Cart, ",") != strings.Join(s.items, ",") {
				t.Fatalf("shopper %d: %+v, want %v from cart-python", i, c, s.items)
			}
		}
		shoppers[i] = s
	}

	// Uploaded versions of the Python cart (the VERSION file in the archive
	// says which; v3 exits at start). v1 is set on every server at once;
	// v2 is deployed one server at a time under load with no failed
	// request; v3 fails at the first server, which goes back to v2 while
	// the others are never touched; the rollback deploys v1 again.
	if _, err := api.CreateApplication(ctx, domain.Application{Name: "cart", Kind: domain.AppProcess, Command: []string{"python3", "app.py"}}); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(py)
	if err != nil {
		t.Fatal(err)
	}
	archives := map[string][]byte{
		"v1": tgz(t, "app.py", string(src), "VERSION", "v1"),
		"v2": tgz(t, "app.py", string(src), "VERSION", "v2"),
		"v3": tgz(t, "app.py", "import sys\nprint('v3 cannot start: no database', file=sys.stderr)\nsys.exit(3)\n"),
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if _, err := api.UploadVersion(ctx, "cart", v, bytes.NewReader(archives[v])); err != nil {
			t.Fatalf("upload %s: %v", v, err)
		}
	}
	runs := func(version string, names ...string) func() error {
		return func() error {
			for _, n := range names {
				s := servers(t, api)[n]
				if s.App.Name != "cart" || s.App.Version != version || s.App.State != domain.AppStateRunning {
					return fmt.Errorf("%s: app %+v; want cart@%s running", n, s.App, version)
				}
			}
			return nil
		}
	}
	if _, err := api.SetClusterApplicationVersion(ctx, demo.ClusterName, "cart", "v1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, runs("v1", demo.ServerNames...))
	for i, s := range shoppers {
		if c := s.do(t, http.MethodGet, web+"/cart"); c.Version != "v1" || strings.Join(c.Cart, ",") != strings.Join(s.items, ",") {
			t.Fatalf("shopper %d on v1: %+v, want %v", i, c, s.items)
		}
	}
	appPIDs := func() map[string]int {
		out := map[string]int{}
		for _, n := range demo.ServerNames {
			out[n] = servers(t, api)[n].App.PID
		}
		return out
	}
	v1PIDs := appPIDs()
	stop := make(chan struct{})
	failed := make(chan string, 10000)
	var added atomic.Int64
	var loadWG sync.WaitGroup
	for w := range 8 { // every shopper keeps adding, 8 at a time; any non-2xx is a failure
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			for k := 0; ; k++ {
				for i := w; i < len(shoppers); i += 8 {
					select {
					case <-stop:
						return
					default:
					}
					s := shoppers[i]
					item := fmt.Sprintf("s%d-load%d", i, k)
					resp, err := s.hc.Post(web+"/cart/add?item="+item, "", nil)
					if err != nil {
						failed <- err.Error()
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed <- resp.Status + " " + string(body)
						continue
					}
					s.items = append(s.items, item)
					added.Add(1)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { loadWG.Wait(); close(done) }()
	job, err := api.Deploy(ctx, demo.ClusterName, "cart", "v2", 60)
	if err != nil {
		t.Fatal(err)
	}
	if job = waitJob(t, api, job.ID, 150*time.Second); job.State != "completed" || job.Type != "deploy" {
		t.Fatalf("deploy v2: %+v", job)
	}
	close(stop)
	<-done
	close(failed)
	for f := range failed {
		t.Errorf("a request failed during the deploy of v2: %s", f)
	}
	if n := added.Load(); n < int64(len(shoppers)) {
		t.Fatalf("only %d items added during the deploy: it was not under load", n)
	}
	t.Logf("%d items added by %d users through the web server during the deploy of v2 (%s), none failed", added.Load(), len(shoppers), job.FinishedAt.Sub(job.CreatedAt).Round(time.Millisecond))
	testenv.Eventually(t, 10*time.Second, runs("v2", demo.ServerNames...))
	for n, pid := range appPIDs() {
		if pid == v1PIDs[n] || pid == 0 {
			t.Fatalf("%s's application process after the deploy: pid %d, v1's was %d: not a new process", n, pid, v1PIDs[n])
		}
	}
	for i, s := range shoppers {
		if c := s.do(t, http.MethodGet, web+"/cart"); c.Version != "v2" || strings.Join(c.Cart, ",") != strings.Join(s.items, ",") {
			t.Fatalf("shopper %d on v2: %+v, want %v", i, c, s.items)
		}
	}
	if cl, _ := api.Cluster(ctx, demo.ClusterName); cl.AppVersion != "v2" {
		t.Fatalf("cluster after the deploy: %+v", cl)
	}

	pidsBefore := map[string]int{}
	for _, n := range demo.ServerNames {
		pidsBefore[n] = servers(t, api)[n].App.PID
	}
	job, err = api.Deploy(ctx, demo.ClusterName, "cart", "v3", 15)
	if err != nil {
		t.Fatal(err)
	}
	if job = waitJob(t, api, job.ID, 120*time.Second); job.State != "failed" || job.Step != 1 || !strings.Contains(job.Error, "no database") || !strings.Contains(job.Error, "back on cart@v2") {
		t.Fatalf("deploy v3: %+v, want failed at step 1 with the application's output", job)
	}
	testenv.Eventually(t, 10*time.Second, runs("v2", demo.ServerNames...))
	for _, n := range demo.ServerNames[1:] {
		if pid := servers(t, api)[n].App.PID; pid != pidsBefore[n] {
			t.Fatalf("%s was touched by the failed deploy: application pid %d, was %d", n, pid, pidsBefore[n])
		}
	}
	for i, s := range shoppers {
		if c := s.do(t, http.MethodGet, web+"/cart"); c.Version != "v2" || strings.Join(c.Cart, ",") != strings.Join(s.items, ",") {
			t.Fatalf("shopper %d after the failed deploy: %+v, want v2 and %v", i, c, s.items)
		}
	}
	failedEvs, _ := api.Events(ctx, client.EventQuery{Cluster: demo.ClusterName, Types: []string{domain.EventDeployFailed}, Limit: 10})
	if len(failedEvs) == 0 || !strings.Contains(failedEvs[0].Message, "no database") {
		t.Fatalf("deploy.failed events: %+v", failedEvs)
	}

	job, err = api.RollbackApplication(ctx, demo.ClusterName)
	if err != nil {
		t.Fatal(err)
	}
	if job = waitJob(t, api, job.ID, 150*time.Second); job.State != "completed" {
		t.Fatalf("rollback: %+v", job)
	}
	testenv.Eventually(t, 10*time.Second, runs("v1", demo.ServerNames...))
	if c := shoppers[0].do(t, http.MethodGet, web+"/cart"); c.Version != "v1" {
		t.Fatalf("after the rollback: %+v", c)
	}
	deps, err := api.Deployments(ctx, demo.ClusterName)
	if err != nil || len(deps) < 3 || deps[0].Kind != domain.DeployRollback || deps[0].ToVersion != "v1" || deps[1].Kind != domain.DeployJob || deps[1].ToVersion != "v2" {
		t.Fatalf("deployment history: %+v %v", deps, err)
	}
	if err := api.DeleteVersion(ctx, "cart", "v1"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("delete the running version: %v, want 409", err)
	}

	// To the Go example: kind go, the servers restart one by one with its binary.
	bin := testenv.Example(t, "cart-go")
	if _, err := api.CreateApplication(ctx, domain.Application{Name: "cart-go", Kind: domain.AppGo, Command: []string{bin}}); err != nil {
		t.Fatal(err)
	}
	res, err := api.SetClusterApplication(ctx, demo.ClusterName, "cart-go")
	if err != nil {
		t.Fatal(err)
	}
	if res.Job == nil {
		t.Fatalf("switching to a go application started no rolling restart: %+v", res)
	}
	if j := waitJob(t, api, res.Job.ID, 150*time.Second); j.State != "completed" {
		t.Fatalf("rolling restart to cart-go: %+v", j)
	}
	waitApps("cart-go", domain.AppGo, domain.AppStateEmbedded)
	for i, s := range shoppers {
		c := s.do(t, http.MethodGet, web+"/cart")
		if c.App != "cart-go" || strings.Join(c.Cart, ",") != strings.Join(s.items, ",") {
			t.Fatalf("shopper %d after the switch to Go: %+v, want %v from cart-go", i, c, s.items)
		}
	}
	if err := api.DeleteApplication(ctx, "cart-go"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("delete an application in use: %v, want 409", err)
	}
}
