// Package token defines weft's join token: the one string `weftctl token
// create` prints and `weftctl join` consumes. It holds everything a new
// member needs to reach the broker securely:
//
//   - the broker address(es), host:port;
//   - the SHA-256 pin of the broker CA's public key (SubjectPublicKeyInfo, as
//     kubeadm's --discovery-token-ca-cert-hash), so the member can
//     authenticate the broker before it trusts anything it says;
//   - the token credential: an id (6 characters [a-z0-9], public, used to
//     list and revoke tokens) and a 32-byte random secret.
//
// # Format
//
// The token is base64url without padding (RFC 4648 section 5) of:
//
//	version   1 byte   = 1
//	count     1 byte   number of addresses, 1..MaxAddresses
//	count × { len 1 byte (1..MaxAddressLen), address len bytes }
//	pin       32 bytes SHA-256 of the CA certificate's SubjectPublicKeyInfo
//	id        6 bytes  [a-z0-9]
//	secret    32 bytes
//
// Parsing is strict, so a token has exactly one encoding: anything [Parse]
// accepts re-encodes to the same string. Addresses are "host:port" in
// canonical form: host a lowercase DNS name or an IP literal as net/netip
// prints it (IPv6 in brackets), port 1-65535 without leading zeros.
//
// # Secrets
//
// Only the id and secret go to the broker (JoinRequest.token_id/token_secret),
// and only after the TLS handshake verified the broker against the pin (see
// [VerifyChain]). The broker stores [HashSecret] of the secret, never the
// secret. The secret is 256 bits from a CSPRNG, so a plain SHA-256 is
// enough: unlike passwords there is no dictionary to try, and brute force of
// 2^256 is out of reach whatever the hash costs; a slow hash (argon2id) would
// only make Join a cheap way to burn broker CPU. [VerifySecret] compares in
// constant time. Errors from this package never contain the secret, and
// [Secret] prints as "[redacted]".
package token

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Format constants and limits.
const (
	// Version is the token format version this package writes and reads.
	Version = 1
	// MaxAddresses is the most broker addresses a token holds.
	MaxAddresses = 8
	// MaxAddressLen is the longest address, in bytes.
	MaxAddressLen = 255
	// IDLen is the length of a token id.
	IDLen = 6
	// SecretLen is the length of a token secret in bytes.
	SecretLen = 32
	// PinLen is the length of a CA pin (a SHA-256 digest) in bytes.
	PinLen = 32

	// MaxLen is the longest token string [Parse] accepts: the base64url
	// length of the longest encoding.
	MaxLen = (maxRawLen*8 + 5) / 6

	// maxRawLen is the longest decoded token.
	maxRawLen = 2 + MaxAddresses*(1+MaxAddressLen) + PinLen + IDLen + SecretLen
	// idAlphabet is the alphabet of token ids.
	idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Secret is a token secret. It formats as "[redacted]"; use s[:] for the
// bytes.
type Secret [SecretLen]byte

// String implements fmt.Stringer without revealing the secret.
func (Secret) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer without revealing the secret.
func (Secret) GoString() string { return "token.Secret{[redacted]}" }

// SecretFromBytes converts the wire form (JoinRequest.token_secret) to a
// Secret.
func SecretFromBytes(b []byte) (Secret, error) {
	var s Secret
	if len(b) != SecretLen {
		return s, fmt.Errorf("token: secret is %d bytes, want %d", len(b), SecretLen)
	}
	copy(s[:], b)
	if s == (Secret{}) {
		return s, errors.New("token: secret is all zero")
	}
	return s, nil
}

// Credential is what a member presents to join: a token id and secret.
type Credential struct {
	// ID identifies the token (public).
	ID string
	// Secret proves possession of the token.
	Secret Secret
}

// Generate returns a fresh credential drawn from rand (crypto/rand.Reader in
// production). The id is uniform over [a-z0-9]^6 (rejection sampling, no
// modulo bias).
func Generate(rand io.Reader) (Credential, error) {
	var c Credential
	if _, err := io.ReadFull(rand, c.Secret[:]); err != nil {
		return Credential{}, fmt.Errorf("token: generating secret: %w", err)
	}
	if c.Secret == (Secret{}) {
		return Credential{}, errors.New("token: generating secret: random source returned all zeros")
	}
	id := make([]byte, 0, IDLen)
	buf := make([]byte, 16)
	// 252 = 7*36: bytes at or above it would bias the first characters.
	for tries := 0; len(id) < IDLen; tries++ {
		if tries == 64 {
			return Credential{}, errors.New("token: generating id: random source is not random")
		}
		if _, err := io.ReadFull(rand, buf); err != nil {
			return Credential{}, fmt.Errorf("token: generating id: %w", err)
		}
		for _, b := range buf {
			if b < 252 && len(id) < IDLen {
				id = append(id, idAlphabet[b%36])
			}
		}
	}
	c.ID = string(id)
	return c, nil
}

// ValidateID checks that id is a well-formed token id.
func ValidateID(id string) error {
	if len(id) != IDLen {
		return fmt.Errorf("token: id %q: want %d characters [a-z0-9]", truncate(id), IDLen)
	}
	for i := 0; i < len(id); i++ {
		if !strings.ContainsRune(idAlphabet, rune(id[i])) {
			return fmt.Errorf("token: id %q: want %d characters [a-z0-9]", truncate(id), IDLen)
		}
	}
	return nil
}

// Token is a decoded join token.
type Token struct {
	// Addresses of the broker, "host:port", tried in order.
	Addresses []string
	// CAPin is the SHA-256 of the broker CA's SubjectPublicKeyInfo.
	CAPin KeyPin
	// Credential is the token id and secret.
	Credential
}

// Validate checks t against the format's rules (the ones [Parse] enforces).
func (t Token) Validate() error {
	if err := ValidateAddresses(t.Addresses); err != nil {
		return err
	}
	if t.CAPin == (KeyPin{}) {
		return errors.New("token: CA pin is all zero")
	}
	if err := ValidateID(t.ID); err != nil {
		return err
	}
	if t.Secret == (Secret{}) {
		return errors.New("token: secret is all zero")
	}
	return nil
}

// ValidateAddresses checks broker addresses against the token format's
// rules (count, "host:port", canonical), so a broker can refuse bad
// --advertise addresses at start-up instead of at every CreateToken.
func ValidateAddresses(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("token: no broker address")
	}
	if len(addrs) > MaxAddresses {
		return fmt.Errorf("token: %d broker addresses, at most %d allowed", len(addrs), MaxAddresses)
	}
	for i, a := range addrs {
		if err := checkAddress(a); err != nil {
			return fmt.Errorf("token: address[%d]: %w", i, err)
		}
	}
	return nil
}

