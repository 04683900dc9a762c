package demo_test

import (
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
	Server string   `json:"server"`
	App    string   `json:"app"`
	Cart   []string `json:"cart"`
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

	shoppers := make([]*shopper, 12)
	for i := range shoppers {
		jar, _ := cookiejar.New(nil)
		s := &shopper{hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
		for k := 1; k <= 3; k++ {
			item := fmt.Sprintf("s%d-%d", i, k)
			c := s.do(t, http.MethodPost, web+"/cart/add?item="+item)
			s.items = append(s.items, item)
			if c.App != "cart-python" || strings.Join(c.Cart, ",") != strings.Join(s.items, ",") {
				t.Fatalf("shopper %d: %+v, want %v from cart-python", i, c, s.items)
			}
		}
		shoppers[i] = s
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
