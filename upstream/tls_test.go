package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA makes a CA and a server certificate for 127.0.0.1, and writes the
// CA to a PEM file.
func testCA(t *testing.T) (caFile string, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test pbx ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pbx"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"pbx.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLS(t *testing.T) {
	checkLeaks(t)
	caFile, cert := testCA(t)
	otherCA, _ := testCA(t)
	f := newFakePBX(t)
	f.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}}
	f.start()
	t.Cleanup(f.close)

	t.Run("verified with the CA file", func(t *testing.T) {
		cfg := testConfig(f.addr)
		cfg.TLS = TLS{Enabled: true, CAFile: caFile}
		_, c := startPool(t, cfg, Options{}, true)
		if _, err := do(t, c, nil, "Action", "Ping"); err != nil {
			t.Errorf("Ping over TLS: %v", err)
		}
	})
	t.Run("server name checked", func(t *testing.T) {
		cfg := testConfig(f.addr)
		cfg.TLS = TLS{Enabled: true, CAFile: caFile, ServerName: "pbx.test"}
		startPool(t, cfg, Options{}, true)
	})
	t.Run("unknown CA refused", func(t *testing.T) {
		cfg := testConfig(f.addr)
		cfg.TLS = TLS{Enabled: true, CAFile: otherCA}
		_, c := startPool(t, cfg, Options{}, false)
		waitFor(t, "a refused handshake", func() bool { return c.Stats().ConnectFailures > 0 })
		if c.State() == StateUp || !strings.Contains(c.LastError().Error(), "tls") {
			t.Errorf("State() = %v, LastError() = %v; want not up and a tls error", c.State(), c.LastError())
		}
	})
	t.Run("InsecureSkipVerify", func(t *testing.T) {
		cfg := testConfig(f.addr)
		cfg.TLS = TLS{Enabled: true, InsecureSkipVerify: true}
		startPool(t, cfg, Options{}, true)
	})
}
