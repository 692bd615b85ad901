// Package routeagent is weft's route agent (DESIGN section 4): a controller
// that runs on every node, watches the cluster's Kubernetes API and keeps the
// node's cross-cluster data plane (routes in table 176, the policy rule, the
// weft-vx VXLAN hop, sysctls and iptables chains) in line with it.
//
// # What it reads
//
//   - Node objects: this node's InternalIP (its LAN IP) and spec.podCIDR
//     (the pod-network address, the source of weft's routes, is the first
//     host address of the pod CIDR unless configured), and the active
//     gateway node's InternalIP.
//   - Lease weft-gateway in weft-system (coordination.k8s.io/v1): its
//     spec.holderIdentity names the active gateway node; a lease whose
//     renewTime + leaseDurationSeconds has passed means no active gateway.
//   - RemoteCluster objects in weft-system (weft.io/v1alpha1): remote cluster
//     ids and spec.subnets.
//
// # How it works
//
// The pure part maps those objects to a [netplan.NodeInput]:
// [ActiveGateway] reads the Lease, [NodeIP] and [PodNetworkAddr] a Node's
// addresses, and [BuildInput] assembles the rest, skipping (and reporting)
// remote subnets that netplan rejects instead of failing the whole plan.
//
// [Agent] is the controller around it: a controller-runtime cache with
// informers on Nodes, the Lease and RemoteClusters; every event wakes one
// coalesced pass. A pass recomputes the plan; when the plan differs from
// the one last applied (or the last pass failed), it runs
// [firewall.Reconciler.Reconcile], then [route.Reconciler.Reconcile] (so a
// new route never carries traffic before its no-SNAT and FORWARD rules
// exist). A
// periodic resync applies the plan even when it is unchanged, so whatever
// someone else deleted comes back; a failed pass is retried with backoff,
// and a timer wakes the agent when the lease it follows expires. Nothing
// is flushed at start-up: the first pass adopts what is already there and
// changes only the difference. The first pass waits until every informer
// has synced, so an agent that restarts never plans from a partial view.
//
// [Cleanup] removes everything the route agent adds (routes in weft's
// table, the rule, weft-vx, the WEFT-* chains it owns and the jumps to them).
package routeagent
