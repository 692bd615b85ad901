package token

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// seq is a deterministic "random" source: 0, 1, 2, ...
type seq struct{ n byte }

func (s *seq) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = s.n
		s.n++
	}
	return len(p), nil
}

func testToken() Token {
	var t Token
	t.Addresses = []string{"broker.example.com:6443", "198.19.255.10:6443", "[fd00::1]:443"}
	for i := range t.CAPin {
		t.CAPin[i] = byte(0xa0 + i)
	}
	t.ID = "abc123"
	for i := range t.Secret {
		t.Secret[i] = byte(i + 1)
	}
	return t
}

func TestEncodeParseRoundTrip(t *testing.T) {
	tok := testToken()
	s, err := tok.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if strings.ContainsAny(s, "=+/\n") {
		t.Fatalf("Encode = %q: not unpadded base64url", s)
	}
	got, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if fmt.Sprint(got.Addresses) != fmt.Sprint(tok.Addresses) || got.CAPin != tok.CAPin || got.Credential != tok.Credential {
		t.Fatalf("Parse(Encode(t)) = %+v, want %+v", got, tok)
	}
	// Golden: the layout is a compatibility contract.
	raw, _ := base64.RawURLEncoding.DecodeString(s)
	if raw[0] != 1 || raw[1] != 3 || raw[2] != byte(len("broker.example.com:6443")) {
		t.Fatalf("raw header = % x", raw[:3])
	}
	if !bytes.Equal(raw[len(raw)-SecretLen-IDLen:len(raw)-SecretLen], []byte("abc123")) {
		t.Fatalf("id not at its place: % x", raw)
	}
}

func TestSecretRedacted(t *testing.T) {
	tok := testToken()
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		out := fmt.Sprintf(f, tok)
		if strings.Contains(out, "[1 2 3") || strings.Contains(out, "0x1, 0x2") || strings.Contains(out, "0102030405") {
			t.Errorf("Sprintf(%s, token) leaks the secret: %s", f, out)
		}
	}
}

