package lab

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Fixed networks of the address plan (see the package doc).
var (
	WANPrefix     = netip.MustParsePrefix("198.18.0.0/24")
	ControlPrefix = netip.MustParsePrefix("198.19.255.0/24")
	// ControlAddr is the control namespace's own address.
	ControlAddr = netip.MustParsePrefix("198.19.255.1/24")
)

// Plan is everything a lab consists of, computed from a topology by
// [NewPlan] without touching the system: the addressing of every
// namespace, and the ordered [Step]s that build it.
type Plan struct {
	Lab      string        `json:"lab"`
	Topology Topology      `json:"topology"` // defaults applied
	WAN      WANPlan       `json:"wan"`
	Control  ControlPlan   `json:"control"`
	Clusters []ClusterPlan `json:"clusters"`
	// Steps build the lab in order: namespaces (and their sysctls),
	// bridges, veths, addresses, routes, then WAN shaping and NAT.
	Steps []Step `json:"-"`
}

// WANPlan is the WAN: a bridge in its own namespace joining the gateways.
type WANPlan struct {
	Namespace string        `json:"namespace"`
	Prefix    netip.Prefix  `json:"prefix"`
	Delay     time.Duration `json:"delay"`
	Jitter    time.Duration `json:"jitter"`
	Loss      float64       `json:"loss"`
}

// ControlPlan is the control network: a bridge in the control namespace
// that every node is attached to.
type ControlPlan struct {
	Namespace string       `json:"namespace"`
	Prefix    netip.Prefix `json:"prefix"`
	Addr      netip.Prefix `json:"addr"`
}

// ClusterPlan is one cluster's addressing.
type ClusterPlan struct {
	Name         string       `json:"name"`
	Index        int          `json:"index"` // n, 1-based
	PodCIDR      netip.Prefix `json:"podCIDR"`
	ServiceCIDR  netip.Prefix `json:"serviceCIDR"`
	LAN          netip.Prefix `json:"lan"`
	LANNamespace string       `json:"lanNamespace"`
	Router       *RouterPlan  `json:"router,omitempty"` // set when the cluster is behind NAT
	Nodes        []NodePlan   `json:"nodes"`
}

// RouterPlan is a cluster's NAT router.
type RouterPlan struct {
	Namespace  string       `json:"namespace"`
	WANAddr    netip.Prefix `json:"wanAddr"`    // public side, on the WAN
	Inside     netip.Prefix `json:"inside"`     // network towards the gateways
	InsideAddr netip.Prefix `json:"insideAddr"` // the router on it
}

// NodePlan is one node's addressing.
type NodePlan struct {
	Name      string       `json:"name"` // "n1"
	Index     int          `json:"index"`
	Namespace string       `json:"namespace"`
	Gateway   bool         `json:"gateway"`
	LANAddr   netip.Prefix `json:"lanAddr"`
	CtlAddr   netip.Prefix `json:"ctlAddr"`
	// WANAddr is set on gateways: on the WAN itself, or on the NAT-inside
	// network when the cluster is behind NAT.
	WANAddr    netip.Prefix `json:"wanAddr,omitzero"`
	PodSlice   netip.Prefix `json:"podSlice"`
	PodGateway netip.Prefix `json:"podGateway"` // address of the node's pod bridge
	Pods       []PodPlan    `json:"pods"`
}

// PodPlan is one pod's addressing.
type PodPlan struct {
	Name      string       `json:"name"` // "n1-p1"
	Index     int          `json:"index"`
	Namespace string       `json:"namespace"`
	Addr      netip.Prefix `json:"addr"`
	Gateway   netip.Addr   `json:"gateway"`
}

// host returns the address with the given host number in a /24.
func host(p netip.Prefix, h int) netip.Addr {
	a := p.Masked().Addr().As4()
	a[3] = byte(h)
	return netip.AddrFrom4(a)
}

func v4Prefix(a, b, c int, bits int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a), byte(b), byte(c), 0}), bits)
}

