// Package routetest provides an in-memory fake of route.Kernel that models
// the kernel behaviours the reconciler relies on (routes need an up device,
// deleting or downing a device drops its routes, duplicates are refused,
// per-device sysctls exist only with the device) and prints its state as
// sorted text.
package routetest

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/weftnet/weft/pkg/netplan"
	"github.com/weftnet/weft/pkg/route"
)

type link struct {
	route.Link
	addrs []netip.Prefix
	fdb   []netip.Addr
}

// Kernel is a fake route.Kernel. The zero value is not usable; call New.
type Kernel struct {
	mu      sync.Mutex
	links   map[string]*link
	routes  []netplan.Route
	rules   []netplan.Rule
	sysctls map[string]string
	writes  int
	// fail maps an operation name ("ReplaceRoute", "AddRule", ...) to the
	// error it returns.
	fail map[string]error
}

// New returns a fake kernel with a loopback device and the global sysctls
// (ip_forward 0, rp_filter "all" and "default" 1).
func New() *Kernel {
	k := &Kernel{
		links: map[string]*link{},
		sysctls: map[string]string{
			"net/ipv4/ip_forward":              "0",
			"net/ipv4/conf/all/rp_filter":      "1",
			"net/ipv4/conf/default/rp_filter":  "1",
			"net/ipv4/conf/default/forwarding": "0",
		},
		fail: map[string]error{},
	}
	k.addLink(route.Link{Name: "lo", Kind: "loopback", MTU: 65536, Up: true})
	return k
}

// AddLink adds a device as someone else would (e.g. a dummy standing in for
// weft-wg).
func (k *Kernel) AddLink(name, kind string, mtu int, up bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.addLink(route.Link{Name: name, Kind: kind, MTU: mtu, Up: up})
}

func (k *Kernel) addLink(l route.Link) {
	k.links[l.Name] = &link{Link: l}
	k.sysctls["net/ipv4/conf/"+l.Name+"/rp_filter"] = k.sysctls["net/ipv4/conf/default/rp_filter"]
}

// SetLinkDown sets a device down as someone else would; like Linux, this
// drops the IPv4 routes through it.
func (k *Kernel) SetLinkDown(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.links[name]; ok {
		l.Up = false
		k.dropRoutes(name)
	}
}

// Fail makes op (a method name) return err until Fail(op, nil).
func (k *Kernel) Fail(op string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.fail, op)
	} else {
		k.fail[op] = err
	}
}

// Writes counts the calls that changed state.
func (k *Kernel) Writes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

func (k *Kernel) dropRoutes(dev string) {
	k.routes = slices.DeleteFunc(k.routes, func(r netplan.Route) bool { return r.Dev == dev })
}

func (k *Kernel) failed(op string) error { return k.fail[op] }

func (k *Kernel) get(name string) (*link, error) {
	l, ok := k.links[name]
	if !ok {
		return nil, fmt.Errorf("link %s: %w", name, syscall.ENODEV)
	}
	return l, nil
}

// Routes implements route.Kernel.
func (k *Kernel) Routes(table int) ([]netplan.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("Routes"); err != nil {
		return nil, err
	}
	var out []netplan.Route
	for _, r := range k.routes {
		if r.Table == table {
			out = append(out, r)
		}
	}
	return out, nil
}

// ReplaceRoute implements route.Kernel. The device must exist and be up.
func (k *Kernel) ReplaceRoute(r netplan.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("ReplaceRoute"); err != nil {
		return err
	}
	l, err := k.get(r.Dev)
	if err != nil {
		return err
	}
	if !l.Up {
		return fmt.Errorf("nexthop device %s is not up: %w", r.Dev, syscall.ENETDOWN)
	}
	k.writes++
	for i, c := range k.routes {
		if c.Table == r.Table && c.Dst == r.Dst && c.Metric == r.Metric {
			k.routes[i] = r
			return nil
		}
	}
	k.routes = append(k.routes, r)
	return nil
}

