package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"tandem/backend/pki"
)

// Files of a node's identity in its data folder.
const (
	KeyFile  = "node.key" // 0600
	CertFile = "node.crt" // its certificate chain (leaf, then the CA)
)

// identity is a node's key and certificate from the domain CA, enrolled
// with the node token once and renewed with the certificate itself. The
// certificate in use changes without a restart: TLS connections ask for
// it on each handshake.
type identity struct {
	name, kind string
	dir        string
	adminURL   string // https base URL
	pin        string
	token      string
	log        *slog.Logger

	mu   sync.Mutex
	cert *tls.Certificate // nil before enrolment

	transport *http.Transport // to the admin server; its TLS asks for the current certificate
}

// errNoPin means an https admin URL was given without the CA fingerprint.
var errNoPin = errors.New("agent: an https admin server needs its CA fingerprint (--ca-fingerprint or TANDEM_CA_FINGERPRINT), printed by the admin server and kept in its DATA_DIR/ca.fingerprint")

func newIdentity(cfg Config, logger *slog.Logger) (*identity, error) {
	u, err := url.Parse(cfg.AdminURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "wss") {
		return nil, nil // plain HTTP: the node token is the credential
	}
	if !pki.ValidPin(cfg.CAFingerprint) {
		return nil, errNoPin
	}
	u.Scheme = "https"
	u.Path, u.RawQuery, u.Fragment, u.User = strings.TrimSuffix(u.Path, "/"), "", "", nil
	id := &identity{name: cfg.Name, kind: cfg.Kind, dir: cfg.DataDir, adminURL: u.String(), pin: cfg.CAFingerprint, token: cfg.NodeToken, log: logger}
	id.transport = &http.Transport{TLSClientConfig: id.tlsConfig()}
	if c, err := id.load(); err == nil {
		id.cert = c
	}
	return id, nil
}

func (id *identity) load() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(id.dir, CertFile), filepath.Join(id.dir, KeyFile))
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil || c.Leaf.Subject.CommonName != id.name {
		return nil, errors.New("agent: stored certificate is another node's")
	}
	return &c, nil
}

// current is the certificate in use (nil before enrolment).
func (id *identity) current() *tls.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert
}

// valid is the certificate in use if it has not expired (nil otherwise):
// what TLS handshakes present.
func (id *identity) valid() *tls.Certificate {
	if c := id.current(); c != nil && time.Now().Before(c.Leaf.NotAfter) {
		return c
	}
	return nil
}

// forget drops the certificate in use (refused by the admin server).
func (id *identity) forget() {
	id.mu.Lock()
	id.cert = nil
	id.mu.Unlock()
	id.transport.CloseIdleConnections()
}

// tlsConfig verifies the admin server (or a peer) against the pinned CA
// and presents the current certificate.
func (id *identity) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked against the pinned CA in VerifyConnection;
		// host names are not: the pin is stronger.
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection
		VerifyConnection:   pki.PinnedVerifier(id.pin),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := id.valid(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none (or expired): enrolment uses the token
		},
	}
}

// httpClient talks to the admin server with this identity (one transport:
// its connections are reused, whatever the timeout).
func (id *identity) httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: id.transport}
}

// renewAt is when a certificate should be replaced: two thirds into its
// life, counted from its issue (it is valid from pki.Backdate before).
func renewAt(c *tls.Certificate) time.Time {
	issued, na := c.Leaf.NotBefore.Add(pki.Backdate), c.Leaf.NotAfter
	return issued.Add(na.Sub(issued) * 2 / 3)
}

// ensure enrols (no valid certificate) or renews (past two thirds of its
// life) as needed.
func (id *identity) ensure(ctx context.Context) error {
	c := id.current()
	switch {
	case c == nil || time.Now().After(c.Leaf.NotAfter):
		return id.obtain(ctx, "/api/v1/nodes/enroll", true)
	case time.Now().After(renewAt(c)):
		err := id.obtain(ctx, "/api/v1/nodes/renew", false)
		if errors.Is(err, errRefusedCert) {
			id.forget() // revoked: enrol again (refused too until the node is allowed)
		}
		return err
	}
	return nil
}

// errRefusedCert is the admin server's 401 to a node's certificate.
var errRefusedCert = errors.New("agent: certificate refused")

