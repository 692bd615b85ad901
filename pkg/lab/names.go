package lab

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Interface names used inside the lab's namespaces. They never appear in
// the host's namespace.
const (
	// IfLAN is a node's interface on its cluster LAN.
	IfLAN = "eth-lan"
	// IfWAN is a gateway's (or router's) interface towards the WAN.
	IfWAN = "eth-wan"
	// IfCtl is a node's interface on the control network.
	IfCtl = "eth-ctl"
	// IfPodBridge is a node's bridge holding its pods' veths.
	IfPodBridge = "cbr0"
	// IfPod is a pod's interface.
	IfPod = "eth0"
	// IfSwitch is the bridge inside the WAN, control and LAN namespaces.
	IfSwitch = "br0"
	// IfNATInside is a router's bridge towards its cluster's gateways.
	IfNATInside = "br-in"
)

// Names derives every namespace name of one lab. All of them start with
// "<lab>-" (see [Names.Owns]).
type Names struct{ Lab string }

// WAN is the namespace holding the WAN bridge.
func (n Names) WAN() string { return n.Lab + "-wan" }

// Ctl is the control namespace.
func (n Names) Ctl() string { return n.Lab + "-ctl" }

// LAN is the namespace holding a cluster's LAN bridge.
func (n Names) LAN(cluster string) string { return n.Lab + "-" + cluster + "-lan" }

// Router is the NAT router namespace of a cluster.
func (n Names) Router(cluster string) string { return n.Lab + "-" + cluster + "-rtr" }

// Node is the namespace of node i (1-based).
func (n Names) Node(cluster string, i int) string {
	return n.Lab + "-" + cluster + "-" + NodeName(i)
}

// Pod is the namespace of pod j (1-based) on node i.
func (n Names) Pod(cluster string, i, j int) string {
	return n.Lab + "-" + cluster + "-" + PodName(i, j)
}

// NodeName is the short name of node i within its cluster ("n1").
func NodeName(i int) string { return "n" + strconv.Itoa(i) }

// PodName is the short name of pod j on node i within its cluster ("n1-p2").
func PodName(i, j int) string { return NodeName(i) + "-p" + strconv.Itoa(j) }

// Owns reports whether namespace name belongs to this lab: it is exactly
// "<lab>-" followed by something. Lab names contain no '-', so lab "weft"
// owns "weft-c1-n1" but neither "weftx-c1" nor "weft" nor "other".
func (n Names) Owns(name string) bool {
	rest, ok := strings.CutPrefix(name, n.Lab+"-")
	return ok && n.Lab != "" && rest != ""
}

// Target names a place to run commands: "wan", "ctl", or
// "<cluster>/<lan|rtr|n<i>|n<i>-p<j>>".
type Target struct {
	Cluster string // empty for "wan" and "ctl"
	Kind    TargetKind
	Node    int // 1-based, for nodes and pods
	Pod     int // 1-based, for pods
}

// TargetKind says what a Target is.
type TargetKind string

// Target kinds.
const (
	TargetWAN    TargetKind = "wan"
	TargetCtl    TargetKind = "ctl"
	TargetLAN    TargetKind = "lan"
	TargetRouter TargetKind = "rtr"
	TargetNode   TargetKind = "node"
	TargetPod    TargetKind = "pod"
)

var (
	nodeTargetRE = regexp.MustCompile(`^n([1-9][0-9]*)$`)
	podTargetRE  = regexp.MustCompile(`^n([1-9][0-9]*)-p([1-9][0-9]*)$`)
)

// ParseTarget parses "wan", "ctl", "c1/lan", "c1/rtr", "c1/n2" or "c1/n2-p1".
func ParseTarget(s string) (Target, error) {
	switch s {
	case "wan":
		return Target{Kind: TargetWAN}, nil
	case "ctl":
		return Target{Kind: TargetCtl}, nil
	}
	cluster, rest, ok := strings.Cut(s, "/")
	if !ok || cluster == "" || rest == "" {
		return Target{}, fmt.Errorf("target %q: want <cluster>/<node-or-pod> (e.g. c1/n1, c1/n1-p2, c1/lan, c1/rtr), wan or ctl", s)
	}
	if !dns1123LabelR.MatchString(cluster) {
		return Target{}, fmt.Errorf("target %q: cluster %q is not a DNS-1123 label", s, cluster)
	}
	t := Target{Cluster: cluster}
	switch {
	case rest == "lan":
		t.Kind = TargetLAN
	case rest == "rtr":
		t.Kind = TargetRouter
	case nodeTargetRE.MatchString(rest):
		m := nodeTargetRE.FindStringSubmatch(rest)
		t.Kind, t.Node = TargetNode, atoi(m[1])
	case podTargetRE.MatchString(rest):
		m := podTargetRE.FindStringSubmatch(rest)
		t.Kind, t.Node, t.Pod = TargetPod, atoi(m[1]), atoi(m[2])
	default:
		return Target{}, fmt.Errorf("target %q: %q is not a node (n1), pod (n1-p1), lan or rtr", s, rest)
	}
	return t, nil
}

func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return v
}

// String is the target in ParseTarget's syntax.
func (t Target) String() string {
	switch t.Kind {
	case TargetWAN, TargetCtl:
		return string(t.Kind)
	case TargetLAN, TargetRouter:
		return t.Cluster + "/" + string(t.Kind)
	case TargetNode:
		return t.Cluster + "/" + NodeName(t.Node)
	case TargetPod:
		return t.Cluster + "/" + PodName(t.Node, t.Pod)
	}
	return "?"
}

// Namespace is the namespace name of the target in this lab. It follows
// the naming scheme only; whether the namespace exists is another matter.
func (n Names) Namespace(t Target) string {
	switch t.Kind {
	case TargetWAN:
		return n.WAN()
	case TargetCtl:
		return n.Ctl()
	case TargetLAN:
		return n.LAN(t.Cluster)
	case TargetRouter:
		return n.Router(t.Cluster)
	case TargetNode:
		return n.Node(t.Cluster, t.Node)
	case TargetPod:
		return n.Pod(t.Cluster, t.Node, t.Pod)
	}
	return ""
}
