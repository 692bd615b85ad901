package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Plan is the minimal change that takes a device from its observed state to
// a desired configuration. The zero Plan changes nothing.
type Plan struct {
	// SetPrivateKey is set when the device's key differs from the desired one.
	SetPrivateKey *PrivateKey
	// SetListenPort is set when the port differs (and the desired port is not 0).
	SetListenPort *int
	Add           []Peer
	Update        []PeerUpdate
	Remove        []PublicKey
}

// PeerUpdate changes some fields of an existing peer in place; the peer's
// session and handshake state are kept.
type PeerUpdate struct {
	PublicKey PublicKey
	// Endpoint, when valid, is the new endpoint.
	Endpoint netip.AddrPort
	// AllowedIPs, when non-nil, replaces the peer's allowed IPs.
	AllowedIPs []netip.Prefix
	// Keepalive, when non-nil, is the new keepalive interval.
	Keepalive *time.Duration
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool {
	return p.SetPrivateKey == nil && p.SetListenPort == nil && len(p.Add) == 0 && len(p.Update) == 0 && len(p.Remove) == 0
}

// String prints the plan as sorted lines, one change per line; "no change"
// for the empty plan. Private keys are never printed.
func (p Plan) String() string {
	if p.Empty() {
		return "no change"
	}
	var lines []string
	if p.SetPrivateKey != nil {
		lines = append(lines, fmt.Sprintf("set private-key (public %s)", p.SetPrivateKey.Public()))
	}
	if p.SetListenPort != nil {
		lines = append(lines, fmt.Sprintf("set listen-port %d", *p.SetListenPort))
	}
	for _, a := range p.Add {
		lines = append(lines, "add "+a.String())
	}
	for _, u := range p.Update {
		l := fmt.Sprintf("update peer %s", u.PublicKey)
		if u.Endpoint.IsValid() {
			l += fmt.Sprintf(" endpoint=%s", u.Endpoint)
		}
		if u.AllowedIPs != nil {
			l += " allowed-ips=" + prefixesString(u.AllowedIPs)
		}
		if u.Keepalive != nil {
			l += fmt.Sprintf(" keepalive=%s", *u.Keepalive)
		}
		lines = append(lines, l)
	}
	for _, r := range p.Remove {
		lines = append(lines, fmt.Sprintf("remove peer %s", r))
	}
	return strings.Join(lines, "\n")
}

// Diff computes the minimal [Plan] from observed to desired. Peers are
// matched by public key; a peer present in both is updated field by field
// (endpoint only when the desired endpoint is set and differs, allowed IPs
// only when the sets differ, keepalive only when it differs), never removed
// and re-added. The result is deterministic: lists are sorted by key.
func Diff(observed State, desired Config) Plan {
	var p Plan
	if desired.PrivateKey.Public() != observed.PublicKey {
		k := desired.PrivateKey
		p.SetPrivateKey = &k
	}
	if desired.ListenPort != 0 && desired.ListenPort != observed.ListenPort {
		port := desired.ListenPort
		p.SetListenPort = &port
	}
	have := make(map[PublicKey]PeerState, len(observed.Peers))
	for _, o := range observed.Peers {
		have[o.PublicKey] = o
	}
	want := make(map[PublicKey]bool, len(desired.Peers))
	for _, d := range desired.Peers {
		want[d.PublicKey] = true
		o, ok := have[d.PublicKey]
		if !ok {
			d.AllowedIPs = canonicalPrefixes(d.AllowedIPs)
			p.Add = append(p.Add, d)
			continue
		}
		u := PeerUpdate{PublicKey: d.PublicKey}
		changed := false
		if d.Endpoint.IsValid() && d.Endpoint != o.Endpoint {
			u.Endpoint = d.Endpoint
			changed = true
		}
		if dw := canonicalPrefixes(d.AllowedIPs); !slices.Equal(dw, canonicalPrefixes(o.AllowedIPs)) {
			u.AllowedIPs = dw
			changed = true
		}
		if d.PersistentKeepalive != o.PersistentKeepalive {
			ka := d.PersistentKeepalive
			u.Keepalive = &ka
			changed = true
		}
		if changed {
			p.Update = append(p.Update, u)
		}
	}
	for _, o := range observed.Peers {
		if !want[o.PublicKey] {
			p.Remove = append(p.Remove, o.PublicKey)
		}
	}
	byKey := func(a, b PublicKey) int { return strings.Compare(string(a[:]), string(b[:])) }
	slices.SortFunc(p.Add, func(a, b Peer) int { return byKey(a.PublicKey, b.PublicKey) })
	slices.SortFunc(p.Update, func(a, b PeerUpdate) int { return byKey(a.PublicKey, b.PublicKey) })
	slices.SortFunc(p.Remove, byKey)
	return p
}

// wgConfig translates the plan into a wgctrl configuration that never
// replaces the peer list: peers not named are left untouched.
func (p Plan) wgConfig() wgtypes.Config {
	var c wgtypes.Config
	if p.SetPrivateKey != nil {
		k := wgtypes.Key(*p.SetPrivateKey)
		c.PrivateKey = &k
	}
	if p.SetListenPort != nil {
		port := *p.SetListenPort
		c.ListenPort = &port
	}
	for _, a := range p.Add {
		pc := wgtypes.PeerConfig{
			PublicKey:         wgtypes.Key(a.PublicKey),
			ReplaceAllowedIPs: true,
			AllowedIPs:        ipNets(a.AllowedIPs),
		}
		if a.Endpoint.IsValid() {
			pc.Endpoint = net.UDPAddrFromAddrPort(a.Endpoint)
		}
		if a.PersistentKeepalive > 0 {
			ka := a.PersistentKeepalive
			pc.PersistentKeepaliveInterval = &ka
		}
		c.Peers = append(c.Peers, pc)
	}
	for _, u := range p.Update {
		pc := wgtypes.PeerConfig{PublicKey: wgtypes.Key(u.PublicKey), UpdateOnly: true}
		if u.Endpoint.IsValid() {
			pc.Endpoint = net.UDPAddrFromAddrPort(u.Endpoint)
		}
		if u.AllowedIPs != nil {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = ipNets(u.AllowedIPs)
		}
		pc.PersistentKeepaliveInterval = u.Keepalive
		c.Peers = append(c.Peers, pc)
	}
	for _, r := range p.Remove {
		c.Peers = append(c.Peers, wgtypes.PeerConfig{PublicKey: wgtypes.Key(r), Remove: true})
	}
	return c
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return out
}

// stateFromDevice converts what wgctrl reports.
func stateFromDevice(d *wgtypes.Device, backend Backend) State {
	s := State{Name: d.Name, Backend: backend, PublicKey: PublicKey(d.PublicKey), ListenPort: d.ListenPort}
	for _, wp := range d.Peers {
		ps := PeerState{
			Peer: Peer{
				PublicKey:           PublicKey(wp.PublicKey),
				PersistentKeepalive: wp.PersistentKeepaliveInterval,
			},
			LastHandshake: wp.LastHandshakeTime,
			RxBytes:       wp.ReceiveBytes,
			TxBytes:       wp.TransmitBytes,
		}
		if wp.Endpoint != nil {
			ap := wp.Endpoint.AddrPort()
			ps.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		for _, n := range wp.AllowedIPs {
			if pfx, ok := prefixFromIPNet(n); ok {
				ps.AllowedIPs = append(ps.AllowedIPs, pfx)
			}
		}
		ps.AllowedIPs = canonicalPrefixes(ps.AllowedIPs)
		s.Peers = append(s.Peers, ps)
	}
	slices.SortFunc(s.Peers, func(a, b PeerState) int {
		return strings.Compare(string(a.PublicKey[:]), string(b.PublicKey[:]))
	})
	return s
}
