package route

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsx"
	"github.com/weftnet/weft/pkg/netplan"
)

// NetlinkOptions configure [OpenNetlink].
type NetlinkOptions struct {
	// NetNS is the path of the network namespace to work in (for example
	// /var/run/netns/NAME); "" means the caller's own namespace.
	NetNS string
}

// Netlink implements [Kernel] with netlink (and /proc/sys for sysctls) in
// one network namespace.
type Netlink struct {
	h  *netlink.Handle
	ns netns.NsHandle // closed handle: the caller's namespace
}

var _ Kernel = (*Netlink)(nil)

// OpenNetlink opens a netlink handle in o.NetNS. Close it when done.
func OpenNetlink(o NetlinkOptions) (*Netlink, error) {
	ns := netns.None()
	if o.NetNS != "" {
		var err error
		if ns, err = netns.GetFromPath(o.NetNS); err != nil {
			return nil, fmt.Errorf("route: open netns %s: %w", o.NetNS, err)
		}
	}
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("route: netlink handle: %w", err)
	}
	return &Netlink{h: h, ns: ns}, nil
}

// Close releases the handle and the namespace.
func (n *Netlink) Close() error {
	n.h.Close()
	if n.ns.IsOpen() {
		return n.ns.Close()
	}
	return nil
}

// dump retries a netlink dump interrupted by a concurrent change.
func dump[T any](fn func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var out []T
		if out, err = fn(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}

func (n *Netlink) link(name string) (netlink.Link, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return l, nil
}

// Routes implements [Kernel].
func (n *Netlink) Routes(table int) ([]netplan.Route, error) {
	rs, err := dump(func() ([]netlink.Route, error) {
		return n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	out := make([]netplan.Route, 0, len(rs))
	for _, r := range rs {
		nr := netplan.Route{
			Table:  r.Table,
			Dst:    netip.MustParsePrefix("0.0.0.0/0"),
			Onlink: r.Flags&int(netlink.FLAG_ONLINK) != 0,
			Metric: r.Priority,
		}
		if r.Dst != nil {
			if p, ok := prefixOf(r.Dst); ok {
				nr.Dst = p
			}
		}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			nr.Via = a.Unmap()
		}
		if a, ok := netip.AddrFromSlice(r.Src); ok {
			nr.Src = a.Unmap()
		}
		if r.LinkIndex > 0 {
			name, ok := names[r.LinkIndex]
			if !ok {
				if l, err := n.h.LinkByIndex(r.LinkIndex); err == nil {
					name = l.Attrs().Name
				} else {
					name = fmt.Sprintf("if%d", r.LinkIndex)
				}
				names[r.LinkIndex] = name
			}
			nr.Dev = name
		}
		out = append(out, nr)
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ReplaceRoute implements [Kernel].
func (n *Netlink) ReplaceRoute(r netplan.Route) error {
	nr := &netlink.Route{
		Table:    r.Table,
		Dst:      ipnet(r.Dst),
		Priority: r.Metric,
		Protocol: unix.RTPROT_STATIC,
		Scope:    netlink.SCOPE_UNIVERSE,
	}
	if r.Dev != "" {
		l, err := n.link(r.Dev)
		if err != nil {
			return err
		}
		nr.LinkIndex = l.Attrs().Index
	}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.Onlink {
		nr.SetFlag(netlink.FLAG_ONLINK)
	}
	return n.h.RouteReplace(nr)
}

// DeleteRoute implements [Kernel]. Scope "nowhere" matches a route of any
// scope (the library would otherwise send "universe", which misses device
// routes).
func (n *Netlink) DeleteRoute(r netplan.Route) error {
	return n.h.RouteDel(&netlink.Route{Table: r.Table, Dst: ipnet(r.Dst), Priority: r.Metric, Scope: netlink.SCOPE_NOWHERE})
}

// Rules implements [Kernel].
func (n *Netlink) Rules(priority int) ([]netplan.Rule, error) {
	rs, err := dump(func() ([]netlink.Rule, error) { return n.h.RuleList(netlink.FAMILY_V4) })
	if err != nil {
		return nil, err
	}
	var out []netplan.Rule
	for _, r := range rs {
		if r.Priority != priority || !plainRule(r) {
			continue
		}
		out = append(out, netplan.Rule{Priority: r.Priority, Table: r.Table})
	}
	return out, nil
}

// plainRule reports whether r has no selector: "from all lookup N".
func plainRule(r netlink.Rule) bool {
	return r.Src == nil && r.Dst == nil && r.Mark == 0 && r.Mask == nil && r.TunID == 0 &&
		r.IifName == "" && r.OifName == "" && !r.Invert && r.Tos == 0 && r.Goto <= 0 &&
		r.Dport == nil && r.Sport == nil && r.IPProto == 0 && r.UIDRange == nil &&
		r.SuppressPrefixlen < 0 && r.SuppressIfgroup < 0 && r.Table > 0
}

func nlRule(r netplan.Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	nr.Priority = r.Priority
	nr.Table = r.Table
	return nr
}

// AddRule implements [Kernel].
func (n *Netlink) AddRule(r netplan.Rule) error { return n.h.RuleAdd(nlRule(r)) }

// DeleteRule implements [Kernel].
func (n *Netlink) DeleteRule(r netplan.Rule) error { return n.h.RuleDel(nlRule(r)) }

// Link implements [Kernel].
func (n *Netlink) Link(name string) (Link, bool, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Link{}, false, nil
		}
		return Link{}, false, fmt.Errorf("link %s: %w", name, err)
	}
	a := l.Attrs()
	out := Link{Name: a.Name, Kind: l.Type(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0}
	if v, ok := l.(*netlink.Vxlan); ok {
		attrs := &VXLANAttrs{VNI: uint32(v.VxlanId), Port: uint16(v.Port), Learning: v.Learning}
		if ip, ok := netip.AddrFromSlice(v.SrcAddr); ok {
			attrs.Local = ip.Unmap()
		}
		out.VXLAN = attrs
	}
	return out, true, nil
}

// AddVXLAN implements [Kernel].
func (n *Netlink) AddVXLAN(v netplan.VXLAN) error {
	l := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: v.Name, MTU: v.MTU},
		VxlanId:   int(v.VNI),
		SrcAddr:   v.Local.AsSlice(),
		Port:      int(v.Port),
		Learning:  true,
	}
	if err := n.h.LinkAdd(l); err != nil {
		return err
	}
	return n.SetLinkUp(v.Name)
}

// SetLinkMTU implements [Kernel].
func (n *Netlink) SetLinkMTU(name string, mtu int) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	return n.h.LinkSetMTU(l, mtu)
}

