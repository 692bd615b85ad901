package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCert(t *testing.T, cn string, isCA bool, parent *testCert, dns ...string) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             testNow.Add(-time.Hour),
		NotAfter:              testNow.Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              dns,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: cert, key: key}
}

func TestPin(t *testing.T) {
	ca := newCert(t, "weft-broker-ca", true, nil)
	pin := Pin(ca.cert)
	if pin != sha256.Sum256(ca.cert.RawSubjectPublicKeyInfo) {
		t.Fatal("Pin is not SHA-256 of the SPKI")
	}
	s := pin.String()
	if !strings.HasPrefix(s, "sha256:") || len(s) != 7+64 {
		t.Fatalf("String = %q", s)
	}
	back, err := ParseKeyPin(s)
	if err != nil || back != pin {
		t.Fatalf("ParseKeyPin(String) = %v, %v", back, err)
	}
	for _, bad := range []string{"", "sha256:", "sha1:" + s[7:], s[:len(s)-1], strings.ToUpper(s[:7]) + s[7:], "sha256:" + strings.ToUpper(s[7:]), s[:len(s)-1] + "g"} {
		if _, err := ParseKeyPin(bad); err == nil {
			t.Errorf("ParseKeyPin(%q) accepted", bad)
		}
	}
	if err := VerifyPin(ca.cert, pin); err != nil {
		t.Fatalf("VerifyPin: %v", err)
	}
	other := newCert(t, "other", true, nil)
	if err := VerifyPin(other.cert, pin); err == nil || !strings.Contains(err.Error(), `token: certificate "other" has public key pin sha256:`) {
		t.Fatalf("VerifyPin(other) = %v", err)
	}
	if err := VerifyPin(nil, pin); err == nil {
		t.Fatal("VerifyPin(nil) accepted")
	}
}

func TestVerifyChain(t *testing.T) {
	ca := newCert(t, "weft-broker-ca", true, nil)
	leaf := newCert(t, "broker", false, ca, "broker.example.com")
	evilCA := newCert(t, "evil", true, nil)
	evilLeaf := newCert(t, "broker", false, evilCA, "broker.example.com")
	notCA := newCert(t, "not-a-ca", false, nil)
	pin := Pin(ca.cert)
	opts := x509.VerifyOptions{DNSName: "broker.example.com", CurrentTime: testNow}

	tests := []struct {
		name    string
		chain   []*x509.Certificate
		pin     KeyPin
		opts    x509.VerifyOptions
		wantErr string
	}{
		{name: "ok", chain: []*x509.Certificate{leaf.cert, ca.cert}, pin: pin, opts: opts},
		{name: "empty", chain: nil, pin: pin, opts: opts, wantErr: "no certificate presented"},
		{name: "no CA sent", chain: []*x509.Certificate{leaf.cert}, pin: pin, opts: opts, wantErr: "no CA certificate in the presented chain matches pin"},
		{name: "evil leaf with real CA attached", chain: []*x509.Certificate{evilLeaf.cert, ca.cert}, pin: pin, opts: opts, wantErr: "token: verify broker: x509"},
		{name: "evil chain", chain: []*x509.Certificate{evilLeaf.cert, evilCA.cert}, pin: pin, opts: opts, wantErr: "matches pin"},
		{name: "pinned key not a CA", chain: []*x509.Certificate{leaf.cert, notCA.cert}, pin: Pin(notCA.cert), opts: opts, wantErr: "matches pin"},
		{name: "wrong name", chain: []*x509.Certificate{leaf.cert, ca.cert}, pin: pin, opts: x509.VerifyOptions{DNSName: "other.example.com", CurrentTime: testNow}, wantErr: "certificate is valid for broker.example.com"},
		{name: "expired", chain: []*x509.Certificate{leaf.cert, ca.cert}, pin: pin, opts: x509.VerifyOptions{DNSName: "broker.example.com", CurrentTime: testNow.Add(2 * time.Hour)}, wantErr: "expired"},
		{name: "nil cert", chain: []*x509.Certificate{leaf.cert, nil}, pin: pin, opts: opts, wantErr: "nil certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyChain(tt.chain, tt.pin, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifyChain: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("VerifyChain = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestHashSecret(t *testing.T) {
	c := testToken().Credential
	h := HashSecret(c)
	if !VerifySecret(c, h[:]) {
		t.Fatal("VerifySecret(own hash) = false")
	}
	wrong := c
	wrong.Secret[0] ^= 1
	if VerifySecret(wrong, h[:]) {
		t.Fatal("VerifySecret accepted a wrong secret")
	}
	otherID := c
	otherID.ID = "zzzzzz"
	if VerifySecret(otherID, h[:]) {
		t.Fatal("hash is not bound to the token id")
	}
	if VerifySecret(c, h[:31]) || VerifySecret(c, nil) {
		t.Fatal("VerifySecret accepted a truncated hash")
	}
	if h == sha256.Sum256(c.Secret[:]) {
		t.Fatal("hash lacks domain separation")
	}
}
