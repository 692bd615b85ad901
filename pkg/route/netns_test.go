package route_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/nspair"
	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/netplan"
	"github.com/weftnet/weft/pkg/route"
)

// netnsFixture creates namespaces named "wt<random><suffix>" and deletes
// them when the test ends. Nothing is configured in the test's own
// namespace.
type netnsFixture struct {
	t      *testing.T
	ctx    context.Context
	prefix string
}

func newNetns(t *testing.T) *netnsFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns test: needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns test: needs ip(8) from iproute2")
	}
	for _, tool := range []string{"bridge", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("netns test: needs %s", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	return &netnsFixture{t: t, ctx: ctx, prefix: "wt" + hex.EncodeToString(rnd[:])}
}

// ns creates namespace prefix+suffix with lo up and returns its name.
func (f *netnsFixture) ns(suffix string) string {
	f.t.Helper()
	name := f.prefix + suffix
	f.ip("netns", "add", name)
	f.t.Cleanup(func() {
		if err := nspair.IP(context.Background(), "netns", "del", name); err != nil {
			f.t.Errorf("delete netns: %v", err)
		}
	})
	f.ip("-n", name, "link", "set", "lo", "up")
	return name
}

// dummy adds an up device called name to ns that behaves like a dummy:
// the dummy driver where the kernel has it, else a veth whose peer (name
// plus "p") stays in ns, also up.
func (f *netnsFixture) dummy(ns, name string) {
	f.t.Helper()
	if nspair.IP(f.ctx, "-n", ns, "link", "add", name, "type", "dummy") != nil {
		f.ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", name+"p")
		f.ip("-n", ns, "link", "set", name+"p", "up")
	}
	f.ip("-n", ns, "link", "set", name, "up")
}

func (f *netnsFixture) ip(args ...string) {
	f.t.Helper()
	if err := nspair.IP(f.ctx, args...); err != nil {
		f.t.Fatal(err)
	}
}

// in runs a command inside namespace ns and returns its output.
func (f *netnsFixture) in(ns string, args ...string) string {
	f.t.Helper()
	out, err := nspair.Exec(f.ctx, ns, args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// output runs a command (in the test's namespace, for `ip -n` and
// `bridge -n`, which only read) and returns its output.
func (f *netnsFixture) output(name string, args ...string) string {
	f.t.Helper()
	out, err := exec.CommandContext(f.ctx, name, args...).CombinedOutput()
	if err != nil {
		f.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// iptables returns go-iptables' handle on a wrapper script that runs
// iptables inside ns.
func (f *netnsFixture) iptables(ns string) firewall.Tables {
	f.t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		f.t.Skip("netns test: needs iptables")
	}
	script := filepath.Join(f.t.TempDir(), "iptables")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec ip netns exec "+ns+" iptables \"$@\"\n"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	ipt, err := firewall.OpenIPTables(firewall.IPTablesOptions{Path: script, Timeout: 5})
	if err != nil {
		f.t.Fatal(err)
	}
	return ipt
}

func (f *netnsFixture) reconciler(ns string) *route.Reconciler {
	f.t.Helper()
	k, err := route.OpenNetlink(route.NetlinkOptions{NetNS: nspair.NSPath(ns)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { k.Close() })
	r, err := route.New(route.Options{Kernel: k})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// apply reconciles st twice: the second pass must change nothing.
func apply(t *testing.T, r *route.Reconciler, st netplan.NodeState) []route.Change {
	t.Helper()
	changes, err := r.Reconcile(context.Background(), st)
	if err != nil {
		t.Fatalf("Reconcile: %v\nchanges: %v", err, changes)
	}
	again, err := r.Reconcile(context.Background(), st)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Reconcile: changes %v, err %v; want none", again, err)
	}
	return changes
}

func wantLines(t *testing.T, what, got string, want ...string) {
	t.Helper()
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if l = norm(l); l != "" {
			lines = append(lines, l)
		}
	}
	for i := range want {
		want[i] = norm(want[i])
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n%s\nwant:\n%s", what, strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestNetlinkReconcileInNamespace applies a gateway plan, then a
// non-gateway plan, through netlink in a test namespace, checks what ip(8)
// and bridge(8) show, repairs hand-made damage and cleans up.
func TestNetlinkReconcileInNamespace(t *testing.T) {
	f := newNetns(t)
	ns := f.ns("n")
	f.dummy(ns, "eth0")
	f.dummy(ns, "pods")
	f.dummy(ns, "weft-wg") // stands in for the gateway's WireGuard device
	f.ip("-n", ns, "link", "set", "weft-wg", "mtu", "1420")
	for _, s := range [][]string{
		{"addr", "add", "192.168.10.12/24", "dev", "eth0"},
		{"addr", "add", "10.1.2.1/24", "dev", "pods"},
		// Foreign state weft must leave alone.
		{"route", "add", "10.50.0.0/16", "dev", "eth0"},
		{"route", "add", "10.2.0.0/16", "dev", "eth0", "table", "100"},
		{"rule", "add", "priority", "100", "lookup", "100"},
		{"rule", "add", "priority", "176", "from", "10.9.0.0/16", "lookup", "100"},
	} {
		f.ip(append([]string{"-n", ns}, s...)...)
	}
	r := f.reconciler(ns)

	// Gateway node.
	apply(t, r, plan(t, nodeInput(true)))
	wantLines(t, "gateway: ip route show table 176", f.output("ip", "-n", ns, "route", "show", "table", "176"),
		"10.2.0.0/16 dev weft-wg proto static scope link src 10.1.2.1",
		"10.3.0.0/16 dev weft-wg proto static scope link src 10.1.2.1",
		"10.97.0.0/16 dev weft-wg proto static scope link src 10.1.2.1")
	rules := f.output("ip", "-n", ns, "rule")
	if !strings.Contains(rules, "176:\tfrom all lookup 176") {
		t.Fatalf("ip rule:\n%s", rules)
	}
	for _, dev := range []string{"weft-wg", "weft-vx", "eth0"} {
		if v := strings.TrimSpace(f.in(ns, "sysctl", "-n", "net.ipv4.conf."+dev+".rp_filter")); v != "2" {
			t.Errorf("rp_filter of %s = %s; want 2", dev, v)
		}
	}
	if v := strings.TrimSpace(f.in(ns, "sysctl", "-n", "net.ipv4.ip_forward")); v != "1" {
		t.Errorf("ip_forward = %s", v)
	}

	// The gateway moves to 192.168.10.11: VXLAN hop.
	apply(t, r, plan(t, nodeInput(false)))
	wantLines(t, "node: ip route show table 176", f.output("ip", "-n", ns, "route", "show", "table", "176"),
		"10.2.0.0/16 via 240.168.10.11 dev weft-vx proto static src 10.1.2.1 onlink",
		"10.3.0.0/16 via 240.168.10.11 dev weft-vx proto static src 10.1.2.1 onlink",
		"10.97.0.0/16 via 240.168.10.11 dev weft-vx proto static src 10.1.2.1 onlink")
	wantLines(t, "bridge fdb show dev weft-vx", zeroFDB(f.output("bridge", "-n", ns, "fdb", "show", "dev", "weft-vx")),
		"00:00:00:00:00:00 dst 192.168.10.11 self permanent")
	link := f.output("ip", "-n", ns, "-d", "addr", "show", "dev", "weft-vx")
	for _, want := range []string{"mtu 1420", "vxlan id 4242", "local 192.168.10.12", "dstport 4799", "inet 240.168.10.12/8", "state UNKNOWN"} {
		if !strings.Contains(link, want) {
			t.Errorf("ip -d addr show dev weft-vx lacks %q:\n%s", want, link)
		}
	}

	// Damage by hand; the next pass repairs exactly that.
	f.ip("-n", ns, "route", "del", "10.3.0.0/16", "table", "176")
	f.ip("-n", ns, "rule", "del", "priority", "176", "lookup", "176")
	f.ip("-n", ns, "link", "set", "weft-vx", "mtu", "1500")
	f.ip("-n", ns, "route", "add", "10.99.0.0/16", "dev", "eth0", "table", "176")
	got := changeText(apply(t, r, plan(t, nodeInput(false))))
	if want := `set link weft-vx mtu 1420
add route 10.3.0.0/16 via 240.168.10.11 dev weft-vx src 10.1.2.1 onlink table 176
add rule 176: from all lookup 176
delete route 10.99.0.0/16 dev eth0 table 176
`; got != want {
		t.Fatalf("repair changes:\n%s\nwant:\n%s", got, want)
	}

	// Cleanup leaves nothing of weft's and everything else.
	if _, err := r.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := f.output("ip", "-n", ns, "route", "show", "table", "176"); strings.TrimSpace(out) != "" {
		t.Fatalf("table 176 after Cleanup:\n%s", out)
	}
	rules = f.output("ip", "-n", ns, "rule")
	if strings.Contains(rules, "lookup 176") || !strings.Contains(rules, "100:\tfrom all lookup 100") ||
		!strings.Contains(rules, "176:\tfrom 10.9.0.0/16 lookup 100") {
		t.Fatalf("ip rule after Cleanup:\n%s", rules)
	}
	links := f.output("ip", "-n", ns, "-br", "link")
	if strings.Contains(links, "weft-vx") || !strings.Contains(links, "weft-wg") {
		t.Fatalf("links after Cleanup:\n%s", links)
	}
	if !strings.Contains(f.output("ip", "-n", ns, "route"), "10.50.0.0/16 dev eth0") ||
		!strings.Contains(f.output("ip", "-n", ns, "route", "show", "table", "100"), "10.2.0.0/16 dev eth0") {
		t.Fatal("Cleanup removed foreign routes")
	}
}

// zeroFDB keeps the all-zero-MAC lines of `bridge fdb show`.
func zeroFDB(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "00:00:00:00:00:00 ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestVXLANHopTraffic sends pings from a pod-side node N through the
// VXLAN hop to the gateway G and on through G's "tunnel" (a veth named
// weft-wg) to a remote cluster R:
//
//	N (10.1.1.1 on pods) --eth0 LAN 192.168.50.0/24-- G --weft-wg veth-- R (10.2.0.1)
//
// N and G start with strict rp_filter, so the pings pass only because the
// plan loosens it where replies arrive asymmetrically; G's firewall is
// strict too (see below).
func TestVXLANHopTraffic(t *testing.T) {
	f := newNetns(t)
	n, g, rm := f.ns("n"), f.ns("g"), f.ns("r")
	for _, ns := range []string{n, g} {
		f.in(ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
	}
	f.dummy(n, "pods")
	f.dummy(g, "pods")
	f.dummy(rm, "remote")
	steps := [][]string{
		{"-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", g},
		{"-n", n, "addr", "add", "192.168.50.2/24", "dev", "eth0"},
		{"-n", g, "addr", "add", "192.168.50.1/24", "dev", "eth0"},
		{"-n", n, "addr", "add", "10.1.1.1/24", "dev", "pods"},
		{"-n", g, "addr", "add", "10.1.2.1/24", "dev", "pods"},
		{"-n", g, "link", "add", "weft-wg", "mtu", "1420", "type", "veth", "peer", "name", "eth-tun", "netns", rm},
		{"-n", g, "addr", "add", "192.168.99.1/30", "dev", "weft-wg"},
		{"-n", rm, "addr", "add", "192.168.99.2/30", "dev", "eth-tun"},
		{"-n", rm, "addr", "add", "10.2.0.1/16", "dev", "remote"},
	}
	for _, s := range [][]string{{n, "eth0"}, {g, "eth0"}, {g, "weft-wg"}, {rm, "eth-tun"}} {
		steps = append(steps, []string{"-n", s[0], "link", "set", s[1], "up"})
	}
	steps = append(steps,
		// The CNI's intra-cluster pod routes.
		[]string{"-n", g, "route", "add", "10.1.1.0/24", "via", "192.168.50.2"},
		[]string{"-n", n, "route", "add", "10.1.2.0/24", "via", "192.168.50.1"},
		// The remote cluster's way back to the local pod CIDR.
		[]string{"-n", rm, "route", "add", "10.1.0.0/16", "via", "192.168.99.1"},
	)
	for _, s := range steps {
		f.ip(s...)
	}

	base := netplan.NodeInput{
		LocalCIDRs: pfx("10.1.0.0/16"),
		Remotes:    []netplan.Remote{{ClusterID: "r", Subnets: pfx("10.2.0.0/16")}},
		TunnelMTU:  1420, CNIInterface: "eth0",
	}
	nIn, gIn := base, base
	nIn.Node, nIn.NodeIP, nIn.GatewayIP, nIn.PodNetworkAddr = "n", addr("192.168.50.2"), addr("192.168.50.1"), addr("10.1.1.1")
	gIn.Node, gIn.NodeIP, gIn.Gateway, gIn.PodNetworkAddr = "g", addr("192.168.50.1"), true, addr("10.1.2.1")
	apply(t, f.reconciler(n), plan(t, nIn))
	gPlan := plan(t, gIn)
	apply(t, f.reconciler(g), gPlan)

	// G drops forwarded traffic by default and masquerades what leaves
	// through the tunnel, as a strict CNI setup might; R answers only the
	// pod's own address. The pings pass only through weft's firewall: the
	// FORWARD accept and the nat ACCEPT that precedes the masquerade.
	f.in(g, "iptables", "-P", "FORWARD", "DROP")
	f.in(g, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "weft-wg", "-j", "MASQUERADE")
	f.in(rm, "iptables", "-A", "INPUT", "-p", "icmp", "!", "-s", "10.1.1.1", "-j", "DROP")
	fw, err := firewall.New(firewall.Options{Tables: f.iptables(g)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Reconcile(f.ctx, gPlan.Firewall); err != nil {
		t.Fatal(err)
	}

	f.in(n, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "10.1.1.1", "10.2.0.1")

	if out := f.output("ip", "-n", n, "route", "get", "10.2.0.1", "from", "10.1.1.1"); !strings.Contains(out, "via 240.168.50.1 dev weft-vx") {
		t.Errorf("N route get:\n%s", out)
	}
	if out := f.output("ip", "-n", g, "route", "get", "10.2.0.1", "from", "10.1.1.1", "iif", "weft-vx"); !strings.Contains(out, "dev weft-wg") {
		t.Errorf("G route get:\n%s", out)
	}
	if rx := rxPackets(t, f.output("ip", "-n", g, "-s", "-j", "link", "show", "weft-vx")); rx < 3 {
		t.Errorf("G's weft-vx received %d packets; want >= 3 (the pings)", rx)
	}
}

func rxPackets(t *testing.T, js string) uint64 {
	t.Helper()
	var links []struct {
		Stats64 struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(js), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j -s link: %v: %s", err, js)
	}
	return links[0].Stats64.Rx.Packets
}
