// Package labtest provides a fake lab.Kernel for tests: an in-memory model
// of namespaces, links, addresses, routes and processes that checks each
// step's preconditions as the kernel would (namespace exists, names are
// free, bridge exists, gateway is on a connected network) and prints its
// state as sorted text.
package labtest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/pkg/lab"
)

// Fake is an in-memory lab.Kernel. The zero value is not usable; call New.
type Fake struct {
	mu      sync.Mutex
	ns      map[string]*namespace
	alive   map[int]bool
	nextPID int
	stopped []int
	fail    func(lab.Step) error
}

type namespace struct {
	links   map[string]*link
	sysctls map[string]string
	routes  []string
	rules   []string
	procs   []lab.Proc
}

type link struct {
	kind   string // loopback, bridge, veth
	peer   string // "ns:name" for veths
	master string
	addrs  []netip.Prefix
	qdisc  string
}

// New returns an empty fake.
func New() *Fake {
	return &Fake{ns: map[string]*namespace{}, alive: map[int]bool{}, nextPID: 1000}
}

// FailOn makes Apply return the error fn returns for a step (nil: carry on).
func (f *Fake) FailOn(fn func(lab.Step) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

// AddNamespace makes a namespace as something outside the lab would.
func (f *Fake) AddNamespace(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ns[name] = newNamespace()
}

// AddProcess starts a fake process living in namespace ns.
func (f *Fake) AddProcess(ns string) lab.Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addProcLocked(ns)
}

func (f *Fake) addProcLocked(ns string) lab.Proc {
	f.nextPID++
	p := lab.Proc{PID: f.nextPID, Start: uint64(f.nextPID) * 7}
	f.alive[p.PID] = true
	if n := f.ns[ns]; n != nil {
		n.procs = append(n.procs, p)
	}
	return p
}

// Stopped lists the pids StopProcesses stopped, in order.
func (f *Fake) Stopped() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.stopped)
}

// NamespaceNames lists the namespaces, sorted.
func (f *Fake) NamespaceNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.ns {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func newNamespace() *namespace {
	return &namespace{links: map[string]*link{"lo": {kind: "loopback"}}, sysctls: map[string]string{}}
}

// Namespaces implements lab.Kernel.
func (f *Fake) Namespaces(ctx context.Context) ([]string, error) { return f.NamespaceNames(), nil }

// DeleteNamespace implements lab.Kernel; veth peers elsewhere vanish too.
func (f *Fake) DeleteNamespace(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ns[name]; !ok {
		return nil
	}
	delete(f.ns, name)
	for _, n := range f.ns {
		for ln, l := range n.links {
			if l.kind == "veth" && strings.HasPrefix(l.peer, name+":") {
				delete(n.links, ln)
			}
		}
	}
	return nil
}

// Apply implements lab.Kernel.
func (f *Fake) Apply(ctx context.Context, s lab.Step) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if err := f.apply(s); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	return nil
}

func (f *Fake) get(ns string) (*namespace, error) {
	n, ok := f.ns[ns]
	if !ok {
		return nil, fmt.Errorf("namespace %s does not exist", ns)
	}
	return n, nil
}

func (f *Fake) dev(ns, name string) (*namespace, *link, error) {
	n, err := f.get(ns)
	if err != nil {
		return nil, nil, err
	}
	l, ok := n.links[name]
	if !ok {
		return nil, nil, fmt.Errorf("no link %s in %s", name, ns)
	}
	return n, l, nil
}

