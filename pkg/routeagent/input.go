package routeagent

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"

	weftv1alpha1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/netplan"
)

// Holder is the active gateway as the gateway Lease names it.
type Holder struct {
	// Node is the active gateway's node name (spec.holderIdentity).
	Node string
	// Expires is when the lease runs out unless it is renewed
	// (renewTime + leaseDurationSeconds).
	Expires time.Time
}

// ActiveGateway reads the gateway Lease at time now. ok is false when there
// is no active gateway (no lease, no holder, no renew time or duration, or
// an expired lease); reason then says why, for logs.
func ActiveGateway(l *coordinationv1.Lease, now time.Time) (h Holder, ok bool, reason string) {
	switch {
	case l == nil:
		return Holder{}, false, "no lease"
	case l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "":
		return Holder{}, false, "lease has no holder"
	case l.Spec.RenewTime == nil:
		return Holder{}, false, fmt.Sprintf("lease held by %s has no renewTime", *l.Spec.HolderIdentity)
	case l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds <= 0:
		return Holder{}, false, fmt.Sprintf("lease held by %s has no leaseDurationSeconds", *l.Spec.HolderIdentity)
	}
	h = Holder{
		Node:    *l.Spec.HolderIdentity,
		Expires: l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second),
	}
	if !now.Before(h.Expires) {
		return Holder{}, false, fmt.Sprintf("lease held by %s expired at %s", h.Node, h.Expires.UTC().Format(time.RFC3339Nano))
	}
	return h, true, ""
}

// NodeIP returns node's LAN IP: its first IPv4 InternalIP.
func NodeIP(node *corev1.Node) (netip.Addr, error) {
	var seen []string
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err == nil && ip.Is4() {
			return ip, nil
		}
		seen = append(seen, a.Address)
	}
	if len(seen) > 0 {
		return netip.Addr{}, fmt.Errorf("node %s: no IPv4 InternalIP among %v", node.Name, seen)
	}
	return netip.Addr{}, fmt.Errorf("node %s: no InternalIP in status.addresses", node.Name)
}

// PodNetworkAddr returns node's address on the pod network: override when
// it is valid, else the first host address of the node's IPv4 pod CIDR
// (spec.podCIDRs, or spec.podCIDR), e.g. 10.1.2.1 for 10.1.2.0/24.
func PodNetworkAddr(node *corev1.Node, override netip.Addr) (netip.Addr, error) {
	if override.IsValid() {
		return override, nil
	}
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	if len(cidrs) == 0 {
		return netip.Addr{}, fmt.Errorf("node %s: spec.podCIDR is not set (set the pod-network address explicitly)", node.Name)
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("node %s: spec.podCIDR %q: %w", node.Name, s, err)
		}
		if !p.Addr().Is4() {
			continue
		}
		if p.Bits() > 30 {
			return netip.Addr{}, fmt.Errorf("node %s: spec.podCIDR %s is too small to hold a pod-network address", node.Name, p)
		}
		return p.Masked().Addr().Next(), nil
	}
	return netip.Addr{}, fmt.Errorf("node %s: no IPv4 pod CIDR among %v", node.Name, cidrs)
}

// Config is the node-independent part of the route agent's configuration,
// with the values derived from the host already resolved.
type Config struct {
	// ClusterCIDRs are the local cluster's pod and service CIDRs.
	ClusterCIDRs []netip.Prefix
	// PodNetworkAddr overrides the pod-network address derived from the
	// node's pod CIDR; the zero Addr means derive.
	PodNetworkAddr netip.Addr
	// TunnelMTU is the tunnel MTU (resolved: not 0).
	TunnelMTU int
	// CNIInterface is where replies from remote clusters arrive on
	// non-gateway nodes; "" means none known.
	CNIInterface string
	// Params name weft's devices, table and rule priority.
	Params netplan.Params
}

// Input is what [BuildInput] maps to a [netplan.NodeInput].
type Input struct {
	// Node is this node (required).
	Node *corev1.Node
	// Gateway is the active gateway's node, nil when there is none; a node
	// with Node's name means this node is the active gateway.
	Gateway *corev1.Node
	// RemoteClusters are the RemoteCluster objects, in any order.
	RemoteClusters []weftv1alpha1.RemoteCluster
	Config         Config
}

