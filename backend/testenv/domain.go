package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
)

// Admin is a real `tandem admin` process on a loopback port with its own
// data folder, and a REST client using its bootstrap API token. The
// domain's node token is fixed at the first start (and given to the nodes
// through NodeEnv), so Restart brings the same domain back on the same
// folder and address.
type Admin struct {
	Addr      string // host:port of the console, REST API and control channel
	DataDir   string
	Token     string // bootstrap admin API token
	NodeToken string // the domain's node token
	API       *client.Client
	Proc      *Proc // the running process; Restart replaces it

	t    testing.TB
	runs int
}

// RandomToken returns n random bytes in hex, for tokens.
func RandomToken(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// StartAdmin starts `tandem admin` on a free port with an empty data
// folder and waits for /healthz. nodeToken is the domain's node token
// (random when empty).
func StartAdmin(t testing.TB, nodeToken string) *Admin {
	t.Helper()
	if nodeToken == "" {
		nodeToken = RandomToken(t, 24)
	}
	a := &Admin{Addr: FreeAddr(t), DataDir: t.TempDir(), Token: RandomToken(t, 24), NodeToken: nodeToken, t: t}
	a.API = client.New(a.URL(), a.Token)
	a.Restart()
	return a
}

// URL is the admin server's base URL (http://Addr).
func (a *Admin) URL() string { return "http://" + a.Addr }

// NodeEnv is the environment a node of this domain needs (its node token).
func (a *Admin) NodeEnv() []string {
	return []string{"TANDEM_NODE_TOKEN=" + a.NodeToken, "TANDEM_NODE_TOKEN_FILE="}
}

// Restart starts the admin server again on the same data folder and
// address (after Proc was killed or stopped) and waits for /healthz.
func (a *Admin) Restart() {
	a.t.Helper()
	a.runs++
	env := append([]string{"TANDEM_ADMIN_TOKEN=" + a.Token, "TANDEM_ADMIN_TOKEN_FILE="}, a.NodeEnv()...)
	a.Proc = Start(a.t, fmt.Sprintf("admin-%d", a.runs), env, "admin", "--listen", a.Addr, "--data-dir", a.DataDir, "--plain-http")
	WaitHTTP(a.t, a.URL()+"/healthz", 30*time.Second)
}

// DefineCluster creates cluster c and n managed servers ms1..msN in it
// over REST, each on a free loopback port and assigned to nodeManager
// (may be empty). It returns the servers as the API created them.
func (a *Admin) DefineCluster(c domain.Cluster, n int, nodeManager string) []domain.Server {
	a.t.Helper()
	ctx := context.Background()
	if _, err := a.API.CreateCluster(ctx, c); err != nil {
		a.t.Fatalf("testenv: create cluster %s: %v", c.Name, err)
	}
	servers := make([]domain.Server, 0, n)
	for i := 1; i <= n; i++ {
		s, err := a.API.CreateServer(ctx, domain.Server{Name: fmt.Sprintf("ms%d", i), Cluster: c.Name, Listen: FreeAddr(a.t), NodeManager: nodeManager})
		if err != nil {
			a.t.Fatalf("testenv: create server ms%d: %v", i, err)
		}
		servers = append(servers, s)
	}
	return servers
}

// StartServer runs `tandem server` for s against this admin server with
// data folder dir, logging under label, and waits until it serves
// /healthz on its listen address.
func (a *Admin) StartServer(s domain.Server, dir, label string) *Proc {
	a.t.Helper()
	p := Start(a.t, label, a.NodeEnv(), "server", "--name", s.Name, "--admin", a.URL(), "--data-dir", dir, "--log-level", "info")
	WaitHTTP(a.t, "http://"+s.Listen+"/healthz", 30*time.Second)
	return p
}

// Cluster returns the named cluster from GET /api/v1/topology.
func (a *Admin) Cluster(ctx context.Context, name string) (domain.TopologyCluster, error) {
	top, err := a.API.Topology(ctx)
	if err != nil {
		return domain.TopologyCluster{}, err
	}
	for _, c := range top.Clusters {
		if c.Name == name {
			return c, nil
		}
	}
	return domain.TopologyCluster{}, fmt.Errorf("testenv: no cluster %q in the topology", name)
}

// WaitCluster polls the topology until check accepts the named cluster,
// failing the test with the last reason after timeout. It returns the
// accepted cluster.
func (a *Admin) WaitCluster(name string, timeout time.Duration, check func(domain.TopologyCluster) error) domain.TopologyCluster {
	a.t.Helper()
	var got domain.TopologyCluster
	Eventually(a.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := a.Cluster(ctx, name)
		if err != nil {
			return err
		}
		if err := check(c); err != nil {
			return err
		}
		got = c
		return nil
	})
	return got
}

// Settled says why a cluster is not settled yet (nil when it is): every
// server running with a pid, its desired revision applied, a live backup
// and no session without one.
func Settled(c domain.TopologyCluster) error {
	if len(c.Servers) == 0 {
		return errors.New("no servers")
	}
	for _, s := range c.Servers {
		switch {
		case s.State != domain.StateRunning:
			return fmt.Errorf("%s is %s", s.Name, s.State)
		case s.PID == 0:
			return fmt.Errorf("%s has no pid", s.Name)
		case s.AppliedRevision != s.DesiredRevision:
			return fmt.Errorf("%s applied revision %d, desired %d", s.Name, s.AppliedRevision, s.DesiredRevision)
		case s.Backup == "":
			return fmt.Errorf("%s has no backup", s.Name)
		case s.Unprotected != 0:
			return fmt.Errorf("%s has %d unprotected sessions", s.Name, s.Unprotected)
		}
	}
	return nil
}

// EventNames lists events as "type server", for comparing sequences.
func EventNames(evs []domain.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type+" "+e.Server)
	}
	return out
}
