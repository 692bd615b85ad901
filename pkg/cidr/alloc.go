package cidr

import (
	"errors"
	"fmt"
	"net/netip"

	"go4.org/netipx"
)

// Globalnet defaults (DESIGN.md section 5).
const (
	// DefaultGlobalRange is the range globalnet slices come from.
	DefaultGlobalRange = "242.0.0.0/8"
	// DefaultSliceBits is the prefix length of one cluster's slice (/16:
	// 65536 global IPs per cluster, 256 clusters in the default range).
	DefaultSliceBits = 16
)

// ErrExhausted is returned (wrapped) by [Allocator.Allocate] when no slice is
// free.
var ErrExhausted = errors.New("no free slice")

// AllocatorOptions configures an [Allocator]. The zero value means the
// defaults.
type AllocatorOptions struct {
	// Range is the global range; zero means [DefaultGlobalRange]. It must
	// pass [CheckPrefix].
	Range netip.Prefix
	// SliceBits is the prefix length of a slice; 0 means
	// [DefaultSliceBits]. It must be at least Range.Bits() and at most the
	// address length.
	SliceBits int
}

// Allocator hands out fixed-size slices of a global range: the lowest slice
// that overlaps nothing already allocated. It holds no state; the caller
// passes the allocated set on every call and makes allocation atomic (the
// broker does it in one storage transaction).
type Allocator struct {
	rng       netip.Prefix
	sliceBits int
}

// NewAllocator validates the options and returns an allocator.
func NewAllocator(opts AllocatorOptions) (*Allocator, error) {
	rng := opts.Range
	if !rng.IsValid() {
		rng = netip.MustParsePrefix(DefaultGlobalRange)
	}
	if err := CheckPrefix(rng); err != nil {
		return nil, fmt.Errorf("cidr: global range: %w", err)
	}
	bits := opts.SliceBits
	if bits == 0 {
		bits = DefaultSliceBits
	}
	if bits < rng.Bits() || bits > rng.Addr().BitLen() {
		return nil, fmt.Errorf("cidr: slice size /%d does not fit global range %s (want /%d to /%d)",
			bits, rng, rng.Bits(), rng.Addr().BitLen())
	}
	return &Allocator{rng: rng, sliceBits: bits}, nil
}

// Range returns the global range.
func (a *Allocator) Range() netip.Prefix { return a.rng }

// SliceBits returns the prefix length of a slice.
func (a *Allocator) SliceBits() int { return a.sliceBits }

// IsSlice reports whether p is exactly one slice of the range (inside it,
// aligned, of the slice size).
func (a *Allocator) IsSlice(p netip.Prefix) bool {
	return p.IsValid() && p.Bits() == a.sliceBits && p.Masked() == p && a.rng.Contains(p.Addr())
}

// Allocate returns the lowest slice of the range that overlaps none of
// taken. taken holds the slices already allocated and anything else the
// slice must avoid (for example the pod/service CIDRs of non-globalnet
// clusters that happen to lie in the range); prefixes outside the range,
// of another address family, or of other sizes are fine. When no slice is
// free the error wraps [ErrExhausted].
func (a *Allocator) Allocate(taken []netip.Prefix) (netip.Prefix, error) {
	var b netipx.IPSetBuilder
	b.AddPrefix(a.rng)
	for _, p := range taken {
		if p.IsValid() {
			b.RemovePrefix(p.Masked())
		}
	}
	free, err := b.IPSet()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr: computing free space in %s: %w", a.rng, err)
	}
	// Prefixes() is sorted and each of its prefixes is a maximal aligned
	// block of free space, so any free aligned slice lies within one of
	// them; the first one long enough starts with the lowest free slice.
	for _, p := range free.Prefixes() {
		if p.Bits() <= a.sliceBits {
			return netip.PrefixFrom(p.Addr(), a.sliceBits), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("cidr: global range %s has no free /%d: %w", a.rng, a.sliceBits, ErrExhausted)
}
