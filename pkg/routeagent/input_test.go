package routeagent

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	weftv1alpha1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/netplan"
)

func node(name, ip, podCIDR string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
	if podCIDR != "" {
		n.Spec.PodCIDRs = []string{podCIDR}
	}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: name},
			{Type: corev1.NodeInternalIP, Address: ip},
		}
	}
	return n
}

func remoteCluster(name, id string, subnets ...string) weftv1alpha1.RemoteCluster {
	return weftv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: name},
		Spec:       weftv1alpha1.RemoteClusterSpec{ClusterID: id, Subnets: subnets},
	}
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func testConfig() Config {
	return Config{ClusterCIDRs: prefixes("10.1.0.0/16", "10.96.0.0/16"), TunnelMTU: 1420, CNIInterface: "cni0"}
}

// inputText renders the parts of a NodeInput BuildInput decides.
func inputText(in netplan.NodeInput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s ip %s pod %s", in.Node, in.NodeIP, in.PodNetworkAddr)
	switch {
	case in.Gateway:
		b.WriteString(" gateway")
	case in.GatewayIP.IsValid():
		fmt.Fprintf(&b, " via %s", in.GatewayIP)
	default:
		b.WriteString(" no-gateway")
	}
	for _, r := range in.Remotes {
		fmt.Fprintf(&b, " %s%v", r.ClusterID, r.Subnets)
	}
	return b.String()
}

