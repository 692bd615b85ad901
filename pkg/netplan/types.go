package netplan

import (
	"fmt"
	"net/netip"
	"strings"
)

// Defaults (DESIGN section 4).
const (
	DefaultWireGuardDevice = "weft-wg"
	DefaultVXLANDevice     = "weft-vx"
	DefaultVNI             = 4242
	DefaultVXLANPort       = 4799
	DefaultTable           = 176
	DefaultRulePriority    = 176
)

// Tunnel MTU bounds accepted by [Plan].
const (
	MinMTU = 576
	MaxMTU = 9216
)

// Names of weft's iptables chains and the tables they live in.
const (
	ChainPostrouting = "WEFT-POSTROUTING" // nat
	ChainForward     = "WEFT-FORWARD"     // filter
	ChainMSS         = "WEFT-MSS"         // mangle
)

// RPFilterLoose is the rp_filter value for loose reverse-path filtering.
const RPFilterLoose = "2"

// OverlayPrefix is the VXLAN overlay range: node a.b.c.d gets 240.b.c.d/8.
func OverlayPrefix() netip.Prefix { return netip.MustParsePrefix("240.0.0.0/8") }

// OverlayAddr returns the overlay address (240.b.c.d/8) of the node whose
// LAN IP is a.b.c.d. lanIP must be IPv4.
func OverlayAddr(lanIP netip.Addr) (netip.Prefix, error) {
	if !lanIP.Is4() {
		return netip.Prefix{}, fmt.Errorf("overlay address: LAN IP %v is not IPv4", lanIP)
	}
	b := lanIP.As4()
	b[0] = 240
	return netip.PrefixFrom(netip.AddrFrom4(b), 8), nil
}

// Params are the names and numbers weft uses on a node. Zero fields take
// the Default* values (see [Params.WithDefaults]).
type Params struct {
	WireGuardDevice string
	VXLANDevice     string
	VNI             uint32
	VXLANPort       uint16
	Table           int
	RulePriority    int
}

// WithDefaults returns p with zero fields set to their defaults.
func (p Params) WithDefaults() Params {
	if p.WireGuardDevice == "" {
		p.WireGuardDevice = DefaultWireGuardDevice
	}
	if p.VXLANDevice == "" {
		p.VXLANDevice = DefaultVXLANDevice
	}
	if p.VNI == 0 {
		p.VNI = DefaultVNI
	}
	if p.VXLANPort == 0 {
		p.VXLANPort = DefaultVXLANPort
	}
	if p.Table == 0 {
		p.Table = DefaultTable
	}
	if p.RulePriority == 0 {
		p.RulePriority = DefaultRulePriority
	}
	return p
}

// Validate checks p (after defaults). Errors name the field.
func (p Params) Validate() error {
	for _, f := range []struct{ field, v string }{
		{"params.wireguard_device", p.WireGuardDevice},
		{"params.vxlan_device", p.VXLANDevice},
	} {
		if err := CheckInterfaceName(f.v); err != nil {
			return fmt.Errorf("%s: %w", f.field, err)
		}
	}
	if p.WireGuardDevice == p.VXLANDevice {
		return fmt.Errorf("params.vxlan_device: %q is also the WireGuard device", p.VXLANDevice)
	}
	if p.VNI == 0 || p.VNI >= 1<<24 {
		return fmt.Errorf("params.vni: %d is out of range 1..%d", p.VNI, 1<<24-1)
	}
	if p.VXLANPort == 0 {
		return fmt.Errorf("params.vxlan_port: must not be 0")
	}
	// 0 (unspec), 253 (default), 254 (main), 255 (local) belong to the kernel.
	switch {
	case p.Table <= 0 || int64(p.Table) > 1<<32-1:
		return fmt.Errorf("params.table: %d is out of range 1..%d", p.Table, uint32(1<<32-1))
	case p.Table >= 253 && p.Table <= 255:
		return fmt.Errorf("params.table: %d is reserved (default/main/local)", p.Table)
	}
	// 0 is the local-table rule, 32766/32767 the main and default rules.
	if p.RulePriority <= 0 || p.RulePriority >= 32766 {
		return fmt.Errorf("params.rule_priority: %d is out of range 1..32765", p.RulePriority)
	}
	return nil
}

