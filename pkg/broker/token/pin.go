package token

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeyPin is the SHA-256 digest of a certificate's DER-encoded
// SubjectPublicKeyInfo. Pinning the key rather than the certificate keeps
// the pin valid when the CA certificate is re-issued with the same key.
type KeyPin [PinLen]byte

// pinPrefix is the text form's algorithm prefix, as in kubeadm's
// --discovery-token-ca-cert-hash.
const pinPrefix = "sha256:"

// String returns "sha256:<64 lowercase hex digits>".
func (p KeyPin) String() string { return pinPrefix + hex.EncodeToString(p[:]) }

// ParseKeyPin parses the form [KeyPin.String] prints.
func ParseKeyPin(s string) (KeyPin, error) {
	var p KeyPin
	h, ok := strings.CutPrefix(s, pinPrefix)
	if !ok {
		return p, fmt.Errorf("token: pin %q: want %s<hex>", truncate(s), pinPrefix)
	}
	if len(h) != 2*PinLen || strings.ToLower(h) != h {
		return p, fmt.Errorf("token: pin %q: want %d lowercase hex digits after %s", truncate(s), 2*PinLen, pinPrefix)
	}
	if _, err := hex.Decode(p[:], []byte(h)); err != nil {
		return KeyPin{}, fmt.Errorf("token: pin %q: %w", truncate(s), err)
	}
	return p, nil
}

// Pin returns the pin of cert's public key.
func Pin(cert *x509.Certificate) KeyPin {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// VerifyPin reports whether cert's public key matches pin.
func VerifyPin(cert *x509.Certificate, pin KeyPin) error {
	if cert == nil {
		return errors.New("token: verify pin: no certificate")
	}
	if got := Pin(cert); got != pin {
		return fmt.Errorf("token: certificate %q has public key pin %s, want %s", cert.Subject.CommonName, got, pin)
	}
	return nil
}

// VerifyChain authenticates a TLS server by the CA pin, for use in
// tls.Config.VerifyPeerCertificate during Join (before the member has the CA
// certificate): chain is what the server presented, leaf first, and must
// include a CA certificate whose key matches pin; the leaf must verify up to
// that CA with opts (set DNSName to the broker host; Roots and Intermediates
// are filled in here, KeyUsages defaults to server authentication). The
// broker therefore sends its CA certificate along with its serving
// certificate.
func VerifyChain(chain []*x509.Certificate, pin KeyPin, opts x509.VerifyOptions) error {
	if len(chain) == 0 {
		return errors.New("token: verify broker: no certificate presented")
	}
	roots := x509.NewCertPool()
	inter := x509.NewCertPool()
	found := false
	for _, c := range chain {
		if c == nil {
			return errors.New("token: verify broker: nil certificate in chain")
		}
		if Pin(c) == pin && c.BasicConstraintsValid && c.IsCA {
			roots.AddCert(c)
			found = true
		} else if c != chain[0] {
			inter.AddCert(c)
		}
	}
	if !found {
		return fmt.Errorf("token: verify broker: no CA certificate in the presented chain matches pin %s", pin)
	}
	opts.Roots = roots
	opts.Intermediates = inter
	if _, err := chain[0].Verify(opts); err != nil {
		return fmt.Errorf("token: verify broker: %w", err)
	}
	return nil
}

// SecretHash is what the broker stores for a token secret.
type SecretHash [sha256.Size]byte

// hashDomain separates token secret hashes from any other SHA-256 use.
const hashDomain = "weft join token v1\x00"

// HashSecret returns the stored form of a credential's secret: SHA-256 over
// a domain separator, the token id and the secret, so a hash is bound to its
// token id. See the package documentation for why SHA-256 suffices.
func HashSecret(c Credential) SecretHash {
	h := sha256.New()
	h.Write([]byte(hashDomain))
	h.Write([]byte(c.ID))
	h.Write([]byte{0})
	h.Write(c.Secret[:])
	var out SecretHash
	h.Sum(out[:0])
	return out
}

// VerifySecret reports, in constant time, whether c matches the stored hash.
// stored may come straight from storage: a wrong length never matches.
func VerifySecret(c Credential, stored []byte) bool {
	h := HashSecret(c)
	return subtle.ConstantTimeCompare(h[:], stored) == 1
}
