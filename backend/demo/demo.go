// Package demo is `tandem demo`: one command that runs a whole domain on
// loopback. It starts the admin server and a node manager as child
// processes of the same binary (each in its own process group, with its
// output in DATA_DIR/<name>/<name>.log), defines node manager nm1, cluster
// cluster1, managed servers ms1..ms4 and web server ws1 over REST when they
// do not exist yet, starts ms1..ms4 and ws1 through the node manager,
// waits until all are running and prints where to look.
// When ctx ends (Ctrl-C, SIGTERM) or anything fails, it stops everything:
// the managed servers and the web server first, then the node manager, then
// the admin server, and leaves no process behind.
//
// Secrets: the admin API token and the node token are generated on first
// run into DATA_DIR/admin.token and DATA_DIR/node.token (0600) and passed
// to the children in their environment, never in arguments.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/serve"
	"tandem/backend/supervise"
)

// Config configures the demo.
type Config struct {
	DataDir    string    // default ./tandem-demo
	PortBase   int       // 0: DESIGN defaults (admin 9736, web server 8080, nm 9740, ms 9741..9744)
	Executable string    // default os.Executable()
	Stdout     io.Writer // where the URLs are printed
	// StartTimeout bounds waiting for each part to come up; default 60 s.
	StartTimeout time.Duration
	// Ready, if set, is closed once everything runs and the URLs are printed.
	Ready chan<- struct{}
	// App is the cluster's application command (AppName); empty: the
	// built-in sample app.
	App []string
	// AppKind is domain.AppProcess (default) or domain.AppGo.
	AppKind string
	// AppHealth is the application's health path (default /healthz).
	AppHealth string
}

// AppName is the application the demo defines for Config.App.
const AppName = "demo-app"

// Ports are the loopback ports of the demo's processes.
type Ports struct {
	Admin, WebServer, NodeManager int
	Servers                       [4]int
	Internal                      [4]int // the servers' peer listeners
}

// PortsFor returns the ports for a port base (0: the DESIGN defaults).
func PortsFor(base int) Ports {
	if base == 0 {
		return Ports{Admin: 9736, WebServer: 8080, NodeManager: 9740, Servers: [4]int{9741, 9742, 9743, 9744}, Internal: [4]int{9751, 9752, 9753, 9754}}
	}
	return Ports{Admin: base, WebServer: base + 1, NodeManager: base + 4, Servers: [4]int{base + 5, base + 6, base + 7, base + 8},
		Internal: [4]int{base + 9, base + 10, base + 11, base + 12}}
}

// FreePortBase finds a port base whose 13 consecutive loopback ports are
// free now, below the ephemeral range (32768 and up on Linux) so no
// outgoing connection takes one of them meanwhile: for tests and
// benchmarks that run several demos side by side.
func FreePortBase() (int, error) {
	base, err := serve.FreePorts(13)
	if err != nil {
		return 0, fmt.Errorf("demo: no free range of 13 loopback ports: %w", err)
	}
	return base, nil
}

// Names of the demo's domain.
const (
	NodeManagerName = "nm1"
	ClusterName     = "cluster1"
	WebServerName   = "ws1"
	adminName       = "admin"
)

// ServerNames are the managed servers.
var ServerNames = []string{"ms1", "ms2", "ms3", "ms4"}

