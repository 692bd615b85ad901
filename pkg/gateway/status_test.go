package gateway

import (
	"math"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/wireguard"
)

func TestComputeConnection(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	times := ConnectionTimes{HandshakeFresh: 3 * time.Minute, ProbeFresh: 3 * time.Second, ConnectTimeout: time.Minute}
	r := Remote{ClusterID: "c2", HealthCheckIP: netip.MustParseAddr("10.2.1.1"),
		Peer: wireguard.Peer{Endpoint: netip.MustParseAddrPort("198.18.0.21:51820")}}
	peer := func(hsAgo time.Duration) wireguard.PeerState {
		p := wireguard.PeerState{RxBytes: 10, TxBytes: 20}
		if hsAgo >= 0 {
			p.LastHandshake = now.Add(-hsAgo)
		}
		return p
	}
	answered := RTTStats{Sent: 5, Received: 5, Last: time.Millisecond, LastReply: now.Add(-time.Second)}
	silent := RTTStats{Sent: 5, Received: 0}
	tests := []struct {
		name string
		in   ConnectionInput
		want weftv1.ConnectionStatus
	}{
		{"no peer on the device", ConnectionInput{Remote: r}, weftv1.Error},
		{"fresh handshake and answered probes", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(time.Minute), Probed: true, Probe: answered}, weftv1.Connected},
		{"fresh handshake, not probed", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(time.Minute)}, weftv1.Connected},
		{"fresh handshake, probes unanswered", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(time.Minute), Probed: true, Probe: silent}, weftv1.Connecting},
		{"stale probe answer", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(time.Minute), Probed: true,
			Probe: RTTStats{Sent: 5, Received: 1, LastReply: now.Add(-10 * time.Second)}}, weftv1.Connecting},
		{"waiting for first handshake", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(-1), ConfiguredAt: now.Add(-10 * time.Second)}, weftv1.Connecting},
		{"never a handshake", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(-1), ConfiguredAt: now.Add(-2 * time.Minute)}, weftv1.Error},
		{"old handshake, recently", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(3*time.Minute + 30*time.Second), Probed: true, Probe: answered}, weftv1.Connecting},
		{"old handshake, long ago", ConnectionInput{Remote: r, HavePeer: true, Peer: peer(10 * time.Minute)}, weftv1.Error},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ComputeConnection(tt.in, now, times)
			if c.Status != tt.want {
				t.Fatalf("status %s (%s), want %s", c.Status, c.Message, tt.want)
			}
			if c.ClusterID != "c2" || c.UsingIP != "198.18.0.21" {
				t.Fatalf("connection = %+v", c)
			}
			if tt.want != weftv1.Connected && c.Message == "" {
				t.Fatalf("status %s without a message", c.Status)
			}
		})
	}
	// The device's roamed endpoint is what the tunnel uses.
	p := peer(time.Second)
	p.Endpoint = netip.MustParseAddrPort("198.19.2.11:51820")
	c := ComputeConnection(ConnectionInput{Remote: r, HavePeer: true, Peer: p, Probed: true, Probe: answered}, now, times)
	if c.UsingIP != "198.19.2.11" || c.RxBytes != 10 || c.TxBytes != 20 || c.RTT == nil || c.RTT.LastMicros != 1000 ||
		!c.LastHandshake.Equal(&metav1.Time{Time: now.Add(-time.Second)}) {
		t.Fatalf("connection = %+v", c)
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(4)
	if s := w.Stats(); s.Sent != 0 || s.LossPercent != 0 || !s.LastReply.IsZero() {
		t.Fatalf("empty: %+v", s)
	}
	at := time.Unix(100, 0)
	w.Lost()
	w.Answered(2*time.Millisecond, at)
	w.Answered(4*time.Millisecond, at.Add(time.Second))
	w.Lost()
	s := w.Stats()
	if s.Sent != 4 || s.Received != 2 || s.LossPercent != 50 || s.Last != 4*time.Millisecond || s.Min != 2*time.Millisecond ||
		s.Max != 4*time.Millisecond || s.Avg != 3*time.Millisecond || s.StdDev != time.Millisecond || !s.LastReply.Equal(at.Add(time.Second)) {
		t.Fatalf("stats = %+v", s)
	}
	// The window slides: four answers push the losses out.
	for i := range 4 {
		w.Answered(time.Duration(i+1)*time.Millisecond, at.Add(time.Duration(2+i)*time.Second))
	}
	s = w.Stats()
	wantSD := time.Duration(math.Round(math.Sqrt(1.25) * float64(time.Millisecond)))
	if s.Sent != 4 || s.LossPercent != 0 || s.Min != time.Millisecond || s.Max != 4*time.Millisecond ||
		s.Avg != 2500*time.Microsecond || s.StdDev != wantSD || s.Last != 4*time.Millisecond {
		t.Fatalf("after sliding: %+v", s)
	}
	for range 3 {
		w.Lost()
	}
	if s := w.Stats(); s.LossPercent != 75 || s.Received != 1 || s.Last != 4*time.Millisecond {
		t.Fatalf("after losses: %+v", s)
	}
}