// SetLinkUp implements [Kernel].
func (n *Netlink) SetLinkUp(name string) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	return n.h.LinkSetUp(l)
}

// DeleteLink implements [Kernel].
func (n *Netlink) DeleteLink(name string) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	return n.h.LinkDel(l)
}

// Addrs implements [Kernel].
func (n *Netlink) Addrs(dev string) ([]netip.Prefix, error) {
	l, err := n.link(dev)
	if err != nil {
		return nil, err
	}
	as, err := dump(func() ([]netlink.Addr, error) { return n.h.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// AddAddr implements [Kernel].
func (n *Netlink) AddAddr(dev string, a netip.Prefix) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	return n.h.AddrAdd(l, &netlink.Addr{IPNet: ipnet(a)})
}

// DeleteAddr implements [Kernel].
func (n *Netlink) DeleteAddr(dev string, a netip.Prefix) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	return n.h.AddrDel(l, &netlink.Addr{IPNet: ipnet(a)})
}

// zeroMAC is the all-zero MAC of default FDB entries.
func zeroMAC() net.HardwareAddr { return net.HardwareAddr{0, 0, 0, 0, 0, 0} }

func fdbEntry(index int, dst netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
		Flags:        netlink.NTF_SELF,
		IP:           dst.AsSlice(),
		HardwareAddr: zeroMAC(),
	}
}

// FDB implements [Kernel].
func (n *Netlink) FDB(dev string) ([]netip.Addr, error) {
	l, err := n.link(dev)
	if err != nil {
		return nil, err
	}
	ns, err := dump(func() ([]netlink.Neigh, error) { return n.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE) })
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, e := range ns {
		if e.LinkIndex != l.Attrs().Index || e.HardwareAddr.String() != zeroMAC().String() {
			continue
		}
		if a, ok := netip.AddrFromSlice(e.IP); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// AppendFDB implements [Kernel].
func (n *Netlink) AppendFDB(dev string, dst netip.Addr) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	return n.h.NeighAppend(fdbEntry(l.Attrs().Index, dst))
}

// DeleteFDB implements [Kernel].
func (n *Netlink) DeleteFDB(dev string, dst netip.Addr) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	return n.h.NeighDel(fdbEntry(l.Attrs().Index, dst))
}

// sysctlPath checks key and returns its /proc/sys path.
func sysctlPath(key string) (string, error) {
	if !strings.HasPrefix(key, "net/") || strings.Contains(key, "..") || filepath.Clean(key) != key {
		return "", fmt.Errorf("sysctl %q: not a net/ key", key)
	}
	return "/proc/sys/" + key, nil
}

// Sysctl implements [Kernel]. /proc/sys/net shows the namespace of the
// thread that opens it, so the read happens inside the namespace.
func (n *Netlink) Sysctl(key string) (string, error) {
	path, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var v string
	err = inNetNS(n.ns, func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// SetSysctl implements [Kernel].
func (n *Netlink) SetSysctl(key, value string) error {
	path, err := sysctlPath(key)
	if err != nil {
		return err
	}
	return inNetNS(n.ns, func() error { return os.WriteFile(path, []byte(value), 0o644) })
}

// inNetNS runs fn inside ns (a closed handle: where we are).
func inNetNS(ns netns.NsHandle, fn func() error) error { return netnsx.Do(ns, fn) }
