package lab

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./pkg/lab -run %s -update to accept):\n%s", path, t.Name(), lineDiff(string(want), got))
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
		}
	}
	return b.String()
}

func TestPlanGoldenDefault(t *testing.T) {
	p, err := NewPlan(DefaultTopology())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "default-plan.golden", p.String())
}

func TestPlanGoldenNAT(t *testing.T) {
	topo := Topology{
		Name: "wtnat",
		WAN:  WAN{Delay: Duration(10 * time.Millisecond), Loss: 0.5},
		Clusters: []Cluster{
			{Name: "east", Nodes: 2, Gateways: []int{1, 2}, PodsPerNode: intp(1), NAT: true},
			{Name: "west", Nodes: 1, PodsPerNode: intp(0)},
		},
	}
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "nat-plan.golden", p.String())
}

func TestPlanAddressing(t *testing.T) {
	topo := DefaultTopology()
	topo.Clusters[1].NAT = true
	topo.Clusters[1].Gateways = []int{2}
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	pfx := netip.MustParsePrefix
	c1, c2 := p.Clusters[0], p.Clusters[1]
	for _, tc := range []struct {
		what string
		got  any
		want any
	}{
		{"c1 LAN", c1.LAN, pfx("198.19.1.0/24")},
		{"c2 LAN", c2.LAN, pfx("198.19.2.0/24")},
		{"c1 n1 LAN", c1.Nodes[0].LANAddr, pfx("198.19.1.11/24")},
		{"c1 n2 ctl", c1.Nodes[1].CtlAddr, pfx("198.19.255.12/24")},
		{"c2 n1 ctl", c2.Nodes[0].CtlAddr, pfx("198.19.255.21/24")},
		{"c1 n1 gateway", c1.Nodes[0].Gateway, true},
		{"c1 n2 gateway", c1.Nodes[1].Gateway, false},
		{"c1 n1 WAN", c1.Nodes[0].WANAddr, pfx("198.18.0.11/24")},
		{"c1 n2 WAN", c1.Nodes[1].WANAddr, netip.Prefix{}},
		{"c2 router WAN", c2.Router.WANAddr, pfx("198.18.0.20/24")},
		{"c2 router inside", c2.Router.InsideAddr, pfx("198.18.2.1/24")},
		{"c2 n2 WAN (private)", c2.Nodes[1].WANAddr, pfx("198.18.2.12/24")},
		{"c2 n2 slice", c2.Nodes[1].PodSlice, pfx("10.2.2.0/24")},
		{"c2 n2 bridge", c2.Nodes[1].PodGateway, pfx("10.2.2.1/24")},
		{"c2 n2 p2", c2.Nodes[1].Pods[1].Addr, pfx("10.2.2.3/24")},
		{"c2 n2 p2 gw", c2.Nodes[1].Pods[1].Gateway, netip.MustParseAddr("10.2.2.1")},
		{"c2 service", c2.ServiceCIDR, pfx("10.102.0.0/16")},
		{"c1 router", c1.Router == nil, true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if c1.Router != nil {
		t.Error("c1 has a router")
	}
	// No route anywhere joins the clusters' pod CIDRs.
	for _, s := range p.Steps {
		r, ok := s.(AddRoute)
		if !ok {
			continue
		}
		for _, c := range p.Clusters {
			if r.Dst.Bits() > 0 && c.PodCIDR.Overlaps(r.Dst) && !strings.HasPrefix(r.NS, "weft-"+c.Name+"-") {
				t.Errorf("route into cluster %s from outside it: %s", c.Name, r)
			}
		}
	}
}

func TestPlanResolve(t *testing.T) {
	topo := DefaultTopology()
	topo.Clusters[1].NAT = true
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ target, ns, addr string }{
		{"c1/n1-p2", "weft-c1-n1-p2", "10.1.1.3"},
		{"c2/n2", "weft-c2-n2", "198.19.2.12"},
		{"c2/rtr", "weft-c2-rtr", "198.18.0.20"},
		{"ctl", "weft-ctl", "198.19.255.1"},
		{"wan", "weft-wan", "invalid IP"},
		{"c1/lan", "weft-c1-lan", "invalid IP"},
	} {
		tg, err := ParseTarget(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := p.Resolve(tg)
		if err != nil || pl.Namespace != tc.ns || pl.Addr.String() != tc.addr {
			t.Errorf("Resolve(%s) = %+v, %v", tc.target, pl, err)
		}
	}
	for _, bad := range []string{"c3/n1", "c1/n3", "c1/n1-p3", "c1/rtr"} {
		tg, _ := ParseTarget(bad)
		if pl, err := p.Resolve(tg); err == nil {
			t.Errorf("Resolve(%s) = %+v, want error", bad, pl)
		}
	}
}

func TestPlanInterfaceNamesFit(t *testing.T) {
	topo := GenerateTopology(3, MaxNodes, 3)
	for k := range topo.Clusters {
		topo.Clusters[k].Name = strings.Repeat("abcdefghij", 1)[:MaxClusterNameLen-1] + string(rune('a'+k))
		topo.Clusters[k].NAT = k%2 == 0
	}
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		var names []string
		switch s := s.(type) {
		case AddBridge:
			names = []string{s.Name}
		case AddVeth:
			names = []string{s.Name, s.PeerName}
		}
		for _, n := range names {
			if len(n) > 15 {
				t.Errorf("%s: %q is longer than 15", s, n)
			}
		}
	}
}

func TestDemoTopology(t *testing.T) {
	topo, err := LoadTopology(filepath.Join("testdata", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Clusters) != 3 {
		t.Fatalf("demo has %d clusters", len(p.Clusters))
	}
	for _, c := range p.Clusters {
		if len(c.Nodes) != 3 || len(c.Nodes[0].Pods) != 2 {
			t.Errorf("cluster %s: %d nodes, %d pods on n1", c.Name, len(c.Nodes), len(c.Nodes[0].Pods))
		}
	}
}
