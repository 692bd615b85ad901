package routeagent

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/firewall/firewalltest"
	"github.com/weftnet/weft/pkg/netplan"
	"github.com/weftnet/weft/pkg/route"
	"github.com/weftnet/weft/pkg/route/routetest"
)

type noLinks struct{}

func (noLinks) LinkByAddr(netip.Addr) (Link, bool, error) { return Link{}, false, nil }

func TestNewValidates(t *testing.T) {
	valid := func() Options {
		return Options{
			RESTConfig:   &rest.Config{Host: "https://127.0.0.1:6443"},
			NodeName:     "n1",
			ClusterCIDRs: prefixes("10.1.0.0/16"),
			Kernel:       routetest.New(),
			Tables:       firewalltest.New(),
			Links:        noLinks{},
		}
	}
	a, err := New(valid())
	if err != nil {
		t.Fatal(err)
	}
	if a.o.Resync != DefaultResync || a.o.Namespace != DefaultNamespace || a.o.LeaseName != DefaultLeaseName ||
		a.o.Params.WireGuardDevice != netplan.DefaultWireGuardDevice || a.o.Params.Table != netplan.DefaultTable {
		t.Fatalf("defaults not applied: %+v", a.o)
	}
	if st := a.Status(); st.Synced || st.Passes != 0 {
		t.Fatalf("Status before Run = %+v", st)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no REST config", func(o *Options) { o.RESTConfig = nil }, "RESTConfig is required"},
		{"no node", func(o *Options) { o.NodeName = "" }, "NodeName is required"},
		{"no CIDRs", func(o *Options) { o.ClusterCIDRs = nil }, "ClusterCIDRs is required"},
		{"non-canonical CIDR", func(o *Options) { o.ClusterCIDRs = prefixes("10.1.2.3/16") }, "ClusterCIDRs[0] 10.1.2.3/16"},
		{"IPv6 CIDR", func(o *Options) { o.ClusterCIDRs = prefixes("fd00::/64") }, "ClusterCIDRs[0] fd00::/64"},
		{"IPv6 pod address", func(o *Options) { o.PodNetworkAddr = netip.MustParseAddr("fd00::1") }, "PodNetworkAddr fd00::1"},
		{"MTU too small", func(o *Options) { o.TunnelMTU = 100 }, "TunnelMTU 100"},
		{"bad CNI interface", func(o *Options) { o.CNIInterface = "a/b" }, "CNIInterface"},
		{"no kernel", func(o *Options) { o.Kernel = nil }, "Kernel and Options.Tables are required"},
		{"no tables", func(o *Options) { o.Tables = nil }, "Kernel and Options.Tables are required"},
		{"no links to derive with", func(o *Options) { o.Links = nil; o.TunnelMTU = 1400 }, "Links is required"},
		{"negative resync", func(o *Options) { o.Resync = -1 }, "Resync"},
		{"bad params", func(o *Options) { o.Params.WireGuardDevice = "weft-vx" }, "also the WireGuard device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mod(&o)
			if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	o := valid()
	o.Links, o.TunnelMTU, o.CNIInterface = nil, 1400, "cni0"
	if _, err := New(o); err != nil {
		t.Fatalf("New without Links but with MTU and CNI interface: %v", err)
	}
}

func TestNodeChanged(t *testing.T) {
	base := node("n1", "192.168.1.1", "10.1.1.0/24")
	heartbeat := base.DeepCopy()
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	heartbeat.ResourceVersion = "2"
	moved := base.DeepCopy()
	moved.Status.Addresses[1].Address = "192.168.1.9"
	cidr := base.DeepCopy()
	cidr.Spec.PodCIDRs = []string{"10.1.1.0/24", "fd00::/64"}
	for _, tc := range []struct {
		name     string
		old, new any
		want     bool
	}{
		{"heartbeat", base, heartbeat, false},
		{"address", base, moved, true},
		{"pod CIDRs", base, cidr, true},
		{"tombstone", base, "not a node", true},
	} {
		if got := nodeChanged(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: nodeChanged = %v", tc.name, got)
		}
	}
}

func TestCountOps(t *testing.T) {
	rc := []route.Change{{Op: "add", Object: "route a"}, {Op: "delete", Object: "route b"}, {Op: "add", Object: "rule c"}}
	if got := countOps(rc, route.Change.String); got != "add=2 delete=1" {
		t.Errorf("countOps = %q", got)
	}
	if got := countOps([]firewall.Change(nil), firewall.Change.String); got != "" {
		t.Errorf("countOps(nil) = %q", got)
	}
}