// BuildInput computes the netplan input of in.Node. It is pure and
// deterministic (RemoteClusters may come in any order).
//
// Problems with one remote cluster or subnet do not fail the plan: a
// subnet that does not parse or that [netplan.Plan] rejects (overlapping
// the local CIDRs or another cluster's subnet, IPv6, over-broad, ...) is
// left out, as is a second object for a cluster id already seen (objects
// are taken in order of cluster id, then namespace/name, so the outcome
// does not depend on the listing order). An active gateway node without a
// usable InternalIP counts as no active gateway. Each such decision is
// described in notes. Objects being deleted are ignored.
//
// err is set only when this node itself cannot be planned (no usable
// InternalIP or pod-network address, a bad configuration).
func BuildInput(in Input) (_ netplan.NodeInput, notes []string, err error) {
	if in.Node == nil {
		return netplan.NodeInput{}, nil, errors.New("build input: no node")
	}
	nodeIP, err := NodeIP(in.Node)
	if err != nil {
		return netplan.NodeInput{}, nil, err
	}
	podAddr, err := PodNetworkAddr(in.Node, in.Config.PodNetworkAddr)
	if err != nil {
		return netplan.NodeInput{}, nil, err
	}
	c := in.Config
	base := netplan.NodeInput{
		Node:           in.Node.Name,
		NodeIP:         nodeIP,
		PodNetworkAddr: podAddr,
		LocalCIDRs:     slices.Clone(c.ClusterCIDRs),
		TunnelMTU:      c.TunnelMTU,
		CNIInterface:   c.CNIInterface,
		Params:         c.Params,
	}
	if gw := in.Gateway; gw != nil {
		if gw.Name == in.Node.Name {
			base.Gateway = true
		} else if ip, err := NodeIP(gw); err != nil {
			notes = append(notes, fmt.Sprintf("active gateway %s ignored: %v", gw.Name, err))
		} else {
			base.GatewayIP = ip
		}
	}
	if _, err := netplan.Plan(base); err != nil {
		if !base.GatewayIP.IsValid() {
			return netplan.NodeInput{}, notes, fmt.Errorf("plan node %s: %w", in.Node.Name, err)
		}
		noGW := base
		noGW.GatewayIP = netip.Addr{}
		if _, err2 := netplan.Plan(noGW); err2 != nil {
			return netplan.NodeInput{}, notes, fmt.Errorf("plan node %s: %w", in.Node.Name, err2)
		}
		notes = append(notes, fmt.Sprintf("active gateway %s (%s) ignored: %v", in.Gateway.Name, base.GatewayIP, err))
		base = noGW
	}

	cands, skipped := candidates(in.RemoteClusters)
	notes = append(notes, skipped...)
	full := base
	for _, cd := range cands {
		full.Remotes = append(full.Remotes, netplan.Remote{ClusterID: cd.id, Subnets: cd.subnets})
	}
	if _, err := netplan.Plan(full); err == nil {
		return full, notes, nil
	}
	// Something is rejected: admit subnets one at a time, in order, so
	// every rejection names its own reason and the rest is planned.
	out := base
	for _, cd := range cands {
		out.Remotes = append(out.Remotes, netplan.Remote{ClusterID: cd.id})
		last := &out.Remotes[len(out.Remotes)-1]
		for _, s := range cd.subnets {
			last.Subnets = append(last.Subnets, s)
			if _, err := netplan.Plan(out); err != nil {
				last.Subnets = last.Subnets[:len(last.Subnets)-1]
				notes = append(notes, fmt.Sprintf("RemoteCluster %s (cluster %s): subnet %s skipped: %v", cd.object, cd.id, s, err))
			}
		}
		if len(last.Subnets) == 0 {
			out.Remotes = out.Remotes[:len(out.Remotes)-1]
		}
	}
	return out, notes, nil
}

// candidate is one remote cluster's parsed subnets.
type candidate struct {
	object  string // namespace/name
	id      string
	subnets []netip.Prefix
}

// candidates orders the RemoteClusters, drops duplicates, objects being
// deleted and unparsable subnets, and reports what it dropped.
func candidates(rcs []weftv1alpha1.RemoteCluster) ([]candidate, []string) {
	sorted := make([]*weftv1alpha1.RemoteCluster, 0, len(rcs))
	for i := range rcs {
		if rcs[i].DeletionTimestamp == nil {
			sorted = append(sorted, &rcs[i])
		}
	}
	slices.SortFunc(sorted, func(a, b *weftv1alpha1.RemoteCluster) int {
		return cmp.Or(cmp.Compare(a.Spec.ClusterID, b.Spec.ClusterID),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var out []candidate
	var notes []string
	owner := map[string]string{}
	for _, rc := range sorted {
		obj := rc.Namespace + "/" + rc.Name
		id := rc.Spec.ClusterID
		if id == "" {
			notes = append(notes, fmt.Sprintf("RemoteCluster %s skipped: spec.clusterID is empty", obj))
			continue
		}
		if first, dup := owner[id]; dup {
			notes = append(notes, fmt.Sprintf("RemoteCluster %s skipped: cluster %s is already given by RemoteCluster %s", obj, id, first))
			continue
		}
		owner[id] = obj
		cd := candidate{object: obj, id: id}
		for i, s := range rc.Spec.Subnets {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				notes = append(notes, fmt.Sprintf("RemoteCluster %s (cluster %s): spec.subnets[%d] %q skipped: %v", obj, id, i, s, err))
				continue
			}
			cd.subnets = append(cd.subnets, p)
		}
		if len(cd.subnets) > 0 {
			out = append(out, cd)
		}
	}
	return out, notes
}
