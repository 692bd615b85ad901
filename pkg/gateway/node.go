package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/internal/netnsx"
)

// NodeInfo is what the gateway takes from its Node object.
type NodeInfo struct {
	Name string
	UID  string
	// InternalIP is the first InternalIP address; required.
	InternalIP netip.Addr
	// PublicIP is the override, else annotation weft.io/public-ip, else the
	// first ExternalIP; invalid when none.
	PublicIP netip.Addr
	// PodNetworkIP is the node's address on the pod network: the override,
	// else the first host address of spec.podCIDR; invalid when neither.
	PodNetworkIP netip.Addr
}

// NodeOverrides replace what the Node says.
type NodeOverrides struct {
	PublicIP, PodNetworkIP netip.Addr
}

// NodeInfoFrom extracts the gateway's facts from a Node. It fails only
// when the node has no usable InternalIP; a bad annotation is reported in
// warnings and ignored.
func NodeInfoFrom(n *corev1.Node, ov NodeOverrides) (info NodeInfo, warnings []string, err error) {
	info = NodeInfo{Name: n.Name, UID: string(n.UID)}
	var external netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue // Hostname, InternalDNS...: not addresses
		}
		ip, perr := netip.ParseAddr(a.Address)
		if perr != nil {
			warnings = append(warnings, fmt.Sprintf("node %s: address %s %q: %v", n.Name, a.Type, a.Address, perr))
			continue
		}
		ip = ip.Unmap()
		switch a.Type {
		case corev1.NodeInternalIP:
			if !info.InternalIP.IsValid() {
				info.InternalIP = ip
			}
		case corev1.NodeExternalIP:
			if !external.IsValid() {
				external = ip
			}
		}
	}
	if !info.InternalIP.IsValid() {
		return info, warnings, fmt.Errorf("node %s: no InternalIP in status.addresses", n.Name)
	}
	switch {
	case ov.PublicIP.IsValid():
		info.PublicIP = ov.PublicIP
	case n.Annotations[PublicIPAnnotation] != "":
		s := n.Annotations[PublicIPAnnotation]
		if ip, perr := netip.ParseAddr(s); perr == nil {
			info.PublicIP = ip.Unmap()
		} else {
			warnings = append(warnings, fmt.Sprintf("node %s: annotation %s=%q: %v (ignored)", n.Name, PublicIPAnnotation, s, perr))
			info.PublicIP = external
		}
	default:
		info.PublicIP = external
	}
	switch {
	case ov.PodNetworkIP.IsValid():
		info.PodNetworkIP = ov.PodNetworkIP
	case n.Spec.PodCIDR != "":
		p, perr := netip.ParsePrefix(n.Spec.PodCIDR)
		if perr != nil {
			warnings = append(warnings, fmt.Sprintf("node %s: spec.podCIDR %q: %v", n.Name, n.Spec.PodCIDR, perr))
			break
		}
		info.PodNetworkIP = FirstHost(p)
	}
	return info, warnings, nil
}

// FirstHost is the first host address of a prefix: 10.1.2.1 for
// 10.1.2.0/24 (the network address itself for /31, /32, /127, /128).
func FirstHost(p netip.Prefix) netip.Addr {
	p = p.Masked()
	a := p.Addr()
	if p.Bits() >= a.BitLen()-1 {
		return a
	}
	return a.Next()
}

// ErrNoInterface means no interface holds the address.
var ErrNoInterface = errors.New("no interface holds the address")

// UnderlayMTU returns the MTU of the interface that holds addr, in the
// namespace at nsPath ("" for this process's namespace).
func UnderlayMTU(nsPath string, addr netip.Addr) (int, error) {
	var h *netlink.Handle
	var err error
	if nsPath == "" {
		h, err = netlink.NewHandle()
	} else {
		var ns netns.NsHandle
		ns, err = netns.GetFromPath(nsPath)
		if err != nil {
			return 0, fmt.Errorf("underlay mtu: open netns %s: %w", nsPath, err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		return 0, fmt.Errorf("underlay mtu: netlink: %w", err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("underlay mtu: list addresses: %w", err)
	}
	want := net.IP(addr.AsSlice())
	idx := slices.IndexFunc(addrs, func(a netlink.Addr) bool { return a.IP.Equal(want) })
	if idx < 0 {
		return 0, fmt.Errorf("underlay mtu: %s: %w", addr, ErrNoInterface)
	}
	link, err := h.LinkByIndex(addrs[idx].LinkIndex)
	if err != nil {
		return 0, fmt.Errorf("underlay mtu: link %d of %s: %w", addrs[idx].LinkIndex, addr, err)
	}
	return link.Attrs().MTU, nil
}

// inNetNS runs fn inside the namespace at path ("" runs fn where we are).
func inNetNS(path string, fn func() error) error { return netnsx.DoPath(path, fn) }
