package cidr

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func mustAllocator(t testing.TB, opts AllocatorOptions) *Allocator {
	t.Helper()
	a, err := NewAllocator(opts)
	if err != nil {
		t.Fatalf("NewAllocator(%+v): %v", opts, err)
	}
	return a
}

func TestNewAllocator(t *testing.T) {
	a := mustAllocator(t, AllocatorOptions{})
	if a.Range().String() != DefaultGlobalRange || a.SliceBits() != DefaultSliceBits {
		t.Fatalf("defaults = %s /%d", a.Range(), a.SliceBits())
	}
	for _, tt := range []struct {
		opts    AllocatorOptions
		wantErr string
	}{
		{AllocatorOptions{Range: netip.MustParsePrefix("0.0.0.0/0")}, "cidr: global range: \"0.0.0.0/0\" is a default route"},
		{AllocatorOptions{Range: netip.MustParsePrefix("242.0.0.0/8"), SliceBits: 7}, "slice size /7 does not fit global range 242.0.0.0/8 (want /8 to /32)"},
		{AllocatorOptions{Range: netip.MustParsePrefix("242.0.0.0/8"), SliceBits: 33}, "slice size /33"},
		{AllocatorOptions{Range: netip.MustParsePrefix("242.0.0.1/8")}, "is not canonical"},
	} {
		_, err := NewAllocator(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewAllocator(%+v) = %v, want %q", tt.opts, err, tt.wantErr)
		}
	}
}

func TestAllocate(t *testing.T) {
	def := AllocatorOptions{}
	tests := []struct {
		name  string
		opts  AllocatorOptions
		taken []netip.Prefix
		want  string // empty: exhausted
	}{
		{name: "first", opts: def, want: "242.0.0.0/16"},
		{name: "next", opts: def, taken: pfx("242.0.0.0/16"), want: "242.1.0.0/16"},
		{name: "gap", opts: def, taken: pfx("242.0.0.0/16", "242.2.0.0/16", "242.1.0.0/16", "242.4.0.0/16"), want: "242.3.0.0/16"},
		{name: "ignores outside and other family", opts: def, taken: pfx("10.0.0.0/8", "fd00::/64", "243.0.0.0/16"), want: "242.0.0.0/16"},
		{name: "partial overlap blocks slice", opts: def, taken: pfx("242.0.200.0/24"), want: "242.1.0.0/16"},
		{name: "bigger block taken", opts: def, taken: pfx("242.0.0.0/12"), want: "242.16.0.0/16"},
		{name: "whole range", opts: def, taken: pfx("242.0.0.0/8")},
		{name: "covering prefix", opts: def, taken: pfx("240.0.0.0/4")},
		{
			name: "small range", opts: AllocatorOptions{Range: netip.MustParsePrefix("100.64.0.0/22"), SliceBits: 24},
			taken: pfx("100.64.0.0/24", "100.64.2.0/24"), want: "100.64.1.0/24",
		},
		{
			name: "small range full", opts: AllocatorOptions{Range: netip.MustParsePrefix("100.64.0.0/23"), SliceBits: 24},
			taken: pfx("100.64.0.0/24", "100.64.1.128/25"),
		},
		{
			name: "slice equals range", opts: AllocatorOptions{Range: netip.MustParsePrefix("100.64.0.0/24"), SliceBits: 24},
			want: "100.64.0.0/24",
		},
		{
			name: "ipv6", opts: AllocatorOptions{Range: netip.MustParsePrefix("fd42::/48"), SliceBits: 64},
			taken: pfx("fd42::/64"), want: "fd42:0:0:1::/64",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustAllocator(t, tt.opts)
			got, err := a.Allocate(tt.taken)
			if tt.want == "" {
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("Allocate = %s, %v; want ErrExhausted", got, err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("Allocate = %s, %v; want %s", got, err, tt.want)
			}
			if !a.IsSlice(got) {
				t.Fatalf("IsSlice(%s) = false", got)
			}
		})
	}
}

