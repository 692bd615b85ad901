package cidr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // substring; empty means valid
	}{
		{in: "10.0.0.0/16"},
		{in: "10.244.0.0/16"},
		{in: "242.0.0.0/8"},
		{in: "100.64.0.0/10"},
		{in: "192.168.1.0/24"},
		{in: "192.0.2.1/32"},
		{in: "fd00:10:244::/56"},
		{in: "2001:db8::/32"},
		{in: "2001:db8::1/128"},
		{in: "", wantErr: `"" is not a prefix (want address/length)`},
		{in: "10.0.0.0", wantErr: "is not a prefix (want address/length)"},
		{in: "10.0.0.1/16", wantErr: `"10.0.0.1/16" is not canonical (want 10.0.0.0/16)`},
		{in: "10.0.0.0/016", wantErr: `"10.0.0.0/016" is not a prefix: bad bits after slash: "016"`},
		{in: "10.0.0.256/24", wantErr: `"10.0.0.256/24" is not a prefix: IPv4 field has value >255`},
		{in: "010.0.0.0/16", wantErr: "is not a prefix"},
		{in: "10.0.0.0/33", wantErr: "is not a prefix"},
		{in: "10.0.0.0/-1", wantErr: "is not a prefix"},
		{in: " 10.0.0.0/16", wantErr: "is not a prefix"},
		{in: "FD00::/64", wantErr: "is not canonical (want fd00::/64)"},
		{in: "fd00:0::/64", wantErr: "is not canonical (want fd00::/64)"},
		{in: "fe80::%eth0/64", wantErr: "is not a prefix"},
		{in: "0.0.0.0/0", wantErr: "is a default route"},
		{in: "::/0", wantErr: "is a default route"},
		{in: "10.0.0.0/7", wantErr: "is too broad (shortest allowed is /8)"},
		{in: "2001::/16", wantErr: "is too broad (shortest allowed is /32)"},
		{in: "0.0.0.0/8", wantErr: `overlaps "this network" (unspecified) range 0.0.0.0/8`},
		{in: "127.0.0.0/8", wantErr: "overlaps loopback range 127.0.0.0/8"},
		{in: "127.0.0.1/32", wantErr: "overlaps loopback"},
		{in: "169.254.0.0/16", wantErr: "overlaps link-local range 169.254.0.0/16"},
		{in: "169.0.0.0/8", wantErr: "overlaps link-local"},
		{in: "224.0.0.0/8", wantErr: "overlaps multicast range 224.0.0.0/4"},
		{in: "239.1.0.0/16", wantErr: "overlaps multicast"},
		{in: "255.0.0.0/8", wantErr: "overlaps limited broadcast"},
		{in: "::/128", wantErr: "overlaps unspecified range ::/128"},
		{in: "::/32", wantErr: "overlaps unspecified"},
		{in: "::1/128", wantErr: "overlaps loopback range ::1/128"},
		{in: "::ffff:10.0.0.0/104", wantErr: "overlaps IPv4-mapped IPv6 range ::ffff:0.0.0.0/96"},
		{in: "fe80::/64", wantErr: "overlaps link-local range fe80::/10"},
		{in: "ff02::/64", wantErr: "overlaps multicast range ff00::/8"},
		{in: strings.Repeat("1", 100), wantErr: "is longer than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePrefix(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParsePrefix(%q) = %v", tt.in, err)
				}
				if p.String() != tt.in {
					t.Fatalf("ParsePrefix(%q) = %s", tt.in, p)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParsePrefix(%q) = %s, want error containing %q", tt.in, p, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParsePrefix(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *cidr.Error", err)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes("pod_cidrs", []string{"10.0.0.0/16", "fd00::/64"})
	if err != nil || len(got) != 2 {
		t.Fatalf("ParsePrefixes = %v, %v", got, err)
	}
	_, err = ParsePrefixes("pod_cidrs", []string{"10.1.0.0/16", "10.0.0.1/16"})
	want := `pod_cidrs[1]: "10.0.0.1/16" is not canonical (want 10.0.0.0/16)`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Value != "10.0.0.1/16" {
		t.Fatalf("errors.As *Error = %+v", ce)
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, tt := range []struct {
		p       netip.Prefix
		wantErr string
	}{
		{p: netip.MustParsePrefix("10.0.0.0/8")},
		{p: netip.Prefix{}, wantErr: "is not a valid prefix"},
		{p: netip.MustParsePrefix("10.0.0.1/8"), wantErr: "is not canonical (want 10.0.0.0/8)"},
		{p: netip.PrefixFrom(netip.MustParseAddr("fd00::"), 129), wantErr: "is not a valid prefix"},
	} {
		err := CheckPrefix(tt.p)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckPrefix(%v) = %v, want %q", tt.p, err, tt.wantErr)
		}
	}
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		name string
		a, b []netip.Prefix
		want Pair
		ok   bool
	}{
		{name: "empty", a: nil, b: pfx("10.0.0.0/8")},
		{name: "disjoint", a: pfx("10.0.0.0/16", "10.2.0.0/16"), b: pfx("10.1.0.0/16", "fd00::/64")},
		{name: "adjacent", a: pfx("10.0.0.0/16"), b: pfx("10.1.0.0/16")},
		{name: "families", a: pfx("10.0.0.0/8"), b: pfx("fd00::/8")},
		{
			name: "equal", a: pfx("10.0.0.0/16"), b: pfx("10.0.0.0/16"),
			want: Pair{A: netip.MustParsePrefix("10.0.0.0/16"), B: netip.MustParsePrefix("10.0.0.0/16")}, ok: true,
		},
		{
			name: "contained", a: pfx("192.168.0.0/16", "10.1.2.0/24"), b: pfx("fd00::/64", "10.0.0.0/8"),
			want: Pair{A: netip.MustParsePrefix("10.1.2.0/24"), B: netip.MustParsePrefix("10.0.0.0/8"), IndexA: 1, IndexB: 1}, ok: true,
		},
		{
			name: "first a wins", a: pfx("10.0.0.0/8", "10.1.0.0/16"), b: pfx("10.1.0.0/16"),
			want: Pair{A: netip.MustParsePrefix("10.0.0.0/8"), B: netip.MustParsePrefix("10.1.0.0/16")}, ok: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Overlap(tt.a, tt.b)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("Overlap = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestOverlapWithin(t *testing.T) {
	if p, ok := OverlapWithin(pfx("10.0.0.0/16", "10.1.0.0/16", "fd00::/64")); ok {
		t.Fatalf("OverlapWithin disjoint = %+v", p)
	}
	p, ok := OverlapWithin(pfx("10.0.0.0/16", "10.1.0.0/16", "10.1.2.0/24"))
	if !ok || p.IndexA != 1 || p.IndexB != 2 {
		t.Fatalf("OverlapWithin = %+v, %v", p, ok)
	}
	if p, ok := OverlapWithin(pfx("10.0.0.0/16", "10.0.0.0/16")); !ok || p.IndexB != 1 {
		t.Fatalf("OverlapWithin duplicates = %+v, %v", p, ok)
	}
}

func TestUncovered(t *testing.T) {
	tests := []struct {
		name         string
		inner, outer []netip.Prefix
		want         string
		idx          int
	}{
		{name: "empty inner", inner: nil, outer: pfx("10.0.0.0/8")},
		{name: "inside", inner: pfx("10.1.0.0/16", "10.2.3.0/24"), outer: pfx("10.0.0.0/8")},
		{name: "equal", inner: pfx("10.0.0.0/16"), outer: pfx("10.0.0.0/16")},
		{name: "union", inner: pfx("10.0.0.0/15"), outer: pfx("10.1.0.0/16", "10.0.0.0/16")},
		{name: "outside", inner: pfx("10.0.0.0/16", "192.168.0.0/24"), outer: pfx("10.0.0.0/8"), want: "192.168.0.0/24", idx: 1},
		{name: "partly", inner: pfx("10.0.0.0/15"), outer: pfx("10.0.0.0/16"), want: "10.0.0.0/15"},
		{name: "empty outer", inner: pfx("10.0.0.0/16"), outer: nil, want: "10.0.0.0/16"},
		{name: "family", inner: pfx("fd00::/64"), outer: pfx("10.0.0.0/8"), want: "fd00::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, idx, ok := Uncovered(tt.inner, tt.outer)
			if tt.want == "" {
				if ok {
					t.Fatalf("Uncovered = %s at %d, want none", got, idx)
				}
				return
			}
			if !ok || got.String() != tt.want || idx != tt.idx {
				t.Fatalf("Uncovered = %s, %d, %v; want %s at %d", got, idx, ok, tt.want, tt.idx)
			}
		})
	}
}

func TestContainsAddr(t *testing.T) {
	ps := pfx("10.0.0.0/16", "fd00::/64")
	for s, want := range map[string]bool{"10.0.1.2": true, "10.1.0.0": false, "fd00::5": true, "fd01::": false} {
		if got := ContainsAddr(ps, netip.MustParseAddr(s)); got != want {
			t.Errorf("ContainsAddr(%s) = %v", s, got)
		}
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/16", "10.0.0.1/16", "fd00::/64", "0.0.0.0/0", "::ffff:10.0.0.0/104",
		"fe80::%eth0/64", "242.0.0.0/8", "1.2.3.4/32", "", "/", "1/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *cidr.Error", err)
			}
			return
		}
		// Accepted prefixes are canonical, checked, and round-trip.
		if p.String() != s {
			t.Fatalf("ParsePrefix(%q) = %s: not canonical", s, p)
		}
		if err := CheckPrefix(p); err != nil {
			t.Fatalf("ParsePrefix(%q) accepted a prefix CheckPrefix rejects: %v", s, err)
		}
		if p.Bits() == 0 || p.Addr().IsLoopback() || p.Addr().IsMulticast() || p.Addr().IsLinkLocalUnicast() || p.Addr().IsUnspecified() {
			t.Fatalf("ParsePrefix(%q) accepted a reserved prefix", s)
		}
	})
}