// DeleteRoute implements route.Kernel.
func (k *Kernel) DeleteRoute(r netplan.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("DeleteRoute"); err != nil {
		return err
	}
	for i, c := range k.routes {
		if c.Table == r.Table && c.Dst == r.Dst && c.Metric == r.Metric {
			k.routes = slices.Delete(k.routes, i, i+1)
			k.writes++
			return nil
		}
	}
	return fmt.Errorf("route %s: %w", r, syscall.ESRCH)
}

// InjectRoute adds a route as someone else would, without checks.
func (k *Kernel) InjectRoute(r netplan.Route) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routes = append(k.routes, r)
}

// RemoveRoute deletes the first route with r's table and destination, as
// someone else would.
func (k *Kernel) RemoveRoute(table int, dst netip.Prefix) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, c := range k.routes {
		if c.Table == table && c.Dst == dst {
			k.routes = slices.Delete(k.routes, i, i+1)
			return true
		}
	}
	return false
}

// Rules implements route.Kernel.
func (k *Kernel) Rules(priority int) ([]netplan.Rule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("Rules"); err != nil {
		return nil, err
	}
	var out []netplan.Rule
	for _, r := range k.rules {
		if r.Priority == priority {
			out = append(out, r)
		}
	}
	return out, nil
}

// AddRule implements route.Kernel (refusing duplicates, like NLM_F_EXCL).
func (k *Kernel) AddRule(r netplan.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("AddRule"); err != nil {
		return err
	}
	if slices.Contains(k.rules, r) {
		return fmt.Errorf("rule %s: %w", r, syscall.EEXIST)
	}
	k.rules = append(k.rules, r)
	k.writes++
	return nil
}

// InjectRule adds a rule as someone else would (duplicates allowed).
func (k *Kernel) InjectRule(r netplan.Rule) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rules = append(k.rules, r)
}

// DeleteRule implements route.Kernel.
func (k *Kernel) DeleteRule(r netplan.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("DeleteRule"); err != nil {
		return err
	}
	i := slices.Index(k.rules, r)
	if i < 0 {
		return fmt.Errorf("rule %s: %w", r, syscall.ENOENT)
	}
	k.rules = slices.Delete(k.rules, i, i+1)
	k.writes++
	return nil
}

// Link implements route.Kernel.
func (k *Kernel) Link(name string) (route.Link, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("Link"); err != nil {
		return route.Link{}, false, err
	}
	l, ok := k.links[name]
	if !ok {
		return route.Link{}, false, nil
	}
	out := l.Link
	if out.VXLAN != nil {
		v := *out.VXLAN
		out.VXLAN = &v
	}
	return out, true, nil
}

// AddVXLAN implements route.Kernel.
func (k *Kernel) AddVXLAN(v netplan.VXLAN) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("AddVXLAN"); err != nil {
		return err
	}
	if _, ok := k.links[v.Name]; ok {
		return fmt.Errorf("link %s: %w", v.Name, syscall.EEXIST)
	}
	k.addLink(route.Link{
		Name: v.Name, Kind: "vxlan", MTU: v.MTU, Up: true,
		VXLAN: &route.VXLANAttrs{VNI: v.VNI, Port: v.Port, Local: v.Local, Learning: true},
	})
	k.writes++
	return nil
}

// ReplaceVXLAN swaps the device for one with other attributes, as someone
// else would (routes through it go, like a delete and re-create).
func (k *Kernel) ReplaceVXLAN(name string, attrs route.VXLANAttrs) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.links[name]; ok {
		k.dropRoutes(name)
		l.VXLAN = &attrs
		l.addrs, l.fdb = nil, nil
	}
}

// SetLinkMTU implements route.Kernel.
func (k *Kernel) SetLinkMTU(name string, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("SetLinkMTU"); err != nil {
		return err
	}
	l, err := k.get(name)
	if err != nil {
		return err
	}
	l.MTU = mtu
	k.writes++
	return nil
}

