package admin

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"tandem/backend/pki"
)

// FingerprintFile holds the domain CA's fingerprint in the data folder
// (not a secret: what nodes pin).
const FingerprintFile = "ca.fingerprint"

// domainCA loads or creates the CA and writes its fingerprint beside it.
func domainCA(dataDir string, logger *slog.Logger) (*pki.CA, error) {
	ca, err := pki.LoadOrCreateCA(dataDir)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dataDir, FingerprintFile), []byte(ca.Fingerprint()+"\n"), 0o644); err != nil {
		return nil, err
	}
	logger.Info("admin: domain CA", "fingerprint", ca.Fingerprint(), "give nodes", "--ca-fingerprint "+ca.Fingerprint())
	return ca, nil
}

// serverTLS is the admin server's TLS: the operator's certificate, or one
// the domain CA issues for the listen address, the loopback and this
// machine's names and addresses. Nodes may present their certificate
// (checked by the API for node routes); browsers and REST clients need none.
func serverTLS(cfg Config, ca *pki.CA) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, fmt.Errorf("admin: --tls-cert and --tls-key go together")
		}
		if cert, err = tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("admin: TLS certificate: %w", err)
		}
	} else if cert, err = ca.ServerCert("tandem-admin", serverHosts(cfg.Listen)); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
	}, nil
}

// serverHosts are the names the admin server may be reached by.
func serverHosts(listen string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	host, _, _ := net.SplitHostPort(listen)
	if host != "" && host != "0.0.0.0" && host != "::" {
		hosts = append(hosts, host)
	} else if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				hosts = append(hosts, ipn.IP.String())
			}
		}
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, name)
	}
	return hosts
}
