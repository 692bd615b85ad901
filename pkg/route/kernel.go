package route

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/pkg/netplan"
)

// Kernel is the kernel access a [Reconciler] needs, all in one network
// namespace and for IPv4. Methods that name a missing device fail.
type Kernel interface {
	// Routes lists the routes in table.
	Routes(table int) ([]netplan.Route, error)
	// ReplaceRoute adds r, or replaces the route with r's table,
	// destination and metric.
	ReplaceRoute(r netplan.Route) error
	// DeleteRoute deletes the route with r's table, destination and
	// metric.
	DeleteRoute(r netplan.Route) error

	// Rules lists the rules at priority that have no selector ("from all
	// lookup N").
	Rules(priority int) ([]netplan.Rule, error)
	AddRule(r netplan.Rule) error
	DeleteRule(r netplan.Rule) error

	// Link reports the device called name; ok is false when there is none.
	Link(name string) (l Link, ok bool, err error)
	// AddVXLAN creates the VXLAN device v (learning on, v.MTU) and sets it
	// up. It does not add v.Addr or v.FDB.
	AddVXLAN(v netplan.VXLAN) error
	SetLinkMTU(name string, mtu int) error
	SetLinkUp(name string) error
	DeleteLink(name string) error

	// Addrs lists the IPv4 addresses on dev.
	Addrs(dev string) ([]netip.Prefix, error)
	AddAddr(dev string, a netip.Prefix) error
	DeleteAddr(dev string, a netip.Prefix) error

	// FDB lists the destinations of dev's all-zero-MAC FDB entries.
	FDB(dev string) ([]netip.Addr, error)
	AppendFDB(dev string, dst netip.Addr) error
	DeleteFDB(dev string, dst netip.Addr) error

	// Sysctl reads /proc/sys/<key> (key uses slashes, see netplan.Sysctl).
	Sysctl(key string) (string, error)
	SetSysctl(key, value string) error
}

// Link is what a [Kernel] reports about a device.
type Link struct {
	Name string
	// Kind is the link type ("vxlan", "dummy", "veth", "wireguard", ...).
	Kind string
	MTU  int
	Up   bool
	// VXLAN holds the VXLAN attributes when Kind is "vxlan".
	VXLAN *VXLANAttrs
}

// VXLANAttrs are the attributes of a VXLAN device that cannot change in
// place.
type VXLANAttrs struct {
	VNI      uint32
	Port     uint16
	Local    netip.Addr
	Learning bool
}

// String renders l: "weft-vx vxlan vni 4242 dstport 4799 local 192.0.2.1
// learning mtu 1420 up".
func (l Link) String() string {
	s := l.Name + " " + l.Kind
	if v := l.VXLAN; v != nil {
		s += fmt.Sprintf(" vni %d dstport %d local %s", v.VNI, v.Port, v.Local)
		if v.Learning {
			s += " learning"
		} else {
			s += " nolearning"
		}
	}
	s += fmt.Sprintf(" mtu %d", l.MTU)
	if l.Up {
		s += " up"
	} else {
		s += " down"
	}
	return s
}

// matches reports whether l is the VXLAN device v describes, in the
// attributes that cannot change in place.
func (l Link) matches(v netplan.VXLAN) bool {
	return l.Kind == "vxlan" && l.VXLAN != nil &&
		l.VXLAN.VNI == v.VNI && l.VXLAN.Port == v.Port && l.VXLAN.Local == v.Local && l.VXLAN.Learning
}
