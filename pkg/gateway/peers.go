package gateway

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	brokerv1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/broker/validate"
	"github.com/weftnet/weft/pkg/cidr"
	"github.com/weftnet/weft/pkg/wireguard"
)

// PeerOptions are the local facts [ComputeRemotes] needs.
type PeerOptions struct {
	// ClusterID is the local cluster; its records are skipped.
	ClusterID string
	// LocalCIDRs are the local pod and service CIDRs; a remote whose
	// subnets overlap them is rejected (it would steal local traffic).
	LocalCIDRs []netip.Prefix
	// Keepalive of every peer.
	Keepalive time.Duration
}

// Remote is one remote cluster as the gateway peers with it.
type Remote struct {
	ClusterID  string
	GlobalCIDR string
	// Endpoint is the chosen gateway record of the cluster.
	Endpoint *brokerv1.Endpoint
	// Subnets are the endpoint's validated subnets (the peer's AllowedIPs).
	Subnets []netip.Prefix
	// HealthCheckIP is the address probed through the tunnel; invalid when
	// the remote publishes none.
	HealthCheckIP netip.Addr
	// Peer is the WireGuard peer for the cluster.
	Peer wireguard.Peer
}

// Rejection is a remote record the gateway skipped, and why.
type Rejection struct {
	// Record is the broker record: "endpoint/<cluster>/<gateway>" or
	// "cluster/<id>".
	Record    string
	ClusterID string
	Reason    string
}

func (r Rejection) String() string { return r.Record + ": " + r.Reason }

// Remotes is the desired peering: one Remote per remote cluster, sorted by
// cluster id, and the records that were skipped, sorted by record.
type Remotes struct {
	Clusters []Remote
	Rejected []Rejection
}

// Peers returns the WireGuard peers, one per remote cluster, in cluster id
// order.
func (r Remotes) Peers() []wireguard.Peer {
	out := make([]wireguard.Peer, 0, len(r.Clusters))
	for _, c := range r.Clusters {
		out = append(out, c.Peer)
	}
	return out
}

// Cluster returns the Remote of a cluster id.
func (r Remotes) Cluster(id string) (Remote, bool) {
	for _, c := range r.Clusters {
		if c.ClusterID == id {
			return c, true
		}
	}
	return Remote{}, false
}

// String prints the peering as sorted text lines, for tests and logs.
func (r Remotes) String() string {
	var lines []string
	for _, c := range r.Clusters {
		l := fmt.Sprintf("%s via %s: %s", c.ClusterID, c.Endpoint.GetGateway(), c.Peer)
		if c.HealthCheckIP.IsValid() {
			l += " health=" + c.HealthCheckIP.String()
		}
		lines = append(lines, l)
	}
	for _, x := range r.Rejected {
		lines = append(lines, "rejected "+x.String())
	}
	return strings.Join(lines, "\n")
}

