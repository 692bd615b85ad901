// Package validate checks the broker's records (pkg/apis/broker/v1alpha1)
// before they are stored and again when members receive them (defence in
// depth): a record that passes is safe to turn into WireGuard peers, routes
// and Kubernetes objects.
//
// Validation is pure. It takes the record plus a read-only view of what it
// depends on (the record's own cluster, the other clusters) and returns nil
// or [Errors], a list of [*FieldError] naming the field path, the offending
// value, the reason and, for overlapping CIDRs, the conflicting cluster id;
// the broker maps it to gRPC INVALID_ARGUMENT. Every list and string has a
// size limit (the Max* constants), checked before the elements are looked
// at, so validation work is bounded by the limits, not by the input.
//
// The rules:
//
//   - cluster ids are DNS-1123 labels; CIDRs and IP addresses are canonical
//     and pass pkg/cidr's checks (no default route, nothing over-broad, no
//     loopback/link-local/multicast/unspecified space);
//   - a cluster's CIDRs do not overlap each other, nor another cluster's
//     pod/service CIDRs unless both clusters use globalnet; global CIDRs
//     overlap nothing of any other cluster;
//   - what a cluster advertises must be routable to it: endpoint subnets,
//     the health-check address and exported service addresses lie inside the
//     cluster's pod/service CIDRs, or, for a globalnet cluster, inside its
//     global CIDR (its real CIDRs may overlap other clusters', so they must
//     never become another gateway's WireGuard AllowedIPs);
//   - WireGuard public keys are 32 bytes and not all zero; ports are 1-65535;
//   - service exports follow Kubernetes: namespace a DNS-1123 label, name a
//     DNS-1035 label, port names DNS-1123 labels, appProtocol a qualified
//     name.
package validate

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"

	brokerv1alpha1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/cidr"
)

// Limits. Each bounds one list or string of a record.
const (
	// MaxLabelLen is the longest DNS-1123 label: cluster ids, namespaces,
	// service names, port names, headless hostnames.
	MaxLabelLen = 63
	// MaxNameLen is the longest DNS-1123 subdomain: gateway node names.
	MaxNameLen = 253
	// MaxAppProtocolLen is the longest appProtocol (253-character prefix,
	// '/', 63-character name).
	MaxAppProtocolLen = MaxNameLen + 1 + MaxLabelLen
	// MaxCIDRs is the most pod CIDRs, and separately the most service CIDRs,
	// of a cluster.
	MaxCIDRs = 32
	// MaxSubnets is the most subnets of an endpoint.
	MaxSubnets = 32
	// WireGuardKeyLen is the length of a WireGuard public key.
	WireGuardKeyLen = 32
	// MaxPorts is the most ports of a service export.
	MaxPorts = 1000
	// MaxServiceIPs is the most IPs of a ClusterSetIP export (one per family,
	// as Kubernetes clusterIPs).
	MaxServiceIPs = 2
	// MaxExportEndpoints is the most endpoints of a headless export.
	MaxExportEndpoints = 1000
	// MaxEndpointIPs is the most IPs of one headless endpoint (one per family,
	// as Kubernetes podIPs).
	MaxEndpointIPs = 2
	// MaxExportAddresses is the most endpoint IPs of a headless export in
	// total.
	MaxExportAddresses = 1000
	// MaxSessionAffinityTimeout is the longest ClientIP session affinity
	// timeout in seconds (the Kubernetes limit).
	MaxSessionAffinityTimeout = 86400
	// MaxErrors is the most field errors reported for one record.
	MaxErrors = 32
	// MaxValueLen is the longest FieldError.Value; longer values are
	// truncated.
	MaxValueLen = 64
)

// ---------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------