// encodeRaw builds a token string from raw fields without validation.
func encodeRaw(version byte, addrs []string, tail []byte) string {
	raw := []byte{version, byte(len(addrs))}
	for _, a := range addrs {
		raw = append(raw, byte(len(a)))
		raw = append(raw, a...)
	}
	raw = append(raw, tail...)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func goodTail() []byte {
	tok := testToken()
	tail := append([]byte{}, tok.CAPin[:]...)
	tail = append(tail, tok.ID...)
	return append(tail, tok.Secret[:]...)
}

func TestParseErrors(t *testing.T) {
	good, _ := testToken().Encode()
	tail := goodTail()
	zeroPin := append(make([]byte, PinLen), tail[PinLen:]...)
	badID := append(append(append([]byte{}, tail[:PinLen]...), "ABC123"...), tail[PinLen+IDLen:]...)
	zeroSecret := append(append([]byte{}, tail[:PinLen+IDLen]...), make([]byte, SecretLen)...)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "token: empty"},
		{"too long", strings.Repeat("A", MaxLen+1), "characters, at most"},
		{"newline", good[:10] + "\n" + good[10:], `token: invalid character '\n' at offset 10`},
		{"padding", good + "=", "invalid character '='"},
		{"std alphabet", strings.ReplaceAll(good, "_", "/") + "/", "invalid character '/'"},
		{"space", " " + good, "invalid character ' ' at offset 0"},
		{"bad length", good[:len(good)-1] + "A" + "A", "not base64url"},
		{"version", encodeRaw(2, []string{"a.example:1"}, tail), "token: unsupported version 2 (want 1)"},
		{"no addresses", encodeRaw(1, nil, tail), "token: 0 broker addresses, want 1 to 8"},
		{"too many addresses", encodeRaw(1, make([]string, 9), tail), "token: 9 broker addresses"},
		{"empty address", encodeRaw(1, []string{""}, tail), "token: address[0]: empty"},
		{"no port", encodeRaw(1, []string{"broker"}, tail), `token: address[0]: "broker": want host:port`},
		{"port zero", encodeRaw(1, []string{"broker:0"}, tail), `port "0": want 1-65535`},
		{"port leading zero", encodeRaw(1, []string{"broker:0443"}, tail), `port "0443"`},
		{"port too big", encodeRaw(1, []string{"broker:65536"}, tail), `port "65536"`},
		{"uppercase host", encodeRaw(1, []string{"ok.example:1", "Broker:443"}, tail), `token: address[1]: "Broker:443": host name: label "Broker"`},
		{"underscore host", encodeRaw(1, []string{"bro_ker:443"}, tail), `label "bro_ker"`},
		{"trailing dot", encodeRaw(1, []string{"broker.:443"}, tail), `label ""`},
		{"numeric host", encodeRaw(1, []string{"1.2.3:443"}, tail), `last label "3" is numeric`},
		{"ipv6 not canonical", encodeRaw(1, []string{"[FD00::1]:443"}, tail), "IP address not canonical (want [fd00::1]:443)"},
		{"ipv4-mapped", encodeRaw(1, []string{"[::ffff:1.2.3.4]:443"}, tail), "IPv4-mapped IPv6 address (write 1.2.3.4)"},
		{"zone", encodeRaw(1, []string{"[fe80::1%eth0]:443"}, tail), "with a zone"},
		{"unspecified", encodeRaw(1, []string{"0.0.0.0:443"}, tail), "not a unicast address"},
		{"multicast", encodeRaw(1, []string{"[ff02::1]:443"}, tail), "not a unicast address"},
		{"brackets around name", encodeRaw(1, []string{"[broker]:443"}, tail), `"[broker]:443": not canonical (want broker:443)`},
		{"truncated address", base64.RawURLEncoding.EncodeToString([]byte{1, 1, 10, 'a'}), "token: address[0]: truncated"},
		{"truncated tail", encodeRaw(1, []string{"a.example:1"}, tail[:50]), "token: 50 bytes after the addresses, want 70"},
		{"trailing bytes", encodeRaw(1, []string{"a.example:1"}, append(append([]byte{}, tail...), 0)), "token: 71 bytes after the addresses"},
		{"zero pin", encodeRaw(1, []string{"a.example:1"}, zeroPin), "token: CA pin is all zero"},
		{"bad id", encodeRaw(1, []string{"a.example:1"}, badID), `token: id "ABC123": want 6 characters [a-z0-9]`},
		{"zero secret", encodeRaw(1, []string{"a.example:1"}, zeroSecret), "token: secret is all zero"},
		{"only version", base64.RawURLEncoding.EncodeToString([]byte{1}), "truncated before address count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want error containing %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "token: ") {
				t.Fatalf("error %q lacks the token: prefix", err)
			}
		})
	}
}

func TestParseNonCanonicalBase64(t *testing.T) {
	good, _ := testToken().Encode()
	// Flip the unused low bits of the last character: same bytes, other
	// spelling. Strict decoding must reject it.
	last := good[len(good)-1]
	idx := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", last)
	alt := good[:len(good)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[idx^1])
	if tok, err := Parse(alt); err == nil {
		if s, _ := tok.Encode(); s != alt {
			t.Fatalf("Parse accepted %q which re-encodes to %q", alt, s)
		}
	}
}

func TestEncodeValidates(t *testing.T) {
	tok := testToken()
	tok.Addresses = append(tok.Addresses, "bad host:1")
	if _, err := tok.Encode(); err == nil || !strings.Contains(err.Error(), "token: address[3]:") {
		t.Fatalf("Encode = %v", err)
	}
	tok = testToken()
	tok.Addresses = []string{strings.Repeat("a", 250) + ".b:443"}
	if _, err := tok.Encode(); err == nil || !strings.Contains(err.Error(), "at most 255 allowed") {
		t.Fatalf("Encode = %v", err)
	}
	tok = testToken()
	tok.Addresses = nil
	if _, err := tok.Encode(); err == nil || err.Error() != "token: no broker address" {
		t.Fatalf("Encode = %v", err)
	}
}