// ComputeRemotes derives the desired peering from a member's view of the
// broker. It is pure and deterministic:
//
//   - the local cluster's records are skipped;
//   - every other endpoint is validated against its cluster's record
//     ([validate.Endpoint]: key, addresses, subnets inside the cluster's
//     CIDRs or global CIDR, no default route...); failures are rejected;
//   - of a cluster's valid endpoints the one with the smallest gateway name
//     is used (normally there is one: a new active gateway withdraws its
//     predecessor's);
//   - a cluster whose subnets overlap the local CIDRs, or those of a remote
//     cluster earlier in id order, is rejected;
//   - the peer dials public_ip:port when public_ip is set, else
//     private_ip:port, with AllowedIPs = the endpoint's subnets.
func ComputeRemotes(st *client.State, o PeerOptions) Remotes {
	var out Remotes
	if st == nil {
		return out
	}
	for rec, reason := range st.Rejected {
		// Cluster and endpoint records the member refused on receipt
		// ("cluster/<id>", "endpoint/<id>/<gateway>"); exports are not
		// the gateway's business.
		kind, rest, _ := strings.Cut(rec, "/")
		if kind != "cluster" && kind != "endpoint" {
			continue
		}
		id, _, _ := strings.Cut(rest, "/")
		if id == o.ClusterID {
			continue
		}
		out.Rejected = append(out.Rejected, Rejection{Record: rec, ClusterID: id, Reason: reason})
	}
	candidates := map[string][]*brokerv1.Endpoint{}
	for key, ep := range st.Endpoints {
		id := ep.GetClusterId()
		if id == o.ClusterID {
			continue
		}
		rec := "endpoint/" + key
		c, ok := st.Clusters[id]
		if !ok {
			out.Rejected = append(out.Rejected, Rejection{Record: rec, ClusterID: id, Reason: "no valid cluster record"})
			continue
		}
		if err := validate.Endpoint(ep, c); err != nil {
			out.Rejected = append(out.Rejected, Rejection{Record: rec, ClusterID: id, Reason: err.Error()})
			continue
		}
		candidates[id] = append(candidates[id], ep)
	}
	ids := make([]string, 0, len(candidates))
	for id := range candidates {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	taken := map[string][]netip.Prefix{} // cluster id -> subnets accepted
	for _, id := range ids {
		eps := candidates[id]
		slices.SortFunc(eps, func(a, b *brokerv1.Endpoint) int { return cmp.Compare(a.GetGateway(), b.GetGateway()) })
		ep := eps[0]
		rec := "endpoint/" + id + "/" + ep.GetGateway()
		r, err := remoteFromEndpoint(ep, st.Clusters[id].GetGlobalCidr(), o.Keepalive)
		if err != nil { // validated above: unreachable unless validate is lax
			out.Rejected = append(out.Rejected, Rejection{Record: rec, ClusterID: id, Reason: err.Error()})
			continue
		}
		if p, ok := cidr.Overlap(r.Subnets, o.LocalCIDRs); ok {
			out.Rejected = append(out.Rejected, Rejection{Record: rec, ClusterID: id,
				Reason: fmt.Sprintf("subnet %s overlaps local CIDR %s (overlapping clusters need globalnet)", p.A, p.B)})
			continue
		}
		conflict := ""
		for _, other := range slices.Sorted(mapsKeys(taken)) {
			if p, ok := cidr.Overlap(r.Subnets, taken[other]); ok {
				conflict = fmt.Sprintf("subnet %s overlaps %s of cluster %q", p.A, p.B, other)
				break
			}
		}
		if conflict != "" {
			out.Rejected = append(out.Rejected, Rejection{Record: rec, ClusterID: id, Reason: conflict})
			continue
		}
		taken[id] = r.Subnets
		out.Clusters = append(out.Clusters, r)
	}
	slices.SortFunc(out.Rejected, func(a, b Rejection) int { return cmp.Compare(a.Record, b.Record) })
	return out
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// remoteFromEndpoint builds the Remote of a (validated) endpoint record.
func remoteFromEndpoint(ep *brokerv1.Endpoint, globalCIDR string, keepalive time.Duration) (Remote, error) {
	r := Remote{ClusterID: ep.GetClusterId(), GlobalCIDR: globalCIDR, Endpoint: ep}
	if len(ep.GetPublicKey()) != wireguard.KeyLen {
		return Remote{}, fmt.Errorf("public_key: %d bytes, want %d", len(ep.GetPublicKey()), wireguard.KeyLen)
	}
	r.Peer.PublicKey = wireguard.PublicKey(ep.GetPublicKey())
	for i, s := range ep.GetSubnets() {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Remote{}, fmt.Errorf("subnets[%d]: %w", i, err)
		}
		r.Subnets = append(r.Subnets, p.Masked())
	}
	if len(r.Subnets) == 0 {
		return Remote{}, fmt.Errorf("subnets: empty")
	}
	r.Peer.AllowedIPs = slices.Clone(r.Subnets)
	dial := ep.GetPublicIp()
	if dial == "" {
		dial = ep.GetPrivateIp()
	}
	a, err := netip.ParseAddr(dial)
	if err != nil {
		return Remote{}, fmt.Errorf("endpoint address %q: %w", dial, err)
	}
	if ep.GetPort() < 1 || ep.GetPort() > 65535 {
		return Remote{}, fmt.Errorf("port %d: out of range", ep.GetPort())
	}
	r.Peer.Endpoint = netip.AddrPortFrom(a, uint16(ep.GetPort()))
	r.Peer.PersistentKeepalive = keepalive
	if s := ep.GetHealthCheckIp(); s != "" {
		if h, err := netip.ParseAddr(s); err == nil {
			r.HealthCheckIP = h
		}
	}
	return r, nil
}

// RemotesFromObjects rebuilds the peering from RemoteCluster objects a
// former active gateway wrote: the data plane comes up before (or without)
// the broker. Objects that do not parse are rejected.
func RemotesFromObjects(items []weftv1.RemoteCluster, o PeerOptions) Remotes {
	st := &client.State{Clusters: map[string]*brokerv1.Cluster{}, Endpoints: map[string]*brokerv1.Endpoint{}, Rejected: map[string]string{}}
	var bad []Rejection
	for _, rc := range items {
		id := rc.Spec.ClusterID
		key, err := base64.StdEncoding.DecodeString(rc.Spec.Endpoint.PublicKey)
		if err != nil {
			bad = append(bad, Rejection{Record: "remotecluster/" + rc.Name, ClusterID: id, Reason: fmt.Sprintf("endpoint.publicKey: %v", err)})
			continue
		}
		ep := &brokerv1.Endpoint{
			ClusterId: id, Gateway: rc.Spec.Endpoint.Gateway, PublicKey: key,
			PrivateIp: rc.Spec.Endpoint.PrivateIP, PublicIp: rc.Spec.Endpoint.PublicIP,
			Port: uint32(rc.Spec.Endpoint.Port), Subnets: rc.Spec.Subnets,
			HealthCheckIp: rc.Spec.Endpoint.HealthCheckIP, Backend: backendFromString(rc.Spec.Endpoint.Backend),
		}
		// The subnets are the cluster's routable set as validated when the
		// object was written; the global CIDR, when set, is one of them.
		c := &brokerv1.Cluster{Id: id, GlobalCidr: rc.Spec.GlobalCIDR, Globalnet: rc.Spec.GlobalCIDR != ""}
		if !c.Globalnet {
			c.PodCidrs = rc.Spec.Subnets
		}
		st.Clusters[id] = c
		st.Endpoints[id+"/"+ep.Gateway] = ep
	}
	r := ComputeRemotes(st, o)
	r.Rejected = append(r.Rejected, bad...)
	slices.SortFunc(r.Rejected, func(a, b Rejection) int { return cmp.Compare(a.Record, b.Record) })
	return r
}

// backendFromString maps "kernel"/"userspace" to the broker enum.
func backendFromString(s string) brokerv1.Backend {
	switch wireguard.Backend(s) {
	case wireguard.BackendKernel:
		return brokerv1.Backend_BACKEND_KERNEL
	case wireguard.BackendUserspace:
		return brokerv1.Backend_BACKEND_USERSPACE
	}
	return brokerv1.Backend_BACKEND_UNSPECIFIED
}

// backendString maps the broker enum to "kernel"/"userspace" ("" unknown).
func backendString(b brokerv1.Backend) string {
	switch b {
	case brokerv1.Backend_BACKEND_KERNEL:
		return string(wireguard.BackendKernel)
	case brokerv1.Backend_BACKEND_USERSPACE:
		return string(wireguard.BackendUserspace)
	}
	return ""
}

// endpointSpec is the CRD form of an endpoint record.
func endpointSpec(ep *brokerv1.Endpoint) weftv1.EndpointSpec {
	if ep == nil {
		return weftv1.EndpointSpec{}
	}
	s := weftv1.EndpointSpec{
		Gateway: ep.GetGateway(), PrivateIP: ep.GetPrivateIp(), PublicIP: ep.GetPublicIp(),
		Port: int32(ep.GetPort()), HealthCheckIP: ep.GetHealthCheckIp(), Backend: backendString(ep.GetBackend()),
	}
	if len(ep.GetPublicKey()) > 0 {
		s.PublicKey = base64.StdEncoding.EncodeToString(ep.GetPublicKey())
	}
	return s
}
