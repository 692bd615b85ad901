package netplan

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/weftnet/weft/pkg/cidr"
)

// Plan computes the desired state of the node described by in. It rejects
// bad input with an error naming the offending field (for example
// `remotes[1].subnets[0]: "10.1.0.0/16" overlaps local_cidrs[0] 10.0.0.0/8`)
// and is deterministic: equal inputs (in any order of remotes and subnets)
// give equal, sorted output.
func Plan(in NodeInput) (NodeState, error) {
	p := in.Params.WithDefaults()
	if err := p.Validate(); err != nil {
		return NodeState{}, err
	}
	remotes, err := validate(in, p)
	if err != nil {
		return NodeState{}, err
	}

	overlay := mustOverlay(in.NodeIP)
	st := NodeState{
		Node:    in.Node,
		Gateway: in.Gateway,
		Params:  p,
		Rules:   []Rule{{Priority: p.RulePriority, Table: p.Table}},
		VXLAN: VXLAN{
			Name:  p.VXLANDevice,
			VNI:   p.VNI,
			Port:  p.VXLANPort,
			Local: in.NodeIP,
			MTU:   in.TunnelMTU,
			Addr:  overlay,
		},
	}

	switch {
	case in.Gateway:
		for _, dst := range remotes {
			st.Routes = append(st.Routes, Route{Table: p.Table, Dst: dst, Dev: p.WireGuardDevice, Src: in.PodNetworkAddr})
		}
	case in.GatewayIP.IsValid():
		gw := mustOverlay(in.GatewayIP)
		st.VXLAN.FDB = []netip.Addr{in.GatewayIP}
		for _, dst := range remotes {
			st.Routes = append(st.Routes, Route{
				Table: p.Table, Dst: dst, Via: gw.Addr(), Dev: p.VXLANDevice, Src: in.PodNetworkAddr, Onlink: true,
			})
		}
	}

	st.Sysctls = []Sysctl{
		{Key: "net/ipv4/ip_forward", Value: "1"},
		{Key: rpFilterKey(p.VXLANDevice), Value: RPFilterLoose},
	}
	if in.Gateway {
		st.Sysctls = append(st.Sysctls, Sysctl{Key: rpFilterKey(p.WireGuardDevice), Value: RPFilterLoose})
	}
	if in.CNIInterface != "" {
		st.Sysctls = append(st.Sysctls, Sysctl{Key: rpFilterKey(in.CNIInterface), Value: RPFilterLoose})
	}
	slices.SortFunc(st.Sysctls, func(a, b Sysctl) int { return cmp.Compare(a.Key, b.Key) })

	locals := slices.Clone(in.LocalCIDRs)
	slices.SortFunc(locals, comparePrefix)
	st.Firewall = firewall(locals, remotes, in.TunnelMTU)
	return st, nil
}

// rpFilterKey is the rp_filter sysctl of dev.
func rpFilterKey(dev string) string { return "net/ipv4/conf/" + dev + "/rp_filter" }

// firewall builds the three chains and their jumps. locals and remotes are
// sorted.
func firewall(locals, remotes []netip.Prefix, mtu int) Firewall {
	mss := mtu - 40 // IPv4 (20) + TCP (20) headers
	post := Chain{Table: "nat", Name: ChainPostrouting}
	fwd := Chain{Table: "filter", Name: ChainForward}
	clamp := Chain{Table: "mangle", Name: ChainMSS}
	for _, l := range locals {
		for _, r := range remotes {
			post.Rules = append(post.Rules, []string{"-s", l.String(), "-d", r.String(), "-j", "ACCEPT"})
		}
	}
	for _, r := range remotes {
		for _, dir := range []string{"-s", "-d"} {
			fwd.Rules = append(fwd.Rules, []string{dir, r.String(), "-j", "ACCEPT"})
			clamp.Rules = append(clamp.Rules, []string{
				dir, r.String(), "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN",
				"-m", "tcpmss", "--mss", strconv.Itoa(mss+1) + ":65535",
				"-j", "TCPMSS", "--set-mss", strconv.Itoa(mss),
			})
		}
	}
	return Firewall{
		Chains: []Chain{fwd, clamp, post}, // filter < mangle < nat
		Jumps: []Jump{
			{Table: "filter", From: "FORWARD", To: ChainForward},
			{Table: "mangle", From: "FORWARD", To: ChainMSS},
			{Table: "nat", From: "POSTROUTING", To: ChainPostrouting},
		},
	}
}

