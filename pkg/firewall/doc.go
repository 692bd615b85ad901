// Package firewall applies the iptables part of a [netplan.NodeState]
// ([netplan.Firewall]): weft's own chains with exactly the desired rules, in
// order, and a jump into each at position 1 of a built-in chain.
//
// A [Reconciler] works through the small [Tables] interface, which
// go-iptables' *iptables.IPTables satisfies ([OpenIPTables] makes one; a
// custom binary path lets tests run iptables inside a network namespace).
// Package firewalltest has an in-memory fake that prints its state as sorted
// text.
//
// Reconcile is level-triggered and never flushes: it lists each chain,
// keeps the longest run of rules already in the desired order, inserts the
// missing ones at their places, and only then deletes the extra ones (by
// position, from the bottom up), so an accept rule that stays is never
// absent. A jump that is missing, moved from position 1 or duplicated is
// inserted at position 1 before the stale copies are deleted. A restart
// adopts whatever is already there. Rules are compared as text, so desired
// rules must be written the way `iptables -S` prints them (netplan does).
//
// Ownership: the chains named in Options.Chains (by default netplan's
// WEFT-POSTROUTING, WEFT-FORWARD and WEFT-MSS) and every rule in a built-in
// chain that jumps to one of them. [Reconciler.Cleanup] removes those jumps
// and then the chains. Other chains, including globalnet's WEFT-GN-*, are
// never touched.
//
// Positions come from a listing, so a concurrent edit by another program
// between the listing and a change can make one pass wrong; the next pass
// (level-triggered) corrects it.
package firewall