// Cluster validates a cluster record (as stored and streamed) against the
// other clusters of the clusterset. others may include c itself (same id,
// skipped) and nil entries; its CIDRs that do not parse are ignored (they
// were validated when stored).
func Cluster(c *brokerv1alpha1.Cluster, others []*brokerv1alpha1.Cluster) error {
	var col collector
	if c == nil {
		col.add("", "", "cluster record is missing")
		return col.err()
	}
	checkCluster(&col, clusterView{
		id:        c.GetId(),
		pods:      c.GetPodCidrs(),
		services:  c.GetServiceCidrs(),
		globalnet: c.GetGlobalnet(),
		global:    c.GetGlobalCidr(),
		record:    true,
	}, others)
	if ts := c.GetLastHeartbeat(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			col.add("last_heartbeat", "", "is not a valid timestamp: "+err.Error())
		}
	}
	if ts := c.GetJoined(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			col.add("joined", "", "is not a valid timestamp: "+err.Error())
		}
	}
	return col.err()
}

// ClusterInfo validates what a cluster declares at Join or PutCluster
// against the other clusters: the same rules as [Cluster], with
// wants_globalnet standing for globalnet and no global CIDR yet (a globalnet
// cluster's CIDRs are checked against others as if it already had one).
func ClusterInfo(ci *brokerv1alpha1.ClusterInfo, others []*brokerv1alpha1.Cluster) error {
	var col collector
	if ci == nil {
		col.add("", "", "cluster info is missing")
		return col.err()
	}
	checkCluster(&col, clusterView{
		id:        ci.GetId(),
		pods:      ci.GetPodCidrs(),
		services:  ci.GetServiceCidrs(),
		globalnet: ci.GetWantsGlobalnet(),
	}, others)
	return col.err()
}

// clusterView is the part of Cluster and ClusterInfo that checkCluster
// needs.
type clusterView struct {
	id        string
	pods      []string
	services  []string
	globalnet bool
	global    string
	record    bool // a Cluster record: global_cidr is checked
}

// namedPrefixes is a parsed CIDR list with its field name; idx maps each
// parsed prefix back to its index in the field.
type namedPrefixes struct {
	field    string
	scalar   bool // a single-valued field: paths carry no index
	prefixes []netip.Prefix
	idx      []int
}

// path returns the field path of the i-th parsed prefix.
func (n namedPrefixes) path(i int) string {
	if n.scalar {
		return n.field
	}
	return n.field + "[" + strconv.Itoa(n.idx[i]) + "]"
}

// checkCluster applies the cluster rules.
func checkCluster(col *collector, c clusterView, others []*brokerv1alpha1.Cluster) {
	if r := checkLabel(c.id); r != "" {
		col.add("id", c.id, r)
	}
	pods := parseCIDRList(col, "pod_cidrs", c.pods, MaxCIDRs, true)
	services := parseCIDRList(col, "service_cidrs", c.services, MaxCIDRs, true)
	checkNoOverlap(col, pods, services)

	var global namedPrefixes
	switch {
	case c.record && c.globalnet:
		if c.global == "" {
			col.add("global_cidr", "", "is required when globalnet is set")
		} else if p, err := cidr.ParsePrefix(c.global); err != nil {
			addCIDRError(col, "global_cidr", c.global, err)
		} else {
			global = namedPrefixes{field: "global_cidr", scalar: true, prefixes: []netip.Prefix{p}, idx: []int{0}}
			checkNoOverlap(col, global, pods)
			checkNoOverlap(col, global, services)
		}
	case c.record && c.global != "":
		col.add("global_cidr", c.global, "must be empty unless globalnet is set")
	}

	for _, o := range others {
		if o == nil || o.GetId() == c.id {
			continue
		}
		oPods := parseQuiet("pod_cidrs", o.GetPodCidrs())
		oServices := parseQuiet("service_cidrs", o.GetServiceCidrs())
		var oGlobal namedPrefixes
		if o.GetGlobalnet() {
			oGlobal = parseQuiet("global_cidr", []string{o.GetGlobalCidr()})
			oGlobal.scalar = true
		}
		// Real CIDRs may overlap only between two globalnet clusters.
		if !(c.globalnet && o.GetGlobalnet()) {
			for _, mine := range []namedPrefixes{pods, services} {
				for _, theirs := range []namedPrefixes{oPods, oServices} {
					checkConflict(col, mine, theirs, o.GetId())
				}
			}
		}
		// Global CIDRs are routed everywhere: they overlap nothing.
		for _, mine := range []namedPrefixes{pods, services, global} {
			checkConflict(col, mine, oGlobal, o.GetId())
		}
		for _, theirs := range []namedPrefixes{oPods, oServices} {
			checkConflict(col, global, theirs, o.GetId())
		}
		if col.full() {
			return
		}
	}
}