func TestBuildInput(t *testing.T) {
	n1 := node("n1", "192.168.10.11", "10.1.1.0/24")
	n2 := node("n2", "192.168.10.12", "10.1.2.0/24")
	c2 := remoteCluster("c2", "c2", "10.2.0.0/16", "10.102.0.0/16")
	c3 := remoteCluster("c3", "c3", "10.3.0.0/16")
	deleting := remoteCluster("c4", "c4", "10.4.0.0/16")
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	v6only := node("n6", "fd00::6", "10.1.6.0/24")
	sameOverlay := node("n7", "172.168.10.12", "10.1.7.0/24") // 240.168.10.12, as n2
	for _, tc := range []struct {
		name    string
		in      Input
		want    string
		notes   []string
		wantErr string
	}{
		{
			name: "other node is the gateway: via its LAN IP",
			in:   Input{Node: n2, Gateway: n1, RemoteClusters: []weftv1alpha1.RemoteCluster{c3, c2}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11 c2[10.2.0.0/16 10.102.0.0/16] c3[10.3.0.0/16]",
		},
		{
			name: "this node is the gateway",
			in:   Input{Node: n2, Gateway: n2, RemoteClusters: []weftv1alpha1.RemoteCluster{c2}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 gateway c2[10.2.0.0/16 10.102.0.0/16]",
		},
		{
			name: "no active gateway",
			in:   Input{Node: n2, RemoteClusters: []weftv1alpha1.RemoteCluster{c2}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 no-gateway c2[10.2.0.0/16 10.102.0.0/16]",
		},
		{
			name: "no RemoteClusters",
			in:   Input{Node: n2, Gateway: n1},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11",
		},
		{
			name:  "gateway node without InternalIP counts as none",
			in:    Input{Node: n2, Gateway: node("n9", "", "10.1.9.0/24"), RemoteClusters: []weftv1alpha1.RemoteCluster{c2}},
			want:  "node n2 ip 192.168.10.12 pod 10.1.2.1 no-gateway c2[10.2.0.0/16 10.102.0.0/16]",
			notes: []string{"active gateway n9 ignored: node n9: no InternalIP in status.addresses"},
		},
		{
			name:  "gateway node with only an IPv6 InternalIP counts as none",
			in:    Input{Node: n2, Gateway: v6only},
			want:  "node n2 ip 192.168.10.12 pod 10.1.2.1 no-gateway",
			notes: []string{"active gateway n6 ignored: node n6: no IPv4 InternalIP among [fd00::6]"},
		},
		{
			name: "gateway whose overlay address clashes with ours counts as none",
			in:   Input{Node: n2, Gateway: sameOverlay},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 no-gateway",
			notes: []string{"active gateway n7 (172.168.10.12) ignored: gateway_ip: 172.168.10.12 has the same overlay address " +
				"240.168.10.12 as node_ip 192.168.10.12"},
		},
		{
			name: "subnet overlapping the local CIDRs is skipped, the rest planned",
			in: Input{Node: n2, Gateway: n1, RemoteClusters: []weftv1alpha1.RemoteCluster{
				remoteCluster("c2", "c2", "10.2.0.0/16", "10.1.5.0/24", "10.102.0.0/16"), c3,
			}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11 c2[10.2.0.0/16 10.102.0.0/16] c3[10.3.0.0/16]",
			notes: []string{"RemoteCluster weft-system/c2 (cluster c2): subnet 10.1.5.0/24 skipped: " +
				"remotes[0].subnets[1]: 10.1.5.0/24 (cluster c2) overlaps local_cidrs[0] 10.1.0.0/16"},
		},
		{
			name: "overlap between clusters: the first cluster id keeps the subnet",
			in: Input{Node: n2, Gateway: n1, RemoteClusters: []weftv1alpha1.RemoteCluster{
				remoteCluster("zz", "zz", "10.2.128.0/17", "10.50.0.0/16"), c2,
			}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11 c2[10.2.0.0/16 10.102.0.0/16] zz[10.50.0.0/16]",
			notes: []string{"RemoteCluster weft-system/zz (cluster zz): subnet 10.2.128.0/17 skipped: " +
				"remotes[1].subnets[0]: 10.2.128.0/17 (cluster zz) overlaps remotes[0].subnets[0] 10.2.0.0/16 (cluster c2)"},
		},
		{
			name: "a cluster left with no subnet is dropped",
			in: Input{Node: n2, Gateway: n1, RemoteClusters: []weftv1alpha1.RemoteCluster{
				remoteCluster("c5", "c5", "0.0.0.0/0"),
			}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11",
			notes: []string{"RemoteCluster weft-system/c5 (cluster c5): subnet 0.0.0.0/0 skipped: " +
				`remotes[0].subnets[0]: "0.0.0.0/0" is a default route (cluster c5)`},
		},
		{
			name: "unparsable, non-canonical and IPv6 subnets are skipped",
			in: Input{Node: n2, Gateway: n1, RemoteClusters: []weftv1alpha1.RemoteCluster{
				remoteCluster("c2", "c2", "10.2.0.0/16", "bogus", "10.103.0.1/16", "fd00:2::/64"),
			}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11 c2[10.2.0.0/16]",
			notes: []string{
				`RemoteCluster weft-system/c2 (cluster c2): spec.subnets[1] "bogus" skipped: netip.ParsePrefix("bogus"): no '/'`,
				"RemoteCluster weft-system/c2 (cluster c2): subnet 10.103.0.1/16 skipped: remotes[0].subnets[1]: \"10.103.0.1/16\" is not canonical (want 10.103.0.0/16) (cluster c2)",
				"RemoteCluster weft-system/c2 (cluster c2): subnet fd00:2::/64 skipped: remotes[0].subnets[1]: fd00:2::/64 is IPv6; the route agent's data plane is IPv4-only (cluster c2)",
			},
		},
		{
			name: "a second object for the same cluster id is skipped; deleting objects are ignored",
			in: Input{Node: n2, Gateway: n1, RemoteClusters: []weftv1alpha1.RemoteCluster{
				remoteCluster("c2-copy", "c2", "10.20.0.0/16"), c2, deleting,
			}},
			want:  "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11 c2[10.2.0.0/16 10.102.0.0/16]",
			notes: []string{"RemoteCluster weft-system/c2-copy skipped: cluster c2 is already given by RemoteCluster weft-system/c2"},
		},
		{
			name: "remote subnet containing the gateway's LAN IP is skipped",
			in: Input{Node: n2, Gateway: n1, RemoteClusters: []weftv1alpha1.RemoteCluster{
				remoteCluster("c2", "c2", "192.168.10.0/28", "10.2.0.0/16"),
			}},
			want: "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11 c2[10.2.0.0/16]",
			notes: []string{"RemoteCluster weft-system/c2 (cluster c2): subnet 192.168.10.0/28 skipped: remotes[0].subnets[0]: " +
				"192.168.10.0/28 (cluster c2) contains node_ip 192.168.10.12; tunnel traffic would loop"},
		},
		{
			name:    "node without InternalIP",
			in:      Input{Node: node("n2", "", "10.1.2.0/24")},
			wantErr: "node n2: no InternalIP in status.addresses",
		},
		{
			name:    "node without pod CIDR",
			in:      Input{Node: node("n2", "192.168.10.12", "")},
			wantErr: "node n2: spec.podCIDR is not set",
		},
		{
			name:    "pod CIDR outside the cluster CIDRs",
			in:      Input{Node: node("n2", "192.168.10.12", "10.9.2.0/24")},
			wantErr: "plan node n2: pod_network_addr: 10.9.2.1 is not inside local_cidrs",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.in.Config.ClusterCIDRs == nil {
				tc.in.Config = testConfig()
			}
			got, notes, err := BuildInput(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := inputText(got); s != tc.want {
				t.Errorf("input:\n got %s\nwant %s", s, tc.want)
			}
			if !slices.Equal(notes, tc.notes) {
				t.Errorf("notes:\n got %q\nwant %q", notes, tc.notes)
			}
			if _, err := netplan.Plan(got); err != nil {
				t.Errorf("netplan rejects the built input: %v", err)
			}
			if got.TunnelMTU != 1420 || got.CNIInterface != "cni0" || !slices.Equal(got.LocalCIDRs, tc.in.Config.ClusterCIDRs) {
				t.Errorf("config not carried over: %+v", got)
			}
		})
	}
}

// TestBuildInputOrderIndependent shuffles the RemoteClusters (with
// conflicts among them) and expects the same input every time.
func TestBuildInputOrderIndependent(t *testing.T) {
	rcs := []weftv1alpha1.RemoteCluster{
		remoteCluster("a", "c2", "10.2.0.0/16", "10.102.0.0/16"),
		remoteCluster("b", "c3", "10.3.0.0/16", "10.2.5.0/24"),
		remoteCluster("c", "c2", "10.4.0.0/16"),
		remoteCluster("d", "c5", "10.5.0.0/16", "10.3.0.0/17", "10.1.0.0/24"),
		remoteCluster("e", "c6", "10.6.0.0/16"),
	}
	in := Input{Node: node("n2", "192.168.10.12", "10.1.2.0/24"), Gateway: node("n1", "192.168.10.11", "10.1.1.0/24"), Config: testConfig()}
	in.RemoteClusters = slices.Clone(rcs)
	first, firstNotes, err := BuildInput(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "node n2 ip 192.168.10.12 pod 10.1.2.1 via 192.168.10.11 c2[10.2.0.0/16 10.102.0.0/16] c3[10.3.0.0/16] c5[10.5.0.0/16] c6[10.6.0.0/16]"; inputText(first) != want {
		t.Fatalf("input:\n got %s\nwant %s", inputText(first), want)
	}
	if len(firstNotes) != 4 {
		t.Fatalf("notes = %q; want 4", firstNotes)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		rng.Shuffle(len(rcs), func(i, j int) { rcs[i], rcs[j] = rcs[j], rcs[i] })
		in.RemoteClusters = slices.Clone(rcs)
		got, notes, err := BuildInput(in)
		if err != nil {
			t.Fatal(err)
		}
		if inputText(got) != inputText(first) || !slices.Equal(notes, firstNotes) {
			t.Fatalf("order %v:\n got %s %q\nwant %s %q", names(rcs), inputText(got), notes, inputText(first), firstNotes)
		}
	}
}

func names(rcs []weftv1alpha1.RemoteCluster) []string {
	var out []string
	for _, rc := range rcs {
		out = append(out, rc.Name)
	}
	return out
}

func TestActiveGateway(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lease := func(holder *string, renew *time.Time, dur *int32) *coordinationv1.Lease {
		l := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: holder, LeaseDurationSeconds: dur}}
		if renew != nil {
			l.Spec.RenewTime = &metav1.MicroTime{Time: *renew}
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		lease  *coordinationv1.Lease
		holder string
		reason string
	}{
		{"no lease", nil, "", "no lease"},
		{"no holder", lease(nil, ptr.To(now), ptr.To[int32](10)), "", "lease has no holder"},
		{"released", lease(ptr.To(""), ptr.To(now), ptr.To[int32](1)), "", "lease has no holder"},
		{"no renew time", lease(ptr.To("n1"), nil, ptr.To[int32](10)), "", "lease held by n1 has no renewTime"},
		{"no duration", lease(ptr.To("n1"), ptr.To(now), nil), "", "lease held by n1 has no leaseDurationSeconds"},
		{"valid", lease(ptr.To("n1"), ptr.To(now.Add(-9*time.Second)), ptr.To[int32](10)), "n1", ""},
		{"expires now", lease(ptr.To("n1"), ptr.To(now.Add(-10*time.Second)), ptr.To[int32](10)), "",
			"lease held by n1 expired at 2026-01-02T03:04:05Z"},
		{"expired", lease(ptr.To("n1"), ptr.To(now.Add(-time.Minute)), ptr.To[int32](10)), "",
			"lease held by n1 expired at 2026-01-02T03:03:15Z"},
		{"renewed in the future (clock skew)", lease(ptr.To("n1"), ptr.To(now.Add(time.Second)), ptr.To[int32](10)), "n1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok, reason := ActiveGateway(tc.lease, now)
			if ok != (tc.holder != "") || h.Node != tc.holder || reason != tc.reason {
				t.Fatalf("ActiveGateway = %+v, %v, %q; want holder %q, reason %q", h, ok, reason, tc.holder, tc.reason)
			}
			if ok && !h.Expires.Equal(tc.lease.Spec.RenewTime.Add(10*time.Second)) {
				t.Fatalf("Expires = %s", h.Expires)
			}
		})
	}
}

func TestPodNetworkAddr(t *testing.T) {
	dual := node("n", "192.0.2.1", "")
	dual.Spec.PodCIDR = "fd00:1::/64"
	dual.Spec.PodCIDRs = []string{"fd00:1::/64", "10.1.3.0/24"}
	for _, tc := range []struct {
		name     string
		node     *corev1.Node
		override string
		want     string
	}{
		{"first host of /24", node("n", "192.0.2.1", "10.1.2.0/24"), "", "10.1.2.1"},
		{"first host of /16", node("n", "192.0.2.1", "10.1.0.0/16"), "", "10.1.0.1"},
		{"override", node("n", "192.0.2.1", "10.1.2.0/24"), "10.1.2.254", "10.1.2.254"},
		{"override without pod CIDR", node("n", "192.0.2.1", ""), "10.1.2.254", "10.1.2.254"},
		{"dual stack: the IPv4 CIDR", dual, "", "10.1.3.1"},
		{"only spec.podCIDR", &corev1.Node{Spec: corev1.NodeSpec{PodCIDR: "10.1.4.0/24"}}, "", "10.1.4.1"},
		{"too small", node("n", "192.0.2.1", "10.1.2.0/31"), "", "error: node n: spec.podCIDR 10.1.2.0/31 is too small to hold a pod-network address"},
		{"bad", node("n", "192.0.2.1", "10.1.2.0"), "", `error: node n: spec.podCIDR "10.1.2.0": netip.ParsePrefix("10.1.2.0"): no '/'`},
		{"IPv6 only", node("n", "192.0.2.1", "fd00::/64"), "", "error: node n: no IPv4 pod CIDR among [fd00::/64]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o netip.Addr
			if tc.override != "" {
				o = netip.MustParseAddr(tc.override)
			}
			a, err := PodNetworkAddr(tc.node, o)
			got := a.String()
			if err != nil {
				got = "error: " + err.Error()
			}
			if got != tc.want {
				t.Fatalf("PodNetworkAddr = %s; want %s", got, tc.want)
			}
		})
	}
}

func TestNodeIP(t *testing.T) {
	n := node("n", "", "")
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeExternalIP, Address: "203.0.113.5"},
		{Type: corev1.NodeInternalIP, Address: "fd00::5"},
		{Type: corev1.NodeInternalIP, Address: "192.168.1.5"},
	}
	if ip, err := NodeIP(n); err != nil || ip != netip.MustParseAddr("192.168.1.5") {
		t.Fatalf("NodeIP = %v, %v; want the IPv4 InternalIP", ip, err)
	}
}
