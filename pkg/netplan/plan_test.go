package netplan

import (
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// base is a valid non-gateway node input.
func base() NodeInput {
	return NodeInput{
		Node:           "node-b",
		NodeIP:         addr("192.168.10.12"),
		GatewayIP:      addr("192.168.10.11"),
		PodNetworkAddr: addr("10.1.2.1"),
		LocalCIDRs:     pfx("10.1.0.0/16", "10.96.0.0/16"),
		Remotes: []Remote{
			{ClusterID: "west", Subnets: pfx("10.3.0.0/16", "10.97.0.0/16")},
			{ClusterID: "east", Subnets: pfx("10.2.0.0/16")},
		},
		TunnelMTU: 1420,
	}
}

func TestPlanGolden(t *testing.T) {
	tests := []struct {
		name string
		in   func() NodeInput
	}{
		{"gateway", func() NodeInput {
			in := base()
			in.Node, in.NodeIP, in.Gateway, in.GatewayIP = "node-a", addr("192.168.10.11"), true, netip.Addr{}
			in.PodNetworkAddr = addr("10.1.1.1")
			return in
		}},
		{"node", base},
		{"node-cni-interface", func() NodeInput {
			in := base()
			in.CNIInterface = "cni0"
			return in
		}},
		{"node-gateway-unknown", func() NodeInput {
			in := base()
			in.GatewayIP = netip.Addr{}
			return in
		}},
		{"node-no-remotes", func() NodeInput {
			in := base()
			in.Remotes = nil
			return in
		}},
		{"custom-params", func() NodeInput {
			in := base()
			in.TunnelMTU = 8920
			in.Params = Params{WireGuardDevice: "wg0", VXLANDevice: "vx0", VNI: 7, VXLANPort: 8472, Table: 100, RulePriority: 90}
			return in
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := Plan(tt.in())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tt.name+".golden"), st.String())
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./pkg/netplan -update` to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestPlanDeterministic(t *testing.T) {
	want, err := Plan(base())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		in := base()
		for i := range in.Remotes {
			in.Remotes[i].Subnets = append([]netip.Prefix(nil), in.Remotes[i].Subnets...)
			rng.Shuffle(len(in.Remotes[i].Subnets), func(a, b int) {
				in.Remotes[i].Subnets[a], in.Remotes[i].Subnets[b] = in.Remotes[i].Subnets[b], in.Remotes[i].Subnets[a]
			})
		}
		rng.Shuffle(len(in.Remotes), func(a, b int) { in.Remotes[a], in.Remotes[b] = in.Remotes[b], in.Remotes[a] })
		rng.Shuffle(len(in.LocalCIDRs), func(a, b int) { in.LocalCIDRs[a], in.LocalCIDRs[b] = in.LocalCIDRs[b], in.LocalCIDRs[a] })
		got, err := Plan(in)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("order of input changed output:\n%s\nvs\n%s", got, want)
		}
	}
}

func TestPlanDoesNotModifyInput(t *testing.T) {
	in := base()
	in.LocalCIDRs = pfx("10.96.0.0/16", "10.1.0.0/16")
	if _, err := Plan(in); err != nil {
		t.Fatal(err)
	}
	if in.LocalCIDRs[0] != netip.MustParsePrefix("10.96.0.0/16") || in.Remotes[0].ClusterID != "west" {
		t.Fatalf("Plan modified its input: %+v", in)
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*NodeInput)
		want string // substring, starting with the field name
	}{
		{"no node name", func(in *NodeInput) { in.Node = "" }, "node: must not be empty"},
		{"no node ip", func(in *NodeInput) { in.NodeIP = netip.Addr{} }, "node_ip: must be set"},
		{"ipv6 node ip", func(in *NodeInput) { in.NodeIP = addr("fd00::1") }, "node_ip: fd00::1 is IPv6"},
		{"loopback node ip", func(in *NodeInput) { in.NodeIP = addr("127.0.0.1") }, "node_ip: 127.0.0.1 is not a unicast"},
		{"mtu low", func(in *NodeInput) { in.TunnelMTU = 500 }, "tunnel_mtu: 500 is out of range"},
		{"mtu high", func(in *NodeInput) { in.TunnelMTU = 65000 }, "tunnel_mtu: 65000 is out of range"},
		{"mtu zero", func(in *NodeInput) { in.TunnelMTU = 0 }, "tunnel_mtu: 0 is out of range"},
		{"no local cidrs", func(in *NodeInput) { in.LocalCIDRs = nil }, "local_cidrs: must not be empty"},
		{"local not canonical", func(in *NodeInput) { in.LocalCIDRs = pfx("10.1.0.1/16") }, `local_cidrs[0]: "10.1.0.1/16" is not canonical`},
		{"local ipv6 mix", func(in *NodeInput) { in.LocalCIDRs = pfx("10.1.0.0/16", "fd00::/64") }, "local_cidrs[1]: fd00::/64 is IPv6"},
		{"local default route", func(in *NodeInput) { in.LocalCIDRs = pfx("0.0.0.0/0") }, `local_cidrs[0]: "0.0.0.0/0" is a default route`},
		{"local overlaps overlay", func(in *NodeInput) { in.LocalCIDRs = pfx("240.1.0.0/16") }, "local_cidrs[0]: 240.1.0.0/16 overlaps the VXLAN overlay"},
		{"locals overlap", func(in *NodeInput) { in.LocalCIDRs = pfx("10.1.0.0/16", "10.1.2.0/24") }, "local_cidrs[1]: 10.1.2.0/24 overlaps local_cidrs[0]"},
		{"pod addr missing", func(in *NodeInput) { in.PodNetworkAddr = netip.Addr{} }, "pod_network_addr: must be set"},
		{"pod addr outside", func(in *NodeInput) { in.PodNetworkAddr = addr("10.50.0.1") }, "pod_network_addr: 10.50.0.1 is not inside local_cidrs"},
		{"gateway ip ipv6", func(in *NodeInput) { in.GatewayIP = addr("fd00::2") }, "gateway_ip: fd00::2 is IPv6"},
		{"gateway ip is node ip", func(in *NodeInput) { in.GatewayIP = in.NodeIP }, "gateway_ip: 192.168.10.12 is this node's IP"},
		{"gateway overlay collision", func(in *NodeInput) { in.GatewayIP = addr("11.168.10.12") }, "gateway_ip: 11.168.10.12 has the same overlay address 240.168.10.12"},
		{"remote no id", func(in *NodeInput) { in.Remotes[1].ClusterID = "" }, "remotes[1].cluster_id: must not be empty"},
		{"remote dup id", func(in *NodeInput) { in.Remotes[1].ClusterID = "west" }, `remotes[1].cluster_id: "west" duplicates remotes[0]`},
		{"remote overlaps local", func(in *NodeInput) { in.Remotes[1].Subnets = pfx("10.0.0.0/8") }, "remotes[1].subnets[0]: 10.0.0.0/8 (cluster east) overlaps local_cidrs[0] 10.1.0.0/16"},
		{"remote default route", func(in *NodeInput) { in.Remotes[0].Subnets = pfx("0.0.0.0/0") }, `remotes[0].subnets[0]: "0.0.0.0/0" is a default route`},
		{"remote not canonical", func(in *NodeInput) { in.Remotes[0].Subnets = pfx("10.3.1.0/16") }, `remotes[0].subnets[0]: "10.3.1.0/16" is not canonical (want 10.3.0.0/16) (cluster west)`},
		{"remote ipv6", func(in *NodeInput) { in.Remotes[1].Subnets = pfx("fd02::/64") }, "remotes[1].subnets[0]: fd02::/64 is IPv6"},
		{"remote overlay", func(in *NodeInput) { in.Remotes[1].Subnets = pfx("240.5.0.0/16") }, "remotes[1].subnets[0]: 240.5.0.0/16 (cluster east) overlaps the VXLAN overlay range"},
		{"remotes overlap", func(in *NodeInput) { in.Remotes[1].Subnets = pfx("10.3.4.0/24") }, "remotes[1].subnets[0]: 10.3.4.0/24 (cluster east) overlaps remotes[0].subnets[0] 10.3.0.0/16 (cluster west)"},
		{"remote duplicate within cluster", func(in *NodeInput) { in.Remotes[1].Subnets = pfx("10.2.0.0/16", "10.2.0.0/16") }, "remotes[1].subnets[1]: 10.2.0.0/16 (cluster east) overlaps remotes[1].subnets[0]"},
		{"remote contains node ip", func(in *NodeInput) { in.Remotes[1].Subnets = pfx("192.168.0.0/16") }, "remotes[1].subnets[0]: 192.168.0.0/16 (cluster east) contains node_ip 192.168.10.12"},
		{"remote contains gateway ip", func(in *NodeInput) {
			in.NodeIP = addr("172.16.0.2")
			in.Remotes[1].Subnets = pfx("192.168.10.0/24")
		}, "remotes[1].subnets[0]: 192.168.10.0/24 (cluster east) contains gateway_ip 192.168.10.11"},
		{"bad cni interface", func(in *NodeInput) { in.CNIInterface = "a-very-long-interface" }, "cni_interface: interface name"},
		{"cni interface is weft's", func(in *NodeInput) { in.CNIInterface = "weft-vx" }, `cni_interface: "weft-vx" is one of weft's devices`},
		{"bad vni", func(in *NodeInput) { in.Params.VNI = 1 << 24 }, "params.vni: 16777216 is out of range"},
		{"reserved table", func(in *NodeInput) { in.Params.Table = 254 }, "params.table: 254 is reserved"},
		{"bad priority", func(in *NodeInput) { in.Params.RulePriority = 32766 }, "params.rule_priority: 32766 is out of range"},
		{"bad device name", func(in *NodeInput) { in.Params.VXLANDevice = "x/y" }, `params.vxlan_device: interface name "x/y" is invalid`},
		{"same device names", func(in *NodeInput) { in.Params.VXLANDevice = "weft-wg" }, `params.vxlan_device: "weft-wg" is also the WireGuard device`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			in.Remotes = append([]Remote(nil), in.Remotes...)
			tt.mod(&in)
			_, err := Plan(in)
			if err == nil {
				t.Fatalf("Plan accepted bad input; want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestOverlayAddr(t *testing.T) {
	got, err := OverlayAddr(addr("198.19.1.7"))
	if err != nil || got != netip.MustParsePrefix("240.19.1.7/8") {
		t.Fatalf("OverlayAddr = %v, %v", got, err)
	}
	if _, err := OverlayAddr(addr("fd00::1")); err == nil {
		t.Fatal("OverlayAddr accepted IPv6")
	}
}

func TestPlanGatewayRoutesAndNodeRoutes(t *testing.T) {
	gw := base()
	gw.Gateway, gw.NodeIP, gw.GatewayIP = true, addr("192.168.10.11"), netip.Addr{}
	st, err := Plan(gw)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.VXLAN.FDB) != 0 {
		t.Errorf("gateway has FDB entries %v; want none", st.VXLAN.FDB)
	}
	for _, r := range st.Routes {
		if r.Dev != DefaultWireGuardDevice || r.Via.IsValid() || r.Src != gw.PodNetworkAddr || r.Table != DefaultTable {
			t.Errorf("gateway route %v", r)
		}
	}
	st, err = Plan(base())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Routes) != 3 {
		t.Fatalf("node routes = %v; want 3", st.Routes)
	}
	for _, r := range st.Routes {
		if r.Dev != DefaultVXLANDevice || r.Via != addr("240.168.10.11") || !r.Onlink {
			t.Errorf("node route %v", r)
		}
	}
	if mss := st.Firewall.Chains[1].Rules[0]; strings.Join(mss, " ") != "-s 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380" {
		t.Errorf("MSS rule = %q", mss)
	}
}