// Address plan formulas; n is the cluster index, i the node index.
func lanPrefix(n int) netip.Prefix       { return v4Prefix(198, 19, n, 24) }
func natInsidePrefix(n int) netip.Prefix { return v4Prefix(198, 18, n, 24) }
func withLen(a netip.Addr, p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(a, p.Bits())
}

// NewPlan applies defaults to t, validates it and computes the plan.
func NewPlan(t Topology) (*Plan, error) {
	t = t.WithDefaults()
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("invalid topology: %w", err)
	}
	names := Names{Lab: t.Name}
	p := &Plan{
		Lab:      t.Name,
		Topology: t,
		WAN: WANPlan{
			Namespace: names.WAN(), Prefix: WANPrefix,
			Delay: time.Duration(t.WAN.Delay), Jitter: time.Duration(t.WAN.Jitter), Loss: t.WAN.Loss,
		},
		Control: ControlPlan{Namespace: names.Ctl(), Prefix: ControlPrefix, Addr: ControlAddr},
	}
	for k, c := range t.Clusters {
		n := k + 1
		pod := netip.MustParsePrefix(c.PodCIDR) // validated
		cp := ClusterPlan{
			Name: c.Name, Index: n, PodCIDR: pod, ServiceCIDR: netip.MustParsePrefix(c.ServiceCIDR),
			LAN: lanPrefix(n), LANNamespace: names.LAN(c.Name),
		}
		if c.NAT {
			inside := natInsidePrefix(n)
			cp.Router = &RouterPlan{
				Namespace:  names.Router(c.Name),
				WANAddr:    withLen(host(WANPrefix, 10*n), WANPrefix),
				Inside:     inside,
				InsideAddr: withLen(host(inside, 1), inside),
			}
		}
		gw := map[int]bool{}
		for _, g := range c.Gateways {
			gw[g] = true
		}
		for i := 1; i <= c.Nodes; i++ {
			slice, err := podSlice(pod, i)
			if err != nil {
				return nil, fmt.Errorf("cluster %s node %d: %w", c.Name, i, err)
			}
			np := NodePlan{
				Name: NodeName(i), Index: i, Namespace: names.Node(c.Name, i), Gateway: gw[i],
				LANAddr:    withLen(host(cp.LAN, 10+i), cp.LAN),
				CtlAddr:    withLen(host(ControlPrefix, 10*n+i), ControlPrefix),
				PodSlice:   slice,
				PodGateway: withLen(host(slice, 1), slice),
			}
			if np.Gateway {
				if cp.Router != nil {
					np.WANAddr = withLen(host(cp.Router.Inside, 10+i), cp.Router.Inside)
				} else {
					np.WANAddr = withLen(host(WANPrefix, 10*n+i), WANPrefix)
				}
			}
			for j := 1; j <= *c.PodsPerNode; j++ {
				np.Pods = append(np.Pods, PodPlan{
					Name: PodName(i, j), Index: j, Namespace: names.Pod(c.Name, i, j),
					Addr: withLen(host(slice, 1+j), slice), Gateway: host(slice, 1),
				})
			}
			cp.Nodes = append(cp.Nodes, np)
		}
		p.Clusters = append(p.Clusters, cp)
	}
	p.Steps = p.steps()
	if err := checkSteps(p.Steps); err != nil {
		return nil, fmt.Errorf("plan for lab %s: %w", p.Lab, err)
	}
	return p, nil
}

