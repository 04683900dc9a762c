package pki_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/domain"
	"tandem/backend/pki"
	"tandem/backend/testenv"
)

// tlsDomain is an admin server on HTTPS (its default) and the clients to
// call it as an operator.
type tlsDomain struct {
	t        *testing.T
	addr     string
	dir      string
	token    string
	nodeTok  string
	pin      string
	hc       *http.Client
	adminLog string
}

func (d *tlsDomain) url() string { return "https://" + d.addr }

func (d *tlsDomain) call(method, path string, in, out any) int {
	d.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, d.url()+"/api/v1"+path, body)
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (d *tlsDomain) state(name string) string {
	d.t.Helper()
	var topo domain.Topology
	d.call(http.MethodGet, "/topology", nil, &topo)
	for _, c := range topo.Clusters {
		for _, s := range c.Servers {
			if s.Name == name {
				return s.State
			}
		}
	}
	for _, n := range topo.NodeManagers {
		if n.Name == name {
			return n.State
		}
	}
	return ""
}

func (d *tlsDomain) waitState(name, want string) {
	d.t.Helper()
	testenv.Eventually(d.t, 30*time.Second, func() error {
		if got := d.state(name); got != want {
			return fmt.Errorf("%s is %q, want %q", name, got, want)
		}
		return nil
	})
}

