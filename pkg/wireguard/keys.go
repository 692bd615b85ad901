package wireguard

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// KeyLen is the length of a WireGuard key in bytes.
const KeyLen = 32

// PublicKey is a WireGuard (Curve25519) public key. It formats as base64,
// as wg(8) prints it.
type PublicKey [KeyLen]byte

// String returns the base64 form used by wg(8).
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is all zero bytes (unset).
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// MarshalText implements encoding.TextMarshaler (base64).
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (base64).
func (k *PublicKey) UnmarshalText(b []byte) error {
	raw, err := decodeKey(string(b))
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	*k = PublicKey(raw)
	return nil
}

// ParsePublicKey parses a base64 public key as printed by wg(8).
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	err := k.UnmarshalText([]byte(s))
	return k, err
}

// PrivateKey is a WireGuard private key. Every formatting path (String,
// GoString, slog) prints "[redacted]"; use [PrivateKey.MarshalSecret] to
// store it.
type PrivateKey [KeyLen]byte

const redacted = "[redacted]"

// String never reveals the key.
func (k PrivateKey) String() string { return redacted }

// GoString never reveals the key.
func (k PrivateKey) GoString() string { return redacted }

// LogValue never reveals the key.
func (k PrivateKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// IsZero reports whether k is all zero bytes (unset).
func (k PrivateKey) IsZero() bool { return k == PrivateKey{} }

// Public derives the public key.
func (k PrivateKey) Public() PublicKey {
	var pub PublicKey
	priv := [KeyLen]byte(k)
	curve25519.ScalarBaseMult((*[KeyLen]byte)(&pub), &priv)
	return pub
}

// MarshalSecret returns the base64 form of the key (as `wg genkey` prints
// it), for storage in a file or a Kubernetes Secret. Handle with care.
func (k PrivateKey) MarshalSecret() []byte {
	return []byte(base64.StdEncoding.EncodeToString(k[:]))
}

// GeneratePrivateKey returns a new random, clamped Curve25519 private key.
func GeneratePrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := rand.Read(k[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("generate private key: %w", err)
	}
	// Clamp as RFC 7748 and wg genkey do.
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// ParsePrivateKey parses the base64 form (surrounding white space allowed,
// as in a file written by `wg genkey`). The error never contains key material.
func ParsePrivateKey(b []byte) (PrivateKey, error) {
	raw, err := decodeKey(strings.TrimSpace(string(b)))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key: %w", err)
	}
	k := PrivateKey(raw)
	if k.IsZero() {
		return PrivateKey{}, errors.New("private key: all zero")
	}
	return k, nil
}

// LoadPrivateKeyFile reads a private key stored by [StorePrivateKeyFile] or
// `wg genkey > file`.
func LoadPrivateKeyFile(path string) (PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("load private key: %w", err)
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("load private key %s: %w", path, err)
	}
	return k, nil
}

// StorePrivateKeyFile writes k to path with mode 0600, atomically (a
// temporary file in the same directory, then rename), so a crash never
// leaves a half-written key.
func StorePrivateKeyFile(path string, k PrivateKey) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".weft-key-*")
	if err != nil {
		return fmt.Errorf("store private key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("store private key: %w", err)
	}
	if _, err := f.Write(append(k.MarshalSecret(), '\n')); err != nil {
		f.Close()
		return fmt.Errorf("store private key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("store private key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store private key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store private key: %w", err)
	}
	return nil
}

func decodeKey(s string) ([KeyLen]byte, error) {
	var k [KeyLen]byte
	// Standard base64 of 32 bytes is always 44 characters; check first so
	// the error is about length, not about some byte of the secret.
	if len(s) != base64.StdEncoding.EncodedLen(KeyLen) {
		return k, fmt.Errorf("want %d base64 characters, got %d", base64.StdEncoding.EncodedLen(KeyLen), len(s))
	}
	// Decode into a buffer of DecodedLen: 44 characters without padding
	// decode to 33 bytes.
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(buf, []byte(s))
	if err != nil || n != KeyLen {
		return [KeyLen]byte{}, errors.New("not valid base64 of 32 bytes")
	}
	copy(k[:], buf)
	return k, nil
}