// SetMTU changes a device's MTU as someone else would.
func (k *Kernel) SetMTU(name string, mtu int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.links[name]; ok {
		l.MTU = mtu
	}
}

// SetLinkUp implements route.Kernel.
func (k *Kernel) SetLinkUp(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("SetLinkUp"); err != nil {
		return err
	}
	l, err := k.get(name)
	if err != nil {
		return err
	}
	l.Up = true
	k.writes++
	return nil
}

// DeleteLink implements route.Kernel; like Linux it drops the device's
// routes, addresses, FDB and sysctls.
func (k *Kernel) DeleteLink(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("DeleteLink"); err != nil {
		return err
	}
	if _, err := k.get(name); err != nil {
		return err
	}
	k.removeLink(name)
	k.writes++
	return nil
}

// RemoveLink deletes a device as someone else would.
func (k *Kernel) RemoveLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removeLink(name)
}

func (k *Kernel) removeLink(name string) {
	delete(k.links, name)
	k.dropRoutes(name)
	for key := range k.sysctls {
		if strings.HasPrefix(key, "net/ipv4/conf/"+name+"/") {
			delete(k.sysctls, key)
		}
	}
}

// Addrs implements route.Kernel.
func (k *Kernel) Addrs(dev string) ([]netip.Prefix, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("Addrs"); err != nil {
		return nil, err
	}
	l, err := k.get(dev)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.addrs), nil
}

// AddAddr implements route.Kernel.
func (k *Kernel) AddAddr(dev string, a netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("AddAddr"); err != nil {
		return err
	}
	l, err := k.get(dev)
	if err != nil {
		return err
	}
	if slices.Contains(l.addrs, a) {
		return fmt.Errorf("addr %s: %w", a, syscall.EEXIST)
	}
	l.addrs = append(l.addrs, a)
	k.writes++
	return nil
}

// DeleteAddr implements route.Kernel.
func (k *Kernel) DeleteAddr(dev string, a netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("DeleteAddr"); err != nil {
		return err
	}
	l, err := k.get(dev)
	if err != nil {
		return err
	}
	i := slices.Index(l.addrs, a)
	if i < 0 {
		return fmt.Errorf("addr %s: %w", a, syscall.EADDRNOTAVAIL)
	}
	l.addrs = slices.Delete(l.addrs, i, i+1)
	k.writes++
	return nil
}

// InjectAddr adds an address as someone else would.
func (k *Kernel) InjectAddr(dev string, a netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.links[dev]; ok {
		l.addrs = append(l.addrs, a)
	}
}

// FDB implements route.Kernel.
func (k *Kernel) FDB(dev string) ([]netip.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("FDB"); err != nil {
		return nil, err
	}
	l, err := k.get(dev)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.fdb), nil
}

// AppendFDB implements route.Kernel.
func (k *Kernel) AppendFDB(dev string, dst netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("AppendFDB"); err != nil {
		return err
	}
	l, err := k.get(dev)
	if err != nil {
		return err
	}
	if slices.Contains(l.fdb, dst) {
		return fmt.Errorf("fdb %s: %w", dst, syscall.EEXIST)
	}
	l.fdb = append(l.fdb, dst)
	k.writes++
	return nil
}

// DeleteFDB implements route.Kernel.
func (k *Kernel) DeleteFDB(dev string, dst netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("DeleteFDB"); err != nil {
		return err
	}
	l, err := k.get(dev)
	if err != nil {
		return err
	}
	i := slices.Index(l.fdb, dst)
	if i < 0 {
		return fmt.Errorf("fdb %s: %w", dst, syscall.ENOENT)
	}
	l.fdb = slices.Delete(l.fdb, i, i+1)
	k.writes++
	return nil
}