// TestTLSDomain: the admin server speaks HTTPS by default with a CA it
// made; a node manager pinning that CA enrols with the node token, and so
// do the servers it starts; plain HTTP, the node token alone, another
// CA's certificate and a wrong pin are all refused; certificates renew
// under load without a reconnect; a revoked node is refused within
// seconds, may not enrol again until an admin allows it.
func TestTLSDomain(t *testing.T) {
	d := &tlsDomain{t: t, addr: testenv.FreeAddr(t), dir: t.TempDir(), token: testenv.RandomToken(t, 24), nodeTok: testenv.RandomToken(t, 24)}
	env := []string{"TANDEM_ADMIN_TOKEN=" + d.token, "TANDEM_NODE_TOKEN=" + d.nodeTok}
	admin := testenv.Start(t, "admin", env, "admin", "--listen", d.addr, "--data-dir", d.dir, "--node-cert-lifetime", "15s")
	d.adminLog = admin.LogPath
	testenv.Eventually(t, 30*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(d.dir, "ca.fingerprint"))
		if err != nil {
			return err
		}
		d.pin = strings.TrimSpace(string(b))
		return nil
	})
	caPEM, err := os.ReadFile(filepath.Join(d.dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(d.dir, pki.CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", st, err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	d.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := d.hc.Get(d.url() + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})

	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + d.addr + "/api/v1/topology"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || bytes.Contains(b, []byte("clusters")) {
			t.Fatalf("plain HTTP answered: %d %s", resp.StatusCode, b)
		}
	}

	nmAddr := testenv.FreeAddr(t)
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/clusters", map[string]any{"name": "c1"}},
		{"/node-managers", map[string]any{"name": "nm1", "listen": nmAddr}},
		{"/servers", map[string]any{"name": "ms1", "cluster": "c1", "listen": testenv.FreeAddr(t), "node_manager": "nm1"}},
		{"/servers", map[string]any{"name": "ms2", "cluster": "c1", "listen": testenv.FreeAddr(t), "node_manager": "nm1"}},
		{"/servers", map[string]any{"name": "ms3", "cluster": "c1", "listen": testenv.FreeAddr(t), "node_manager": "nm1"}}, // never started
		{"/webservers", map[string]any{"name": "ws1", "cluster": "c1", "listen": testenv.FreeAddr(t)}},
	} {
		if st := d.call(http.MethodPost, c.path, c.body, nil); st != http.StatusCreated {
			t.Fatalf("POST %s: %d", c.path, st)
		}
	}
	nodeEnv := []string{"TANDEM_NODE_TOKEN=" + d.nodeTok, "TANDEM_NODE_TOKEN_FILE=", "TANDEM_CA_FINGERPRINT="}
	nmDir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range []string{"ms1", "ms2"} {
				b, _ := os.ReadFile(filepath.Join(nmDir, s, s+".log"))
				t.Logf("---- %s.log ----\n%s", s, b[max(0, len(b)-4000):])
			}
		}
	})
	testenv.Start(t, "nm1", nodeEnv, "nodemanager", "--name", "nm1", "--admin", d.url(), "--ca-fingerprint", d.pin, "--data-dir", nmDir, "--listen", nmAddr, "--stop-processes-on-exit")
	d.waitState("nm1", domain.StateRunning)
	for _, s := range []string{"ms1", "ms2"} {
		if st := d.call(http.MethodPost, "/servers/"+s+"/start", nil, nil); st != http.StatusOK {
			t.Fatalf("start %s: %d", s, st)
		}
	}
	d.waitState("ms1", domain.StateRunning)
	d.waitState("ms2", domain.StateRunning)
	if st, err := os.Stat(filepath.Join(nmDir, "ms1", "node.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ms1's key: %v %v", st, err)
	}

	// A web server pinning another CA never connects, and says why.
	wrong := "sha256:" + strings.Repeat("ab", 32)
	ws := testenv.Start(t, "ws1", nodeEnv, "webserver", "--name", "ws1", "--admin", d.url(), "--ca-fingerprint", wrong, "--data-dir", t.TempDir())
	testenv.Eventually(t, 20*time.Second, func() error {
		if b, _ := os.ReadFile(ws.LogPath); !bytes.Contains(b, []byte("does not match the pinned fingerprint")) {
			return fmt.Errorf("web server log: %s", b)
		}
		return nil
	})
	if st := d.state("ws1"); st == domain.StateRunning {
		t.Fatal("a node with the wrong pin connected")
	}

	// The node token alone does not open the control channel.
	connect := "wss://" + d.addr + "/api/v1/nodes/connect"
	_, resp, err := websocket.Dial(context.Background(), connect, &websocket.DialOptions{HTTPClient: d.hc,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + d.nodeTok}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("control channel with the node token alone: %v %v", resp, err)
	}
	// Nor does a certificate of another CA, named like a member.
	foreign, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	leaf, err := foreign.Issue("ms1", "server", key.Public(), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	fc, err := tls.X509KeyPair(leaf.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	fhc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{fc}}}}
	if _, resp, err = websocket.Dial(context.Background(), connect, &websocket.DialOptions{HTTPClient: fhc}); err == nil || resp == nil && !strings.Contains(err.Error(), "certificate") || resp != nil && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("control channel with another CA's certificate: %v %v", resp, err)
	}
	// The application port never serves the peers' endpoints.
	var ms1 domain.Server
	d.call(http.MethodGet, "/servers/ms1", nil, &ms1)
	if resp, err := http.Get("http://" + ms1.Listen + "/internal/v1/status"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("application port /internal/: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Replication runs on mutual TLS: a session made on ms1 has its copy
	// on ms2; the peers' port refuses plain HTTP, the node token, a client
	// without a certificate and another CA's certificate; ms2's own
	// certificate is accepted (until it is revoked, below).
	resp, err = http.Get("http://" + ms1.Listen + "/counter")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("new session on ms1: %v %v", resp, err)
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		cookie = c.Value
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		var sv struct {
			Copies []domain.SessionCopy `json:"copies"`
		}
		d.call(http.MethodGet, "/sessions/"+cookie, nil, &sv)
		for _, c := range sv.Copies {
			if c.Server == "ms2" && c.Role == domain.SessionBackupCopy {
				return nil
			}
		}
		return fmt.Errorf("copies %+v", sv.Copies)
	})
	peerURL := "https://" + ms1.InternalListen + "/internal/v1/status"
	if resp, err := http.Get("http://" + ms1.InternalListen + "/internal/v1/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the peers' port answered plain HTTP")
		}
	}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest(http.MethodGet, peerURL, nil)
	req.Header.Set("Authorization", "Bearer "+d.nodeTok)
	if resp, err := noCert.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the node token alone reached the peers' port: %d", resp.StatusCode)
	}
	fpeer := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{fc}}}}
	if resp, err := fpeer.Get(peerURL); err == nil {
		resp.Body.Close()
		t.Fatalf("another CA's certificate reached the peers' port: %d", resp.StatusCode)
	}
	ms2Cert, err := tls.LoadX509KeyPair(filepath.Join(nmDir, "ms2", "node.crt"), filepath.Join(nmDir, "ms2", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	asMS2 := func() int {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{ms2Cert}}}}
		resp, err := c.Get(peerURL)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := asMS2(); st != http.StatusOK {
		t.Fatalf("ms2's certificate at ms1's peers' port: %d", st)
	}
	// A member cannot speak for another: ms2's certificate, a heartbeat
	// "from ms3".
	spoof := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{ms2Cert}}}}
	resp, err = spoof.Post("https://"+ms1.InternalListen+"/internal/v1/heartbeat", "application/json",
		strings.NewReader(`{"from":"ms3","inc":"x","backup":"","fence_ack":0}`))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("heartbeat from ms3 with ms2's certificate: %v %v", resp, err)
	}
	resp.Body.Close()

	// Member TLS: with the cluster's member_tls the web server (pinning
	// the right CA now) reaches the servers over TLS and checks their
	// certificates; their application port then refuses plain text.
	if err := ws.Stop(5 * time.Second); err != nil {
		t.Logf("web server with the wrong pin: %v", err)
	}
	var ws1 domain.WebServer
	d.call(http.MethodGet, "/webservers/ws1", nil, &ws1)
	wsDir := t.TempDir()
	testenv.Start(t, "ws1-pinned", nodeEnv, "webserver", "--name", "ws1", "--admin", d.url(), "--ca-fingerprint", d.pin, "--data-dir", wsDir)
	if st := d.call(http.MethodPatch, "/clusters/c1", map[string]any{"member_tls": true}, nil); st != http.StatusOK {
		t.Fatalf("member_tls: %d", st)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if resp, err := http.Get("http://" + ms1.Listen + "/ping"); err == nil {
			resp.Body.Close()
			return fmt.Errorf("ms1's application port still answers plain HTTP: %d", resp.StatusCode)
		}
		return nil
	})
	asMember := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "ms1"}}}
	if resp, err := asMember.Get("https://" + ms1.Listen + "/ping"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("ms1's application port over TLS, checked as ms1: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "ms2"}}}).Get("https://" + ms1.Listen + "/ping"); err == nil {
		resp.Body.Close()
		t.Fatal("ms1's certificate passed as ms2's")
	}
	// A request for ms1's session that reaches ms2 with a stale cookie
	// (naming ms2 as primary) is forwarded to ms1 on mutual TLS, on ms1's
	// internal listener, and answered by ms1.
	var ms2 domain.Server
	d.call(http.MethodGet, "/servers/ms2", nil, &ms2)
	id, _, _ := strings.Cut(cookie, "!")
	req, _ = http.NewRequest(http.MethodGet, "https://"+ms2.Listen+"/counter", nil)
	req.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: id + "!ms2"})
	asMS2app := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "ms2"}}}
	if resp, err := asMS2app.Do(req); err != nil {
		t.Fatalf("stale cookie at ms2: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"server":"ms1"`)) {
			t.Fatalf("stale cookie at ms2: %d %s, want ms1's answer through the forward", resp.StatusCode, b)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + ws1.Listen + "/counter")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("through the web server: %d", resp.StatusCode)
		}
		return nil
	})

	// Renewal under load: certificates of 15 s renew at 10 s; the users of
	// ms1, through the web server on TLS, see no failure and its control
	// connection is not redone.
	serial := func() string {
		b, err := os.ReadFile(filepath.Join(nmDir, "ms1", "node.crt"))
		if err != nil {
			return ""
		}
		c, err := pki.ParseCert(b)
		if err != nil {
			return ""
		}
		return c.SerialNumber.Text(16)
	}
	first := serial()
	stop := make(chan struct{})
	var failed, served atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + ws1.Listen + "/ping")
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
				} else {
					served.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
	}
	testenv.Eventually(t, 40*time.Second, func() error {
		if s := serial(); s == "" || s == first {
			return fmt.Errorf("ms1 still has certificate %s", first)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || served.Load() == 0 {
		t.Fatalf("during the renewal: %d served, %d failed", served.Load(), failed.Load())
	}
	if st := d.state("ms1"); st != domain.StateRunning {
		t.Fatalf("ms1 after renewal: %s", st)
	}
	if n := connections(t, d.adminLog, "ms1"); n != 1 {
		t.Fatalf("ms1 connected %d times to the admin server, want once (renewal redoes no connection)", n)
	}
	t.Logf("renewal: ms1 certificate %s -> %s; %d requests served meanwhile, none failed", first, serial(), served.Load())

	// member_tls off again, live: the application port serves plain text,
	// and the web server follows.
	if st := d.call(http.MethodPatch, "/clusters/c1", map[string]any{"member_tls": false}, nil); st != http.StatusOK {
		t.Fatalf("member_tls off: %d", st)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		for _, u := range []string{"http://" + ms1.Listen + "/ping", "http://" + ws1.Listen + "/ping"} {
			resp, err := http.Get(u)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %d", u, resp.StatusCode)
			}
		}
		return nil
	})

	// Revocation: ms2 is refused within seconds and may not enrol again
	// until an admin allows it.
	revokedAt := time.Now()
	if st := d.call(http.MethodPost, "/nodes/ms2/revoke", nil, nil); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := d.state("ms2"); st == domain.StateRunning {
			return fmt.Errorf("ms2 still running")
		}
		return nil
	})
	t.Logf("ms2 refused by the admin server %s after its revocation", time.Since(revokedAt).Round(time.Millisecond))
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := asMS2(); st == http.StatusOK {
			return fmt.Errorf("ms1 still accepts ms2's revoked certificate")
		}
		return nil
	})
	t.Logf("ms2's revoked certificate refused by its peer %s after the revocation", time.Since(revokedAt).Round(time.Millisecond))
	csrKey, _ := pki.NewKey()
	csr, _ := pki.CSR("ms2", csrKey)
	b, _ := json.Marshal(map[string]string{"name": "ms2", "kind": "server", "csr": string(csr)})
	req, _ = http.NewRequest(http.MethodPost, d.url()+"/api/v1/nodes/enroll", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+d.nodeTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err = d.hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("enrolling a revoked node: %v %v", resp, err)
	}
	resp.Body.Close()
	if st := d.call(http.MethodPost, "/nodes/ms2/allow", nil, nil); st != http.StatusOK {
		t.Fatalf("allow: %d", st)
	}
	d.waitState("ms2", domain.StateRunning) // it enrolled again by itself
	if st := asMS2(); st == http.StatusOK {
		t.Fatal("ms2's revoked certificate is accepted again after allow")
	}
	// Deleting a node revokes its certificate: ws1's is refused at once.
	wsCert, err := tls.LoadX509KeyPair(filepath.Join(wsDir, "node.crt"), filepath.Join(wsDir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	asWS := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{wsCert}}}}
	renew := func() int {
		csr, _ := pki.CSR("ws1", csrKey)
		b, _ := json.Marshal(map[string]string{"name": "ws1", "kind": "webserver", "csr": string(csr)})
		resp, err := asWS.Post(d.url()+"/api/v1/nodes/renew", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := renew(); st != http.StatusOK {
		t.Fatalf("ws1 renews with its certificate: %d", st)
	}
	if st := d.call(http.MethodDelete, "/webservers/ws1", nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete ws1: %d", st)
	}
	if st := renew(); st != http.StatusUnauthorized {
		t.Fatalf("the deleted ws1's certificate at the admin server: %d, want 401", st)
	}
	var audit []struct {
		Action string `json:"action"`
		Target string `json:"target"`
	}
	d.call(http.MethodGet, "/audit?limit=100", nil, &audit)
	seen := map[string]bool{}
	for _, a := range audit {
		seen[a.Action] = true
	}
	for _, want := range []string{"node.enrol", "node.renew", "node.revoke", "node.allow", "webserver.delete"} {
		if !seen[want] {
			t.Fatalf("no %s in the audit log: %+v", want, audit)
		}
	}
}

// connections counts the control connections the admin server accepted
// from node.
func connections(t *testing.T, logPath, node string) int {
	t.Helper()
	b, _ := os.ReadFile(logPath)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `msg="node connected"`) && strings.Contains(l, "node="+node+" ") {
			n++
		}
	}
	return n
}