// validate checks in and returns the remote subnets, merged and sorted.
func validate(in NodeInput, p Params) ([]netip.Prefix, error) {
	if in.Node == "" {
		return nil, fmt.Errorf("node: must not be empty")
	}
	if err := checkHostAddr("node_ip", in.NodeIP); err != nil {
		return nil, err
	}
	if in.TunnelMTU < MinMTU || in.TunnelMTU > MaxMTU {
		return nil, fmt.Errorf("tunnel_mtu: %d is out of range %d..%d", in.TunnelMTU, MinMTU, MaxMTU)
	}
	if in.CNIInterface != "" {
		if err := CheckInterfaceName(in.CNIInterface); err != nil {
			return nil, fmt.Errorf("cni_interface: %w", err)
		}
		if in.CNIInterface == p.VXLANDevice || in.CNIInterface == p.WireGuardDevice {
			return nil, fmt.Errorf("cni_interface: %q is one of weft's devices", in.CNIInterface)
		}
	}
	overlay := OverlayPrefix()

	if len(in.LocalCIDRs) == 0 {
		return nil, fmt.Errorf("local_cidrs: must not be empty")
	}
	for i, l := range in.LocalCIDRs {
		field := fmt.Sprintf("local_cidrs[%d]", i)
		if err := checkPrefix(field, l); err != nil {
			return nil, err
		}
		if l.Overlaps(overlay) {
			return nil, fmt.Errorf("%s: %s overlaps the VXLAN overlay range %s", field, l, overlay)
		}
	}
	if pr, ok := cidr.OverlapWithin(in.LocalCIDRs); ok {
		return nil, fmt.Errorf("local_cidrs[%d]: %s overlaps local_cidrs[%d] %s", pr.IndexB, pr.B, pr.IndexA, pr.A)
	}

	if err := checkHostAddr("pod_network_addr", in.PodNetworkAddr); err != nil {
		return nil, err
	}
	if !cidr.ContainsAddr(in.LocalCIDRs, in.PodNetworkAddr) {
		return nil, fmt.Errorf("pod_network_addr: %s is not inside local_cidrs", in.PodNetworkAddr)
	}
	if !in.Gateway && in.GatewayIP.IsValid() {
		if err := checkHostAddr("gateway_ip", in.GatewayIP); err != nil {
			return nil, err
		}
		if in.GatewayIP == in.NodeIP {
			return nil, fmt.Errorf("gateway_ip: %s is this node's IP but gateway is false", in.GatewayIP)
		}
		if gw, _ := OverlayAddr(in.GatewayIP); gw == mustOverlay(in.NodeIP) {
			return nil, fmt.Errorf("gateway_ip: %s has the same overlay address %s as node_ip %s", in.GatewayIP, gw.Addr(), in.NodeIP)
		}
	}

	type owned struct {
		prefix netip.Prefix
		field  string
		id     string
	}
	var all []owned
	seen := map[string]int{}
	for i, r := range in.Remotes {
		if r.ClusterID == "" {
			return nil, fmt.Errorf("remotes[%d].cluster_id: must not be empty", i)
		}
		if j, dup := seen[r.ClusterID]; dup {
			return nil, fmt.Errorf("remotes[%d].cluster_id: %q duplicates remotes[%d]", i, r.ClusterID, j)
		}
		seen[r.ClusterID] = i
		for j, s := range r.Subnets {
			field := fmt.Sprintf("remotes[%d].subnets[%d]", i, j)
			if err := checkPrefix(field, s); err != nil {
				return nil, fmt.Errorf("%w (cluster %s)", err, r.ClusterID)
			}
			if s.Overlaps(overlay) {
				return nil, fmt.Errorf("%s: %s (cluster %s) overlaps the VXLAN overlay range %s", field, s, r.ClusterID, overlay)
			}
			if pr, ok := cidr.Overlap([]netip.Prefix{s}, in.LocalCIDRs); ok {
				return nil, fmt.Errorf("%s: %s (cluster %s) overlaps local_cidrs[%d] %s", field, s, r.ClusterID, pr.IndexB, pr.B)
			}
			for _, o := range all {
				if o.prefix.Overlaps(s) {
					return nil, fmt.Errorf("%s: %s (cluster %s) overlaps %s %s (cluster %s)", field, s, r.ClusterID, o.field, o.prefix, o.id)
				}
			}
			for _, a := range []struct {
				field string
				addr  netip.Addr
			}{{"node_ip", in.NodeIP}, {"gateway_ip", in.GatewayIP}} {
				if a.addr.IsValid() && s.Contains(a.addr) {
					return nil, fmt.Errorf("%s: %s (cluster %s) contains %s %s; tunnel traffic would loop", field, s, r.ClusterID, a.field, a.addr)
				}
			}
			all = append(all, owned{s, field, r.ClusterID})
		}
	}
	out := make([]netip.Prefix, 0, len(all))
	for _, o := range all {
		out = append(out, o.prefix)
	}
	slices.SortFunc(out, comparePrefix)
	return out, nil
}

// checkPrefix checks that p is an IPv4, canonical, routable prefix.
func checkPrefix(field string, p netip.Prefix) error {
	if p.IsValid() && !p.Addr().Is4() {
		return fmt.Errorf("%s: %s is IPv6; the route agent's data plane is IPv4-only", field, p)
	}
	if err := cidr.CheckPrefix(p); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// checkHostAddr checks that a is a usable IPv4 unicast host address.
func checkHostAddr(field string, a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("%s: must be set", field)
	case a.Is4In6() || a.Is6():
		return fmt.Errorf("%s: %s is IPv6; the route agent's data plane is IPv4-only", field, a)
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s: %s is not a unicast host address", field, a)
	}
	return nil
}

// mustOverlay is OverlayAddr for an address already checked to be IPv4.
func mustOverlay(a netip.Addr) netip.Prefix {
	p, _ := OverlayAddr(a)
	return p
}

// comparePrefix orders prefixes by address, then length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