// AdminTokenFile and NodeTokenFile are the secrets' files in the data folder.
const (
	AdminTokenFile = "admin.token"
	NodeTokenFile  = "node.token"
)

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// Run runs the demo until ctx ends; it returns nil after a clean stop.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) (err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./tandem-demo"
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.PortBase < 0 || cfg.PortBase > 65535-8 {
		return fmt.Errorf("demo: port base %d out of range", cfg.PortBase)
	}
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("demo: own executable: %w", err)
		}
		cfg.Executable = exe
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("demo: data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: data dir: %w", err)
	}
	adminTok, err := loadOrCreateToken(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		return err
	}
	nodeTok, err := loadOrCreateToken(filepath.Join(dir, NodeTokenFile))
	if err != nil {
		return err
	}
	ports := PortsFor(cfg.PortBase)
	adminURL := "http://" + addr(ports.Admin)

	sup, err := supervise.New(supervise.Config{
		Dir:         dir,
		Policy:      supervise.Policy{MaxRestarts: 3, Interval: 5 * time.Minute, Delay: 500 * time.Millisecond, MaxDelay: 10 * time.Second},
		StopTimeout: 45 * time.Second, // the node manager first stops its servers, within its own 30 s
		ScrubEnv:    []string{"TANDEM_ADMIN_TOKEN", "TANDEM_ADMIN_TOKEN_FILE", "TANDEM_NODE_TOKEN", "TANDEM_NODE_TOKEN_FILE"},
	}, logger)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // interrupted while starting: a clean stop, not a failure
		}
		if serr := shutdown(sup, dir, logger); serr != nil && err == nil {
			err = serr
		}
	}()

	specs := []supervise.Spec{
		{Name: adminName, Kind: "admin", Path: cfg.Executable,
			// History every 2 s: a demo's failovers show on the charts.
			Args: []string{"admin", "--listen", addr(ports.Admin), "--data-dir", filepath.Join(dir, adminName), "--history-every", "2s", "--plain-http"},
			Env:  []string{"TANDEM_ADMIN_TOKEN=" + adminTok, "TANDEM_NODE_TOKEN=" + nodeTok}},
		{Name: NodeManagerName, Kind: "nodemanager", Path: cfg.Executable,
			Args: []string{"nodemanager", "--name", NodeManagerName, "--admin", adminURL, "--data-dir", filepath.Join(dir, NodeManagerName),
				"--listen", addr(ports.NodeManager), "--stop-processes-on-exit"},
			Env: []string{"TANDEM_NODE_TOKEN=" + nodeTok}},
	}
	for _, s := range specs {
		if err := sup.Register(s); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}

	// 1. The admin server.
	if _, err := sup.Start(ctx, adminName); err != nil {
		return fmt.Errorf("demo: start admin server: %w", err)
	}
	if err := waitUp(ctx, sup, adminName, adminURL+"/healthz", cfg.StartTimeout); err != nil {
		return fmt.Errorf("demo: admin server did not come up (see %s): %w", sup.LogPath(adminName), err)
	}
	logger.Info("admin server up", "url", adminURL)

	// 2. The domain, unless a previous run defined it.
	api := client.New(adminURL, adminTok)
	api.HTTP = &http.Client{Timeout: 60 * time.Second}
	if err := define(ctx, api, ports); err != nil {
		return err
	}
	if err := defineApp(ctx, api, cfg); err != nil {
		return err
	}

	// 3. The node manager, then the servers through it, and the web server.
	if _, err := sup.Start(ctx, NodeManagerName); err != nil {
		return fmt.Errorf("demo: start node manager: %w", err)
	}
	if err := waitUp(ctx, sup, NodeManagerName, "http://"+addr(ports.NodeManager)+"/healthz", cfg.StartTimeout); err != nil {
		return fmt.Errorf("demo: node manager did not come up (see %s): %w", sup.LogPath(NodeManagerName), err)
	}
	if err := startAll(ctx, api, cfg.StartTimeout); err != nil {
		return err
	}
	if err := waitRunning(ctx, api, cfg.StartTimeout); err != nil {
		return err
	}
	wsLog := filepath.Join(dir, NodeManagerName, WebServerName, WebServerName+".log")
	if err := waitUp(ctx, nil, WebServerName, "http://"+addr(ports.WebServer)+"/_tandem/healthz", cfg.StartTimeout); err != nil {
		return fmt.Errorf("demo: web server did not come up (see %s): %w", wsLog, err)
	}

	appLine := "the built-in sample app (try /counter; kill a server and watch the session survive)"
	if len(cfg.App) > 0 {
		appLine = fmt.Sprintf("application %s (%s): %s; its log is app.log beside each server's", AppName, cfg.AppKind, strings.Join(cfg.App, " "))
	}
	fmt.Fprintf(cfg.Stdout, `
Tandem demo is running: admin server, node manager %s, cluster %s with %s, web server %s.

  console:      %s/   (user admin; password: the admin token)
  web server:   http://%s/   (%s)
  admin token:  %s
  REST:         curl -H "Authorization: Bearer $(cat %s)" %s/api/v1/topology
  logs:         %s/{admin,nm1}/<name>.log; servers and web server: %s/<name>/<name>.log

Everything here speaks plain HTTP on loopback, with the node token as the
nodes' credential. Outside the demo, tandem admin serves HTTPS and nodes
enrol for certificates (README: Running on several machines).

Press Ctrl-C to stop everything.
`, NodeManagerName, ClusterName, strings.Join(ServerNames, ", "), WebServerName,
		adminURL, addr(ports.WebServer), appLine, filepath.Join(dir, AdminTokenFile), filepath.Join(dir, AdminTokenFile), adminURL,
		dir, filepath.Join(dir, NodeManagerName))
	if cfg.Ready != nil {
		close(cfg.Ready)
	}
	<-ctx.Done()
	logger.Info("stopping the demo")
	return nil
}

