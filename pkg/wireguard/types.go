package wireguard

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Backend names a device implementation.
type Backend string

// Backends.
const (
	BackendAuto      Backend = "auto"
	BackendKernel    Backend = "kernel"
	BackendUserspace Backend = "userspace"
)

// ParseBackend accepts "auto", "kernel" or "userspace".
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case BackendAuto, BackendKernel, BackendUserspace:
		return b, nil
	}
	return "", fmt.Errorf("wireguard backend %q: want auto, kernel or userspace", s)
}

// Config is the desired configuration of a device.
type Config struct {
	PrivateKey PrivateKey
	// ListenPort is the UDP port; 0 lets the device pick one.
	ListenPort int
	Peers      []Peer
}

// Peer is the desired configuration of one peer.
type Peer struct {
	PublicKey PublicKey
	// Endpoint is where to send packets; the zero value means "no
	// preference": whatever the device has (for example learnt by roaming)
	// is kept.
	Endpoint netip.AddrPort
	// AllowedIPs are the prefixes routed to and accepted from this peer.
	AllowedIPs []netip.Prefix
	// PersistentKeepalive is the keepalive interval; 0 disables it.
	PersistentKeepalive time.Duration
}

// State is what a device reports.
type State struct {
	Name       string
	Backend    Backend
	PublicKey  PublicKey
	ListenPort int
	Peers      []PeerState
}

// PeerState is what a device reports about one peer.
type PeerState struct {
	Peer
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
}

// Peer returns the observed state of the peer with the given key.
func (s State) Peer(key PublicKey) (PeerState, bool) {
	for _, p := range s.Peers {
		if p.PublicKey == key {
			return p, true
		}
	}
	return PeerState{}, false
}

// String prints the peer configuration in a stable, sorted text form.
func (p Peer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "peer %s", p.PublicKey)
	if p.Endpoint.IsValid() {
		fmt.Fprintf(&b, " endpoint=%s", p.Endpoint)
	}
	fmt.Fprintf(&b, " allowed-ips=%s", prefixesString(p.AllowedIPs))
	if p.PersistentKeepalive > 0 {
		fmt.Fprintf(&b, " keepalive=%s", p.PersistentKeepalive)
	}
	return b.String()
}

func prefixesString(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "(none)"
	}
	s := make([]string, len(ps))
	for i, p := range canonicalPrefixes(ps) {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// canonicalPrefixes returns masked, sorted, de-duplicated prefixes.
func canonicalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// Validate checks a desired configuration: a private key, a sane port, no
// duplicate peers, no peer with our own key, valid prefixes and endpoints.
func (c Config) Validate() error {
	if c.PrivateKey.IsZero() {
		return fmt.Errorf("config: private key: unset")
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return fmt.Errorf("config: listen port %d: out of range 0-65535", c.ListenPort)
	}
	self := c.PrivateKey.Public()
	seen := make(map[PublicKey]int, len(c.Peers))
	owner := make(map[netip.Prefix]int) // an allowed IP belongs to one peer

	for i, p := range c.Peers {
		if p.PublicKey.IsZero() {
			return fmt.Errorf("config: peers[%d].public_key: unset", i)
		}
		if p.PublicKey == self {
			return fmt.Errorf("config: peers[%d].public_key: is this device's own key", i)
		}
		if j, dup := seen[p.PublicKey]; dup {
			return fmt.Errorf("config: peers[%d].public_key: duplicate of peers[%d] (%s)", i, j, p.PublicKey)
		}
		seen[p.PublicKey] = i
		if p.Endpoint.IsValid() && (p.Endpoint.Port() == 0 || p.Endpoint.Addr().IsUnspecified()) {
			return fmt.Errorf("config: peers[%d].endpoint %s: needs an address and a port", i, p.Endpoint)
		}
		for j, pfx := range p.AllowedIPs {
			if !pfx.IsValid() {
				return fmt.Errorf("config: peers[%d].allowed_ips[%d]: invalid prefix", i, j)
			}
			m := pfx.Masked()
			if k, taken := owner[m]; taken && k != i {
				return fmt.Errorf("config: peers[%d].allowed_ips[%d] %s: already allowed for peers[%d] (%s)", i, j, m, k, c.Peers[k].PublicKey)
			}
			owner[m] = i
		}
		if p.PersistentKeepalive < 0 || p.PersistentKeepalive > 65535*time.Second {
			return fmt.Errorf("config: peers[%d].persistent_keepalive %s: out of range", i, p.PersistentKeepalive)
		}
	}
	return nil
}
