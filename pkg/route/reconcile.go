package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/weftnet/weft/pkg/netplan"
)

// Options configure a [Reconciler].
type Options struct {
	// Kernel is where changes go (required).
	Kernel Kernel
	// Params name what weft owns: Table, RulePriority and VXLANDevice.
	// Zero fields take netplan's defaults. Desired states passed to
	// Reconcile must carry the same values.
	Params netplan.Params
	// Logger receives one Info record per change; nil discards.
	Logger *slog.Logger
}

// Reconciler makes the kernel match a desired [netplan.NodeState]. It is
// safe for concurrent use; calls are serialised.
type Reconciler struct {
	mu     sync.Mutex
	k      Kernel
	params netplan.Params
	log    *slog.Logger
}

// New returns a Reconciler. It does no I/O.
func New(o Options) (*Reconciler, error) {
	if o.Kernel == nil {
		return nil, errors.New("route: Options.Kernel is required")
	}
	p := o.Params.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{k: o.Kernel, params: p, log: log}, nil
}

// Change is one modification a Reconciler made.
type Change struct {
	// Op is "add", "replace", "delete" or "set".
	Op string
	// Object names what changed: "route 10.2.0.0/16 dev weft-wg src
	// 10.1.0.1 table 176", "rule 176: from all lookup 176", "link weft-vx
	// ...", "addr 240.0.0.2/8 dev weft-vx", "fdb 00:00:00:00:00:00 dev
	// weft-vx dst 192.0.2.1", "sysctl net/ipv4/ip_forward = 1".
	Object string
}

// String renders "op object".
func (c Change) String() string { return c.Op + " " + c.Object }

// pass collects the changes and errors of one Reconcile or Cleanup call.
type pass struct {
	ctx     context.Context
	log     *slog.Logger
	changes []Change
	errs    []error
}

// do runs fn, recording the change on success and the error otherwise. It
// reports whether fn succeeded; once ctx is done it runs nothing.
func (p *pass) do(op, object string, fn func() error) bool {
	if err := p.ctx.Err(); err != nil {
		return false
	}
	if err := fn(); err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s %s: %w", op, object, err))
		return false
	}
	p.changes = append(p.changes, Change{Op: op, Object: object})
	p.log.Info("route change", "op", op, "object", object)
	return true
}

// fail records a read error.
func (p *pass) fail(what string, err error) {
	p.errs = append(p.errs, fmt.Errorf("%s: %w", what, err))
}

func (p *pass) result() ([]Change, error) {
	if err := p.ctx.Err(); err != nil {
		p.errs = append(p.errs, err)
	}
	if len(p.errs) == 0 {
		return p.changes, nil
	}
	return p.changes, fmt.Errorf("route: %w", errors.Join(p.errs...))
}

// Reconcile makes the kernel match want (its routes, rules, VXLAN device and
// sysctls; the firewall part is ignored) and returns the changes it made. It
// carries on past failures (a missing weft-wg device fails only the routes
// through it) and returns them joined; the next call retries.
func (r *Reconciler) Reconcile(ctx context.Context, want netplan.NodeState) ([]Change, error) {
	if err := r.check(want); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &pass{ctx: ctx, log: r.log}

	// The device first: routes through it need it up, and its per-device
	// sysctls exist only once it does.
	r.syncVXLAN(p, want.VXLAN)
	r.syncSysctls(p, want.Sysctls)

	// Additions, then deletions.
	cur, err := r.k.Routes(r.params.Table)
	if err != nil {
		p.fail("list routes", err)
		return p.result()
	}
	staleRoutes := r.addRoutes(p, cur, want.Routes)
	curRules, err := r.ownRules()
	if err != nil {
		p.fail("list rules", err)
		return p.result()
	}
	staleRules := r.addRules(p, curRules, want.Rules)
	for _, rt := range staleRoutes {
		p.do("delete", "route "+rt.String(), func() error { return r.k.DeleteRoute(rt) })
	}
	for _, ru := range staleRules {
		p.do("delete", "rule "+ru.String(), func() error { return r.k.DeleteRule(ru) })
	}
	return p.result()
}

