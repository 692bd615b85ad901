package cidr

import (
	"net/netip"

	"go4.org/netipx"
)

// Pair is two overlapping prefixes, one from each side of a comparison, with
// their indexes in the slices they came from.
type Pair struct {
	A, B           netip.Prefix
	IndexA, IndexB int
}

// Set builds the union of prefixes as a netipx.IPSet. Invalid prefixes are
// skipped.
func Set(prefixes ...[]netip.Prefix) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, ps := range prefixes {
		for _, p := range ps {
			if p.IsValid() {
				b.AddPrefix(p.Masked())
			}
		}
	}
	s, _ := b.IPSet() // only fails for invalid prefixes, which are skipped
	return s
}

// Overlap returns the first pair (in the order of a, then b) of prefixes
// a[i], b[j] that overlap, and whether there is one.
func Overlap(a, b []netip.Prefix) (Pair, bool) {
	if len(a) == 0 || len(b) == 0 {
		return Pair{}, false
	}
	sb := Set(b)
	for i, pa := range a {
		if !pa.IsValid() || !sb.OverlapsPrefix(pa.Masked()) {
			continue
		}
		for j, pb := range b {
			if pb.IsValid() && pa.Overlaps(pb) {
				return Pair{A: pa, B: pb, IndexA: i, IndexB: j}, true
			}
		}
	}
	return Pair{}, false
}

// OverlapWithin returns the first pair of distinct elements i < j of ps that
// overlap (including duplicates), and whether there is one. In the result A
// is ps[i] and B is ps[j].
func OverlapWithin(ps []netip.Prefix) (Pair, bool) {
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if ps[i].Overlaps(ps[j]) {
				return Pair{A: ps[i], B: ps[j], IndexA: i, IndexB: j}, true
			}
		}
	}
	return Pair{}, false
}

// Uncovered returns the first prefix of inner that is not contained in the
// union of outer, its index, and whether there is one. A prefix is covered
// when every address of it is in some prefix of outer (so 10.0.0.0/15 is
// covered by 10.0.0.0/16 plus 10.1.0.0/16). Invalid prefixes are never
// covered.
func Uncovered(inner, outer []netip.Prefix) (netip.Prefix, int, bool) {
	so := Set(outer)
	for i, p := range inner {
		if !p.IsValid() || !so.ContainsPrefix(p.Masked()) {
			return p, i, true
		}
	}
	return netip.Prefix{}, -1, false
}

// ContainsAddr reports whether addr lies in one of prefixes.
func ContainsAddr(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
