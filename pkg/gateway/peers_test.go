package gateway

import (
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
	"time"

	brokerv1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/wireguard"
)

// testKey is a recognisable 32-byte public key; keyName prints it back.
func testKey(n byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = n
	}
	return k
}

func keyNames(s string) string {
	for n := byte(1); n < 10; n++ {
		s = strings.ReplaceAll(s, base64.StdEncoding.EncodeToString(testKey(n)), "K"+string('0'+n))
	}
	return s
}

func cluster(id string, cidrs ...string) *brokerv1.Cluster {
	return &brokerv1.Cluster{Id: id, PodCidrs: cidrs[:1], ServiceCidrs: cidrs[1:]}
}

func ep(id, gw string, key byte, private, public string, subnets ...string) *brokerv1.Endpoint {
	return &brokerv1.Endpoint{ClusterId: id, Gateway: gw, PublicKey: testKey(key), PrivateIp: private, PublicIp: public,
		Port: 51820, Subnets: subnets, Backend: brokerv1.Backend_BACKEND_USERSPACE}
}

func state(clusters []*brokerv1.Cluster, eps []*brokerv1.Endpoint, rejected map[string]string) *client.State {
	st := &client.State{Revision: 7, Clusters: map[string]*brokerv1.Cluster{}, Endpoints: map[string]*brokerv1.Endpoint{}, Rejected: map[string]string{}}
	for _, c := range clusters {
		st.Clusters[c.Id] = c
	}
	for _, e := range eps {
		st.Endpoints[e.ClusterId+"/"+e.Gateway] = e
	}
	for k, v := range rejected {
		st.Rejected[k] = v
	}
	return st
}

