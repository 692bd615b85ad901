// Package netplan computes the desired data-plane state of one node for the
// route agent: policy routes in weft's routing table, the rule that selects
// that table, the VXLAN hop from ordinary nodes to the active gateway node,
// sysctls, and iptables chains. It is pure: [Plan] maps a [NodeInput] to a
// [NodeState] built from plain types (netip.Prefix, netip.Addr, strings), with
// no I/O and no netlink structs. The reconcilers in pkg/route and
// pkg/firewall apply a NodeState to the kernel.
//
// # Topology
//
// The active gateway node owns the WireGuard device (weft-wg, created by the
// gateway, not here). On it, every remote subnet is routed
//
//	<remote> dev weft-wg src <pod-network address> table 176
//
// and `ip rule priority 176 lookup 176` sends all traffic through table 176
// first (remote subnets match there; everything else falls through to the
// main table).
//
// Every other node reaches the gateway node through a VXLAN device weft-vx
// (VNI 4242, UDP 4799, local = node LAN IP). Following Submariner, a node's
// overlay address is 240.<b>.<c>.<d>/8 for LAN IP <a>.<b>.<c>.<d>; a single
// all-zero-MAC FDB entry sends every frame (ARP included) to the gateway's
// LAN IP, and remote subnets are routed
//
//	<remote> via 240.<gateway b.c.d> dev weft-vx onlink src <pod-network address> table 176
//
// When the gateway's LAN IP is unknown (no leader yet), ordinary nodes keep
// weft-vx, its address, the rule and the firewall, but have no FDB entry and
// no cross-cluster routes.
//
// # The gateway's side of the VXLAN hop
//
// The gateway node also has weft-vx, with its own overlay address, so that it
// can receive the other nodes' traffic and answer ARP for its overlay
// address; the device is created with learning on, so the gateway learns each
// sender's MAC → LAN IP from the first packet it receives (its ARP reply
// then goes back to the right node). The gateway carries NO per-node FDB
// entries and no routes over weft-vx: return traffic from remote clusters to
// pods on other nodes follows the CNI's ordinary intra-cluster pod routing,
// exactly like any pod-to-pod traffic. Keeping the same device (same VNI,
// port and local address) on every node also means a node that becomes (or
// stops being) the gateway keeps weft-vx untouched; only the FDB entry and
// the routes change.
//
// Because replies from a remote cluster reach a non-gateway node's pods
// through the CNI's interface while the reverse path of a remote address is
// weft-vx, strict reverse-path filtering would drop them. rp_filter is set
// loose (2) on weft-vx and weft-wg, and on NodeInput.CNIInterface when set
// (as Submariner does for its CNI interface).
//
// # Firewall
//
// Three chains, each reached by a jump at position 1 of a built-in chain:
//
//   - nat WEFT-POSTROUTING, from POSTROUTING: `-s <local> -d <remote> -j
//     ACCEPT` for every local CIDR (pod and service) and remote subnet.
//     ACCEPT, not RETURN: a RETURN from a user chain resumes the calling
//     chain at its next rule, which is the CNI's masquerade; ACCEPT ends
//     the nat POSTROUTING traversal, so cross-cluster flows keep their pod
//     source address.
//   - filter WEFT-FORWARD, from FORWARD: ACCEPT to and from every remote
//     subnet.
//   - mangle WEFT-MSS, from FORWARD: for TCP SYNs to and from every remote
//     subnet whose MSS exceeds tunnel MTU − 40, set it to tunnel MTU − 40
//     (`-m tcpmss --mss <mss+1>:65535`, so a smaller MSS is never raised).
//     Only forwarded traffic needs clamping: locally originated TCP already
//     derives its MSS from the route's device MTU (weft-wg or weft-vx).
//
// Rules are []string specs in the canonical form `iptables -S` prints, so
// the reconciler can compare them textually.
//
// # Limits
//
// The data plane is IPv4-only: LAN IPs, overlay addresses, local CIDRs and
// remote subnets must all be IPv4; IPv6 values are rejected with an error
// naming the field.
package netplan
