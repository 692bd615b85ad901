package lab

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func intp(i int) *int { return &i }

func TestParseTopology(t *testing.T) {
	topo, err := ParseTopology([]byte(`
name: demo
wan: {delay: 15ms, jitter: 2ms, loss: 1.5}
clusters:
- name: east
  podCIDR: 10.50.0.0/16
  nodes: 3
  gateways: [1, 2]
  podsPerNode: 0
  nat: true
- name: west
`))
	if err != nil {
		t.Fatal(err)
	}
	topo = topo.WithDefaults()
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	if topo.Name != "demo" || time.Duration(topo.WAN.Delay) != 15*time.Millisecond || time.Duration(topo.WAN.Jitter) != 2*time.Millisecond || topo.WAN.Loss != 1.5 {
		t.Errorf("name/wan = %q %+v", topo.Name, topo.WAN)
	}
	east, west := topo.Clusters[0], topo.Clusters[1]
	if east.PodCIDR != "10.50.0.0/16" || east.ServiceCIDR != "10.101.0.0/16" || east.Nodes != 3 || len(east.Gateways) != 2 || *east.PodsPerNode != 0 || !east.NAT {
		t.Errorf("east = %+v", east)
	}
	if west.PodCIDR != "10.2.0.0/16" || west.ServiceCIDR != "10.102.0.0/16" || west.Nodes != 2 || west.Gateways[0] != 1 || *west.PodsPerNode != 2 || west.NAT {
		t.Errorf("west = %+v", west)
	}
}

func TestParseTopologyRejects(t *testing.T) {
	for name, src := range map[string]string{
		"unknown field":  "clusters:\n- name: c1\n  pods: 3\n",
		"bad duration":   "wan: {delay: fast}\n",
		"numeric delay":  "wan: {delay: 20}\n",
		"not yaml":       "clusters: [",
		"wrong type":     "clusters:\n- name: c1\n  nodes: two\n",
		"top-level typo": "clusterz: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTopology([]byte(src)); err == nil {
				t.Fatalf("accepted %q", src)
			}
		})
	}
}

func TestDefaultTopology(t *testing.T) {
	topo := DefaultTopology().WithDefaults()
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	if topo.Name != "weft" || len(topo.Clusters) != 2 || topo.Clusters[0].Name != "c1" || topo.Clusters[1].Name != "c2" {
		t.Fatalf("default = %+v", topo)
	}
	for _, c := range topo.Clusters {
		if c.Nodes != 2 || *c.PodsPerNode != 2 || len(c.Gateways) != 1 || c.Gateways[0] != 1 {
			t.Errorf("cluster %+v", c)
		}
	}
}