// check verifies want belongs to what r owns.
func (r *Reconciler) check(want netplan.NodeState) error {
	p := r.params
	if want.Params.Table != p.Table || want.Params.RulePriority != p.RulePriority || want.Params.VXLANDevice != p.VXLANDevice {
		return fmt.Errorf("route: desired state is for table %d, priority %d, device %q; this reconciler owns table %d, priority %d, device %q",
			want.Params.Table, want.Params.RulePriority, want.Params.VXLANDevice, p.Table, p.RulePriority, p.VXLANDevice)
	}
	if want.VXLAN.Name != p.VXLANDevice {
		return fmt.Errorf("route: desired VXLAN device %q is not %q", want.VXLAN.Name, p.VXLANDevice)
	}
	for _, rt := range want.Routes {
		if rt.Table != p.Table {
			return fmt.Errorf("route: desired route %s is not in table %d", rt, p.Table)
		}
	}
	for _, ru := range want.Rules {
		if ru.Table != p.Table || ru.Priority != p.RulePriority {
			return fmt.Errorf("route: desired rule %s is not %d: lookup %d", ru, p.RulePriority, p.Table)
		}
	}
	return nil
}

// syncVXLAN makes the device, its address and FDB match v.
func (r *Reconciler) syncVXLAN(p *pass, v netplan.VXLAN) {
	l, ok, err := r.k.Link(v.Name)
	if err != nil {
		p.fail("read link "+v.Name, err)
		return
	}
	if ok && !l.matches(v) {
		if !p.do("delete", "link "+l.String(), func() error { return r.k.DeleteLink(v.Name) }) {
			return
		}
		ok = false
	}
	if !ok {
		obj := fmt.Sprintf("link %s vxlan vni %d dstport %d local %s learning mtu %d up", v.Name, v.VNI, v.Port, v.Local, v.MTU)
		if !p.do("add", obj, func() error { return r.k.AddVXLAN(v) }) {
			return
		}
	} else {
		if l.MTU != v.MTU {
			p.do("set", fmt.Sprintf("link %s mtu %d", v.Name, v.MTU), func() error { return r.k.SetLinkMTU(v.Name, v.MTU) })
		}
		if !l.Up {
			p.do("set", fmt.Sprintf("link %s up", v.Name), func() error { return r.k.SetLinkUp(v.Name) })
		}
	}

	addrs, err := r.k.Addrs(v.Name)
	if err != nil {
		p.fail("list addresses of "+v.Name, err)
	} else {
		if !slices.Contains(addrs, v.Addr) {
			p.do("add", fmt.Sprintf("addr %s dev %s", v.Addr, v.Name), func() error { return r.k.AddAddr(v.Name, v.Addr) })
		}
		for _, a := range addrs {
			if a != v.Addr {
				p.do("delete", fmt.Sprintf("addr %s dev %s", a, v.Name), func() error { return r.k.DeleteAddr(v.Name, a) })
			}
		}
	}

	fdb, err := r.k.FDB(v.Name)
	if err != nil {
		p.fail("list FDB of "+v.Name, err)
		return
	}
	for _, d := range v.FDB {
		if !slices.Contains(fdb, d) {
			p.do("add", "fdb "+netplan.FDBString(v.Name, d), func() error { return r.k.AppendFDB(v.Name, d) })
		}
	}
	seen := map[netip.Addr]bool{}
	for _, d := range fdb {
		if slices.Contains(v.FDB, d) && !seen[d] {
			seen[d] = true
			continue
		}
		p.do("delete", "fdb "+netplan.FDBString(v.Name, d), func() error { return r.k.DeleteFDB(v.Name, d) })
	}
}