func (f *Fake) apply(s lab.Step) error {
	switch s := s.(type) {
	case lab.CreateNamespace:
		if _, ok := f.ns[s.Name]; ok {
			return fmt.Errorf("namespace %s exists", s.Name)
		}
		f.ns[s.Name] = newNamespace()
	case lab.SetSysctl:
		n, err := f.get(s.NS)
		if err != nil {
			return err
		}
		n.sysctls[s.Key] = s.Value
	case lab.AddBridge:
		n, err := f.get(s.NS)
		if err != nil {
			return err
		}
		if _, ok := n.links[s.Name]; ok {
			return fmt.Errorf("link %s exists in %s", s.Name, s.NS)
		}
		n.links[s.Name] = &link{kind: "bridge"}
	case lab.AddVeth:
		a, err := f.get(s.NS)
		if err != nil {
			return err
		}
		b, err := f.get(s.PeerNS)
		if err != nil {
			return err
		}
		if _, ok := a.links[s.Name]; ok {
			return fmt.Errorf("link %s exists in %s", s.Name, s.NS)
		}
		if _, ok := b.links[s.PeerName]; ok {
			return fmt.Errorf("link %s exists in %s", s.PeerName, s.PeerNS)
		}
		for _, m := range []struct {
			n      *namespace
			ns, br string
		}{{a, s.NS, s.Master}, {b, s.PeerNS, s.PeerMaster}} {
			if m.br != "" {
				if l, ok := m.n.links[m.br]; !ok || l.kind != "bridge" {
					return fmt.Errorf("no bridge %s in %s", m.br, m.ns)
				}
			}
		}
		a.links[s.Name] = &link{kind: "veth", peer: s.PeerNS + ":" + s.PeerName, master: s.Master}
		b.links[s.PeerName] = &link{kind: "veth", peer: s.NS + ":" + s.Name, master: s.PeerMaster}
	case lab.AddAddress:
		_, l, err := f.dev(s.NS, s.Dev)
		if err != nil {
			return err
		}
		if l.master != "" {
			return fmt.Errorf("%s is a bridge port (master %s); address the bridge", s.Dev, l.master)
		}
		if slices.Contains(l.addrs, s.Prefix) {
			return fmt.Errorf("address %s exists on %s", s.Prefix, s.Dev)
		}
		l.addrs = append(l.addrs, s.Prefix)
	case lab.AddRoute:
		n, l, err := f.dev(s.NS, s.Dev)
		if err != nil {
			return err
		}
		onLink := false
		for _, a := range l.addrs {
			if a.Masked().Contains(s.Via) && a.Addr() != s.Via {
				onLink = true
			}
		}
		if !onLink {
			return fmt.Errorf("gateway %s is not on a network of %s (Nexthop has invalid gateway)", s.Via, s.Dev)
		}
		r := fmt.Sprintf("route %s via %s dev %s", s.Dst, s.Via, s.Dev)
		for _, old := range n.routes {
			if strings.HasPrefix(old, fmt.Sprintf("route %s ", s.Dst)) {
				return fmt.Errorf("route to %s exists", s.Dst)
			}
		}
		n.routes = append(n.routes, r)
	case lab.AddNetem:
		_, l, err := f.dev(s.NS, s.Dev)
		if err != nil {
			return err
		}
		if l.qdisc != "" {
			return fmt.Errorf("%s already has a qdisc", s.Dev)
		}
		l.qdisc = fmt.Sprintf("netem delay %s jitter %s loss %g%%", s.Delay, s.Jitter, s.Loss)
	case lab.AddMasquerade:
		n, err := f.get(s.NS)
		if err != nil {
			return err
		}
		for _, d := range []string{s.InDev, s.OutDev} {
			if _, ok := n.links[d]; !ok {
				return fmt.Errorf("no link %s in %s", d, s.NS)
			}
		}
		n.rules = append(n.rules, fmt.Sprintf("masquerade %s out %s, inbound %s->%s established only", s.Source, s.OutDev, s.OutDev, s.InDev))
	default:
		return fmt.Errorf("unknown step %T", s)
	}
	return nil
}

// NamespaceProcesses implements lab.Kernel.
func (f *Fake) NamespaceProcesses(ctx context.Context, ns string) ([]lab.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.ns[ns]
	if !ok {
		return nil, nil
	}
	var out []lab.Proc
	for _, p := range n.procs {
		if f.alive[p.PID] {
			out = append(out, p)
		}
	}
	return out, nil
}

// StartProcess implements lab.Kernel.
func (f *Fake) StartProcess(ctx context.Context, spec lab.ProcessSpec) (lab.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get(spec.Namespace); err != nil {
		return lab.Proc{}, err
	}
	return f.addProcLocked(spec.Namespace), nil
}

// StopProcesses implements lab.Kernel.
func (f *Fake) StopProcesses(ctx context.Context, procs []lab.Proc, grace time.Duration) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range procs {
		if f.alive[p.PID] {
			f.alive[p.PID] = false
			f.stopped = append(f.stopped, p.PID)
			n++
		}
	}
	return n, nil
}

// Alive implements lab.Kernel.
func (f *Fake) Alive(p lab.Proc) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.alive[p.PID]
}

// String prints every namespace with its links, sysctls, routes and rules,
// sorted, one fact per line.
func (f *Fake) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.ns {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		n := f.ns[name]
		fmt.Fprintf(&b, "netns %s\n", name)
		var lines []string
		for ln, l := range n.links {
			s := fmt.Sprintf("  link %s %s", ln, l.kind)
			if l.peer != "" {
				s += " peer " + l.peer
			}
			if l.master != "" {
				s += " master " + l.master
			}
			for _, a := range l.addrs {
				s += " addr " + a.String()
			}
			if l.qdisc != "" {
				s += " qdisc " + l.qdisc
			}
			lines = append(lines, s)
		}
		for k, v := range n.sysctls {
			lines = append(lines, "  sysctl "+k+"="+v)
		}
		for _, r := range n.routes {
			lines = append(lines, "  "+r)
		}
		for _, r := range n.rules {
			lines = append(lines, "  "+r)
		}
		sort.Strings(lines)
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

var _ lab.Kernel = (*Fake)(nil)
