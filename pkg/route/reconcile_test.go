package route_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/netplan"
	"github.com/weftnet/weft/pkg/route"
	"github.com/weftnet/weft/pkg/route/routetest"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func nodeInput(gateway bool) netplan.NodeInput {
	in := netplan.NodeInput{
		Node:           "n1",
		NodeIP:         addr("192.168.10.12"),
		Gateway:        gateway,
		GatewayIP:      addr("192.168.10.11"),
		PodNetworkAddr: addr("10.1.2.1"),
		LocalCIDRs:     pfx("10.1.0.0/16", "10.96.0.0/16"),
		Remotes: []netplan.Remote{
			{ClusterID: "east", Subnets: pfx("10.2.0.0/16", "10.97.0.0/16")},
			{ClusterID: "west", Subnets: pfx("10.3.0.0/16")},
		},
		TunnelMTU:    1420,
		CNIInterface: "eth0",
	}
	if gateway {
		in.GatewayIP = netip.Addr{}
	}
	return in
}

func plan(t *testing.T, in netplan.NodeInput) netplan.NodeState {
	t.Helper()
	st, err := netplan.Plan(in)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newFake returns a fake kernel with eth0 and a weft-wg stand-in, and a
// reconciler over it.
func newFake(t *testing.T) (*routetest.Kernel, *route.Reconciler) {
	t.Helper()
	k := routetest.New()
	k.AddLink("eth0", "veth", 1500, true)
	k.AddLink("weft-wg", "wireguard", 1420, true)
	r, err := route.New(route.Options{Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	return k, r
}

// converge reconciles want and checks the fake then holds exactly want's
// routes, rules and device, its sysctls, and that a second pass is a no-op.
func converge(t *testing.T, k *routetest.Kernel, r *route.Reconciler, want netplan.NodeState) []route.Change {
	t.Helper()
	ctx := context.Background()
	changes, err := r.Reconcile(ctx, want)
	if err != nil {
		t.Fatalf("Reconcile: %v\nchanges: %v", err, changes)
	}
	if got, w := k.Owned(want.Params), routetest.Want(want); got != w {
		t.Fatalf("kernel state after Reconcile:\n%s\nwant:\n%s\nchanges: %v", got, w, changes)
	}
	for _, s := range want.Sysctls {
		if v, err := k.Sysctl(s.Key); err != nil || v != s.Value {
			t.Fatalf("sysctl %s = %q, %v; want %q", s.Key, v, err, s.Value)
		}
	}
	writes := k.Writes()
	again, err := r.Reconcile(ctx, want)
	if err != nil || len(again) != 0 || k.Writes() != writes {
		t.Fatalf("second Reconcile: changes %v, err %v, %d writes; want none", again, err, k.Writes()-writes)
	}
	return changes
}

func changeText(cs []route.Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

func TestReconcileGatewayThenNode(t *testing.T) {
	k, r := newFake(t)
	got := changeText(converge(t, k, r, plan(t, nodeInput(true))))
	want := `add link weft-vx vxlan vni 4242 dstport 4799 local 192.168.10.12 learning mtu 1420 up
add addr 240.168.10.12/8 dev weft-vx
set sysctl net/ipv4/conf/eth0/rp_filter = 2
set sysctl net/ipv4/conf/weft-vx/rp_filter = 2
set sysctl net/ipv4/conf/weft-wg/rp_filter = 2
set sysctl net/ipv4/ip_forward = 1
add route 10.2.0.0/16 dev weft-wg src 10.1.2.1 table 176
add route 10.3.0.0/16 dev weft-wg src 10.1.2.1 table 176
add route 10.97.0.0/16 dev weft-wg src 10.1.2.1 table 176
add rule 176: from all lookup 176
`
	if got != want {
		t.Fatalf("changes:\n%s\nwant:\n%s", got, want)
	}
	// The gateway moves away: same device, new FDB entry, routes replaced
	// in place (no delete), the rule untouched.
	got = changeText(converge(t, k, r, plan(t, nodeInput(false))))
	want = `add fdb 00:00:00:00:00:00 dev weft-vx dst 192.168.10.11
replace route 10.2.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
replace route 10.3.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
replace route 10.97.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
`
	if got != want {
		t.Fatalf("changes:\n%s\nwant:\n%s", got, want)
	}
}

func TestReconcileRepairs(t *testing.T) {
	k, r := newFake(t)
	st := plan(t, nodeInput(false))
	converge(t, k, r, st)

	tests := []struct {
		name   string
		mutate func()
		want   string
	}{
		{"route deleted", func() { k.RemoveRoute(176, netip.MustParsePrefix("10.3.0.0/16")) },
			"add route 10.3.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176\n"},
		{"rule deleted", func() { k.DeleteRule(netplan.Rule{Priority: 176, Table: 176}) },
			"add rule 176: from all lookup 176\n"},
		{"duplicate rule", func() { k.InjectRule(netplan.Rule{Priority: 176, Table: 176}) },
			"delete rule 176: from all lookup 176\n"},
		{"stale route", func() {
			k.InjectRoute(netplan.Route{Table: 176, Dst: netip.MustParsePrefix("10.9.0.0/16"), Dev: "eth0"})
		}, "delete route 10.9.0.0/16 dev eth0 table 176\n"},
		{"route changed", func() {
			k.RemoveRoute(176, netip.MustParsePrefix("10.2.0.0/16"))
			k.InjectRoute(netplan.Route{Table: 176, Dst: netip.MustParsePrefix("10.2.0.0/16"), Dev: "eth0"})
		}, "replace route 10.2.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176\n"},
		{"fdb deleted and foreign one added", func() {
			k.DeleteFDB("weft-vx", addr("192.168.10.11"))
			k.InjectFDB("weft-vx", addr("192.168.10.99"))
		}, "add fdb 00:00:00:00:00:00 dev weft-vx dst 192.168.10.11\ndelete fdb 00:00:00:00:00:00 dev weft-vx dst 192.168.10.99\n"},
		{"address replaced", func() {
			k.DeleteAddr("weft-vx", netip.MustParsePrefix("240.168.10.12/8"))
			k.InjectAddr("weft-vx", netip.MustParsePrefix("240.1.1.1/8"))
		}, "add addr 240.168.10.12/8 dev weft-vx\ndelete addr 240.1.1.1/8 dev weft-vx\n"},
		{"mtu changed", func() { k.SetMTU("weft-vx", 1500) }, "set link weft-vx mtu 1420\n"},
		{"sysctl reset", func() { k.SetSysctl("net/ipv4/conf/weft-vx/rp_filter", "1") },
			"set sysctl net/ipv4/conf/weft-vx/rp_filter = 2\n"},
		{"link down drops routes", func() { k.SetLinkDown("weft-vx") }, `set link weft-vx up
add route 10.2.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
add route 10.3.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
add route 10.97.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
`},
		{"link deleted", func() { k.RemoveLink("weft-vx") }, `add link weft-vx vxlan vni 4242 dstport 4799 local 192.168.10.12 learning mtu 1420 up
add addr 240.168.10.12/8 dev weft-vx
add fdb 00:00:00:00:00:00 dev weft-vx dst 192.168.10.11
set sysctl net/ipv4/conf/weft-vx/rp_filter = 2
add route 10.2.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
add route 10.3.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
add route 10.97.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
`},
		{"vni changed", func() {
			k.ReplaceVXLAN("weft-vx", route.VXLANAttrs{VNI: 7, Port: 4799, Local: addr("192.168.10.12"), Learning: true})
		}, `delete link weft-vx vxlan vni 7 dstport 4799 local 192.168.10.12 learning mtu 1420 up
add link weft-vx vxlan vni 4242 dstport 4799 local 192.168.10.12 learning mtu 1420 up
add addr 240.168.10.12/8 dev weft-vx
add fdb 00:00:00:00:00:00 dev weft-vx dst 192.168.10.11
set sysctl net/ipv4/conf/weft-vx/rp_filter = 2
add route 10.2.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
add route 10.3.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
add route 10.97.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.mutate()
			if got := changeText(converge(t, k, r, st)); got != tt.want {
				t.Fatalf("changes:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// foreign adds state weft does not own and returns a check that it is
// still there, unchanged.
func foreign(t *testing.T, k *routetest.Kernel) func() {
	k.AddLink("cni0", "bridge", 1450, true)
	k.InjectRoute(netplan.Route{Table: 254, Dst: netip.MustParsePrefix("10.2.0.0/16"), Dev: "eth0"})
	k.InjectRoute(netplan.Route{Table: 100, Dst: netip.MustParsePrefix("10.3.0.0/16"), Dev: "cni0"})
	k.InjectRoute(netplan.Route{Table: 254, Dst: netip.MustParsePrefix("192.168.10.0/24"), Dev: "eth0"})
	k.InjectRule(netplan.Rule{Priority: 100, Table: 176})
	k.InjectRule(netplan.Rule{Priority: 176, Table: 100})
	before := otherState(k)
	return func() {
		t.Helper()
		if after := otherState(k); after != before {
			t.Fatalf("foreign state changed:\n%s\nwas:\n%s", after, before)
		}
	}
}

// otherState is the fake's state without weft's own objects and sysctls.
func otherState(k *routetest.Kernel) string {
	var keep []string
	for _, l := range strings.Split(k.String(), "\n") {
		switch {
		case strings.Contains(l, "weft-vx"), strings.HasPrefix(l, "sysctl"),
			strings.HasPrefix(l, "route") && strings.HasSuffix(l, "table 176"),
			l == "rule 176: from all lookup 176":
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func TestReconcileAndCleanupLeaveOthersAlone(t *testing.T) {
	k, r := newFake(t)
	check := foreign(t, k)
	converge(t, k, r, plan(t, nodeInput(true)))
	check()
	converge(t, k, r, plan(t, nodeInput(false)))
	check()
	changes, err := r.Cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 5 { // rule, three routes, the device
		t.Errorf("Cleanup changes: %v", changes)
	}
	check()
	if got := k.Owned(netplan.Params{}); got != "" {
		t.Fatalf("after Cleanup weft still owns:\n%s", got)
	}
	if again, err := r.Cleanup(context.Background()); err != nil || len(again) != 0 {
		t.Fatalf("second Cleanup: %v, %v", again, err)
	}
	if !strings.Contains(k.String(), "link weft-wg wireguard") {
		t.Fatal("Cleanup removed weft-wg, which the gateway owns")
	}
}

// recorder wraps a Kernel and logs mutating calls on routes and rules.
type recorder struct {
	route.Kernel
	ops []string
}

func (r *recorder) ReplaceRoute(rt netplan.Route) error {
	r.ops = append(r.ops, "add "+rt.Dst.String())
	return r.Kernel.ReplaceRoute(rt)
}

func (r *recorder) DeleteRoute(rt netplan.Route) error {
	r.ops = append(r.ops, "delete "+rt.Dst.String())
	return r.Kernel.DeleteRoute(rt)
}

func (r *recorder) AddRule(ru netplan.Rule) error {
	r.ops = append(r.ops, "add rule")
	return r.Kernel.AddRule(ru)
}

func (r *recorder) DeleteRule(ru netplan.Rule) error {
	r.ops = append(r.ops, "delete rule")
	return r.Kernel.DeleteRule(ru)
}

func TestAddBeforeDelete(t *testing.T) {
	k := routetest.New()
	k.AddLink("weft-wg", "wireguard", 1420, true)
	rec := &recorder{Kernel: k}
	r, err := route.New(route.Options{Kernel: rec})
	if err != nil {
		t.Fatal(err)
	}
	in := nodeInput(true)
	in.CNIInterface = ""
	in.Remotes = []netplan.Remote{{ClusterID: "east", Subnets: pfx("10.2.0.0/16", "10.3.0.0/16")}}
	converge(t, k, r, plan(t, in))
	k.InjectRule(netplan.Rule{Priority: 176, Table: 176}) // a duplicate to delete
	rec.ops = nil
	in.Remotes = []netplan.Remote{{ClusterID: "east", Subnets: pfx("10.3.0.0/16", "10.4.0.0/16")}}
	converge(t, k, r, plan(t, in))
	if got, want := strings.Join(rec.ops, ", "), "add 10.4.0.0/16, delete 10.2.0.0/16, delete rule"; got != want {
		t.Fatalf("operations: %s; want %s", got, want)
	}
}

func TestReconcileErrors(t *testing.T) {
	ctx := context.Background()
	k := routetest.New()
	r, err := route.New(route.Options{Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	gw := nodeInput(true)
	gw.CNIInterface = ""
	st := plan(t, gw)
	// No weft-wg yet (the gateway has not created it): the routes through
	// it and its sysctl fail, everything else is applied.
	changes, err := r.Reconcile(ctx, st)
	if err == nil || !strings.Contains(err.Error(), "weft-wg") || !strings.Contains(err.Error(), "add route 10.2.0.0/16 dev weft-wg") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(changeText(changes), "add rule 176") || !strings.Contains(changeText(changes), "add link weft-vx") {
		t.Fatalf("changes despite the missing device: %v", changes)
	}
	k.AddLink("weft-wg", "wireguard", 1420, true)
	converge(t, k, r, st)

	// A failing kernel call is reported, named, and retried next time.
	k.RemoveRoute(176, netip.MustParsePrefix("10.2.0.0/16"))
	k.Fail("ReplaceRoute", errors.New("boom"))
	if _, err := r.Reconcile(ctx, st); err == nil || !strings.Contains(err.Error(), "add route 10.2.0.0/16 dev weft-wg src 10.1.2.1 table 176: boom") {
		t.Fatalf("err = %v", err)
	}
	k.Fail("ReplaceRoute", nil)
	k.Fail("Routes", errors.New("dump failed"))
	if _, err := r.Reconcile(ctx, st); err == nil || !strings.Contains(err.Error(), "list routes: dump failed") {
		t.Fatalf("err = %v", err)
	}
	k.Fail("Routes", nil)
	converge(t, k, r, st)

	// A state for another table is refused before anything is touched.
	other := st
	other.Params.Table = 177
	writes := k.Writes()
	if _, err := r.Reconcile(ctx, other); err == nil || !strings.Contains(err.Error(), "table 177") {
		t.Fatalf("err = %v", err)
	}
	// A cancelled context stops the pass.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	k.RemoveRoute(176, netip.MustParsePrefix("10.2.0.0/16"))
	if changes, err := r.Reconcile(cctx, st); !errors.Is(err, context.Canceled) || len(changes) != 0 {
		t.Fatalf("cancelled: %v, %v", changes, err)
	}
	if k.Writes() != writes {
		t.Fatal("a refused or cancelled Reconcile wrote to the kernel")
	}
	if _, err := route.New(route.Options{}); err == nil {
		t.Fatal("New accepted a nil Kernel")
	}
}

// TestRandomTransitions drives the reconciler through random desired
// states in random order, with random interference between passes; after
// each pass the fake holds exactly the desired state and a second pass is a
// no-op.
func TestRandomTransitions(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x3eef))
			k, r := newFake(t)
			check := foreign(t, k)
			for step := range 40 {
				st := plan(t, randomInput(rng))
				interfere(rng, k)
				t.Logf("step %d: gateway=%v routes=%d", step, st.Gateway, len(st.Routes))
				converge(t, k, r, st)
				check()
			}
			if _, err := r.Cleanup(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := k.Owned(netplan.Params{}); got != "" {
				t.Fatalf("after Cleanup weft still owns:\n%s", got)
			}
			check()
		})
	}
}

func randomInput(rng *rand.Rand) netplan.NodeInput {
	nodeIPs := []string{"192.168.10.12", "192.168.10.13"}
	gwIPs := []string{"192.168.10.11", "192.168.10.14", ""}
	in := netplan.NodeInput{
		Node:           "n1",
		NodeIP:         addr(nodeIPs[rng.IntN(len(nodeIPs))]),
		Gateway:        rng.IntN(3) == 0,
		PodNetworkAddr: addr("10.1.2.1"),
		LocalCIDRs:     pfx("10.1.0.0/16"),
		TunnelMTU:      []int{1380, 1420, 1500}[rng.IntN(3)],
	}
	if g := gwIPs[rng.IntN(len(gwIPs))]; g != "" && !in.Gateway {
		in.GatewayIP = addr(g)
	}
	if rng.IntN(2) == 0 {
		in.CNIInterface = "eth0"
	}
	for c := range rng.IntN(4) {
		var subnets []netip.Prefix
		for s := range 4 {
			if rng.IntN(2) == 0 {
				subnets = append(subnets, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 10+c, s)))
			}
		}
		in.Remotes = append(in.Remotes, netplan.Remote{ClusterID: fmt.Sprint("c", c), Subnets: subnets})
	}
	return in
}

// interfere changes weft's state as an administrator or another agent
// might.
func interfere(rng *rand.Rand, k *routetest.Kernel) {
	for range rng.IntN(3) {
		switch rng.IntN(8) {
		case 0:
			k.RemoveLink("weft-vx")
		case 1:
			k.SetLinkDown("weft-vx")
		case 2:
			k.DeleteRule(netplan.Rule{Priority: 176, Table: 176})
		case 3:
			k.InjectRule(netplan.Rule{Priority: 176, Table: 176})
		case 4:
			k.InjectRoute(netplan.Route{Table: 176, Dst: netip.MustParsePrefix("10.10.0.0/24"), Dev: "eth0", Metric: 5})
		case 5:
			k.RemoveRoute(176, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 10+rng.IntN(3), rng.IntN(4))))
		case 6:
			k.InjectFDB("weft-vx", addr("192.168.10.77"))
		case 7:
			k.SetSysctl("net/ipv4/ip_forward", "0")
		}
	}
}
