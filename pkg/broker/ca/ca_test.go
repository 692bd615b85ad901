package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestSignClientIdentityComesFromCaller(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	c, err := New(Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// The requester asks to be the admin; the CA signs what the caller says.
	_, csr, err := NewKeyAndCSR("weft:admin")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := c.SignClient(csr, Identity{Kind: KindCluster, Name: "c1"}, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client cert does not verify against the CA: %v", err)
	}
	id, err := IdentityOf(cert)
	if err != nil || id != (Identity{Kind: KindCluster, Name: "c1"}) {
		t.Fatalf("identity = %v, %v", id, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.Pool(), CurrentTime: now.Add(25 * time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("client cert still valid after its validity")
	}
	// Another CA's chain does not verify.
	other, _ := New(Options{Now: now})
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("cert verified against a different CA")
	}
}

func TestSignClientRejectsBadCSRs(t *testing.T) {
	c, _ := New(Options{})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, rsaKey)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, ecKey)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff
	id := Identity{Kind: KindCluster, Name: "c1"}
	cases := map[string]struct {
		csr  []byte
		want string
	}{
		"garbage":   {[]byte("hello"), "no CERTIFICATE REQUEST PEM block"},
		"oversize":  {make([]byte, MaxCSRBytes+1), "limit"},
		"rsa":       {pemCSR(rsaCSR), "unsupported key type"},
		"tampered":  {pemCSR(tampered), "csr"},
		"wrong pem": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good}), "no CERTIFICATE REQUEST"},
	}
	for name, tc := range cases {
		_, err := c.SignClient(tc.csr, id, time.Hour, time.Now())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := c.SignClient(pemCSR(good), Identity{Kind: "root", Name: "x"}, time.Hour, time.Now()); err == nil {
		t.Error("signed an unknown identity kind")
	}
}

func pemCSR(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestLoadRoundTripAndMismatch(t *testing.T) {
	c, _ := New(Options{})
	certPEM, keyPEM, err := c.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert().Equal(c.Cert()) {
		t.Fatal("loaded CA differs")
	}
	other, _ := New(Options{})
	_, otherKey, _ := other.MarshalPEM()
	if _, err := Load(certPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	// A certificate signed by a reloaded CA verifies against the original.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv, err := back.SignServer(key.Public(), []string{"127.0.0.1", "broker.example"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := ParseCertificatePEM(srv)
	if _, err := sc.Verify(x509.VerifyOptions{Roots: c.Pool(), DNSName: "broker.example"}); err != nil {
		t.Fatal(err)
	}
	if err := sc.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}