// parseCIDRList checks the length of a CIDR list and parses its elements,
// recording errors; it returns the prefixes that parsed. A list over the
// limit is not looked into.
func parseCIDRList(col *collector, field string, ss []string, max int, required bool) namedPrefixes {
	out := namedPrefixes{field: field}
	switch {
	case len(ss) == 0 && required:
		col.add(field, "", "needs at least one CIDR")
		return out
	case len(ss) > max:
		col.addf(field, "", "has %d entries, at most %d allowed", len(ss), max)
		return out
	}
	for i, s := range ss {
		p, err := cidr.ParsePrefix(s)
		if err != nil {
			addCIDRError(col, fmt.Sprintf("%s[%d]", field, i), s, err)
			continue
		}
		out.prefixes = append(out.prefixes, p)
		out.idx = append(out.idx, i)
	}
	if pair, ok := cidr.OverlapWithin(out.prefixes); ok {
		col.addf(out.path(pair.IndexB), pair.B.String(), "overlaps %s %s", out.path(pair.IndexA), pair.A)
	}
	return out
}

// parseQuiet parses another cluster's CIDRs, skipping what does not parse
// (and anything past the limit).
func parseQuiet(field string, ss []string) namedPrefixes {
	out := namedPrefixes{field: field}
	for i, s := range ss {
		if i == MaxCIDRs {
			break
		}
		if p, err := cidr.ParsePrefix(s); err == nil {
			out.prefixes = append(out.prefixes, p)
			out.idx = append(out.idx, i)
		}
	}
	return out
}

// addCIDRError records a pkg/cidr error, keeping its reason.
func addCIDRError(col *collector, field, value string, err error) {
	if ce, ok := err.(*cidr.Error); ok {
		col.add(field, value, ce.Reason)
		return
	}
	col.add(field, value, err.Error())
}

// checkNoOverlap records overlaps between two lists of the same record.
func checkNoOverlap(col *collector, a, b namedPrefixes) {
	if pair, ok := cidr.Overlap(a.prefixes, b.prefixes); ok {
		col.addf(a.path(pair.IndexA), pair.A.String(), "overlaps %s %s", b.path(pair.IndexB), pair.B)
	}
}

// checkConflict records the first overlap of each prefix of mine with
// another cluster's list.
func checkConflict(col *collector, mine, theirs namedPrefixes, other string) {
	if len(mine.prefixes) == 0 || len(theirs.prefixes) == 0 {
		return
	}
	for i, p := range mine.prefixes {
		pair, ok := cidr.Overlap([]netip.Prefix{p}, theirs.prefixes)
		if !ok {
			continue
		}
		col.addConflict(mine.path(i), p.String(),
			fmt.Sprintf("overlaps %s %s of cluster %q", theirs.path(pair.IndexB), pair.B, other), other)
	}
}

