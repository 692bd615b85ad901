package validate

import (
	"fmt"
	"net/netip"
	"strconv"

	brokerv1alpha1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/cidr"
)

// ServiceExport validates a service export against its cluster (nil when
// the broker does not know the cluster, which is an error).
//
// Beyond syntax: a ClusterSetIP export has at least one port, 1 to
// MaxServiceIPs IPs (at most one per family) and no endpoints; a headless
// export has no IPs; every address lies inside what other clusters route to
// the exporting cluster (see the package documentation); port names are
// unique and required when there is more than one port; (port, protocol)
// pairs, hostnames and endpoint addresses are unique; created is set.
func ServiceExport(se *brokerv1alpha1.ServiceExport, cluster *brokerv1alpha1.Cluster) error {
	var col collector
	if se == nil {
		col.add("", "", "service export record is missing")
		return col.err()
	}
	checkOwner(&col, se.GetClusterId(), cluster)
	if r := checkLabel(se.GetNamespace()); r != "" {
		col.add("namespace", se.GetNamespace(), r)
	}
	if r := checkDNS1035Label(se.GetName()); r != "" {
		col.add("name", se.GetName(), r)
	}

	typ := se.GetType()
	switch typ {
	case brokerv1alpha1.ServiceType_SERVICE_TYPE_CLUSTER_SET_IP, brokerv1alpha1.ServiceType_SERVICE_TYPE_HEADLESS:
	case brokerv1alpha1.ServiceType_SERVICE_TYPE_UNSPECIFIED:
		col.add("type", "", "is required (ClusterSetIP or Headless)")
	default:
		col.add("type", strconv.Itoa(int(typ)), "is not a known service type")
	}
	headless := typ == brokerv1alpha1.ServiceType_SERVICE_TYPE_HEADLESS

	checkPorts(&col, se.GetPorts(), typ == brokerv1alpha1.ServiceType_SERVICE_TYPE_CLUSTER_SET_IP)

	var allowed []netip.Prefix
	var what string
	checkRoutes := false
	if cluster != nil && cluster.GetId() == se.GetClusterId() {
		allowed, what, checkRoutes = routable(cluster)
	}
	inside := func(field string, a netip.Addr) {
		if checkRoutes && !cidr.ContainsAddr(allowed, a) {
			col.add(field, a.String(), "is not inside "+what)
		}
	}

	ips := se.GetIps()
	switch {
	case headless && len(ips) > 0:
		col.add("ips", "", "must be empty for a headless export")
	case typ == brokerv1alpha1.ServiceType_SERVICE_TYPE_CLUSTER_SET_IP && len(ips) == 0:
		col.add("ips", "", "needs at least one IP for a ClusterSetIP export")
	case len(ips) > MaxServiceIPs:
		col.addf("ips", "", "has %d entries, at most %d allowed", len(ips), MaxServiceIPs)
	default:
		var v4, v6 bool
		for i, s := range ips {
			field := fmt.Sprintf("ips[%d]", i)
			a, ok := parseIP(&col, field, s)
			if !ok {
				continue
			}
			seen := &v6
			if a.Is4() {
				seen = &v4
			}
			if *seen {
				col.add(field, s, "is a second address of the same IP family")
			}
			*seen = true
			inside(field, a)
		}
	}

	eps := se.GetEndpoints()
	switch {
	case !headless && len(eps) > 0:
		col.add("endpoints", "", "must be empty unless the export is headless")
	case len(eps) > MaxExportEndpoints:
		col.addf("endpoints", "", "has %d entries, at most %d allowed", len(eps), MaxExportEndpoints)
	default:
		total := 0
		for _, ep := range eps {
			total += len(ep.GetIps())
		}
		if total > MaxExportAddresses {
			col.addf("endpoints", "", "have %d addresses in total, at most %d allowed", total, MaxExportAddresses)
			break
		}
		hostnames := map[string]int{}
		addrs := map[netip.Addr]string{}
		for i, ep := range eps {
			if col.full() {
				break
			}
			base := fmt.Sprintf("endpoints[%d]", i)
			if h := ep.GetHostname(); h != "" {
				if r := checkLabel(h); r != "" {
					col.add(base+".hostname", h, r)
				} else if j, dup := hostnames[h]; dup {
					col.addf(base+".hostname", h, "duplicates endpoints[%d].hostname", j)
				} else {
					hostnames[h] = i
				}
			}
			eips := ep.GetIps()
			switch {
			case len(eips) == 0:
				col.add(base+".ips", "", "needs at least one IP")
				continue
			case len(eips) > MaxEndpointIPs:
				col.addf(base+".ips", "", "has %d entries, at most %d allowed", len(eips), MaxEndpointIPs)
				continue
			}
			for j, s := range eips {
				field := fmt.Sprintf("%s.ips[%d]", base, j)
				a, ok := parseIP(&col, field, s)
				if !ok {
					continue
				}
				if prev, dup := addrs[a]; dup {
					col.addf(field, s, "duplicates %s", prev)
					continue
				}
				addrs[a] = field
				inside(field, a)
			}
		}
	}

	if c := se.GetCreated(); c == nil {
		col.add("created", "", "is required (the MCS conflict rule orders exports by it)")
	} else if err := c.CheckValid(); err != nil {
		col.add("created", "", "is not a valid timestamp: "+err.Error())
	}

	switch aff, timeout := se.GetSessionAffinity(), se.GetSessionAffinityTimeoutSeconds(); aff {
	case brokerv1alpha1.SessionAffinity_SESSION_AFFINITY_UNSPECIFIED:
		if timeout != 0 {
			col.add("session_affinity_timeout_seconds", strconv.FormatUint(uint64(timeout), 10), "must be 0 without ClientIP session affinity")
		}
	case brokerv1alpha1.SessionAffinity_SESSION_AFFINITY_CLIENT_IP:
		if timeout > MaxSessionAffinityTimeout {
			col.addf("session_affinity_timeout_seconds", strconv.FormatUint(uint64(timeout), 10), "is longer than %d", MaxSessionAffinityTimeout)
		}
	default:
		col.add("session_affinity", strconv.Itoa(int(aff)), "is not a known session affinity")
	}
	return col.err()
}

