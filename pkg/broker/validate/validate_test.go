package validate

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
)

func key(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func clusterA() *pb.Cluster {
	return &pb.Cluster{Id: "east", PodCidrs: []string{"10.1.0.0/16"}, ServiceCidrs: []string{"10.101.0.0/16"}}
}

func clusterB() *pb.Cluster {
	return &pb.Cluster{Id: "west", PodCidrs: []string{"10.2.0.0/16", "fd00:2::/56"}, ServiceCidrs: []string{"10.102.0.0/16"}}
}

func globalC() *pb.Cluster {
	return &pb.Cluster{Id: "gn-1", PodCidrs: []string{"10.0.0.0/16"}, ServiceCidrs: []string{"10.96.0.0/16"}, Globalnet: true, GlobalCidr: "242.0.0.0/16"}
}

func globalD() *pb.Cluster {
	return &pb.Cluster{Id: "gn-2", PodCidrs: []string{"10.0.0.0/16"}, ServiceCidrs: []string{"10.96.0.0/16"}, Globalnet: true, GlobalCidr: "242.1.0.0/16"}
}

// wantErrs checks err against expected "field: message" substrings, in
// order; none means valid.
func wantErrs(t *testing.T, err error, want ...string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	es, ok := AsErrors(err)
	if !ok {
		t.Fatalf("error %v (%T) is not validate.Errors; want %q", err, err, want)
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors, want %d:\n  got:  %v\n  want: %q", len(es), len(want), err, want)
	}
	for i, w := range want {
		if !strings.Contains(es[i].Error(), w) {
			t.Errorf("error[%d] = %q, want it to contain %q", i, es[i], w)
		}
	}
}

func TestCluster(t *testing.T) {
	others := []*pb.Cluster{clusterA(), clusterB(), globalC(), nil}
	tests := []struct {
		name   string
		mod    func(c *pb.Cluster)
		others []*pb.Cluster
		want   []string
	}{
		{name: "valid", mod: func(c *pb.Cluster) {}},
		{name: "valid, self in others", mod: func(c *pb.Cluster) {}, others: []*pb.Cluster{{Id: "new", PodCidrs: []string{"10.9.0.0/16"}}}},
		{name: "valid dual-stack", mod: func(c *pb.Cluster) { c.PodCidrs = append(c.PodCidrs, "fd00:9::/56") }},
		{name: "id missing", mod: func(c *pb.Cluster) { c.Id = "" }, want: []string{"id: is required"}},
		{name: "id uppercase", mod: func(c *pb.Cluster) { c.Id = "East" }, want: []string{`id: "East" is not a DNS-1123 label`}},
		{name: "id too long", mod: func(c *pb.Cluster) { c.Id = strings.Repeat("a", 64) }, want: []string{"id: \"" + strings.Repeat("a", 64) + "\" is longer than 63 characters"}},
		{name: "id trailing dash", mod: func(c *pb.Cluster) { c.Id = "a-" }, want: []string{"is not a DNS-1123 label"}},
		{name: "no pod cidrs", mod: func(c *pb.Cluster) { c.PodCidrs = nil }, want: []string{"pod_cidrs: needs at least one CIDR"}},
		{name: "no service cidrs", mod: func(c *pb.Cluster) { c.ServiceCidrs = nil }, want: []string{"service_cidrs: needs at least one CIDR"}},
		{
			name: "not canonical", mod: func(c *pb.Cluster) { c.PodCidrs = []string{"10.9.0.0/16", "10.8.0.1/16"} },
			want: []string{`pod_cidrs[1]: "10.8.0.1/16" is not canonical (want 10.8.0.0/16)`},
		},
		{name: "default route", mod: func(c *pb.Cluster) { c.ServiceCidrs = []string{"0.0.0.0/0"} }, want: []string{`service_cidrs[0]: "0.0.0.0/0" is a default route`}},
		{name: "too broad", mod: func(c *pb.Cluster) { c.ServiceCidrs = []string{"64.0.0.0/2"} }, want: []string{"is too broad"}},
		{name: "loopback", mod: func(c *pb.Cluster) { c.PodCidrs = []string{"127.0.0.0/16"} }, want: []string{"overlaps loopback range"}},
		{
			name: "too many", mod: func(c *pb.Cluster) { c.PodCidrs = make([]string, 33) },
			want: []string{"pod_cidrs: has 33 entries, at most 32 allowed"},
		},
		{
			name: "duplicate in list", mod: func(c *pb.Cluster) { c.PodCidrs = []string{"10.9.0.0/16", "10.9.0.0/24"} },
			want: []string{`pod_cidrs[1]: "10.9.0.0/24" overlaps pod_cidrs[0] 10.9.0.0/16`},
		},
		{
			name: "pods overlap services", mod: func(c *pb.Cluster) { c.ServiceCidrs = []string{"10.9.128.0/24"} },
			want: []string{`pod_cidrs[0]: "10.9.0.0/16" overlaps service_cidrs[0] 10.9.128.0/24`},
		},
		{
			name: "overlaps other cluster", mod: func(c *pb.Cluster) { c.PodCidrs = []string{"10.1.0.0/24"} },
			want: []string{`pod_cidrs[0]: "10.1.0.0/24" overlaps pod_cidrs[0] 10.1.0.0/16 of cluster "east"`},
		},
		{
			name: "service overlaps other's pods, index kept", mod: func(c *pb.Cluster) { c.ServiceCidrs = []string{"10.200.0.0/16", "fd00:2::/64"} },
			want: []string{`service_cidrs[1]: "fd00:2::/64" overlaps pod_cidrs[1] fd00:2::/56 of cluster "west"`},
		},
		{
			name: "non-globalnet overlapping a globalnet cluster's real CIDRs", mod: func(c *pb.Cluster) { c.PodCidrs = []string{"10.0.0.0/16"} },
			want: []string{`pod_cidrs[0]: "10.0.0.0/16" overlaps pod_cidrs[0] 10.0.0.0/16 of cluster "gn-1"`},
		},
		{
			name: "overlaps another's global CIDR", mod: func(c *pb.Cluster) { c.PodCidrs = []string{"242.0.0.0/8"} },
			want: []string{`pod_cidrs[0]: "242.0.0.0/8" overlaps global_cidr 242.0.0.0/16 of cluster "gn-1"`},
		},
		{
			name: "globalnet may overlap globalnet", mod: func(c *pb.Cluster) {
				c.PodCidrs, c.ServiceCidrs, c.Globalnet, c.GlobalCidr = []string{"10.0.0.0/16"}, []string{"10.96.0.0/16"}, true, "242.5.0.0/16"
			},
		},
		{
			name: "globalnet may not overlap non-globalnet", mod: func(c *pb.Cluster) {
				c.PodCidrs, c.Globalnet, c.GlobalCidr = []string{"10.1.0.0/16"}, true, "242.5.0.0/16"
			},
			want: []string{`overlaps pod_cidrs[0] 10.1.0.0/16 of cluster "east"`},
		},
		{
			name: "global CIDRs overlap", mod: func(c *pb.Cluster) { c.Globalnet, c.GlobalCidr = true, "242.0.0.0/15" },
			want: []string{`global_cidr: "242.0.0.0/15" overlaps global_cidr 242.0.0.0/16 of cluster "gn-1"`},
		},
		{
			name: "global CIDR overlaps other's real CIDR", mod: func(c *pb.Cluster) { c.Globalnet, c.GlobalCidr = true, "10.2.0.0/24" },
			want: []string{`global_cidr: "10.2.0.0/24" overlaps pod_cidrs[0] 10.2.0.0/16 of cluster "west"`},
		},
		{
			name: "global CIDR overlaps own", mod: func(c *pb.Cluster) { c.Globalnet, c.GlobalCidr = true, "10.9.0.0/24" },
			want: []string{`global_cidr: "10.9.0.0/24" overlaps pod_cidrs[0] 10.9.0.0/16`},
		},
		{name: "globalnet without global CIDR", mod: func(c *pb.Cluster) { c.Globalnet = true }, want: []string{"global_cidr: is required when globalnet is set"}},
		{name: "global CIDR without globalnet", mod: func(c *pb.Cluster) { c.GlobalCidr = "242.7.0.0/16" }, want: []string{`global_cidr: "242.7.0.0/16" must be empty unless globalnet is set`}},
		{name: "bad global CIDR", mod: func(c *pb.Cluster) { c.Globalnet, c.GlobalCidr = true, "242.7.0.1/16" }, want: []string{`global_cidr: "242.7.0.1/16" is not canonical`}},
		{
			name: "bad timestamps", mod: func(c *pb.Cluster) {
				c.LastHeartbeat = &timestamppb.Timestamp{Nanos: -1}
				c.Joined = &timestamppb.Timestamp{Seconds: 1 << 62}
			},
			want: []string{"last_heartbeat: is not a valid timestamp", "joined: is not a valid timestamp"},
		},
		{
			name: "several errors", mod: func(c *pb.Cluster) {
				c.Id = "X"
				c.PodCidrs = []string{"bad"}
				c.ServiceCidrs = []string{"10.1.0.0/16"}
			},
			want: []string{"id:", `pod_cidrs[0]: "bad" is not a prefix`, `service_cidrs[0]: "10.1.0.0/16" overlaps pod_cidrs[0] 10.1.0.0/16 of cluster "east"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &pb.Cluster{Id: "new", PodCidrs: []string{"10.9.0.0/16"}, ServiceCidrs: []string{"10.109.0.0/16"},
				LastHeartbeat: timestamppb.New(time.Unix(1700000000, 0))}
			tt.mod(c)
			o := others
			if tt.others != nil {
				o = tt.others
			}
			wantErrs(t, Cluster(c, o), tt.want...)
		})
	}
}

func TestClusterConflictField(t *testing.T) {
	c := &pb.Cluster{Id: "new", PodCidrs: []string{"10.1.0.0/16"}, ServiceCidrs: []string{"10.102.0.0/24"}}
	err := Cluster(c, []*pb.Cluster{clusterA(), clusterB()})
	es, ok := AsErrors(err)
	if !ok || len(es) != 2 {
		t.Fatalf("errors = %v", err)
	}
	if es[0].Field != "pod_cidrs[0]" || es[0].Conflict != "east" || es[0].Value != "10.1.0.0/16" {
		t.Errorf("es[0] = %+v", es[0])
	}
	if es[1].Field != "service_cidrs[0]" || es[1].Conflict != "west" {
		t.Errorf("es[1] = %+v", es[1])
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe != es[0] {
		t.Errorf("errors.As(*FieldError) = %v", fe)
	}
	p := es.WithPrefix("cluster")
	if p[0].Field != "cluster.pod_cidrs[0]" || es[0].Field != "pod_cidrs[0]" {
		t.Errorf("WithPrefix = %q (original %q)", p[0].Field, es[0].Field)
	}
	if got := (Errors{{Reason: "x"}}).WithPrefix("cluster")[0].Field; got != "cluster" {
		t.Errorf("WithPrefix of root = %q", got)
	}
}

func TestClusterInfo(t *testing.T) {
	others := []*pb.Cluster{clusterA(), globalC()}
	ok := &pb.ClusterInfo{Id: "new", PodCidrs: []string{"10.9.0.0/16"}, ServiceCidrs: []string{"10.109.0.0/16"}}
	wantErrs(t, ClusterInfo(ok, others))
	gn := &pb.ClusterInfo{Id: "new", PodCidrs: []string{"10.0.0.0/16"}, ServiceCidrs: []string{"10.96.0.0/16"}, WantsGlobalnet: true}
	wantErrs(t, ClusterInfo(gn, others))
	gn.WantsGlobalnet = false
	wantErrs(t, ClusterInfo(gn, others),
		`pod_cidrs[0]: "10.0.0.0/16" overlaps pod_cidrs[0] 10.0.0.0/16 of cluster "gn-1"`,
		`service_cidrs[0]: "10.96.0.0/16" overlaps service_cidrs[0] 10.96.0.0/16 of cluster "gn-1"`)
	wantErrs(t, ClusterInfo(nil, others), "cluster info is missing")
	wantErrs(t, Cluster(nil, others), "cluster record is missing")
}

func TestMaxErrors(t *testing.T) {
	c := &pb.Cluster{Id: "new", ServiceCidrs: []string{"10.109.0.0/16"}}
	for i := 0; i < MaxCIDRs; i++ {
		c.PodCidrs = append(c.PodCidrs, fmt.Sprintf("10.%d.0.1/16", i))
	}
	c.ServiceCidrs = c.PodCidrs
	es, _ := AsErrors(Cluster(c, nil))
	if len(es) != MaxErrors {
		t.Fatalf("got %d errors, want the cap %d", len(es), MaxErrors)
	}
}

func validEndpoint() *pb.Endpoint {
	return &pb.Endpoint{
		ClusterId:     "east",
		Gateway:       "node-1.east.example",
		PublicKey:     key(1),
		PrivateIp:     "198.19.1.10",
		PublicIp:      "198.18.0.10",
		Port:          51820,
		Subnets:       []string{"10.1.0.0/16", "10.101.0.0/16"},
		HealthCheckIp: "10.1.0.1",
		Backend:       pb.Backend_BACKEND_KERNEL,
		NatType:       pb.NatType_NAT_TYPE_NONE,
	}
}

func TestEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(ep *pb.Endpoint)
		cluster *pb.Cluster
		want    []string
	}{
		{name: "valid", mod: func(*pb.Endpoint) {}},
		{name: "valid minimal", mod: func(ep *pb.Endpoint) {
			ep.PublicIp, ep.HealthCheckIp, ep.Backend, ep.NatType, ep.Subnets = "", "", 0, 0, []string{"10.1.2.0/24"}
		}},
		{name: "valid ipv6", mod: func(ep *pb.Endpoint) { ep.PrivateIp, ep.PublicIp = "fd00:19::10", "2001:db8::1" }},
		{name: "subnet covered by union", cluster: &pb.Cluster{Id: "east", PodCidrs: []string{"10.0.0.0/16", "10.1.0.0/16"}, ServiceCidrs: []string{"10.101.0.0/16"}},
			mod: func(ep *pb.Endpoint) { ep.Subnets = []string{"10.0.0.0/15"}; ep.HealthCheckIp = "" }},
		{name: "unknown cluster", cluster: nil, mod: func(*pb.Endpoint) {}, want: []string{`cluster_id: "east" is not a known cluster`}},
		{name: "other cluster", cluster: clusterB(), mod: func(*pb.Endpoint) {}, want: []string{`cluster_id: "east" does not match cluster "west"`}},
		{name: "bad cluster id", mod: func(ep *pb.Endpoint) { ep.ClusterId = "East!" }, want: []string{`cluster_id: "East!" is not a DNS-1123 label`}},
		{name: "gateway missing", mod: func(ep *pb.Endpoint) { ep.Gateway = "" }, want: []string{"gateway: is required"}},
		{name: "gateway bad", mod: func(ep *pb.Endpoint) { ep.Gateway = "node_1" }, want: []string{`gateway: "node_1" is not a DNS-1123 subdomain`}},
		{name: "gateway too long", mod: func(ep *pb.Endpoint) { ep.Gateway = strings.Repeat("a.", 127) }, want: []string{"is longer than 253 characters"}},
		{name: "gateway 253", mod: func(ep *pb.Endpoint) { ep.Gateway = strings.Repeat("a.", 126) + "a" }},
		{name: "key short", mod: func(ep *pb.Endpoint) { ep.PublicKey = key(1)[:31] }, want: []string{"public_key: is 31 bytes, want 32"}},
		{name: "key missing", mod: func(ep *pb.Endpoint) { ep.PublicKey = nil }, want: []string{"public_key: is 0 bytes, want 32"}},
		{name: "key zero", mod: func(ep *pb.Endpoint) { ep.PublicKey = make([]byte, 32) }, want: []string{`public_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" is all zero`}},
		{name: "private ip missing", mod: func(ep *pb.Endpoint) { ep.PrivateIp = "" }, want: []string{"private_ip: is required"}},
		{name: "private ip bad", mod: func(ep *pb.Endpoint) { ep.PrivateIp = "198.19.1.300" }, want: []string{`private_ip: "198.19.1.300" is not an IP address`}},
		{name: "private ip unspecified", mod: func(ep *pb.Endpoint) { ep.PrivateIp = "0.0.0.0" }, want: []string{`private_ip: "0.0.0.0" is in the "this network" (unspecified) range`}},
		{name: "public ip multicast", mod: func(ep *pb.Endpoint) { ep.PublicIp = "ff02::1" }, want: []string{`public_ip: "ff02::1" is in the multicast range`}},
		{name: "public ip not canonical", mod: func(ep *pb.Endpoint) { ep.PublicIp = "2001:DB8::1" }, want: []string{`public_ip: "2001:DB8::1" is not canonical (want 2001:db8::1)`}},
		{name: "port zero", mod: func(ep *pb.Endpoint) { ep.Port = 0 }, want: []string{`port: "0" is not a port number (want 1-65535)`}},
		{name: "port big", mod: func(ep *pb.Endpoint) { ep.Port = 65536 }, want: []string{`port: "65536" is not a port number`}},
		{name: "no subnets", mod: func(ep *pb.Endpoint) { ep.Subnets = nil; ep.HealthCheckIp = "" }, want: []string{"subnets: needs at least one CIDR"}},
		{name: "too many subnets", mod: func(ep *pb.Endpoint) { ep.Subnets = make([]string, 33); ep.HealthCheckIp = "" }, want: []string{"subnets: has 33 entries, at most 32 allowed"}},
		{
			name: "subnet outside cluster", mod: func(ep *pb.Endpoint) { ep.Subnets = []string{"10.1.0.0/16", "10.2.0.0/24"} },
			want: []string{`subnets[1]: "10.2.0.0/24" is not inside the pod/service CIDRs of cluster "east"`},
		},
		{
			name: "subnet too broad", mod: func(ep *pb.Endpoint) { ep.Subnets = []string{"10.0.0.0/8"} },
			want: []string{`subnets[0]: "10.0.0.0/8" is not inside the pod/service CIDRs of cluster "east"`},
		},
		{
			name: "subnet bad", mod: func(ep *pb.Endpoint) { ep.Subnets = []string{"10.1.0.0/16", "0.0.0.0/0"} },
			want: []string{`subnets[1]: "0.0.0.0/0" is a default route`},
		},
		{
			name: "subnets overlap", mod: func(ep *pb.Endpoint) { ep.Subnets = []string{"10.1.0.0/16", "10.1.1.0/24"} },
			want: []string{`subnets[1]: "10.1.1.0/24" overlaps subnets[0] 10.1.0.0/16`},
		},
		{
			name: "globalnet: global subnet", cluster: globalC(),
			mod: func(ep *pb.Endpoint) {
				ep.ClusterId = "gn-1"
				ep.Subnets = []string{"242.0.0.0/16"}
				ep.HealthCheckIp = "242.0.0.1"
			},
		},
		{
			name: "globalnet: real CIDRs are not advertised", cluster: globalC(),
			mod: func(ep *pb.Endpoint) {
				ep.ClusterId = "gn-1"
				ep.Subnets = []string{"10.0.0.0/16"}
				ep.HealthCheckIp = ""
			},
			want: []string{`subnets[0]: "10.0.0.0/16" is not inside the global CIDR of cluster "gn-1"`},
		},
		{name: "health check ip zone", mod: func(ep *pb.Endpoint) { ep.HealthCheckIp = "fd00::1%eth0" }, want: []string{`health_check_ip: "fd00::1%eth0" has a zone`}},
		{name: "health check ip bad", mod: func(ep *pb.Endpoint) { ep.HealthCheckIp = "10.1.0.1%eth0" }, want: []string{`health_check_ip: "10.1.0.1%eth0" is not an IP address: unexpected character (at "%eth0")`}},
		{name: "health check ip outside subnets", mod: func(ep *pb.Endpoint) { ep.Subnets = []string{"10.1.0.0/24"}; ep.HealthCheckIp = "10.101.0.1" }, want: []string{`health_check_ip: "10.101.0.1" is not inside the endpoint's subnets`}},
		{name: "backend unknown", mod: func(ep *pb.Endpoint) { ep.Backend = 7 }, want: []string{`backend: "7" is not a known backend`}},
		{name: "nat type unknown", mod: func(ep *pb.Endpoint) { ep.NatType = -1 }, want: []string{`nat_type: "-1" is not a known NAT type`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := validEndpoint()
			tt.mod(ep)
			c := tt.cluster
			if c == nil && !strings.HasPrefix(tt.name, "unknown cluster") {
				c = clusterA()
			}
			wantErrs(t, Endpoint(ep, c), tt.want...)
		})
	}
	wantErrs(t, Endpoint(nil, clusterA()), "endpoint record is missing")
}

func TestTruncatedValue(t *testing.T) {
	ep := validEndpoint()
	ep.Gateway = strings.Repeat("é", 100)
	es, _ := AsErrors(Endpoint(ep, clusterA()))
	if len(es) != 1 || len(es[0].Value) > MaxValueLen+3 || !strings.HasSuffix(es[0].Value, "...") {
		t.Fatalf("value = %q", es[0].Value)
	}
	if v := strings.TrimSuffix(es[0].Value, "..."); !strings.HasSuffix(v, "é") {
		t.Fatalf("truncation split a rune: %q", v)
	}
}

func FuzzValidateEndpoint(f *testing.F) {
	seed := func(ep *pb.Endpoint, c *pb.Cluster) {
		a, _ := proto.Marshal(ep)
		b, _ := proto.Marshal(c)
		f.Add(a, b)
	}
	seed(validEndpoint(), clusterA())
	gep := validEndpoint()
	gep.ClusterId, gep.Subnets, gep.HealthCheckIp = "gn-1", []string{"242.0.0.0/16"}, "242.0.0.1"
	seed(gep, globalC())
	bad := validEndpoint()
	bad.PublicKey, bad.Subnets, bad.Port, bad.PrivateIp = key(0)[:5], []string{"10.1.0.1/16", "x"}, 0, "::"
	seed(bad, clusterB())
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, epBytes, clusterBytes []byte) {
		ep := &pb.Endpoint{}
		if proto.Unmarshal(epBytes, ep) != nil {
			return
		}
		var c *pb.Cluster
		if len(clusterBytes) > 0 {
			c = &pb.Cluster{}
			if proto.Unmarshal(clusterBytes, c) != nil {
				return
			}
		}
		err := Endpoint(ep, c)
		if err == nil {
			// Accepted endpoints hold what consumers rely on.
			if len(ep.GetPublicKey()) != WireGuardKeyLen || ep.GetPort() == 0 || ep.GetPort() > 65535 || len(ep.GetSubnets()) == 0 || c == nil {
				t.Fatalf("accepted invalid endpoint %v", ep)
			}
			return
		}
		es, ok := AsErrors(err)
		if !ok || len(es) == 0 || len(es) > MaxErrors {
			t.Fatalf("error %v is not a bounded validate.Errors", err)
		}
		for _, e := range es {
			if e.Reason == "" || len(e.Value) > MaxValueLen+3 {
				t.Fatalf("bad field error %+v", e)
			}
		}
		_ = err.Error()
	})
}

func FuzzValidateCluster(f *testing.F) {
	for _, c := range []*pb.Cluster{clusterA(), globalC(), {Id: "x", PodCidrs: []string{"10.1.0.0/24"}}} {
		b, _ := proto.Marshal(c)
		f.Add(b)
	}
	others := []*pb.Cluster{clusterA(), clusterB(), globalC(), globalD()}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &pb.Cluster{}
		if proto.Unmarshal(data, c) != nil {
			return
		}
		if err := Cluster(c, others); err != nil {
			if es, ok := AsErrors(err); !ok || len(es) > MaxErrors {
				t.Fatalf("error %v is not a bounded validate.Errors", err)
			}
			return
		}
		// Accepted: adding it to the others keeps every other one valid.
		for i, o := range others {
			rest := append(append([]*pb.Cluster{}, others[:i]...), others[i+1:]...)
			if err := Cluster(o, append(rest, c)); err != nil {
				t.Fatalf("accepted %v, but then %s is invalid: %v", c, o.GetId(), err)
			}
		}
	})
}