// routable returns the prefixes other clusters route to c: its global CIDR
// under globalnet, its pod and service CIDRs otherwise. Unparsable values
// are skipped. ok is false when c is nil.
func routable(c *brokerv1alpha1.Cluster) (ps []netip.Prefix, what string, ok bool) {
	if c == nil {
		return nil, "", false
	}
	if c.GetGlobalnet() {
		if p, err := cidr.ParsePrefix(c.GetGlobalCidr()); err == nil {
			ps = append(ps, p)
		}
		return ps, fmt.Sprintf("the global CIDR of cluster %q", c.GetId()), true
	}
	ps = append(ps, parseQuiet("", c.GetPodCidrs()).prefixes...)
	ps = append(ps, parseQuiet("", c.GetServiceCidrs()).prefixes...)
	return ps, fmt.Sprintf("the pod/service CIDRs of cluster %q", c.GetId()), true
}

// checkOwner validates a record's cluster_id against its cluster.
func checkOwner(col *collector, id string, cluster *brokerv1alpha1.Cluster) {
	switch {
	case checkLabel(id) != "":
		col.add("cluster_id", id, checkLabel(id))
	case cluster == nil:
		col.add("cluster_id", id, "is not a known cluster")
	case cluster.GetId() != id:
		col.addf("cluster_id", id, "does not match cluster %q", cluster.GetId())
	}
}

// parseIP parses an address field, recording errors.
func parseIP(col *collector, field, s string) (netip.Addr, bool) {
	a, err := cidr.ParseAddr(s)
	if err != nil {
		if ce, ok := err.(*cidr.Error); ok {
			col.add(field, s, ce.Reason)
		} else {
			col.add(field, s, err.Error())
		}
		return netip.Addr{}, false
	}
	return a, true
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

// Endpoint validates a gateway endpoint against its cluster (nil when the
// broker does not know the cluster, which is an error).
func Endpoint(ep *brokerv1alpha1.Endpoint, cluster *brokerv1alpha1.Cluster) error {
	var col collector
	if ep == nil {
		col.add("", "", "endpoint record is missing")
		return col.err()
	}
	checkOwner(&col, ep.GetClusterId(), cluster)
	if r := checkSubdomain(ep.GetGateway()); r != "" {
		col.add("gateway", ep.GetGateway(), r)
	}
	key := ep.GetPublicKey()
	switch {
	case len(key) != WireGuardKeyLen:
		col.addf("public_key", "", "is %d bytes, want %d", len(key), WireGuardKeyLen)
	case allZero(key):
		col.add("public_key", base64.StdEncoding.EncodeToString(key), "is all zero")
	}
	if ep.GetPrivateIp() == "" {
		col.add("private_ip", "", "is required")
	} else {
		parseIP(&col, "private_ip", ep.GetPrivateIp())
	}
	if ep.GetPublicIp() != "" {
		parseIP(&col, "public_ip", ep.GetPublicIp())
	}
	if p := ep.GetPort(); p < 1 || p > 65535 {
		col.add("port", strconv.FormatUint(uint64(p), 10), "is not a port number (want 1-65535)")
	}

	subnets := parseCIDRList(&col, "subnets", ep.GetSubnets(), MaxSubnets, true)
	if allowed, what, ok := routable(cluster); ok && cluster.GetId() == ep.GetClusterId() {
		for i, p := range subnets.prefixes {
			if _, _, out := cidr.Uncovered([]netip.Prefix{p}, allowed); out {
				col.add(subnets.path(i), p.String(), "is not inside "+what)
			}
		}
	}
	if s := ep.GetHealthCheckIp(); s != "" {
		if a, ok := parseIP(&col, "health_check_ip", s); ok && !cidr.ContainsAddr(subnets.prefixes, a) {
			col.add("health_check_ip", s, "is not inside the endpoint's subnets")
		}
	}
	if _, ok := brokerv1alpha1.Backend_name[int32(ep.GetBackend())]; !ok {
		col.add("backend", strconv.Itoa(int(ep.GetBackend())), "is not a known backend")
	}
	if _, ok := brokerv1alpha1.NatType_name[int32(ep.GetNatType())]; !ok {
		col.add("nat_type", strconv.Itoa(int(ep.GetNatType())), "is not a known NAT type")
	}
	return col.err()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
