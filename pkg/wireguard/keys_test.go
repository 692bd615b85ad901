package wireguard

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestPublicKeyMatchesWgctrl(t *testing.T) {
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	want := wgtypes.Key(k).PublicKey()
	if got := k.Public(); got != PublicKey(want) {
		t.Fatalf("Public() = %s, wgctrl says %s", got, want)
	}
	if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Fatalf("key not clamped: first=%08b last=%08b", k[0], k[31])
	}
}

func TestPrivateKeyNeverFormatted(t *testing.T) {
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := string(k.MarshalSecret())
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("key", "k", k, "cfg", Config{PrivateKey: k})
	outputs := []string{
		fmt.Sprint(k), fmt.Sprintf("%v %s %+v %#v %x %q", k, k, k, k, k, k),
		fmt.Sprintf("%+v", Config{PrivateKey: k}), fmt.Sprintf("%#v", Config{PrivateKey: k}),
		buf.String(),
	}
	rawHex := fmt.Sprintf("%x", [32]byte(k))
	for _, out := range outputs {
		if strings.Contains(out, secret) || strings.Contains(out, secret[:16]) || strings.Contains(out, rawHex) {
			t.Fatalf("private key leaked in %q", out)
		}
		if !strings.Contains(out, "redacted") {
			t.Fatalf("output %q does not say the key is redacted", out)
		}
	}
}

func TestStoreLoadPrivateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := StorePrivateKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadPrivateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != k {
		t.Fatal("loaded key differs from stored key")
	}
	// A key written by `wg genkey` (base64 + newline) loads too.
	if err := os.WriteFile(path, []byte(wgtypes.Key(k).String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadPrivateKeyFile(path); err != nil || got != k {
		t.Fatalf("load wg-genkey file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestParseKeyErrors(t *testing.T) {
	k, _ := GeneratePrivateKey()
	secret := string(k.MarshalSecret())
	cases := map[string]string{
		"":                               "want 44 base64 characters, got 0",
		"abc":                            "want 44 base64 characters, got 3",
		secret[:43] + "!":                "not valid base64",
		strings.Repeat("A", 43) + "=":    "all zero",
		secret + secret:                  "want 44 base64 characters, got 88",
		"  " + secret[:20] + " " + "x\n": "want 44 base64 characters",
	}
	for in, want := range cases {
		_, err := ParsePrivateKey([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePrivateKey(%q) = %v, want error containing %q", in, err, want)
		}
		if err != nil && len(in) > 8 && strings.Contains(err.Error(), strings.TrimSpace(in)[:8]) {
			t.Errorf("error %q repeats key material", err)
		}
	}
	if _, err := ParsePublicKey("short"); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Errorf("ParsePublicKey(short) = %v", err)
	}
}

func FuzzParsePrivateKey(f *testing.F) {
	k, _ := GeneratePrivateKey()
	f.Add(k.MarshalSecret())
	f.Add([]byte("not a key"))
	f.Add([]byte(strings.Repeat("A", 44)))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePrivateKey(b)
		if err != nil {
			return
		}
		// Anything accepted round-trips.
		again, err := ParsePrivateKey(k.MarshalSecret())
		if err != nil || again != k {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}