// steps derives the ordered build steps from the addressing.
func (p *Plan) steps() []Step {
	var ns, bridges, veths, addrs, routes, last []Step
	forward := func(name string) {
		ns = append(ns, CreateNamespace{name}, SetSysctl{NS: name, Key: "net.ipv4.ip_forward", Value: "1"})
	}
	ns = append(ns, CreateNamespace{p.WAN.Namespace}, CreateNamespace{p.Control.Namespace})
	bridges = append(bridges, AddBridge{p.WAN.Namespace, IfSwitch}, AddBridge{p.Control.Namespace, IfSwitch})
	addrs = append(addrs, AddAddress{p.Control.Namespace, IfSwitch, p.Control.Addr})
	var wanPorts []string
	for _, c := range p.Clusters {
		ns = append(ns, CreateNamespace{c.LANNamespace})
		bridges = append(bridges, AddBridge{c.LANNamespace, IfSwitch})
		if r := c.Router; r != nil {
			forward(r.Namespace)
			bridges = append(bridges, AddBridge{r.Namespace, IfNATInside})
			port := c.Name + "-rtr"
			wanPorts = append(wanPorts, port)
			veths = append(veths, AddVeth{NS: p.WAN.Namespace, Name: port, Master: IfSwitch, PeerNS: r.Namespace, PeerName: IfWAN})
			addrs = append(addrs, AddAddress{r.Namespace, IfNATInside, r.InsideAddr}, AddAddress{r.Namespace, IfWAN, r.WANAddr})
			last = append(last, AddMasquerade{NS: r.Namespace, Source: r.Inside, InDev: IfNATInside, OutDev: IfWAN})
		}
		for _, nd := range c.Nodes {
			forward(nd.Namespace)
			bridges = append(bridges, AddBridge{nd.Namespace, IfPodBridge})
			addrs = append(addrs, AddAddress{nd.Namespace, IfPodBridge, nd.PodGateway})
			veths = append(veths,
				AddVeth{NS: c.LANNamespace, Name: nd.Name, Master: IfSwitch, PeerNS: nd.Namespace, PeerName: IfLAN},
				AddVeth{NS: p.Control.Namespace, Name: c.Name + "-" + nd.Name, Master: IfSwitch, PeerNS: nd.Namespace, PeerName: IfCtl},
			)
			addrs = append(addrs, AddAddress{nd.Namespace, IfLAN, nd.LANAddr}, AddAddress{nd.Namespace, IfCtl, nd.CtlAddr})
			if nd.Gateway {
				if r := c.Router; r != nil {
					veths = append(veths, AddVeth{NS: r.Namespace, Name: nd.Name, Master: IfNATInside, PeerNS: nd.Namespace, PeerName: IfWAN})
					routes = append(routes, AddRoute{NS: nd.Namespace, Dst: WANPrefix, Via: r.InsideAddr.Addr(), Dev: IfWAN})
				} else {
					port := c.Name + "-" + nd.Name
					wanPorts = append(wanPorts, port)
					veths = append(veths, AddVeth{NS: p.WAN.Namespace, Name: port, Master: IfSwitch, PeerNS: nd.Namespace, PeerName: IfWAN})
				}
				addrs = append(addrs, AddAddress{nd.Namespace, IfWAN, nd.WANAddr})
			}
			// Pod slices of the cluster's other nodes, via their LAN address.
			for _, other := range c.Nodes {
				if other.Index != nd.Index {
					routes = append(routes, AddRoute{NS: nd.Namespace, Dst: other.PodSlice, Via: other.LANAddr.Addr(), Dev: IfLAN})
				}
			}
			for _, pd := range nd.Pods {
				ns = append(ns, CreateNamespace{pd.Namespace})
				veths = append(veths, AddVeth{NS: nd.Namespace, Name: "p" + strconv.Itoa(pd.Index), Master: IfPodBridge, PeerNS: pd.Namespace, PeerName: IfPod})
				addrs = append(addrs, AddAddress{pd.Namespace, IfPod, pd.Addr})
				routes = append(routes, AddRoute{NS: pd.Namespace, Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: pd.Gateway, Dev: IfPod})
			}
		}
	}
	if p.WAN.Delay > 0 || p.WAN.Loss > 0 {
		var shaping []Step
		for _, port := range wanPorts {
			shaping = append(shaping, AddNetem{NS: p.WAN.Namespace, Dev: port, Delay: p.WAN.Delay, Jitter: p.WAN.Jitter, Loss: p.WAN.Loss})
		}
		last = append(shaping, last...)
	}
	var all []Step
	for _, phase := range [][]Step{ns, bridges, veths, addrs, routes, last} {
		all = append(all, phase...)
	}
	return all
}

