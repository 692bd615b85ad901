// Package route applies the routing part of a [netplan.NodeState] to one
// node: the weft-vx VXLAN device (attributes, MTU, up, overlay address, FDB),
// sysctls, the routes in weft's table and the policy rule that selects it.
//
// A [Reconciler] works through the small [Kernel] interface. [Netlink]
// implements it with netlink, bound to a network namespace (tests point it
// at one they create); package routetest has an in-memory fake that prints
// its state as sorted text.
//
// Reconcile is level-triggered: every call reads what the kernel reports,
// diffs it against the desired state and applies only the difference, so a
// second call makes no change and a call after someone else deleted a route,
// the rule or the device puts them back. Within a call, additions (and
// in-place replacements) come before deletions, so a route is never missing
// while it is being changed (a route whose destination stays is replaced
// atomically; a VXLAN device whose VNI, port or local address changes must be
// deleted and created again, as the kernel cannot change those in place).
//
// Ownership is narrow: weft's routing table (all routes in it), the rules at
// weft's priority that look up weft's table with no selector ("from all"),
// and the device named like weft's VXLAN device. Nothing else is read for
// deletion, nothing is flushed on start, and Reconcile never touches another
// table, rule or device. [Reconciler.Cleanup] removes everything weft owns;
// sysctls are left as they are (ip_forward and rp_filter may matter to
// others, and weft cannot know their values before it started).
//
// The VXLAN device is always created with learning on (see package netplan
// for why the gateway relies on it); the FDB entries weft manages are the
// all-zero-MAC ones, learned entries are the kernel's.
package route