func FuzzOverlap(f *testing.F) {
	f.Add("10.0.0.0/16", "10.0.0.0/8", "192.168.0.0/24")
	f.Add("fd00::/64", "10.0.0.0/8", "fd00::/8")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		var ps []netip.Prefix
		for _, s := range []string{a, b, c} {
			if p, err := netip.ParsePrefix(s); err == nil {
				ps = append(ps, p)
			}
		}
		if len(ps) < 2 {
			return
		}
		// Overlap agrees with pairwise netip.Prefix.Overlaps.
		x, y := ps[:1], ps[1:]
		want := false
		for _, q := range y {
			want = want || x[0].Overlaps(q)
		}
		pair, got := Overlap(x, y)
		if got != want {
			t.Fatalf("Overlap(%v, %v) = %v, want %v", x, y, got, want)
		}
		if got && !pair.A.Overlaps(pair.B) {
			t.Fatalf("Overlap returned non-overlapping pair %+v", pair)
		}
		// Uncovered agrees with Contains for single prefixes.
		_, _, unc := Uncovered(x, y[:1])
		contained := x[0].IsValid() && y[0].IsValid() && x[0].Addr().BitLen() == y[0].Addr().BitLen() &&
			y[0].Bits() <= x[0].Bits() && y[0].Contains(x[0].Addr())
		if unc == contained {
			t.Fatalf("Uncovered(%v, %v) = %v, contained = %v", x, y[:1], unc, contained)
		}
	})
}

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{in: "10.0.0.1"},
		{in: "198.19.0.5"},
		{in: "242.1.0.1"},
		{in: "fd00::1"},
		{in: "2001:db8::5"},
		{in: "", wantErr: `"" is not an IP address`},
		{in: "10.0.0.0/8", wantErr: "is not an IP address"},
		{in: "010.0.0.1", wantErr: "is not an IP address"},
		{in: "FD00::1", wantErr: "is not canonical (want fd00::1)"},
		{in: "fd00:0::1", wantErr: "is not canonical (want fd00::1)"},
		{in: "fe80::1%eth0", wantErr: "has a zone"},
		{in: "0.0.0.0", wantErr: `is in the "this network" (unspecified) range 0.0.0.0/8`},
		{in: "::", wantErr: "is in the unspecified range ::/128"},
		{in: "127.0.0.1", wantErr: "is in the loopback range 127.0.0.0/8"},
		{in: "::1", wantErr: "is in the loopback range ::1/128"},
		{in: "169.254.169.254", wantErr: "is in the link-local range"},
		{in: "fe80::1", wantErr: "is in the link-local range fe80::/10"},
		{in: "224.0.0.1", wantErr: "is in the multicast range 224.0.0.0/4"},
		{in: "ff02::1", wantErr: "is in the multicast range ff00::/8"},
		{in: "255.255.255.255", wantErr: "is in the limited broadcast range"},
		{in: "::ffff:10.0.0.1", wantErr: "is in the IPv4-mapped IPv6 range"},
		{in: strings.Repeat("1", 65), wantErr: "is longer than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAddr(tt.in)
			if tt.wantErr == "" {
				if err != nil || a.String() != tt.in {
					t.Fatalf("ParseAddr(%q) = %v, %v", tt.in, a, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseAddr(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
	if err := CheckAddr(netip.Addr{}); err == nil {
		t.Fatal("CheckAddr(zero) accepted")
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "fd00::1", "::ffff:1.2.3.4", "fe80::1%eth0", "0.0.0.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			return
		}
		if a.String() != s || a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.Is4In6() {
			t.Fatalf("ParseAddr(%q) accepted %v", s, a)
		}
	})
}