// checkPorts validates the ports of an export.
func checkPorts(col *collector, ports []*brokerv1alpha1.ServicePort, required bool) {
	switch {
	case len(ports) == 0 && required:
		col.add("ports", "", "needs at least one port for a ClusterSetIP export")
		return
	case len(ports) > MaxPorts:
		col.addf("ports", "", "has %d entries, at most %d allowed", len(ports), MaxPorts)
		return
	}
	type key struct {
		port  uint32
		proto brokerv1alpha1.Protocol
	}
	names := map[string]int{}
	pairs := map[key]int{}
	for i, p := range ports {
		if col.full() {
			return
		}
		base := fmt.Sprintf("ports[%d]", i)
		switch name := p.GetName(); {
		case name == "" && len(ports) > 1:
			col.add(base+".name", "", "is required when the export has more than one port")
		case name == "":
		case checkLabel(name) != "":
			col.add(base+".name", name, checkLabel(name))
		default:
			if j, dup := names[name]; dup {
				col.addf(base+".name", name, "duplicates ports[%d].name", j)
			} else {
				names[name] = i
			}
		}
		proto := p.GetProtocol()
		switch _, known := brokerv1alpha1.Protocol_name[int32(proto)]; {
		case proto == brokerv1alpha1.Protocol_PROTOCOL_UNSPECIFIED:
			col.add(base+".protocol", "", "is required (TCP, UDP or SCTP)")
		case !known:
			col.add(base+".protocol", strconv.Itoa(int(proto)), "is not a known protocol")
		}
		port := p.GetPort()
		if port < 1 || port > 65535 {
			col.add(base+".port", strconv.FormatUint(uint64(port), 10), "is not a port number (want 1-65535)")
		} else if j, dup := pairs[key{port, proto}]; dup {
			col.addf(base+".port", strconv.FormatUint(uint64(port), 10), "duplicates ports[%d] (same port and protocol)", j)
		} else {
			pairs[key{port, proto}] = i
		}
		if ap := p.GetAppProtocol(); ap != "" {
			if r := checkQualifiedName(ap); r != "" {
				col.add(base+".app_protocol", ap, r)
			}
		}
	}
}