// syncSysctls sets every sysctl whose value differs.
func (r *Reconciler) syncSysctls(p *pass, want []netplan.Sysctl) {
	for _, s := range want {
		if p.ctx.Err() != nil {
			return
		}
		got, err := r.k.Sysctl(s.Key)
		if err != nil {
			p.fail("read sysctl "+s.Key, err)
			continue
		}
		if got != s.Value {
			p.do("set", "sysctl "+s.String(), func() error { return r.k.SetSysctl(s.Key, s.Value) })
		}
	}
}

// routeKey identifies a route within weft's table.
type routeKey struct {
	dst    netip.Prefix
	metric int
}

// addRoutes adds or replaces the routes of want missing from cur and
// returns the routes of cur to delete afterwards.
func (r *Reconciler) addRoutes(p *pass, cur, want []netplan.Route) []netplan.Route {
	used := make([]bool, len(cur))
	wanted := map[routeKey]bool{}
	for _, w := range want {
		k := routeKey{w.Dst, w.Metric}
		if wanted[k] {
			continue // duplicates in want: the first wins
		}
		wanted[k] = true
		same, match := -1, -1
		for i, c := range cur {
			if used[i] || (routeKey{c.Dst, c.Metric}) != k {
				continue
			}
			if c == w {
				match = i
				break
			}
			if same < 0 {
				same = i
			}
		}
		switch {
		case match >= 0:
			used[match] = true
		case same >= 0:
			// The kernel replaces the first route with this key: atomic.
			used[same] = true
			p.do("replace", "route "+w.String(), func() error { return r.k.ReplaceRoute(w) })
		default:
			p.do("add", "route "+w.String(), func() error { return r.k.ReplaceRoute(w) })
		}
	}
	var stale []netplan.Route
	for i, c := range cur {
		if !used[i] {
			stale = append(stale, c)
		}
	}
	return stale
}

// ownRules lists the rules weft owns: at its priority, looking up its table.
func (r *Reconciler) ownRules() ([]netplan.Rule, error) {
	rules, err := r.k.Rules(r.params.RulePriority)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rules, func(ru netplan.Rule) bool {
		return ru.Priority != r.params.RulePriority || ru.Table != r.params.Table
	}), nil
}

// addRules adds the rules of want missing from cur (as multisets) and
// returns the rules of cur to delete afterwards.
func (r *Reconciler) addRules(p *pass, cur, want []netplan.Rule) []netplan.Rule {
	left := slices.Clone(cur)
	var seen []netplan.Rule
	for _, w := range want {
		if slices.Contains(seen, w) {
			continue
		}
		seen = append(seen, w)
		if i := slices.Index(left, w); i >= 0 {
			left = slices.Delete(left, i, i+1)
			continue
		}
		p.do("add", "rule "+w.String(), func() error { return r.k.AddRule(w) })
	}
	return left
}

// Cleanup removes everything weft owns: every route in its table, its
// rules and its VXLAN device. Sysctls are left alone. It returns the
// changes made; running it again makes none.
func (r *Reconciler) Cleanup(ctx context.Context) ([]Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &pass{ctx: ctx, log: r.log}
	rules, err := r.ownRules()
	if err != nil {
		p.fail("list rules", err)
	}
	for _, ru := range rules {
		p.do("delete", "rule "+ru.String(), func() error { return r.k.DeleteRule(ru) })
	}
	routes, err := r.k.Routes(r.params.Table)
	if err != nil {
		p.fail("list routes", err)
	}
	for _, rt := range routes {
		p.do("delete", "route "+rt.String(), func() error { return r.k.DeleteRoute(rt) })
	}
	name := r.params.VXLANDevice
	l, ok, err := r.k.Link(name)
	switch {
	case err != nil:
		p.fail("read link "+name, err)
	case ok && l.Kind == "vxlan":
		p.do("delete", "link "+l.String(), func() error { return r.k.DeleteLink(name) })
	case ok:
		r.log.Warn("not deleting a device that is not VXLAN", "link", l.String())
	}
	return p.result()
}