// obtain makes a new key, asks the admin server to certify it, and makes
// it the one in use (stored first, so a restart keeps it).
func (id *identity) obtain(ctx context.Context, path string, withToken bool) error {
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.CSR(id.name, key)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"name": id.name, "kind": id.kind, "csr": string(csr)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, id.adminURL+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("agent: %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if withToken {
		req.Header.Set("Authorization", "Bearer "+id.token)
	}
	resp, err := id.httpClient(30 * time.Second).Do(req)
	if err != nil {
		return fmt.Errorf("agent: %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusUnauthorized && !withToken {
		return fmt.Errorf("agent: %s: %w", path, errRefusedCert)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent: %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		Certificate string `json:"certificate"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("agent: %s: %w", path, err)
	}
	return id.install(key, []byte(out.Certificate))
}

func (id *identity) install(key crypto.Signer, chain []byte) error {
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	c, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		return fmt.Errorf("agent: issued certificate: %w", err)
	}
	if c.Leaf.Subject.CommonName != id.name {
		return fmt.Errorf("agent: issued certificate names %q", c.Leaf.Subject.CommonName)
	}
	if err := os.MkdirAll(id.dir, 0o700); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// The key, then the certificate: a crash between leaves an old
	// certificate that does not match, which is enrolled again.
	if err := pki.WriteFileAtomic(filepath.Join(id.dir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(id.dir, CertFile), chain, 0o644); err != nil {
		return err
	}
	id.mu.Lock()
	id.cert = &c
	id.mu.Unlock()
	// Pooled connections authenticated with the old certificate (perhaps a
	// revoked one) must not carry the next requests.
	id.transport.CloseIdleConnections()
	id.log.Info("agent: node certificate installed", "serial", c.Leaf.SerialNumber.Text(16), "not_after", c.Leaf.NotAfter.UTC())
	return nil
}

// renewLoop renews the certificate when two thirds of its life have
// passed, until ctx ends; a failed renewal is tried again each minute (or
// sooner for a short-lived certificate).
func (id *identity) renewLoop(ctx context.Context) {
	for {
		c := id.current()
		wait := time.Second // not enrolled yet: the connection enrols; look again soon
		if c != nil {
			wait = max(time.Until(renewAt(c)), 0)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if c == nil {
			continue
		}
		if err := id.ensure(ctx); err != nil && ctx.Err() == nil {
			id.log.Warn("agent: certificate renewal failed, retrying", "err", err)
			retry := time.Minute
			if c := id.current(); c != nil {
				retry = min(retry, max(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)/20, time.Second))
			}
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// ca is the domain CA from the node's own chain, checked against the pin.
func (id *identity) ca() (*x509.Certificate, error) {
	c := id.current()
	if c == nil || len(c.Certificate) < 2 {
		return nil, errors.New("agent: not enrolled yet")
	}
	ca, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		return nil, fmt.Errorf("agent: CA in the node's chain: %w", err)
	}
	if pki.Fingerprint(ca) != strings.ToLower(strings.TrimSpace(id.pin)) {
		return nil, pki.ErrBadFingerprint
	}
	return ca, nil
}

// verifyPeer checks a peer's certificate: issued by the domain CA for
// usage, and not revoked.
func (id *identity) verifyPeer(cs tls.ConnectionState, usage x509.ExtKeyUsage, revoked func(serial string) bool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("agent: the peer sent no certificate")
	}
	ca, err := id.ca()
	if err != nil {
		return err
	}
	leaf := cs.PeerCertificates[0]
	if err := pki.VerifyLeaf(leaf, ca, usage); err != nil {
		return err
	}
	if revoked(leaf.SerialNumber.Text(16)) {
		return fmt.Errorf("agent: the certificate of %q is revoked", leaf.Subject.CommonName)
	}
	return nil
}

// PeerTLS is the TLS of a managed server's internal listener (server) and
// of its calls to its peers (client): both sides present their node
// certificate and check the other's against the domain CA and the admin
// server's revocations (Revoked). Both are nil on a plain-HTTP domain.
func (a *Agent) PeerTLS() (server, client *tls.Config) {
	id := a.id
	if id == nil {
		return nil, nil
	}
	server = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.certificate() },
		ClientAuth:     tls.RequireAnyClientCert, // checked against the domain CA below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return id.verifyPeer(cs, x509.ExtKeyUsageClientAuth, a.Revoked)
		},
	}
	client = &tls.Config{
		MinVersion:           tls.VersionTLS12,
		InsecureSkipVerify:   true, //nolint:gosec // verified by VerifyConnection against the domain CA
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.certificate() },
		VerifyConnection: func(cs tls.ConnectionState) error {
			return id.verifyPeer(cs, x509.ExtKeyUsageServerAuth, a.Revoked)
		},
	}
	return server, client
}

// AppTLS is the TLS of a managed server's application port when its
// cluster sets member_tls: the node certificate (renewed live) for any
// client, the web server checking it; nil on a plain-HTTP domain.
func (a *Agent) AppTLS() *tls.Config {
	id := a.id
	if id == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.certificate() },
	}
}

// certificate is the node's valid certificate, for a handshake.
func (id *identity) certificate() (*tls.Certificate, error) {
	if c := id.valid(); c != nil {
		return c, nil
	}
	return nil, errors.New("agent: no valid node certificate yet")
}

// PinFrom is the CA fingerprint a node was given: its --ca-fingerprint
// flag, else TANDEM_CA_FINGERPRINT.
func PinFrom(flagValue string) string {
	if flagValue != "" {
		return strings.TrimSpace(flagValue)
	}
	return strings.TrimSpace(os.Getenv("TANDEM_CA_FINGERPRINT"))
}