func TestComputeRemotes(t *testing.T) {
	c1 := cluster("c1", "10.1.0.0/16", "10.101.0.0/16")
	c2 := cluster("c2", "10.2.0.0/16", "10.102.0.0/16")
	c3 := cluster("c3", "10.3.0.0/16", "10.103.0.0/16")
	opts := PeerOptions{ClusterID: "c1", LocalCIDRs: pfxs("10.1.0.0/16", "10.101.0.0/16"), Keepalive: 25 * time.Second}
	const c2peer = "c2 via c2-gw: peer K2 endpoint=198.19.2.11:51820 allowed-ips=10.2.0.0/16,10.102.0.0/16 keepalive=25s"
	tests := []struct {
		name string
		st   *client.State
		want []string
	}{
		{"no state", nil, nil},
		{"empty", state(nil, nil, nil), nil},
		{"own cluster skipped", state([]*brokerv1.Cluster{c1}, []*brokerv1.Endpoint{ep("c1", "c1-gw", 1, "198.19.1.11", "", "10.1.0.0/16")}, nil), nil},
		{
			"private address when no public",
			state([]*brokerv1.Cluster{c1, c2}, []*brokerv1.Endpoint{
				ep("c1", "c1-gw", 1, "198.19.1.11", "", "10.1.0.0/16"),
				ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.2.0.0/16", "10.102.0.0/16"),
			}, nil),
			[]string{c2peer},
		},
		{
			"public address preferred, health check kept",
			state([]*brokerv1.Cluster{c2}, []*brokerv1.Endpoint{func() *brokerv1.Endpoint {
				e := ep("c2", "c2-gw", 2, "198.19.2.11", "198.18.0.21", "10.2.0.0/16")
				e.HealthCheckIp = "10.2.1.1"
				return e
			}()}, nil),
			[]string{"c2 via c2-gw: peer K2 endpoint=198.18.0.21:51820 allowed-ips=10.2.0.0/16 keepalive=25s health=10.2.1.1"},
		},
		{
			"one endpoint per cluster, smallest gateway name",
			state([]*brokerv1.Cluster{c2}, []*brokerv1.Endpoint{
				ep("c2", "c2-gw2", 2, "198.19.2.12", "", "10.2.0.0/16", "10.102.0.0/16"),
				ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.2.0.0/16", "10.102.0.0/16"),
			}, nil),
			[]string{c2peer},
		},
		{
			"default route rejected",
			state([]*brokerv1.Cluster{c2, c3}, []*brokerv1.Endpoint{
				ep("c2", "c2-gw", 2, "198.19.2.11", "", "0.0.0.0/0"),
				ep("c3", "c3-gw", 3, "198.19.3.11", "", "10.3.0.0/16"),
			}, nil),
			[]string{
				"c3 via c3-gw: peer K3 endpoint=198.19.3.11:51820 allowed-ips=10.3.0.0/16 keepalive=25s",
				`rejected endpoint/c2/c2-gw: subnets[0]: "0.0.0.0/0" is a default route`,
			},
		},
		{
			"subnet outside the cluster's CIDRs rejected",
			state([]*brokerv1.Cluster{c2}, []*brokerv1.Endpoint{ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.2.0.0/16", "10.9.0.0/16")}, nil),
			[]string{`rejected endpoint/c2/c2-gw: subnets[1]: "10.9.0.0/16" is not inside the pod/service CIDRs of cluster "c2"`},
		},
		{
			"endpoint without a cluster record rejected",
			state(nil, []*brokerv1.Endpoint{ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.2.0.0/16")}, nil),
			[]string{"rejected endpoint/c2/c2-gw: no valid cluster record"},
		},
		{
			"bad key rejected",
			state([]*brokerv1.Cluster{c2}, []*brokerv1.Endpoint{func() *brokerv1.Endpoint {
				e := ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.2.0.0/16")
				e.PublicKey = e.PublicKey[:31]
				return e
			}()}, nil),
			[]string{"rejected endpoint/c2/c2-gw: public_key: is 31 bytes, want 32"},
		},
		{
			"overlap with local CIDRs rejected",
			state([]*brokerv1.Cluster{cluster("c2", "10.1.0.0/16")}, []*brokerv1.Endpoint{ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.1.0.0/16")}, nil),
			[]string{"rejected endpoint/c2/c2-gw: subnet 10.1.0.0/16 overlaps local CIDR 10.1.0.0/16 (overlapping clusters need globalnet)"},
		},
		{
			"overlap between remotes: the later id is rejected",
			state([]*brokerv1.Cluster{c2, cluster("c3", "10.2.0.0/16")}, []*brokerv1.Endpoint{
				ep("c3", "c3-gw", 3, "198.19.3.11", "", "10.2.0.0/16"),
				ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.2.0.0/16", "10.102.0.0/16"),
			}, nil),
			[]string{c2peer, `rejected endpoint/c3/c3-gw: subnet 10.2.0.0/16 overlaps 10.2.0.0/16 of cluster "c2"`},
		},
		{
			"globalnet cluster routes its global CIDR",
			state([]*brokerv1.Cluster{{Id: "c2", PodCidrs: []string{"10.1.0.0/16"}, Globalnet: true, GlobalCidr: "242.2.0.0/16"}},
				[]*brokerv1.Endpoint{ep("c2", "c2-gw", 2, "198.19.2.11", "", "242.2.0.0/16")}, nil),
			[]string{"c2 via c2-gw: peer K2 endpoint=198.19.2.11:51820 allowed-ips=242.2.0.0/16 keepalive=25s"},
		},
		{
			"records the member rejected are reported, exports and own ignored",
			state([]*brokerv1.Cluster{c2}, []*brokerv1.Endpoint{ep("c2", "c2-gw", 2, "198.19.2.11", "", "10.2.0.0/16", "10.102.0.0/16")}, map[string]string{
				"cluster/c4":            "pod_cidrs[0]: bad",
				"endpoint/c4/c4-gw":     "cluster_id: \"c4\" is not a known cluster",
				"endpoint/c1/c1-old":    "own",
				"export/c2/default/web": "ips: bad",
			}),
			[]string{
				c2peer,
				"rejected cluster/c4: pod_cidrs[0]: bad",
				`rejected endpoint/c4/c4-gw: cluster_id: "c4" is not a known cluster`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ComputeRemotes(tt.st, opts)
			if s, want := keyNames(got.String()), strings.Join(tt.want, "\n"); s != want {
				t.Fatalf("got:\n%s\nwant:\n%s", s, want)
			}
			// What the device gets must be a valid configuration.
			cfg := wireguard.Config{PrivateKey: wireguard.PrivateKey(testKey(9)), ListenPort: 51820, Peers: got.Peers()}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("device config: %v", err)
			}
			// Deterministic: the same state gives the same result.
			if again := ComputeRemotes(tt.st, opts); again.String() != got.String() {
				t.Fatalf("not deterministic:\n%s\nthen:\n%s", got, again)
			}
		})
	}
}

func TestRejectionCondition(t *testing.T) {
	st := state([]*brokerv1.Cluster{cluster("c2", "10.2.0.0/16")}, []*brokerv1.Endpoint{ep("c2", "c2-gw", 2, "198.19.2.11", "", "0.0.0.0/0")}, nil)
	r := ComputeRemotes(st, PeerOptions{ClusterID: "c1"})
	c := rejectionCondition(r.Rejected)
	if c.Status != "False" || c.Reason != "RecordsRejected" || !strings.Contains(c.Message, "endpoint/c2/c2-gw") || !strings.Contains(c.Message, "default route") {
		t.Fatalf("condition = %+v", c)
	}
	if c := rejectionCondition(nil); c.Status != "True" {
		t.Fatalf("no rejections: condition = %+v", c)
	}
}

// TestRemotesFromObjects: the peering rebuilt from RemoteCluster objects
// equals the one they were written from.
func TestRemotesFromObjects(t *testing.T) {
	e := ep("c2", "c2-gw", 2, "198.19.2.11", "198.18.0.21", "10.2.0.0/16", "10.102.0.0/16")
	e.HealthCheckIp = "10.2.1.1"
	g := &brokerv1.Cluster{Id: "c3", PodCidrs: []string{"10.1.0.0/16"}, Globalnet: true, GlobalCidr: "242.3.0.0/16"}
	opts := PeerOptions{ClusterID: "c1", LocalCIDRs: pfxs("10.1.0.0/16"), Keepalive: 25 * time.Second}
	want := ComputeRemotes(state([]*brokerv1.Cluster{cluster("c2", "10.2.0.0/16", "10.102.0.0/16"), g},
		[]*brokerv1.Endpoint{e, ep("c3", "c3-gw", 3, "198.19.3.11", "", "242.3.0.0/16")}, nil), opts)
	if len(want.Clusters) != 2 {
		t.Fatalf("setup: %s", want)
	}
	var items []weftv1.RemoteCluster
	for _, r := range want.Clusters {
		items = append(items, RemoteClusterObject("weft-system", r, weftv1.Connection{}))
	}
	items = append(items, weftv1.RemoteCluster{Spec: weftv1.RemoteClusterSpec{ClusterID: "c9", Endpoint: weftv1.EndpointSpec{PublicKey: "!!"}}})
	got := RemotesFromObjects(items, opts)
	if len(got.Clusters) != 2 || got.Clusters[0].Peer.String() != want.Clusters[0].Peer.String() ||
		got.Clusters[1].Peer.String() != want.Clusters[1].Peer.String() || got.Clusters[0].HealthCheckIP != e2a("10.2.1.1") ||
		got.Clusters[1].GlobalCIDR != "242.3.0.0/16" {
		t.Fatalf("from objects:\n%s\nwant:\n%s", got, want)
	}
	if len(got.Rejected) != 1 || !strings.Contains(got.Rejected[0].Reason, "publicKey") {
		t.Fatalf("bad object not rejected: %+v", got.Rejected)
	}
}

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func e2a(s string) netip.Addr { return netip.MustParseAddr(s) }
