package routeagent

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Link is what [Links] reports about the interface holding an address.
type Link struct {
	Name string
	MTU  int
}

// Links finds interfaces by address, for the defaults of the tunnel MTU
// (the MTU of the interface holding the node's InternalIP, minus 80) and
// of the CNI interface (the one holding the pod-network address).
type Links interface {
	// LinkByAddr reports the interface that holds IPv4 address a; ok is
	// false when none does.
	LinkByAddr(a netip.Addr) (l Link, ok bool, err error)
}

// NetlinkOptions configure [OpenNetlinkLinks].
type NetlinkOptions struct {
	// NetNS is the path of the network namespace to look in (for example
	// /var/run/netns/NAME); "" means the caller's own namespace.
	NetNS string
}

// NetlinkLinks implements [Links] with netlink in one network namespace.
type NetlinkLinks struct {
	h *netlink.Handle
}

var _ Links = (*NetlinkLinks)(nil)

// OpenNetlinkLinks opens a netlink handle in o.NetNS. Close it when done.
func OpenNetlinkLinks(o NetlinkOptions) (*NetlinkLinks, error) {
	if o.NetNS == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("routeagent: netlink handle: %w", err)
		}
		return &NetlinkLinks{h: h}, nil
	}
	ns, err := netns.GetFromPath(o.NetNS)
	if err != nil {
		return nil, fmt.Errorf("routeagent: open netns %s: %w", o.NetNS, err)
	}
	defer ns.Close() // the handle keeps its own socket in the namespace
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("routeagent: netlink handle in %s: %w", o.NetNS, err)
	}
	return &NetlinkLinks{h: h}, nil
}

// Close releases the handle.
func (n *NetlinkLinks) Close() error {
	n.h.Close()
	return nil
}

// LinkByAddr implements [Links].
func (n *NetlinkLinks) LinkByAddr(a netip.Addr) (Link, bool, error) {
	var addrs []netlink.Addr
	var err error
	for range 5 { // a dump interrupted by a concurrent change is retried
		if addrs, err = n.h.AddrList(nil, netlink.FAMILY_V4); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return Link{}, false, fmt.Errorf("list addresses: %w", err)
	}
	for _, ad := range addrs {
		if ad.IPNet == nil {
			continue
		}
		if ip, ok := netip.AddrFromSlice(ad.IP); !ok || ip.Unmap() != a {
			continue
		}
		l, err := n.h.LinkByIndex(ad.LinkIndex)
		if err != nil {
			return Link{}, false, fmt.Errorf("link of %s (index %d): %w", a, ad.LinkIndex, err)
		}
		return Link{Name: l.Attrs().Name, MTU: l.Attrs().MTU}, true, nil
	}
	return Link{}, false, nil
}
