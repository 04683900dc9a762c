package webserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"tandem/backend/pki"
	"tandem/backend/wire"
)

// errNoNodeCert: a cluster sets member_tls but this web server has no
// node certificate (it runs without an admin server on https).
var errNoNodeCert = errors.New("webserver: the cluster sets member_tls but this web server has no node certificate (an https admin server enrols it)")

// memberTLS is the TLS a member is reached with: the node's client TLS
// (domain CA, revocations) and the member's own name in its certificate,
// so one member cannot answer for another. Resumed sessions keep
// reconnects cheap.
func (s *Server) memberTLS(m *member) (*tls.Config, error) {
	m.tlsMu.Lock()
	defer m.tlsMu.Unlock()
	if m.tlsCfg != nil {
		return m.tlsCfg, nil
	}
	base := s.peerTLS.Load()
	if base == nil {
		return nil, errNoNodeCert
	}
	c := base.Clone()
	verify := base.VerifyConnection
	name := m.name
	c.ServerName = name
	c.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		if pki.PeerName(&cs) != name {
			return fmt.Errorf("webserver: the certificate at %s does not name member %q", m.listen, name)
		}
		return nil
	}
	m.tlsCfg = c
	return c, nil
}

// handshake makes c a TLS connection to m, bounded by the connect timeout.
func (s *Server) handshake(ctx context.Context, m *member, c net.Conn) (net.Conn, error) {
	cfg, err := s.memberTLS(m)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("webserver: TLS to %s: %w", m.name, err)
	}
	return tc, nil
}

// probeClient is the client and scheme of m's health probe: plain's shared
// client, or one of m's own on TLS.
func (s *Server) probeClient(m *member, plain *http.Client) (*http.Client, string, error) {
	if !m.tls {
		return plain, "http", nil
	}
	cfg, err := s.memberTLS(m)
	if err != nil {
		return nil, "", err
	}
	m.tlsMu.Lock()
	defer m.tlsMu.Unlock()
	if m.probe == nil {
		m.probe = &http.Client{Timeout: plain.Timeout, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg,
			DialContext: (&net.Dialer{Timeout: s.cfg.ConnectTimeout}).DialContext, TLSHandshakeTimeout: s.cfg.ConnectTimeout}}
	}
	return m.probe, "https", nil
}

// Revocations implements agent.RevocationsHandler: a revoked member's
// certificate fails the next handshakes (the agent's list, which
// memberTLS's base checks); connections verified before start over.
func (s *Server) Revocations(wire.Revocations) {
	s.mu.Lock()
	ms := make([]*member, 0, len(s.members))
	for _, x := range s.members {
		if x.tls {
			ms = append(ms, x)
		}
	}
	s.mu.Unlock()
	for _, x := range ms {
		x.closeIdle(false)
	}
}