// Encode validates t and returns its string form.
func (t Token) Encode() (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	raw := make([]byte, 0, maxRawLen)
	raw = append(raw, Version, byte(len(t.Addresses)))
	for _, a := range t.Addresses {
		raw = append(raw, byte(len(a)))
		raw = append(raw, a...)
	}
	raw = append(raw, t.CAPin[:]...)
	raw = append(raw, t.ID...)
	raw = append(raw, t.Secret[:]...)
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// Parse decodes and validates a token string. Surrounding white space (as
// left by copy and paste) is not accepted: trim it first.
func Parse(s string) (Token, error) {
	if s == "" {
		return Token{}, errors.New("token: empty")
	}
	if len(s) > MaxLen {
		return Token{}, fmt.Errorf("token: %d characters, at most %d allowed", len(s), MaxLen)
	}
	// base64 decoders skip '\r' and '\n'; reject anything outside the
	// alphabet first so a token has exactly one spelling.
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return Token{}, fmt.Errorf("token: invalid character %q at offset %d (want base64url without padding)", c, i)
		}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return Token{}, fmt.Errorf("token: not base64url: %w", err)
	}
	r := reader{b: raw}
	v, ok := r.byte()
	if !ok {
		return Token{}, errors.New("token: truncated before version")
	}
	if v != Version {
		return Token{}, fmt.Errorf("token: unsupported version %d (want %d)", v, Version)
	}
	n, ok := r.byte()
	if !ok {
		return Token{}, errors.New("token: truncated before address count")
	}
	if n == 0 || n > MaxAddresses {
		return Token{}, fmt.Errorf("token: %d broker addresses, want 1 to %d", n, MaxAddresses)
	}
	var t Token
	for i := 0; i < int(n); i++ {
		l, ok := r.byte()
		if !ok {
			return Token{}, fmt.Errorf("token: address[%d]: truncated", i)
		}
		if l == 0 {
			return Token{}, fmt.Errorf("token: address[%d]: empty", i)
		}
		a, ok := r.next(int(l))
		if !ok {
			return Token{}, fmt.Errorf("token: address[%d]: truncated", i)
		}
		if err := checkAddress(string(a)); err != nil {
			return Token{}, fmt.Errorf("token: address[%d]: %w", i, err)
		}
		t.Addresses = append(t.Addresses, string(a))
	}
	rest := r.b[r.off:]
	if want := PinLen + IDLen + SecretLen; len(rest) != want {
		return Token{}, fmt.Errorf("token: %d bytes after the addresses, want %d (pin, id, secret)", len(rest), want)
	}
	copy(t.CAPin[:], rest[:PinLen])
	t.ID = string(rest[PinLen : PinLen+IDLen])
	copy(t.Secret[:], rest[PinLen+IDLen:])
	if err := t.Validate(); err != nil {
		return Token{}, err
	}
	return t, nil
}

