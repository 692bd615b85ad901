// Package cidr parses and checks the IP prefixes weft exchanges between
// clusters, compares sets of them, and allocates globalnet slices. It is
// pure: no I/O, no state.
//
// Prefixes cross cluster boundaries as text, so parsing is strict: a prefix
// must be canonical ("10.0.0.0/16", never "10.0.0.1/16" or "10.00.0.0/16"),
// must not be the default route or over-broad, and must not touch address
// space that is never routed between clusters (loopback, link-local,
// multicast, "this network", limited broadcast, IPv4-mapped IPv6). See
// [CheckPrefix] for the exact rules.
//
// Set operations ([Overlap], [Uncovered], [OverlapWithin]) work on plain
// []netip.Prefix and report the offending prefixes so callers can name them.
// [Allocator] hands out the lowest free globalnet slice; making the
// allocation atomic is the caller's (the store's) job.
package cidr

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits on prefixes. A prefix shorter than the minimum length is rejected as
// over-broad: no cluster's pod or service range, nor the globalnet range,
// needs more than a /8 of IPv4 or a /32 of IPv6, and a broader prefix would
// capture traffic that belongs elsewhere.
const (
	// MinBitsIPv4 is the shortest IPv4 prefix accepted (/8).
	MinBitsIPv4 = 8
	// MinBitsIPv6 is the shortest IPv6 prefix accepted (/32).
	MinBitsIPv6 = 32
	// MaxLen is the longest prefix text accepted, in bytes. The longest
	// canonical IPv6 prefix ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
	// is 43 bytes.
	MaxLen = 64
)

// reserved is address space a prefix may not overlap.
type reserved struct {
	prefix netip.Prefix
	what   string
}

// reservedRanges returns the ranges of [CheckPrefix] (a function, not a
// package variable, so nothing can modify them).
func reservedRanges() []reserved {
	return []reserved{
		{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (unspecified)`},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
		{netip.MustParsePrefix("255.255.255.255/32"), "limited broadcast"},
		{netip.MustParsePrefix("::/128"), "unspecified"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped IPv6"},
		{netip.MustParsePrefix("fe80::/10"), "link-local"},
		{netip.MustParsePrefix("ff00::/8"), "multicast"},
	}
}

// Error is a prefix that failed to parse or check. Value is the offending
// text (or the prefix's string form), Reason says what is wrong.
type Error struct {
	Value  string
	Reason string
}

// Error implements error: `"10.0.0.1/16" is not canonical (want 10.0.0.0/16)`.
func (e *Error) Error() string {
	return fmt.Sprintf("%q %s", e.Value, e.Reason)
}

// ParsePrefix parses s as a canonical prefix and applies [CheckPrefix].
// Errors are *[Error]; callers add the field name (see [ParsePrefixes]).
func ParsePrefix(s string) (netip.Prefix, error) {
	if len(s) > MaxLen {
		return netip.Prefix{}, &Error{Value: s[:MaxLen] + "...", Reason: fmt.Sprintf("is longer than %d bytes", MaxLen)}
	}
	if !strings.Contains(s, "/") {
		return netip.Prefix{}, &Error{Value: s, Reason: "is not a prefix (want address/length)"}
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, &Error{Value: s, Reason: "is not a prefix: " + trimNetipErr(err, s)}
	}
	if c := p.Masked(); c.String() != s {
		return netip.Prefix{}, &Error{Value: s, Reason: fmt.Sprintf("is not canonical (want %s)", c)}
	}
	if err := CheckPrefix(p); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// trimNetipErr drops the `netip.ParsePrefix("...")` and `ParseAddr("...")`
// prefixes net/netip puts on its errors about in; Error quotes the value
// already.
func trimNetipErr(err error, in string) string {
	msg := strings.TrimPrefix(err.Error(), "netip.ParsePrefix("+strconv.Quote(in)+"): ")
	addr := in
	if i := strings.LastIndexByte(in, '/'); i >= 0 {
		addr = in[:i]
	}
	return strings.TrimPrefix(msg, "ParseAddr("+strconv.Quote(addr)+"): ")
}

// CheckPrefix reports whether p may be exchanged between clusters:
//
//   - valid and masked (no host bits);
//   - not the default route, not shorter than [MinBitsIPv4] / [MinBitsIPv6];
//   - not overlapping 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4,
//     255.255.255.255/32, ::/128, ::1/128, ::ffff:0:0/96, fe80::/10,
//     ff00::/8.
//
// 240.0.0.0/4 (reserved, "class E") is allowed: the default globalnet range
// 242.0.0.0/8 lives there precisely because nobody else routes it.
func CheckPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return &Error{Value: p.String(), Reason: "is not a valid prefix"}
	}
	if c := p.Masked(); c != p {
		return &Error{Value: p.String(), Reason: fmt.Sprintf("is not canonical (want %s)", c)}
	}
	if p.Bits() == 0 {
		return &Error{Value: p.String(), Reason: "is a default route"}
	}
	minBits := MinBitsIPv4
	if p.Addr().Is6() {
		minBits = MinBitsIPv6
	}
	if p.Bits() < minBits {
		return &Error{Value: p.String(), Reason: fmt.Sprintf("is too broad (shortest allowed is /%d)", minBits)}
	}
	for _, r := range reservedRanges() {
		if p.Overlaps(r.prefix) {
			return &Error{Value: p.String(), Reason: fmt.Sprintf("overlaps %s range %s", r.what, r.prefix)}
		}
	}
	return nil
}

// ParsePrefixes parses every element with [ParsePrefix]. Errors name the
// element: `pod_cidrs[1]: "10.0.0.1/16" is not canonical (want 10.0.0.0/16)`;
// they wrap the *[Error].
func ParsePrefixes(field string, ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for i, s := range ss {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseAddr parses s as a canonical IP address (as net/netip prints it, no
// zone) and applies [CheckAddr]. Errors are *[Error].
func ParseAddr(s string) (netip.Addr, error) {
	if len(s) > MaxLen {
		return netip.Addr{}, &Error{Value: s[:MaxLen] + "...", Reason: fmt.Sprintf("is longer than %d bytes", MaxLen)}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, &Error{Value: s, Reason: "is not an IP address: " + trimNetipErr(err, s)}
	}
	if a.Zone() != "" {
		return netip.Addr{}, &Error{Value: s, Reason: "has a zone"}
	}
	if a.String() != s {
		return netip.Addr{}, &Error{Value: s, Reason: fmt.Sprintf("is not canonical (want %s)", a)}
	}
	if err := CheckAddr(a); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// CheckAddr reports whether a is a unicast address that may be used between
// clusters: valid, without zone, and outside the reserved ranges of
// [CheckPrefix] (unspecified, loopback, link-local, multicast, limited
// broadcast, IPv4-mapped IPv6).
func CheckAddr(a netip.Addr) error {
	if !a.IsValid() {
		return &Error{Value: a.String(), Reason: "is not a valid IP address"}
	}
	if a.Zone() != "" {
		return &Error{Value: a.String(), Reason: "has a zone"}
	}
	for _, r := range reservedRanges() {
		if r.prefix.Contains(a) {
			return &Error{Value: a.String(), Reason: fmt.Sprintf("is in the %s range %s", r.what, r.prefix)}
		}
	}
	return nil
}