// InjectFDB adds an FDB entry as someone else would.
func (k *Kernel) InjectFDB(dev string, dst netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.links[dev]; ok {
		l.fdb = append(l.fdb, dst)
	}
}

// Sysctl implements route.Kernel.
func (k *Kernel) Sysctl(key string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("Sysctl"); err != nil {
		return "", err
	}
	v, ok := k.sysctls[key]
	if !ok {
		return "", fmt.Errorf("sysctl %s: %w", key, syscall.ENOENT)
	}
	return v, nil
}

// SetSysctl implements route.Kernel.
func (k *Kernel) SetSysctl(key, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failed("SetSysctl"); err != nil {
		return err
	}
	if _, ok := k.sysctls[key]; !ok {
		return fmt.Errorf("sysctl %s: %w", key, syscall.ENOENT)
	}
	k.sysctls[key] = value
	k.writes++
	return nil
}

// String prints the whole state, one item a line, sorted: links, addrs,
// fdb, rules, routes, sysctls.
func (k *Kernel) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var lines []string
	for _, l := range k.links {
		lines = append(lines, "1 link "+l.Link.String())
		for _, a := range l.addrs {
			lines = append(lines, fmt.Sprintf("2 addr %s dev %s", a, l.Name))
		}
		for _, d := range l.fdb {
			lines = append(lines, "3 fdb "+netplan.FDBString(l.Name, d))
		}
	}
	for _, r := range k.rules {
		lines = append(lines, "4 rule "+r.String())
	}
	for _, r := range k.routes {
		lines = append(lines, "5 route "+r.String())
	}
	for key, v := range k.sysctls {
		lines = append(lines, "6 sysctl "+netplan.Sysctl{Key: key, Value: v}.String())
	}
	return render(lines)
}

// Owned prints only what weft owns under p (p with defaults applied): the
// VXLAN device with its addresses and FDB, the rules at p.RulePriority
// looking up p.Table, and the routes in p.Table. Compare with [Want].
func (k *Kernel) Owned(p netplan.Params) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	p = p.WithDefaults()
	var lines []string
	if l, ok := k.links[p.VXLANDevice]; ok {
		lines = append(lines, "1 link "+l.Link.String())
		for _, a := range l.addrs {
			lines = append(lines, fmt.Sprintf("2 addr %s dev %s", a, l.Name))
		}
		for _, d := range l.fdb {
			lines = append(lines, "3 fdb "+netplan.FDBString(l.Name, d))
		}
	}
	for _, r := range k.rules {
		if r.Priority == p.RulePriority && r.Table == p.Table {
			lines = append(lines, "4 rule "+r.String())
		}
	}
	for _, r := range k.routes {
		if r.Table == p.Table {
			lines = append(lines, "5 route "+r.String())
		}
	}
	return render(lines)
}

// Want prints the part of st a route.Reconciler owns in the format of
// [Kernel.Owned].
func Want(st netplan.NodeState) string {
	v := st.VXLAN
	l := route.Link{Name: v.Name, Kind: "vxlan", MTU: v.MTU, Up: true,
		VXLAN: &route.VXLANAttrs{VNI: v.VNI, Port: v.Port, Local: v.Local, Learning: true}}
	lines := []string{"1 link " + l.String(), fmt.Sprintf("2 addr %s dev %s", v.Addr, v.Name)}
	for _, d := range v.FDB {
		lines = append(lines, "3 fdb "+netplan.FDBString(v.Name, d))
	}
	for _, r := range st.Rules {
		lines = append(lines, "4 rule "+r.String())
	}
	for _, r := range st.Routes {
		lines = append(lines, "5 route "+r.String())
	}
	return render(lines)
}

// render sorts lines (which start with a section digit), drops the digit
// and joins them.
func render(lines []string) string {
	sort.Strings(lines)
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l[2:])
		b.WriteByte('\n')
	}
	return b.String()
}