func TestValidate(t *testing.T) {
	base := func() Topology { return DefaultTopology().WithDefaults() }
	for _, tc := range []struct {
		name   string
		mutate func(*Topology)
		field  string // the FieldError's field
		reason string // substring of its reason
	}{
		{"bad lab name", func(t *Topology) { t.Name = "Weft" }, "name", "lowercase"},
		{"lab name with dash", func(t *Topology) { t.Name = "we-ft" }, "name", "no '-'"},
		{"long lab name", func(t *Topology) { t.Name = "abcdefghijk" }, "name", "too long"},
		{"bad CIDR", func(t *Topology) { t.Clusters[0].PodCIDR = "10.1.0.0/33" }, "clusters[0].podCIDR", "not a CIDR"},
		{"garbage CIDR", func(t *Topology) { t.Clusters[1].ServiceCIDR = "pods" }, "clusters[1].serviceCIDR", "not a CIDR"},
		{"non-canonical CIDR", func(t *Topology) { t.Clusters[0].PodCIDR = "10.1.2.0/16" }, "clusters[0].podCIDR", "did you mean 10.1.0.0/16"},
		{"IPv6 CIDR", func(t *Topology) { t.Clusters[0].PodCIDR = "fd00::/48" }, "clusters[0].podCIDR", "IPv4"},
		{"too broad", func(t *Topology) { t.Clusters[0].PodCIDR = "0.0.0.0/0" }, "clusters[0].podCIDR", "too broad"},
		{"pod CIDR too small", func(t *Topology) { t.Clusters[0].PodCIDR = "10.1.0.0/24" }, "clusters[0].podCIDR", "too small for 2 nodes"},
		{"pod CIDR just too small", func(t *Topology) { t.Clusters[0].PodCIDR = "10.1.0.0/23"; t.Clusters[0].Nodes = 2 }, "clusters[0].podCIDR", "must hold 3 /24s"},
		{"overlap across clusters", func(t *Topology) { t.Clusters[1].PodCIDR = "10.1.128.0/17" }, "clusters[1].podCIDR", "overlaps clusters[0].podCIDR"},
		{"pod overlaps service", func(t *Topology) { t.Clusters[0].ServiceCIDR = "10.1.0.0/20" }, "clusters[0].serviceCIDR", "overlaps clusters[0].podCIDR"},
		{"overlaps lab range", func(t *Topology) { t.Clusters[0].PodCIDR = "198.19.0.0/16" }, "clusters[0].podCIDR", "lab's own range"},
		{"too many clusters", func(t *Topology) { *t = GenerateTopology(25, 1, 0).WithDefaults() }, "clusters", "at most 24"},
		{"no clusters", func(t *Topology) { t.Clusters = nil }, "clusters", "at least one"},
		{"too many nodes", func(t *Topology) { t.Clusters[0].Nodes = 10 }, "clusters[0].nodes", "out of range 1..9"},
		{"too many pods", func(t *Topology) { t.Clusters[0].PodsPerNode = intp(254) }, "clusters[0].podsPerNode", "out of range 0..253"},
		{"negative pods", func(t *Topology) { t.Clusters[0].PodsPerNode = intp(-1) }, "clusters[0].podsPerNode", "out of range"},
		{"gateway out of range", func(t *Topology) { t.Clusters[1].Gateways = []int{3} }, "clusters[1].gateways[0]", "node 3 does not exist"},
		{"gateway twice", func(t *Topology) { t.Clusters[1].Gateways = []int{1, 1} }, "clusters[1].gateways[1]", "listed twice"},
		{"duplicate cluster", func(t *Topology) { t.Clusters[1].Name = "c1" }, "clusters[1].name", "duplicates clusters[0].name"},
		{"cluster not DNS label", func(t *Topology) { t.Clusters[0].Name = "C_1" }, "clusters[0].name", "DNS-1123"},
		{"cluster trailing dash", func(t *Topology) { t.Clusters[0].Name = "c1-" }, "clusters[0].name", "DNS-1123"},
		{"cluster name too long", func(t *Topology) { t.Clusters[0].Name = "eleven-char" }, "clusters[0].name", "must fit 15 characters"},
		{"empty cluster name", func(t *Topology) { t.Clusters[0].Name = "" }, "clusters[0].name", "required"},
		{"negative delay", func(t *Topology) { t.WAN.Delay = Duration(-time.Millisecond) }, "wan.delay", "out of range"},
		{"jitter without delay", func(t *Topology) { t.WAN.Jitter = Duration(time.Millisecond) }, "wan.jitter", "needs a wan.delay"},
		{"loss over 100", func(t *Topology) { t.WAN.Loss = 101 }, "wan.loss", "percentage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := base()
			tc.mutate(&topo)
			err := topo.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			var found bool
			for _, e := range unjoin(err) {
				var fe *FieldError
				if errors.As(e, &fe) && fe.Field == tc.field && strings.Contains(fe.Reason, tc.reason) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want field %s with %q, got:\n%v", tc.field, tc.reason, err)
			}
			if _, err := NewPlan(topo); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("NewPlan error does not name %s: %v", tc.field, err)
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestValidateLimitsAccepted(t *testing.T) {
	topo := GenerateTopology(MaxClusters, MaxNodes, 1)
	topo.Clusters[0].Name = "ten-chars0"
	topo.Clusters[0].NAT = true
	topo.Clusters[3].PodsPerNode = intp(MaxPodsPerNode)
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	last := p.Clusters[MaxClusters-1].Nodes[MaxNodes-1]
	if last.CtlAddr.String() != "198.19.255.249/24" || last.LANAddr.String() != "198.19.24.19/24" {
		t.Errorf("last node: %+v", last)
	}
}

func TestPodSlice(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		i    int
		want string
	}{
		{"10.1.0.0/16", 1, "10.1.1.0/24"},
		{"10.1.0.0/16", 9, "10.1.9.0/24"},
		{"10.8.0.0/14", 5, "10.8.5.0/24"},
		{"10.8.0.0/14", 255, "10.8.255.0/24"},
		{"10.8.0.0/14", 256, "10.9.0.0/24"},
		{"172.16.4.0/22", 2, "172.16.6.0/24"},
		{"10.1.2.0/24", 0, "10.1.2.0/24"},
	} {
		got, err := podSlice(netip.MustParsePrefix(tc.cidr), tc.i)
		if err != nil || got.String() != tc.want {
			t.Errorf("podSlice(%s, %d) = %v, %v; want %s", tc.cidr, tc.i, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cidr string
		i    int
	}{{"172.16.4.0/22", 4}, {"10.1.2.0/25", 0}, {"10.1.0.0/16", 256}} {
		if got, err := podSlice(netip.MustParsePrefix(tc.cidr), tc.i); err == nil {
			t.Errorf("podSlice(%s, %d) = %v, want error", tc.cidr, tc.i, got)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	topo := DefaultTopology()
	topo.WAN.Delay = Duration(25 * time.Millisecond)
	b, err := yamlRoundTrip(topo)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(b.WAN.Delay) != 25*time.Millisecond {
		t.Fatalf("round trip: %v", b.WAN.Delay)
	}
}
