package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Net is a few simulated machines on one Linux host: each is a network
// namespace with one address on a bridge in the root namespace, so the
// test process (in the root namespace) reaches every one of them, and they
// reach each other, only over that bridge. It needs root (ip netns).
type Net struct {
	Bridge   string // the bridge's name in the root namespace
	BridgeIP string // the root namespace's address on it
	Hosts    []*NetHost
}

// NetHost is one simulated machine.
type NetHost struct {
	Name string // its host name, as its processes see it
	NS   string // network namespace
	IP   string // its address on the bridge
	Veth string // the root namespace's end of its link
}

// nsRun runs ip (or another command) and returns its combined output.
func nsRun(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// freeSubnet returns a 10.213.X that no address or route of the root
// namespace uses, as "10.213.X"; X is looked for from a start that
// depends on the pid, so that two test processes seldom race for one.
func freeSubnet() (string, error) {
	addrs, err := nsRun("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return "", err
	}
	routes, err := nsRun("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return "", err
	}
	start := os.Getpid() % 256
	for i := range 256 {
		p := "10.213." + strconv.Itoa((start+i)%256)
		if !strings.Contains(addrs, p+".") && !strings.Contains(routes, p+".") {
			return p, nil
		}
	}
	return "", fmt.Errorf("testenv: every 10.213.X.0/24 is in use")
}

// NewNet makes one network namespace per name (its host name too), each
// linked by a veth pair to a new bridge, with addresses .1, .2, ... of a
// free 10.213.X.0/24 and the bridge on .254 (at most 253 names). Names and interfaces carry
// the test process's pid. Everything is removed at cleanup, after the
// processes the test started later are stopped (cleanups run last first),
// and any process left in a namespace is killed. The test is skipped when
// namespaces cannot be made (not root, or the kernel refuses).
func NewNet(t testing.TB, names ...string) *Net {
	t.Helper()
	pid := strconv.Itoa(os.Getpid())
	n := &Net{Bridge: "tdbr" + pid}
	first := "td" + pid + names[0]
	if out, err := exec.Command("ip", "netns", "add", first).CombinedOutput(); err != nil {
		t.Skipf("testenv: cannot make network namespaces (needs root and ip netns): %v: %s", err, strings.TrimSpace(string(out)))
	}
	var made []string // namespaces made so far
	made = append(made, first)
	bridgeMade := false
	t.Cleanup(func() {
		for _, ns := range made {
			// Processes still in the namespace (a server its node manager
			// did not stop) are the test's own: kill them by pid.
			if out, err := nsRun("ip", "netns", "pids", ns); err == nil {
				for _, f := range strings.Fields(out) {
					if p, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(p, syscall.SIGKILL)
					}
				}
			}
			if _, err := nsRun("ip", "netns", "del", ns); err != nil {
				t.Logf("testenv: %v", err)
			}
		}
		for _, h := range n.Hosts {
			_, _ = nsRun("ip", "link", "del", h.Veth) // gone with its namespace, normally
		}
		if bridgeMade {
			if _, err := nsRun("ip", "link", "del", n.Bridge); err != nil {
				t.Logf("testenv: %v", err)
			}
		}
	})
	must := func(args ...string) {
		t.Helper()
		if _, err := nsRun("ip", args...); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	subnet, err := freeSubnet()
	if err != nil {
		t.Fatal(err)
	}
	n.BridgeIP = subnet + ".254"
	must("link", "add", n.Bridge, "type", "bridge")
	bridgeMade = true
	must("addr", "add", n.BridgeIP+"/24", "dev", n.Bridge)
	must("link", "set", n.Bridge, "up")
	for i, name := range names {
		h := &NetHost{Name: name, NS: "td" + pid + name, IP: subnet + "." + strconv.Itoa(i+1), Veth: fmt.Sprintf("td%sv%d", pid, i)}
		if i > 0 {
			must("netns", "add", h.NS)
			made = append(made, h.NS)
		}
		n.Hosts = append(n.Hosts, h)
		must("link", "add", h.Veth, "type", "veth", "peer", "name", h.Veth+"p", "netns", h.NS)
		must("-n", h.NS, "link", "set", h.Veth+"p", "name", "eth0")
		must("-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
		must("-n", h.NS, "link", "set", "eth0", "up")
		must("-n", h.NS, "link", "set", "lo", "up")
		must("link", "set", h.Veth, "master", n.Bridge)
		must("link", "set", h.Veth, "up")
	}
	return n
}

// Addr is host:port on h's address.
func (h *NetHost) Addr(port int) string { return net.JoinHostPort(h.IP, strconv.Itoa(port)) }

// Start runs the tandem binary with args on h: `ip netns exec NS unshare
// --uts sh -c 'hostname NAME; exec BINARY ARGS'`. Every step execs the
// next, so the process's pid is tandem's own (checked here) and signals
// sent to it reach tandem; the processes it starts stay on h (its network
// and host name).
func (h *NetHost) Start(t testing.TB, name string, env []string, args ...string) *Proc {
	t.Helper()
	bin := Binary(t)
	argv := append([]string{"netns", "exec", h.NS, "unshare", "--uts", "sh", "-c", `hostname "$0" && exec "$@"`, h.Name, bin}, args...)
	p := StartPath(t, "ip", name, env, argv...)
	want, _ := filepath.EvalSymlinks(bin)
	Eventually(t, 10*time.Second, func() error {
		select {
		case <-p.Done():
			b, _ := os.ReadFile(p.LogPath)
			return fmt.Errorf("%s exited: %s", name, b)
		default:
		}
		got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID()))
		if err != nil || got != want {
			return fmt.Errorf("pid %d runs %q (%v), not yet %s", p.PID(), got, err, want)
		}
		return nil
	})
	return p
}

// SetLink takes h's link to the bridge down (up false) or up again: while
// it is down, h reaches no other host and no other host reaches it.
func (h *NetHost) SetLink(t testing.TB, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if _, err := nsRun("ip", "link", "set", h.Veth, state); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// Listening lists the TCP addresses (ip:port) listened on in h's network
// namespace, read from /proc/net/tcp and tcp6 there.
func (h *NetHost) Listening(t testing.TB) []string {
	t.Helper()
	out, err := nsRun("ip", "netns", "exec", h.NS, "cat", "/proc/net/tcp", "/proc/net/tcp6")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		if a, ok := procNetAddr(f[1]); ok {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// procNetAddr decodes /proc/net/tcp's "0100007F:1F90" (the address in
// host byte order, 32-bit words; little-endian here) into
// "127.0.0.1:8080".
func procNetAddr(s string) (string, bool) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok || len(hexIP)%8 != 0 {
		return "", false
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return "", false
	}
	ip := make(net.IP, 0, len(hexIP)/2)
	for w := 0; w < len(hexIP); w += 8 {
		v, err := strconv.ParseUint(hexIP[w:w+8], 16, 32)
		if err != nil {
			return "", false
		}
		ip = append(ip, byte(v), byte(v>>8), byte(v>>16), byte(v>>24)) // little-endian words
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), true
}