// define creates the demo's domain objects that do not exist yet.
func define(ctx context.Context, api *client.Client, ports Ports) error {
	ensure := func(name string, get func() error, create func() error) error {
		err := get()
		if client.IsNotFound(err) {
			err = create()
		}
		if err != nil {
			return fmt.Errorf("demo: define %s: %w", name, err)
		}
		return nil
	}
	if err := ensure(NodeManagerName,
		func() error { _, err := api.NodeManager(ctx, NodeManagerName); return err },
		func() error {
			_, err := api.CreateNodeManager(ctx, domain.NodeManager{Name: NodeManagerName, Listen: addr(ports.NodeManager)})
			return err
		}); err != nil {
		return err
	}
	if err := ensure(ClusterName,
		func() error { _, err := api.Cluster(ctx, ClusterName); return err },
		func() error {
			_, err := api.CreateCluster(ctx, domain.Cluster{Name: ClusterName, Description: "tandem demo cluster"})
			return err
		}); err != nil {
		return err
	}
	for i, n := range ServerNames {
		internal := addr(ports.Internal[i])
		if err := ensure(n,
			func() error {
				s, err := api.Server(ctx, n)
				if err == nil && s.InternalListen != internal {
					// Defined by a demo from before internal_listen: its
					// default (the next port) is the next server's.
					_, err = api.PatchServer(ctx, n, client.ServerPatch{InternalListen: &internal})
				}
				return err
			},
			func() error {
				_, err := api.CreateServer(ctx, domain.Server{Name: n, Cluster: ClusterName, Listen: addr(ports.Servers[i]), InternalListen: internal, NodeManager: NodeManagerName})
				return err
			}); err != nil {
			return err
		}
	}
	if err := ensure(WebServerName,
		func() error { _, err := api.WebServer(ctx, WebServerName); return err },
		func() error {
			_, err := api.CreateWebServer(ctx, domain.WebServer{Name: WebServerName, Cluster: ClusterName, Listen: addr(ports.WebServer), NodeManager: NodeManagerName})
			return err
		}); err != nil {
		return err
	}
	// A data folder from an older demo may hold ws1 without a node manager.
	w, err := api.WebServer(ctx, WebServerName)
	if err != nil {
		return fmt.Errorf("demo: %s: %w", WebServerName, err)
	}
	if w.NodeManager == "" {
		w.NodeManager = NodeManagerName
		if _, err := api.UpdateWebServer(ctx, w); err != nil {
			return fmt.Errorf("demo: give %s a node manager: %w", WebServerName, err)
		}
	}
	return nil
}