func TestMaxLen(t *testing.T) {
	var tok Token
	tok.CAPin[0], tok.Secret[0], tok.ID = 1, 1, "zzzzzz"
	for i := 0; i < MaxAddresses; i++ {
		// 255 bytes: 63.63.63.57 labels + ":65535"
		host := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57)
		tok.Addresses = append(tok.Addresses, fmt.Sprintf("%s:%d", host, 65535-i))
	}
	s, err := tok.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if len(s) != MaxLen {
		t.Fatalf("longest token is %d characters, MaxLen = %d", len(s), MaxLen)
	}
	if _, err := Parse(s); err != nil {
		t.Fatalf("Parse(longest): %v", err)
	}
}

func TestGenerate(t *testing.T) {
	c, err := Generate(&seq{})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if err := ValidateID(c.ID); err != nil {
		t.Fatal(err)
	}
	// Secret gets bytes 0..31, the id bytes 32..37 → alphabet[32..37 % 36].
	if c.ID != "6789ab" {
		t.Fatalf("ID = %q", c.ID)
	}
	if c.Secret[31] != 31 {
		t.Fatalf("secret not read first")
	}
	// Bytes >= 252 are rejected, not folded.
	r := io.MultiReader(bytes.NewReader(append(bytes.Repeat([]byte{1}, 32), 252, 253, 254, 255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)), &seq{})
	if c, err := Generate(r); err != nil || c.ID != "abcdef" {
		t.Fatalf("Generate with high bytes = %q, %v", c.ID, err)
	}
	if _, err := Generate(bytes.NewReader(make([]byte, 10))); err == nil || !strings.Contains(err.Error(), "token: generating secret") {
		t.Fatalf("short reader: %v", err)
	}
	if _, err := Generate(bytes.NewReader(make([]byte, 100))); err == nil || !strings.Contains(err.Error(), "all zeros") {
		t.Fatalf("zero reader: %v", err)
	}
	stuck := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{1}, 32)), bytes.NewReader(bytes.Repeat([]byte{255}, 64*16)))
	if _, err := Generate(stuck); err == nil || !strings.Contains(err.Error(), "generating id") {
		t.Fatalf("stuck reader: %v", err)
	}
	errRead := errors.New("boom")
	if _, err := Generate(io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{1}, 32)), iotestErr{errRead})); !errors.Is(err, errRead) {
		t.Fatalf("failing reader: %v", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func TestValidateID(t *testing.T) {
	for id, ok := range map[string]bool{"abc123": true, "000000": true, "abc12": false, "abc1234": false, "ABC123": false, "abc-12": false, "": false} {
		if err := ValidateID(id); (err == nil) != ok {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
}

func TestSecretFromBytes(t *testing.T) {
	tok := testToken()
	s, err := SecretFromBytes(tok.Secret[:])
	if err != nil || s != tok.Secret {
		t.Fatalf("SecretFromBytes = %v", err)
	}
	if _, err := SecretFromBytes(make([]byte, 31)); err == nil || err.Error() != "token: secret is 31 bytes, want 32" {
		t.Fatalf("short: %v", err)
	}
	if _, err := SecretFromBytes(make([]byte, 32)); err == nil {
		t.Fatal("zero secret accepted")
	}
}

func FuzzParse(f *testing.F) {
	good, _ := testToken().Encode()
	f.Add(good)
	f.Add(encodeRaw(1, []string{"[::1]:1"}, goodTail()))
	f.Add(encodeRaw(1, []string{"a.b:65535", "10.0.0.1:1"}, goodTail()))
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "token: ") {
				t.Fatalf("error %q lacks the token: prefix", err)
			}
			return
		}
		enc, err := tok.Encode()
		if err != nil {
			t.Fatalf("Parse accepted %q but Encode fails: %v", s, err)
		}
		if enc != s {
			t.Fatalf("Parse(%q) re-encodes to %q", s, enc)
		}
	})
}