func TestAllocateExhaustedMessage(t *testing.T) {
	a := mustAllocator(t, AllocatorOptions{})
	_, err := a.Allocate(pfx("242.0.0.0/8"))
	want := "cidr: global range 242.0.0.0/8 has no free /16: no free slice"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestIsSlice(t *testing.T) {
	a := mustAllocator(t, AllocatorOptions{})
	for s, want := range map[string]bool{
		"242.0.0.0/16": true, "242.255.0.0/16": true, "242.1.0.0/24": false, "243.0.0.0/16": false,
		"242.0.0.0/8": false, "fd00::/16": false,
	} {
		if got := a.IsSlice(netip.MustParsePrefix(s)); got != want {
			t.Errorf("IsSlice(%s) = %v", s, got)
		}
	}
	if a.IsSlice(netip.MustParsePrefix("242.1.0.1/16")) {
		t.Error("IsSlice accepted a non-canonical prefix")
	}
}

// naiveAllocate tries every slice in order.
func naiveAllocate(rng netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, bool) {
	n := 1 << (bits - rng.Bits())
	addr := rng.Addr()
	for i := 0; i < n; i++ {
		s := netip.PrefixFrom(addr, bits)
		if _, ok := Overlap([]netip.Prefix{s}, taken); !ok {
			return s, true
		}
		// advance addr by one slice
		for j := 0; j < 1<<(addr.BitLen()-bits); j++ {
			addr = addr.Next()
		}
	}
	return netip.Prefix{}, false
}

// TestAllocateMatchesNaive compares against trying every slice, over random
// taken sets of random sizes (a fixed seed keeps it reproducible).
func TestAllocateMatchesNaive(t *testing.T) {
	rng := netip.MustParsePrefix("100.64.0.0/24")
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		bits := 26 + r.IntN(4) // /26../29 slices
		a := mustAllocator(t, AllocatorOptions{Range: rng, SliceBits: bits})
		var taken []netip.Prefix
		for k := r.IntN(12); k > 0; k-- {
			l := 23 + r.IntN(10)
			addr := netip.AddrFrom4([4]byte{100, 64, byte(r.IntN(2)), byte(r.IntN(256))})
			if r.IntN(2) == 0 {
				addr = netip.AddrFrom4([4]byte{100, 64, 0, byte(r.IntN(256))})
			}
			taken = append(taken, netip.PrefixFrom(addr, l).Masked())
		}
		want, ok := naiveAllocate(rng, bits, taken)
		got, err := a.Allocate(taken)
		if !ok {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("taken %v /%d: Allocate = %s, %v; want exhausted", taken, bits, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Fatalf("taken %v /%d: Allocate = %s, %v; want %s", taken, bits, got, err, want)
		}
	}
}

func FuzzAllocate(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 24}, uint8(26))
	f.Add([]byte{0, 64, 24, 0, 128, 25}, uint8(24))
	f.Fuzz(func(t *testing.T, data []byte, bits uint8) {
		rng := netip.MustParsePrefix("100.64.0.0/22")
		sb := 22 + int(bits%9) // /22../30
		a := mustAllocator(t, AllocatorOptions{Range: rng, SliceBits: sb})
		var taken []netip.Prefix
		for len(data) >= 3 && len(taken) < 16 {
			addr := netip.AddrFrom4([4]byte{100, 64, data[0] % 4, data[1]})
			taken = append(taken, netip.PrefixFrom(addr, 20+int(data[2]%13)).Masked())
			data = data[3:]
		}
		want, ok := naiveAllocate(rng, sb, taken)
		got, err := a.Allocate(taken)
		if ok != (err == nil) || ok && got != want {
			t.Fatalf("taken %v /%d: Allocate = %s, %v; naive = %s, %v", taken, sb, got, err, want, ok)
		}
	})
}
