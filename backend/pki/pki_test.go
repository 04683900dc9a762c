package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/backend/pki"
)

// TestCAKeepsItsIdentityAndPinsVerify: a CA made once is read back the
// same (key 0600); a chain it issued verifies against its pin and no
// other; a certificate request's key is what gets certified.
func TestCAKeepsItsIdentityAndPinsVerify(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := pki.LoadOrCreateCA(dir)
	if err != nil || again.Fingerprint() != ca.Fingerprint() || !pki.ValidPin(ca.Fingerprint()) {
		t.Fatalf("reloaded CA %v, %v", again, err)
	}
	if st, err := os.Stat(filepath.Join(dir, pki.CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v %v", st, err)
	}
	other, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	key, _ := pki.NewKey()
	csrPEM, err := pki.CSR("ms1", key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("ms1", "server", csr.PublicKey, []string{"10.0.0.7", "node-a"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !pki.SameKey(leaf.Cert, key) || leaf.Cert.Subject.CommonName != "ms1" || len(leaf.Cert.IPAddresses) != 1 || len(leaf.Cert.DNSNames) != 2 {
		t.Fatalf("issued %+v", leaf.Cert)
	}
	chain := []*x509.Certificate{leaf.Cert, ca.Cert}
	if err := pki.PinnedVerifier(ca.Fingerprint())(tls.ConnectionState{PeerCertificates: chain}); err != nil {
		t.Fatalf("own pin: %v", err)
	}
	if err := pki.PinnedVerifier(other.Fingerprint())(tls.ConnectionState{PeerCertificates: chain}); !errors.Is(err, pki.ErrBadFingerprint) {
		t.Fatalf("another CA's pin: %v", err)
	}
	// A chain that names the pinned CA but whose leaf another CA signed.
	forged, _ := other.Issue("ms1", "server", key.Public(), nil, time.Hour)
	if err := pki.PinnedVerifier(ca.Fingerprint())(tls.ConnectionState{PeerCertificates: []*x509.Certificate{forged.Cert, ca.Cert}}); err == nil {
		t.Fatal("a leaf of another CA passed behind the pinned CA")
	}
	for _, bad := range []string{"", "sha256:", "sha1:00", "sha256:" + string(make([]byte, 64))} {
		if pki.ValidPin(bad) {
			t.Fatalf("pin %q accepted", bad)
		}
	}
	if _, err := pki.ParseCSR([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")); err == nil {
		t.Fatal("garbage CSR accepted")
	}
}
