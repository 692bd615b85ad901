// Package ca is the broker's certificate authority: it creates the CA
// keypair once, signs the broker's serving certificate, and signs client
// certificates whose identity is a cluster id (or the admin). Identities are
// carried in the subject: CommonName is the name, Organization the kind.
// Pure crypto: where the CA is kept is the caller's business.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Kind is the kind of a client identity.
type Kind string

// Identity kinds, stored in the certificate subject's Organization.
const (
	KindCluster Kind = "weft:cluster"
	KindAdmin   Kind = "weft:admin"
)

// Identity is who a client certificate speaks for.
type Identity struct {
	Kind Kind
	Name string // cluster id, or "admin"
}

func (i Identity) String() string { return string(i.Kind) + "/" + i.Name }

// CA signs certificates.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// Options configure New.
type Options struct {
	// Now is the issuing time (injected for tests); zero means time.Now().
	Now time.Time
	// Validity of the CA certificate; default 10 years.
	Validity time.Duration
}

// New creates a fresh CA with an ECDSA P-256 key.
func New(o Options) (*CA, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if o.Validity == 0 {
		o.Validity = 10 * 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "weft-broker-ca", Organization: []string{"weft"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: self-sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse own certificate: %w", err)
	}
	return &CA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Load parses a CA stored with MarshalPEM.
func Load(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("ca: certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("ca: key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("ca: key: not a signing key")
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, errors.New("ca: key does not match certificate")
	}
	return &CA{cert: cert, key: signer, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

// MarshalPEM returns the certificate and the PKCS#8 private key as PEM.
func (c *CA) MarshalPEM() (certPEM, keyPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	return c.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Cert is the CA certificate.
func (c *CA) Cert() *x509.Certificate { return c.cert }

// CertPEM is the CA certificate in PEM.
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.pem...) }

// Pool is a cert pool holding only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// MaxCSRBytes bounds a CSR accepted for signing.
const MaxCSRBytes = 8 << 10

// SignClient signs a client certificate for id over the public key of a
// PEM CSR. The CSR's own subject and extensions are ignored: the identity
// comes from the caller (the authenticated token or admin), never from the
// requester.
func (c *CA) SignClient(csrPEM []byte, id Identity, validity time.Duration, now time.Time) ([]byte, error) {
	if id.Name == "" || (id.Kind != KindCluster && id.Kind != KindAdmin) {
		return nil, fmt.Errorf("ca: sign: bad identity %q", id)
	}
	if len(csrPEM) > MaxCSRBytes {
		return nil, fmt.Errorf("ca: csr: %d bytes, limit %d", len(csrPEM), MaxCSRBytes)
	}
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("ca: csr: no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: csr: signature: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("ca: csr: ECDSA key must use P-256 or P-384")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("ca: csr: unsupported key type %v (want ECDSA P-256/P-384 or Ed25519)", csr.PublicKeyAlgorithm)
	}
	tmpl := c.template(now, validity)
	tmpl.Subject = pkix.Name{CommonName: id.Name, Organization: []string{string(id.Kind)}}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return c.sign(tmpl, csr.PublicKey)
}

// SignServer signs the broker's serving certificate for the given host
// names and IP addresses.
func (c *CA) SignServer(pub crypto.PublicKey, hosts []string, validity time.Duration, now time.Time) ([]byte, error) {
	tmpl := c.template(now, validity)
	tmpl.Subject = pkix.Name{CommonName: "weft-broker", Organization: []string{"weft"}}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return c.sign(tmpl, pub)
}

func (c *CA) template(now time.Time, validity time.Duration) *x509.Certificate {
	if now.IsZero() {
		now = time.Now()
	}
	notAfter := now.Add(validity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	return &x509.Certificate{
		NotBefore: now.Add(-time.Minute),
		NotAfter:  notAfter,
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
}

func (c *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign %q: %w", tmpl.Subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// IdentityOf reads the identity of a verified client certificate.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if len(cert.Subject.Organization) != 1 {
		return Identity{}, errors.New("client certificate: want exactly one organization (identity kind)")
	}
	id := Identity{Kind: Kind(cert.Subject.Organization[0]), Name: cert.Subject.CommonName}
	if (id.Kind != KindCluster && id.Kind != KindAdmin) || id.Name == "" {
		return Identity{}, fmt.Errorf("client certificate: unknown identity %q", id)
	}
	return id, nil
}

// NewKeyAndCSR generates an ECDSA P-256 key and a CSR for it, for members
// and the admin. The key is returned as PKCS#8 PEM.
func NewKeyAndCSR(commonName string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create csr: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCertificatePEM parses the first CERTIFICATE block.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func randSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}