// CheckInterfaceName reports whether name is a valid Linux interface name
// (1..15 bytes, no '/', ':' or whitespace, not "." or "..").
func CheckInterfaceName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("interface name %q must be 1..15 bytes", name)
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\r\x00") {
		return fmt.Errorf("interface name %q is invalid", name)
	}
	return nil
}

// Remote is one remote cluster: its id and validated subnets (what
// RemoteCluster objects carry; globalnet clusters list their global CIDR).
type Remote struct {
	ClusterID string
	Subnets   []netip.Prefix
}

// NodeInput is everything [Plan] needs to know about one node.
type NodeInput struct {
	// Node is the node's name (for messages and output only).
	Node string
	// NodeIP is this node's LAN IP (VXLAN local address; IPv4).
	NodeIP netip.Addr
	// Gateway says this node is the active gateway node.
	Gateway bool
	// GatewayIP is the active gateway node's LAN IP; the zero Addr means
	// unknown (then non-gateway nodes get no cross-cluster routes). On the
	// gateway node it is ignored (NodeIP is used).
	GatewayIP netip.Addr
	// PodNetworkAddr is the node's address on the pod network (e.g. the
	// CNI bridge's address); routes use it as source so replies come back.
	// It must lie in LocalCIDRs.
	PodNetworkAddr netip.Addr
	// LocalCIDRs are the local cluster's pod and service CIDRs.
	LocalCIDRs []netip.Prefix
	// Remotes are the remote clusters; ids must be unique, subnets must not
	// overlap each other, LocalCIDRs or the overlay range.
	Remotes []Remote
	// TunnelMTU is the WireGuard tunnel MTU; weft-vx gets it too and the
	// MSS clamp follows it.
	TunnelMTU int
	// CNIInterface, when set, is the interface replies from remote clusters
	// arrive on at non-gateway nodes; its rp_filter is set loose too.
	CNIInterface string
	// Params are names and numbers; zero fields take defaults.
	Params Params
}

// NodeState is the desired data-plane state of one node.
type NodeState struct {
	Node    string
	Gateway bool
	// Params are the resolved parameters (defaults applied).
	Params Params
	// Routes go in Params.Table, sorted by destination.
	Routes []Route
	// Rules are the policy rules (one: priority → table).
	Rules []Rule
	// VXLAN is the weft-vx device (present on every node).
	VXLAN VXLAN
	// Sysctls sorted by key.
	Sysctls  []Sysctl
	Firewall Firewall
}

// Route is one route. Via is the zero Addr for a device route.
type Route struct {
	Table  int
	Dst    netip.Prefix
	Via    netip.Addr
	Dev    string
	Src    netip.Addr
	Onlink bool
	// Metric is the route priority; weft's routes use 0. Reported routes
	// carry the kernel's value so a delete targets the right one.
	Metric int
}

