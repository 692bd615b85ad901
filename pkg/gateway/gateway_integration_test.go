package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"golang.zx2c4.com/wireguard/wgctrl"

	"github.com/weftnet/weft/internal/nspair"
	"github.com/weftnet/weft/internal/testenv"
	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/broker"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/broker/store"
	"github.com/weftnet/weft/pkg/gateway"
	"github.com/weftnet/weft/pkg/wireguard"
)

// TestGatewaysConnectTwoClusters runs the whole gateway for real: two
// clusters, each with its own kube-apiserver + etcd (envtest) and weft's
// CRDs; a broker with embedded etcd on loopback; gateways in-process with
// their userspace WireGuard devices and health probes in two network
// namespaces joined by a veth (cluster c1 has two gateway nodes sharing
// namespace A, cluster c2 one in namespace B). The test plays the route
// agent: it routes the remote CIDRs into the devices.
//
// It checks the join through the token Secret and the stored credentials,
// the key Secret created once, the RemoteClusters (and a stale one deleted),
// the device peers, the Gateway statuses (active/passive, connected, RTT),
// a ping through the tunnel, a failover to c1's second gateway node (same
// key, stored credentials with the token gone, stale endpoint withdrawn),
// renewed broker certificates stored, and that a gateway whose Lease is
// taken closes its device and returns ErrLostLeadership.
func TestGatewaysConnectTwoClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs root and network namespaces")
	}
	if why := nspair.Supported(); why != "" {
		t.Skip("netns test: " + why)
	}
	testenv.Assets(t) // skip early, before the broker starts
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := testLogger(t)

	pair, err := nspair.New(ctx, nspair.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	// Pod networks: the first host address of each node's pod CIDR.
	for _, s := range [][]string{
		{"-n", pair.A, "link", "add", "cbr0", "type", "bridge"},
		{"-n", pair.A, "addr", "add", "10.1.1.1/24", "dev", "cbr0"},
		{"-n", pair.A, "link", "set", "cbr0", "up"},
		{"-n", pair.B, "link", "add", "cbr0", "type", "bridge"},
		{"-n", pair.B, "addr", "add", "10.2.1.1/24", "dev", "cbr0"},
		{"-n", pair.B, "link", "set", "cbr0", "up"},
	} {
		if err := nspair.IP(ctx, s...); err != nil {
			t.Fatal(err)
		}
	}

	brk := startBroker(t)
	c1 := startCluster(t, "c1", brk)
	c2 := startCluster(t, "c2", brk)
	c1.node(t, "c1-n1", pair.AddrA, "", "10.1.1.0/24")
	c1.node(t, "c1-n2", pair.AddrA, "", "10.1.1.0/24")
	c2.node(t, "c2-n1", pair.AddrB, pair.AddrB.String(), "10.2.1.0/24") // public IP by annotation
	// A RemoteCluster left by someone else: gone once the broker answers.
	stale := &weftv1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "c9", Namespace: "weft-system"},
		Spec: weftv1.RemoteClusterSpec{ClusterID: "c9", Subnets: []string{"10.9.0.0/16"}, Endpoint: weftv1.EndpointSpec{
			Gateway: "c9-n1", PublicKey: mustKey(t).Public().String(), PrivateIP: "192.0.2.9", Port: 51820,
		}},
	}
	if err := c1.crd.Create(ctx, stale); err != nil {
		t.Fatal(err)
	}

	devA1, devA2, devB1 := pair.Prefix+"a1", pair.Prefix+"a2", pair.Prefix+"b1"
	nsA, nsB := nspair.NSPath(pair.A), nspair.NSPath(pair.B)
	g11 := startGateway(t, c1, "c1-n1", devA1, nsA, log)
	waitFor(ctx, t, "c1-n1 active", func() (bool, string) {
		return c1.haStatus(ctx, "c1-n1") == weftv1.HAActive, string(c1.haStatus(ctx, "c1-n1"))
	})
	g12 := startGateway(t, c1, "c1-n2", devA2, nsA, log)
	g21 := startGateway(t, c2, "c2-n1", devB1, nsB, log)

	// Join through the token Secret; credentials stored.
	firstCert := map[string]string{}
	for _, c := range []*testCluster{c1, c2} {
		waitFor(ctx, t, c.id+" credentials secret", func() (bool, string) {
			sec, err := c.kube.CoreV1().Secrets("weft-system").Get(ctx, gateway.CredentialsSecretName, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			creds, err := client.UnmarshalCredentials(sec.Data[gateway.CredentialsSecretKey])
			if err != nil {
				return false, err.Error()
			}
			firstCert[c.id] = string(creds.CertPEM)
			return creds.ClusterID == c.id, creds.ClusterID
		})
	}

	// Each cluster mirrors the other; the stale object goes.
	waitFor(ctx, t, "c1's RemoteClusters", func() (bool, string) {
		return c1.remoteClusters(ctx) == "c2 [10.2.0.0/16 10.102.0.0/16] gw=c2-n1 private=192.0.2.2 public=192.0.2.2:51820 health=10.2.1.1", c1.remoteClusters(ctx)
	})
	waitFor(ctx, t, "c2's RemoteClusters", func() (bool, string) {
		return c2.remoteClusters(ctx) == "c1 [10.1.0.0/16 10.101.0.0/16] gw=c1-n1 private=192.0.2.1 public=:51820 health=10.1.1.1", c2.remoteClusters(ctx)
	})

	// One key per cluster, in its Secret, used by the device.
	keyA := c1.keySecret(t, ctx)
	keyB := c2.keySecret(t, ctx)
	waitFor(ctx, t, "device peers", func() (bool, string) {
		a, b := devicePeers(devA1), devicePeers(devB1)
		wantA := fmt.Sprintf("key=%s peers=[%s@192.0.2.2:51820 10.2.0.0/16,10.102.0.0/16]", keyA.key.Public(), keyB.key.Public())
		wantB := fmt.Sprintf("key=%s peers=[%s@192.0.2.1:51820 10.1.0.0/16,10.101.0.0/16]", keyB.key.Public(), keyA.key.Public())
		return a == wantA && b == wantB, a + " | " + b
	})

	// The route agent's part: remote CIDRs into the device, from the pod
	// network address.
	route(ctx, t, pair.A, devA1, "10.1.1.1", "10.2.0.0/16", "10.102.0.0/16")
	route(ctx, t, pair.B, devB1, "10.2.1.1", "10.1.0.0/16", "10.101.0.0/16")
	waitFor(ctx, t, "connections up", func() (bool, string) {
		a, b := c1.connection(ctx, "c1-n1", "c2"), c2.connection(ctx, "c2-n1", "c1")
		return strings.HasPrefix(a, "connected rtt") && strings.HasPrefix(b, "connected rtt") &&
			c1.remoteStatus(ctx, "c2") == weftv1.Connected && c2.remoteStatus(ctx, "c1") == weftv1.Connected, a + " | " + b
	})
	if out, err := nspair.Exec(ctx, pair.A, "ping", "-c", "1", "-W", "2", "-I", "10.1.1.1", "10.2.1.1"); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}
	gw := c1.gateway(ctx, "c1-n1")
	if !gw.Status.BrokerConnected || gw.Status.LocalEndpoint.PublicKey != keyA.key.Public().String() || gw.Status.LocalEndpoint.PrivateIP != "192.0.2.1" ||
		!conditionTrue(gw.Status.Conditions, gateway.ConditionRemoteRecordsValid) || !conditionTrue(gw.Status.Conditions, gateway.ConditionEndpointPublished) {
		t.Fatalf("gateway c1-n1 status: %+v", gw.Status)
	}
	if s := c1.haStatus(ctx, "c1-n2"); s != weftv1.HAPassive {
		t.Fatalf("c1-n2 haStatus %q, want passive", s)
	}

	// Failover: c1-n1 stops (device closed, then Lease released); c1-n2
	// takes over with the same key and the stored credentials (the token
	// is gone), and replaces c1-n1's endpoint at the broker.
	if err := c1.kube.CoreV1().Secrets("weft-system").Delete(ctx, gateway.TokenSecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g11.stop(); err != nil {
		t.Fatalf("c1-n1 Run: %v", err)
	}
	if _, err := os.Stat("/var/run/wireguard/" + devA1 + ".sock"); !os.IsNotExist(err) {
		t.Fatalf("device %s still there after Run returned", devA1)
	}
	waitFor(ctx, t, "c1-n2 active", func() (bool, string) {
		return c1.haStatus(ctx, "c1-n2") == weftv1.HAActive, string(c1.haStatus(ctx, "c1-n2"))
	})
	t.Logf("failover: c1-n2 active %s after c1-n1 stopped", time.Since(start).Round(time.Millisecond))
	waitFor(ctx, t, "c1-n2 device", func() (bool, string) { s := devicePeers(devA2); return strings.Contains(s, "10.2.0.0/16"), s })
	route(ctx, t, pair.A, devA2, "10.1.1.1", "10.2.0.0/16", "10.102.0.0/16")
	waitFor(ctx, t, "c2 sees c1-n2", func() (bool, string) {
		return c2.remoteClusters(ctx) == "c1 [10.1.0.0/16 10.101.0.0/16] gw=c1-n2 private=192.0.2.1 public=:51820 health=10.1.1.1", c2.remoteClusters(ctx)
	})
	waitFor(ctx, t, "connection after failover", func() (bool, string) {
		a := c1.connection(ctx, "c1-n2", "c2")
		return strings.HasPrefix(a, "connected rtt"), a
	})
	if out, err := nspair.Exec(ctx, pair.A, "ping", "-c", "1", "-W", "2", "-I", "10.1.1.1", "10.2.1.1"); err != nil {
		t.Fatalf("ping after failover: %v\n%s", err, out)
	}
	if again := c1.keySecret(t, ctx); again.uid != keyA.uid || again.key != keyA.key {
		t.Fatal("the key Secret was replaced during failover")
	}
	if s := c1.haStatus(ctx, "c1-n1"); s != weftv1.HAPassive {
		t.Fatalf("stopped c1-n1 haStatus %q, want passive", s)
	}

	// Renewed certificates are stored in the credentials Secret.
	waitFor(ctx, t, "renewed credentials stored", func() (bool, string) {
		sec, err := c1.kube.CoreV1().Secrets("weft-system").Get(ctx, gateway.CredentialsSecretName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		creds, err := client.UnmarshalCredentials(sec.Data[gateway.CredentialsSecretKey])
		if err != nil {
			return false, err.Error()
		}
		return string(creds.CertPEM) != firstCert["c1"] && creds.ClusterID == "c1", "certificate unchanged"
	})

	// Losing the Lease: another holder takes it; c2-n1 closes its device
	// and returns ErrLostLeadership.
	stealLease(ctx, t, c2.kube)
	select {
	case <-g21.done:
		if !errors.Is(g21.err, gateway.ErrLostLeadership) {
			t.Fatalf("c2-n1 Run after losing the lease: %v, want ErrLostLeadership", g21.err)
		}
	case <-ctx.Done():
		t.Fatal("c2-n1 kept running after its Lease was taken")
	}
	if _, err := os.Stat("/var/run/wireguard/" + devB1 + ".sock"); !os.IsNotExist(err) {
		t.Fatalf("device %s still there after the lease was lost", devB1)
	}
	waitFor(ctx, t, "c2-n1 passive after losing the lease", func() (bool, string) {
		return c2.haStatus(ctx, "c2-n1") == weftv1.HAPassive, string(c2.haStatus(ctx, "c2-n1"))
	})
	if err := g12.stop(); err != nil {
		t.Fatalf("c1-n2 Run: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Broker

type testBroker struct {
	addr  string
	admin *client.Credentials
}

// startBroker runs a broker over embedded etcd on loopback (as
// pkg/broker's tests do).
func startBroker(t *testing.T) *testBroker {
	t.Helper()
	ctx := context.Background()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	emb, err := store.StartEmbedded(ctx, store.EmbeddedOptions{DataDir: t.TempDir(), UnsafeNoFsync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	// Short-lived client certificates (renewed every ~7 s) and fast
	// heartbeats (renewal is decided on heartbeats) exercise the
	// gateway's storing of renewed credentials.
	srv, err := broker.New(ctx, broker.Options{Store: store.New(emb.Client(), ""), Addresses: []string{addr}, JoinRate: 1000, JoinBurst: 1000,
		ClientCertValidity: 40 * time.Second, HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g, err := srv.GRPCServer()
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	keyPEM, csrPEM, err := ca.NewKeyAndCSR("admin")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := srv.IssueAdmin(csrPEM, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testBroker{addr: addr, admin: &client.Credentials{ClusterID: "admin", Addresses: []string{addr}, CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: srv.CA().CertPEM()}}
}

func (b *testBroker) token(t *testing.T, cluster string) string {
	t.Helper()
	conn, err := client.Dial(b.admin, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := v1.NewAdminServiceClient(conn).CreateToken(context.Background(), &v1.CreateTokenRequest{ClusterId: cluster, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Token
}

// ---------------------------------------------------------------------------
// Clusters

type testCluster struct {
	id   string
	cfg  *rest.Config
	kube kubernetes.Interface
	crd  ctrlclient.Client
	pod  []netip.Prefix
	svc  []netip.Prefix
}

// startCluster starts a control plane with weft's CRDs, the weft-system
// namespace and the join token Secret.
func startCluster(t *testing.T, id string, b *testBroker) *testCluster {
	t.Helper()
	t.Logf("cluster %s: starting its control plane", id)
	cfg := testenv.StartControlPlane(t)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	scheme := k8sruntime.NewScheme()
	_ = weftv1.AddToScheme(scheme)
	crd, err := ctrlclient.New(cfg, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: gateway.TokenSecretName, Namespace: "weft-system"},
		StringData: map[string]string{gateway.TokenSecretKey: b.token(t, id)}}
	if _, err := kube.CoreV1().Secrets("weft-system").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n := id[len(id)-1:]
	return &testCluster{id: id, cfg: cfg, kube: kube, crd: crd,
		pod: []netip.Prefix{netip.MustParsePrefix("10." + n + ".0.0/16")}, svc: []netip.Prefix{netip.MustParsePrefix("10.10" + n + ".0.0/16")}}
}

// node creates a gateway Node with its InternalIP, optional public IP
// annotation and pod CIDR.
func (c *testCluster) node(t *testing.T, name string, internal netip.Addr, publicIP, podCIDR string) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"weft.io/gateway": "true"}},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
	}
	if publicIP != "" {
		n.Annotations = map[string]string{gateway.PublicIPAnnotation: publicIP}
	}
	created, err := c.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internal.String()}, {Type: corev1.NodeHostName, Address: name}}
	if _, err := c.kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *testCluster) gateway(ctx context.Context, node string) *weftv1.Gateway {
	var g weftv1.Gateway
	if err := c.crd.Get(ctx, ctrlclient.ObjectKey{Namespace: "weft-system", Name: node}, &g); err != nil {
		return nil
	}
	return &g
}

func (c *testCluster) haStatus(ctx context.Context, node string) weftv1.HAStatus {
	if g := c.gateway(ctx, node); g != nil {
		return g.Status.HAStatus
	}
	return ""
}

// connection prints a Gateway's connection to a cluster: "connected rtt"
// when it is connected with RTT figures.
func (c *testCluster) connection(ctx context.Context, node, remote string) string {
	g := c.gateway(ctx, node)
	if g == nil {
		return "no gateway " + node
	}
	for _, conn := range g.Status.Connections {
		if conn.ClusterID != remote {
			continue
		}
		s := string(conn.Status)
		if conn.RTT != nil && conn.RTT.LastMicros > 0 {
			s += fmt.Sprintf(" rtt %dus loss %d%%", conn.RTT.LastMicros, conn.RTT.LossPercent)
		}
		if conn.LastHandshake == nil || conn.UsingIP == "" || conn.TxBytes == 0 {
			s += " (no handshake/usingIP/tx)"
		}
		return s + " " + conn.Message
	}
	return fmt.Sprintf("no connection to %s in %+v", remote, g.Status.Connections)
}

func (c *testCluster) remoteStatus(ctx context.Context, name string) weftv1.ConnectionStatus {
	var rc weftv1.RemoteCluster
	if err := c.crd.Get(ctx, ctrlclient.ObjectKey{Namespace: "weft-system", Name: name}, &rc); err != nil {
		return ""
	}
	if rc.Status.LastHandshake == nil || rc.Status.UsingIP == "" || rc.Status.RTT == nil {
		return "incomplete"
	}
	return rc.Status.Connection
}

// remoteClusters prints the RemoteClusters, one per line.
func (c *testCluster) remoteClusters(ctx context.Context) string {
	var l weftv1.RemoteClusterList
	if err := c.crd.List(ctx, &l, ctrlclient.InNamespace("weft-system")); err != nil {
		return err.Error()
	}
	var lines []string
	for _, rc := range l.Items {
		e := rc.Spec.Endpoint
		lines = append(lines, fmt.Sprintf("%s %v gw=%s private=%s public=%s:%d health=%s", rc.Name, rc.Spec.Subnets, e.Gateway, e.PrivateIP, e.PublicIP, e.Port, e.HealthCheckIP))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

type keySecret struct {
	uid string
	key wireguard.PrivateKey
}

// keySecret reads the key Secret; there must be exactly one.
func (c *testCluster) keySecret(t *testing.T, ctx context.Context) keySecret {
	t.Helper()
	sec, err := c.kube.CoreV1().Secrets("weft-system").Get(ctx, gateway.KeySecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("cluster %s: key secret: %v", c.id, err)
	}
	k, err := wireguard.ParsePrivateKey(sec.Data[gateway.KeySecretKey])
	if err != nil {
		t.Fatalf("cluster %s: key secret: %v", c.id, err)
	}
	return keySecret{uid: string(sec.UID), key: k}
}

func stealLease(ctx context.Context, t *testing.T, kube kubernetes.Interface) {
	t.Helper()
	for {
		l, err := kube.CoordinationV1().Leases("weft-system").Get(ctx, gateway.LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		thief, long, now := "thief", int32(3600), metav1.NewMicroTime(time.Now())
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.AcquireTime, l.Spec.RenewTime = &thief, &long, &now, &now
		_, err = kube.CoordinationV1().Leases("weft-system").Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue // renewed meanwhile: try again
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
}

// ---------------------------------------------------------------------------
// Gateways

type runningGateway struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned
}

// stop cancels Run and returns what it returned.
func (g *runningGateway) stop() error {
	g.cancel()
	<-g.done
	return g.err
}

func startGateway(t *testing.T, c *testCluster, node, dev, netns string, log *slog.Logger) *runningGateway {
	t.Helper()
	g, err := gateway.New(gateway.Options{
		RESTConfig: c.cfg, NodeName: node, ClusterID: c.id, PodCIDRs: c.pod, ServiceCIDRs: c.svc,
		Device:         gateway.DeviceOptions{Name: dev, Backend: wireguard.BackendUserspace, NetNS: netns},
		StatusInterval: time.Second,
		Logger:         log.With("test_gateway", node),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningGateway{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = g.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("gateway %s did not stop", node)
		}
	})
	return r
}

// devicePeers prints a userspace device's key and peers through its UAPI
// socket.
func devicePeers(name string) string {
	wg, err := wgctrl.New()
	if err != nil {
		return err.Error()
	}
	defer wg.Close()
	d, err := wg.Device(name)
	if err != nil {
		return err.Error()
	}
	var peers []string
	for _, p := range d.Peers {
		var pfx []netip.Prefix
		for _, n := range p.AllowedIPs {
			a, _ := netip.AddrFromSlice(n.IP)
			ones, _ := n.Mask.Size()
			pfx = append(pfx, netip.PrefixFrom(a.Unmap(), ones))
		}
		slices.SortFunc(pfx, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		var ips []string
		for _, p := range pfx {
			ips = append(ips, p.String())
		}
		peers = append(peers, fmt.Sprintf("%s@%s %s", p.PublicKey, p.Endpoint, strings.Join(ips, ",")))
	}
	return fmt.Sprintf("key=%s peers=%v", d.PublicKey, peers)
}

func route(ctx context.Context, t *testing.T, ns, dev, src string, dsts ...string) {
	t.Helper()
	for _, d := range dsts {
		if err := nspair.IP(ctx, "-n", ns, "route", "replace", d, "dev", dev, "src", src); err != nil {
			t.Fatal(err)
		}
	}
}

// ---------------------------------------------------------------------------
// Helpers

func conditionTrue(cs []metav1.Condition, typ string) bool {
	for _, c := range cs {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

func mustKey(t *testing.T) wireguard.PrivateKey {
	k, err := wireguard.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// waitFor polls cond until it holds, failing the test at ctx's deadline
// with cond's last explanation.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, detail := cond()
		if ok {
			t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		last = detail
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not reached: %s", what, last)
		case <-tick.C:
		}
	}
}

// testLogger logs into the test log until the test has finished (gateway
// goroutines may still log while they stop).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	level := slog.LevelInfo
	if os.Getenv("WEFT_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(b, "\n")))
	}
	return len(b), nil
}