// reader walks a byte slice.
type reader struct {
	b   []byte
	off int
}

func (r *reader) byte() (byte, bool) {
	if r.off >= len(r.b) {
		return 0, false
	}
	r.off++
	return r.b[r.off-1], true
}

func (r *reader) next(n int) ([]byte, bool) {
	if len(r.b)-r.off < n {
		return nil, false
	}
	r.off += n
	return r.b[r.off-n : r.off], true
}

// checkAddress validates one canonical "host:port".
func checkAddress(a string) error {
	if a == "" {
		return errors.New("empty")
	}
	if len(a) > MaxAddressLen {
		return fmt.Errorf("%d bytes, at most %d allowed", len(a), MaxAddressLen)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %w", a, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return fmt.Errorf("%q: port %q: want 1-65535", a, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		switch {
		case ip.Zone() != "":
			return fmt.Errorf("%q: IP address with a zone", a)
		case ip.Is4In6():
			return fmt.Errorf("%q: IPv4-mapped IPv6 address (write %s)", a, ip.Unmap())
		case ip.String() != host:
			return fmt.Errorf("%q: IP address not canonical (want %s)", a, net.JoinHostPort(ip.String(), port))
		case ip.IsUnspecified() || ip.IsMulticast():
			return fmt.Errorf("%q: not a unicast address", a)
		}
	} else if err := checkHostname(host); err != nil {
		return fmt.Errorf("%q: %w", a, err)
	}
	if net.JoinHostPort(host, port) != a {
		return fmt.Errorf("%q: not canonical (want %s)", a, net.JoinHostPort(host, port))
	}
	return nil
}

// checkHostname validates a lowercase DNS name (RFC 1123) whose last label
// is not numeric (so it cannot be mistaken for an IPv4 address).
func checkHostname(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if len(h) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("host name: label %q: want 1 to 63 characters", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
			if !alnum && (c != '-' || i == 0 || i == len(l)-1) {
				return fmt.Errorf("host name: label %q: want lowercase letters, digits and inner '-'", l)
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("host name: last label %q is numeric (not an IP address either)", last)
	}
	return nil
}

// truncate shortens untrusted text for error messages.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