// String renders r like ip-route(8): "10.2.0.0/16 via 240.0.0.1 dev weft-vx
// src 10.1.0.1 onlink table 176".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Via.IsValid() {
		b.WriteString(" via " + r.Via.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Onlink {
		b.WriteString(" onlink")
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	fmt.Fprintf(&b, " table %d", r.Table)
	return b.String()
}

// Rule is a policy routing rule "from all lookup Table" at Priority.
type Rule struct {
	Priority int
	Table    int
}

// String renders r like ip-rule(8): "176: from all lookup 176".
func (r Rule) String() string { return fmt.Sprintf("%d: from all lookup %d", r.Priority, r.Table) }

// VXLAN is the weft-vx device: always created with learning on, up.
type VXLAN struct {
	Name  string
	VNI   uint32
	Port  uint16
	Local netip.Addr
	MTU   int
	// Addr is the node's overlay address (240.b.c.d/8).
	Addr netip.Prefix
	// FDB are the VTEPs all-zero-MAC frames go to (the gateway's LAN IP on
	// non-gateway nodes; none on the gateway), sorted.
	FDB []netip.Addr
}

// String renders the device: "weft-vx vni 4242 dstport 4799 local
// 192.168.1.2 mtu 1420 addr 240.168.1.2/8".
func (v VXLAN) String() string {
	return fmt.Sprintf("%s vni %d dstport %d local %s mtu %d addr %s", v.Name, v.VNI, v.Port, v.Local, v.MTU, v.Addr)
}

// FDBString renders one FDB entry like bridge(8):
// "00:00:00:00:00:00 dev weft-vx dst 192.168.1.1".
func FDBString(dev string, dst netip.Addr) string {
	return fmt.Sprintf("00:00:00:00:00:00 dev %s dst %s", dev, dst)
}

// Sysctl is one sysctl; Key is the path under /proc/sys with slashes
// ("net/ipv4/conf/weft-vx/rp_filter"), so interface names stay unambiguous.
type Sysctl struct {
	Key   string
	Value string
}

// String renders "key = value".
func (s Sysctl) String() string { return s.Key + " = " + s.Value }

// Firewall is weft's iptables (IPv4) state: chains with their exact rules
// and jumps into them.
type Firewall struct {
	// Chains sorted by table, then name.
	Chains []Chain
	// Jumps sorted by table, then source chain, then target.
	Jumps []Jump
}

// Chain is a user chain whose content weft owns entirely. Rules are in
// order, each a rulespec without "-A <chain>" in `iptables -S` form.
type Chain struct {
	Table string
	Name  string
	Rules [][]string
}

// Jump is a rule "-j To" at position 1 of built-in chain From.
type Jump struct {
	Table string
	From  string
	To    string
}

// Spec returns the jump's rulespec.
func (j Jump) Spec() []string { return []string{"-j", j.To} }

// String renders the firewall as iptables commands, in the order a
// reconciler would apply them.
func (f Firewall) String() string {
	var b strings.Builder
	for _, c := range f.Chains {
		fmt.Fprintf(&b, "iptables -t %s -N %s\n", c.Table, c.Name)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "iptables -t %s -A %s %s\n", c.Table, c.Name, strings.Join(r, " "))
		}
	}
	for _, j := range f.Jumps {
		fmt.Fprintf(&b, "iptables -t %s -I %s 1 %s\n", j.Table, j.From, strings.Join(j.Spec(), " "))
	}
	return b.String()
}

// String renders s as sorted text, one item a line, in sections: node,
// rules, routes, vxlan, fdb, sysctls, firewall.
func (s NodeState) String() string {
	var b strings.Builder
	role := "node"
	if s.Gateway {
		role = "gateway"
	}
	p := s.Params
	fmt.Fprintf(&b, "node %s role %s\n", s.Node, role)
	fmt.Fprintf(&b, "params wireguard %s vxlan %s vni %d dstport %d table %d priority %d\n",
		p.WireGuardDevice, p.VXLANDevice, p.VNI, p.VXLANPort, p.Table, p.RulePriority)
	for _, r := range s.Rules {
		fmt.Fprintf(&b, "rule %s\n", r)
	}
	for _, r := range s.Routes {
		fmt.Fprintf(&b, "route %s\n", r)
	}
	fmt.Fprintf(&b, "vxlan %s\n", s.VXLAN)
	for _, d := range s.VXLAN.FDB {
		fmt.Fprintf(&b, "fdb %s\n", FDBString(s.VXLAN.Name, d))
	}
	for _, sc := range s.Sysctls {
		fmt.Fprintf(&b, "sysctl %s\n", sc)
	}
	b.WriteString(s.Firewall.String())
	return b.String()
}