func TestNodeInfoFrom(t *testing.T) {
	node := func(annot string, addrs ...corev1.NodeAddress) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "c1-n1", UID: "u1"}, Spec: corev1.NodeSpec{PodCIDR: "10.1.1.0/24"}}
		if annot != "" {
			n.Annotations = map[string]string{PublicIPAnnotation: annot}
		}
		n.Status.Addresses = addrs
		return n
	}
	internal := corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "198.19.1.11"}
	external := corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "198.18.0.11"}
	a := netip.MustParseAddr
	tests := []struct {
		name       string
		n          *corev1.Node
		ov         NodeOverrides
		wantPublic netip.Addr
		wantPod    netip.Addr
		wantWarn   bool
	}{
		{"external ip", node("", internal, external), NodeOverrides{}, a("198.18.0.11"), a("10.1.1.1"), false},
		{"annotation wins", node("203.0.113.7", internal, external), NodeOverrides{}, a("203.0.113.7"), a("10.1.1.1"), false},
		{"bad annotation falls back", node("nope", internal, external), NodeOverrides{}, a("198.18.0.11"), a("10.1.1.1"), true},
		{"no public address", node("", internal), NodeOverrides{}, netip.Addr{}, a("10.1.1.1"), false},
		{"overrides", node("203.0.113.7", internal, external), NodeOverrides{PublicIP: a("192.0.2.9"), PodNetworkIP: a("10.1.1.9")}, a("192.0.2.9"), a("10.1.1.9"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, warn, err := NodeInfoFrom(tt.n, tt.ov)
			if err != nil {
				t.Fatal(err)
			}
			if info.InternalIP != a("198.19.1.11") || info.PublicIP != tt.wantPublic || info.PodNetworkIP != tt.wantPod || (len(warn) > 0) != tt.wantWarn {
				t.Fatalf("info = %+v, warnings %q", info, warn)
			}
		})
	}
	if _, _, err := NodeInfoFrom(node("", external), NodeOverrides{}); err == nil {
		t.Fatal("a node without InternalIP was accepted")
	}
	for in, want := range map[string]string{"10.1.1.0/24": "10.1.1.1", "10.1.1.7/32": "10.1.1.7", "fd00:1::/64": "fd00:1::1"} {
		if got := FirstHost(netip.MustParsePrefix(in)); got != a(want) {
			t.Errorf("FirstHost(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}
	if err := o.defaults(); err == nil {
		t.Fatal("empty options accepted")
	}
	o = Options{RESTConfig: nil, NodeName: "n", ClusterID: "c1", PodCIDRs: pfxs("10.1.0.1/16")}
	err := o.defaults()
	if err == nil {
		t.Fatal("non-canonical pod CIDR accepted")
	}
	t.Log(err)
	o = Options{NodeName: "n", ClusterID: "c1", PodCIDRs: pfxs("10.1.0.0/16"),
		LeaderElection: LeaderElectionOptions{LeaseDuration: 2 * time.Second, RenewDeadline: 3 * time.Second}}
	if err := o.defaults(); err == nil {
		t.Fatal("renew deadline longer than the lease accepted")
	}
}
