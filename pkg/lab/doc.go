// Package lab builds weft's local multi-cluster lab out of Linux network
// namespaces: clusters of nodes and pods, a WAN joining the clusters'
// gateway nodes (optionally behind a NAT router, optionally with delay and
// loss), and a control network for the API servers and the broker of later
// stages. Nothing is configured in the host's own namespace: every link,
// address and route lives in a namespace the lab made, and every namespace
// is named "<lab>-...".
//
// # Structure
//
// A [Topology] (YAML, see [ParseTopology]) is turned by the pure function
// [NewPlan] into a [Plan]: the addressing of every namespace and an ordered
// list of [Step]s (create namespace, set sysctl, add bridge, add veth, add
// address, add route, shape the WAN, masquerade). [Lab.Up] applies the
// steps through a [Kernel] and records what it made in a JSON [State] in
// the state directory (default /run/weft-lab/<lab>); [Lab.Down] removes it
// all, including the leftovers of a crashed run found by name prefix.
// [NewKernel] is the real kernel (netlink handles opened inside each
// namespace, setns on locked OS threads, go-iptables); package labtest has
// a fake that prints its state as sorted text.
//
// # Topology file
//
//	name: weft              # lab name: prefix of every name (default "weft")
//	wan:
//	  delay: 10ms           # one-way delay per WAN port (tc netem)
//	  jitter: 1ms
//	  loss: 0.5             # percent dropped per WAN port
//	clusters:
//	- name: c1              # DNS-1123 label, at most 10 characters
//	  podCIDR: 10.1.0.0/16  # default 10.<n>.0.0/16
//	  serviceCIDR: 10.101.0.0/16 # default 10.<100+n>.0.0/16
//	  nodes: 2              # default 2 (at most 9)
//	  gateways: [1]         # gateway node indices (default [1])
//	  podsPerNode: 2        # default 2 (0 allowed)
//	  nat: false            # gateways behind a NAT router
//
// Without a file the lab has clusters c1 and c2 with those defaults.
//
// # Names
//
// With lab L, cluster C (n-th in the list, 1-based), node i, pod j:
//
//	L-wan        WAN switch: bridge br0; ports "C-n<i>" (gateways), "C-rtr" (routers)
//	L-ctl        control network: bridge br0 with 198.19.255.1/24; ports "C-n<i>"
//	L-C-lan      cluster LAN switch: bridge br0; ports "n<i>"
//	L-C-rtr      NAT router (nat: true): eth-wan, bridge br-in; ports "n<i>"
//	L-C-n<i>     node: eth-lan, eth-ctl, eth-wan (gateways), bridge cbr0; pod ports "p<j>"
//	L-C-n<i>-p<j> pod: eth0
//
// Interface names are short and fixed, or built from the cluster name, so
// they fit Linux's 15 characters. Lab names are lowercase letters and
// digits without '-', so "L-" is an exact, unambiguous prefix: lab "weft"
// never touches "weftx-..." or "other". Commands address places as
// "C/n<i>", "C/n<i>-p<j>", "C/lan", "C/rtr", "wan" and "ctl".
//
// # Address plan
//
//	WAN           198.18.0.0/24    gateway i of cluster n: 198.18.0.(10n+i); router of n: 198.18.0.(10n)
//	cluster LAN   198.19.n.0/24    node i: 198.19.n.(10+i)
//	control       198.19.255.0/24  control namespace .1; node i of cluster n: 198.19.255.(10n+i)
//	NAT inside    198.18.n.0/24    router .1; gateway i: 198.18.n.(10+i) (nat: true only)
//	pods          node i: the i-th /24 of the pod CIDR (10.n.i.0/24 by default);
//	              bridge cbr0 holds .1, pod j holds .(1+j), default route via .1
//
// So there are at most 24 clusters and 9 nodes per cluster, and pod and
// service CIDRs must stay clear of 198.18.0.0/15. A NAT cluster's
// gateways sit on a separate network, 198.18.n.0/24, behind their router
// (not on the cluster LAN, which stays the nodes' private network); they
// reach the WAN through a route for 198.18.0.0/24 via the router, which
// masquerades their traffic behind its own WAN address and forwards
// inbound traffic only for connections started from inside.
//
// Nodes forward IPv4; each node routes the other nodes' pod slices of its
// cluster via their LAN addresses, so pods reach each other within a
// cluster. No route joins clusters: cross-cluster traffic needs the weft
// fabric, and without it fails. Nodes have no default route: only gateway
// nodes reach the WAN, and pods (default route via their node) do not.
//
// WAN delay, jitter and loss are a tc netem qdisc on every WAN bridge port
// (egress towards the attached gateway or router), so a round trip between
// two gateways gets twice the delay. On kernels without sch_netem, loss
// alone falls back to an iptables statistic match in the WAN namespace
// (bridged frames traverse iptables there) and delay fails with
// [ErrNetemUnsupported].
//
// The state file is written by one weftctl at a time; running two lab
// commands that write it concurrently is not supported.
package lab