// defineApp sets the cluster's application: Config.App as AppName, or the
// sample app when it is empty. Relative paths in the command that exist are
// made absolute (the servers run in their own folders).
func defineApp(ctx context.Context, api *client.Client, cfg Config) error {
	if len(cfg.App) == 0 {
		if _, err := api.SetClusterApplication(ctx, ClusterName, ""); err != nil {
			return fmt.Errorf("demo: back to the sample app: %w", err)
		}
		return nil
	}
	cmd := append([]string{}, cfg.App...)
	for i, a := range cmd {
		if strings.HasPrefix(a, "-") || filepath.IsAbs(a) {
			continue
		}
		if _, err := os.Stat(a); err == nil {
			if abs, err := filepath.Abs(a); err == nil {
				cmd[i] = abs
			}
		}
	}
	app := domain.Application{Name: AppName, Description: "the application given to tandem demo --app", Kind: cfg.AppKind, Command: cmd, HealthPath: cfg.AppHealth}
	if app.Kind == "" {
		app.Kind = domain.AppProcess
	}
	app.ApplyDefaults()
	if err := app.Validate(); err != nil {
		return fmt.Errorf("demo: --app: %w", err)
	}
	_, err := api.Application(ctx, AppName)
	switch {
	case client.IsNotFound(err):
		_, err = api.CreateApplication(ctx, app)
	case err == nil:
		_, err = api.PutApplication(ctx, app)
	}
	if err != nil {
		return fmt.Errorf("demo: define the application: %w", err)
	}
	if _, err := api.SetClusterApplication(ctx, ClusterName, AppName); err != nil {
		return fmt.Errorf("demo: set the application: %w", err)
	}
	return nil
}

// startAll asks the node manager, through the admin server, to start
// ms1..ms4 and ws1. The node manager may still be connecting or receiving
// its assignment: retried until timeout.
func startAll(ctx context.Context, api *client.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range append(append([]string(nil), ServerNames...), WebServerName) {
		start := api.StartServer
		if n == WebServerName {
			start = api.StartWebServer
		}
		for {
			_, err := start(ctx, n)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("demo: start %s: %w", n, err)
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitRunning polls the topology until ms1..ms4 are running.
func waitRunning(ctx context.Context, api *client.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		t, err := api.Topology(ctx)
		if err != nil {
			last = err.Error()
		} else {
			running := map[string]bool{}
			for _, c := range t.Clusters {
				if c.Name != ClusterName {
					continue
				}
				for _, s := range c.Servers {
					running[s.Name] = s.State == domain.StateRunning
				}
			}
			var notYet []string
			for _, n := range ServerNames {
				if !running[n] {
					notYet = append(notYet, n)
				}
			}
			if len(notYet) == 0 {
				return nil
			}
			last = "not running yet: " + strings.Join(notYet, ", ")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: servers did not start in %s: %s", timeout, last)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// shutdown stops everything in order: the node manager, which stops the
// managed servers and the web server it supervises when it gets SIGTERM
// (it was started with --stop-processes-on-exit), then the admin server;
// in between it sweeps the node manager's pid files for anything left (a
// node manager that died).
func shutdown(sup *supervise.Supervisor, dir string, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var errs []error
	if err := sup.Stop(ctx, NodeManagerName); err != nil {
		errs = append(errs, err)
	}
	// Anything the node manager left behind (it crashed, or was killed):
	// a supervisor on its folder re-adopts it from the pid files, and stops it.
	nmDir := filepath.Join(dir, NodeManagerName)
	if _, err := os.Stat(nmDir); err == nil {
		left, err := supervise.New(supervise.Config{Dir: nmDir, Policy: supervise.Policy{}, StopTimeout: 10 * time.Second}, logger)
		if err == nil {
			for _, st := range left.Status() {
				if st.PID != 0 {
					logger.Warn("stopping a process the node manager left behind", "process", st.Name, "pid", st.PID)
				}
			}
			if err := left.StopAll(ctx); err != nil {
				errs = append(errs, err)
			}
			left.Close()
		} else {
			errs = append(errs, err)
		}
	}
	if err := sup.Stop(ctx, adminName); err != nil {
		errs = append(errs, err)
	}
	sup.Close()
	if len(errs) > 0 {
		return fmt.Errorf("demo: shutdown: %w", errors.Join(errs...))
	}
	return nil
}

// loadOrCreateToken returns the token in path, creating it (0600) if missing.
func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("demo: read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("demo: token: %w", err)
	}
	t := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("demo: write %s: %w", path, err)
	}
	return t, nil
}

// waitUp polls url until it answers 200; it gives up early when the
// supervised process has failed for good (it crashed more often than the
// restart policy allows, e.g. because its port is taken).
func waitUp(ctx context.Context, sup *supervise.Supervisor, name, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		if sup != nil { // nil: a process the node manager runs
			for _, st := range sup.Status() {
				if st.Name == name && st.State == supervise.StateFailed {
					return fmt.Errorf("%s failed: %s", name, st.Message)
				}
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, last)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("demo: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}