// checkSteps is a safety net over the naming scheme: unique namespaces,
// unique interface names per namespace, all within 15 characters.
func checkSteps(steps []Step) error {
	nss := map[string]bool{}
	ifs := map[string]bool{}
	addIf := func(ns, name string) error {
		if len(name) > 15 || name == "" || strings.ContainsAny(name, "/ \t\n:") {
			return fmt.Errorf("interface name %q in %s is not a valid Linux interface name (at most 15 characters)", name, ns)
		}
		if ifs[ns+"\x00"+name] {
			return fmt.Errorf("interface name %q used twice in namespace %s", name, ns)
		}
		ifs[ns+"\x00"+name] = true
		return nil
	}
	for _, s := range steps {
		switch s := s.(type) {
		case CreateNamespace:
			if nss[s.Name] {
				return fmt.Errorf("namespace %s planned twice", s.Name)
			}
			nss[s.Name] = true
		case AddBridge:
			if err := addIf(s.NS, s.Name); err != nil {
				return err
			}
		case AddVeth:
			if err := addIf(s.NS, s.Name); err != nil {
				return err
			}
			if err := addIf(s.PeerNS, s.PeerName); err != nil {
				return err
			}
		}
	}
	return nil
}

// String is the plan as text: one step per line, in build order. The
// golden test of the default topology compares against it.
func (p *Plan) String() string {
	var b strings.Builder
	for _, s := range p.Steps {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Namespaces lists every namespace of the plan in creation order.
func (p *Plan) Namespaces() []string {
	var out []string
	for _, s := range p.Steps {
		if c, ok := s.(CreateNamespace); ok {
			out = append(out, c.Name)
		}
	}
	return out
}

// Cluster finds a cluster by name.
func (p *Plan) Cluster(name string) (*ClusterPlan, bool) {
	for k := range p.Clusters {
		if p.Clusters[k].Name == name {
			return &p.Clusters[k], true
		}
	}
	return nil, false
}

// Place is a resolved [Target]: its namespace and main address.
type Place struct {
	Target    Target
	Namespace string
	// Addr is the address others reach it by: a pod's address, a node's
	// LAN address, a router's WAN address, the control address. Invalid for
	// the WAN and LAN switch namespaces, which have none.
	Addr netip.Addr
}

// Resolve finds a target in the plan.
func (p *Plan) Resolve(t Target) (Place, error) {
	names := Names{Lab: p.Lab}
	pl := Place{Target: t, Namespace: names.Namespace(t)}
	switch t.Kind {
	case TargetWAN:
		return pl, nil
	case TargetCtl:
		pl.Addr = p.Control.Addr.Addr()
		return pl, nil
	}
	c, ok := p.Cluster(t.Cluster)
	if !ok {
		return Place{}, fmt.Errorf("target %s: lab %s has no cluster %q", t, p.Lab, t.Cluster)
	}
	switch t.Kind {
	case TargetLAN:
		return pl, nil
	case TargetRouter:
		if c.Router == nil {
			return Place{}, fmt.Errorf("target %s: cluster %s is not behind NAT (no router)", t, c.Name)
		}
		pl.Addr = c.Router.WANAddr.Addr()
		return pl, nil
	}
	if t.Node < 1 || t.Node > len(c.Nodes) {
		return Place{}, fmt.Errorf("target %s: cluster %s has nodes n1..n%d", t, c.Name, len(c.Nodes))
	}
	nd := c.Nodes[t.Node-1]
	if t.Kind == TargetNode {
		pl.Addr = nd.LANAddr.Addr()
		return pl, nil
	}
	if t.Pod < 1 || t.Pod > len(nd.Pods) {
		return Place{}, fmt.Errorf("target %s: node %s/%s has %d pods", t, c.Name, nd.Name, len(nd.Pods))
	}
	pl.Addr = nd.Pods[t.Pod-1].Addr.Addr()
	return pl, nil
}
