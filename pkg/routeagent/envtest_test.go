package routeagent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/weftnet/weft/internal/testenv"
	weftv1alpha1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
	"github.com/weftnet/weft/pkg/firewall/firewalltest"
	"github.com/weftnet/weft/pkg/netplan"
	"github.com/weftnet/weft/pkg/route/routetest"
	"github.com/weftnet/weft/pkg/routeagent"
)

const ns = routeagent.DefaultNamespace

// assets returns the envtest binary directory (skipped with -short).
func assets(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	return testenv.Assets(t)
}

// apiServer is a real kube-apiserver + etcd with weft's CRDs and the
// weft-system namespace.
type apiServer struct {
	t   *testing.T
	ctx context.Context
	cfg *rest.Config
	c   client.Client
}

func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	assets(t) // skips with -short or without the binaries
	cfg := testenv.StartControlPlane(t)
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{corev1.AddToScheme, coordinationv1.AddToScheme, weftv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	s := &apiServer{t: t, ctx: ctx, cfg: cfg, c: c}
	s.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	return s
}

func (s *apiServer) create(obj client.Object) {
	s.t.Helper()
	if err := s.c.Create(s.ctx, obj); err != nil {
		s.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (s *apiServer) delete(obj client.Object) {
	s.t.Helper()
	if err := s.c.Delete(s.ctx, obj); err != nil {
		s.t.Fatalf("delete %T %s: %v", obj, obj.GetName(), err)
	}
}

func (s *apiServer) node(name, ip, podCIDR string) {
	s.t.Helper()
	s.create(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	})
	var n corev1.Node
	if err := s.c.Get(s.ctx, client.ObjectKey{Name: name}, &n); err != nil {
		s.t.Fatal(err)
	}
	if len(n.Status.Addresses) == 0 { // status dropped on create: set it
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
		if err := s.c.Status().Update(s.ctx, &n); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *apiServer) remoteCluster(id string, subnets ...string) *weftv1alpha1.RemoteCluster {
	s.t.Helper()
	rc := &weftv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
		Spec:       weftv1alpha1.RemoteClusterSpec{ClusterID: id, Subnets: subnets},
	}
	s.create(rc)
	return rc
}

// setLease creates or updates Lease weft-gateway: holder, renewed now.
func (s *apiServer) setLease(holder string, duration int32) {
	s.t.Helper()
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(holder),
		LeaseDurationSeconds: ptr.To(duration),
		AcquireTime:          &metav1.MicroTime{Time: time.Now()},
		RenewTime:            &metav1.MicroTime{Time: time.Now()},
	}
	var l coordinationv1.Lease
	err := s.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: routeagent.DefaultLeaseName}, &l)
	if err != nil {
		s.create(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: routeagent.DefaultLeaseName}, Spec: spec})
		return
	}
	l.Spec = spec
	if err := s.c.Update(s.ctx, &l); err != nil {
		s.t.Fatal(err)
	}
}

// fakeLinks maps addresses to the interfaces holding them.
type fakeLinks map[netip.Addr]routeagent.Link

func (f fakeLinks) LinkByAddr(a netip.Addr) (routeagent.Link, bool, error) {
	l, ok := f[a]
	return l, ok, nil
}

// testLogger logs to t until the returned stop runs.
func testLogger(t *testing.T) (*slog.Logger, func()) {
	w := &testWriter{t: t}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w.stop
}

type testWriter struct {
	mu      sync.Mutex
	t       *testing.T
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}

var _ io.Writer = (*testWriter)(nil)

// runAgent starts an agent; the returned stop (also run at cleanup) cancels
// it and checks that Run returned nil.
func runAgent(t *testing.T, o routeagent.Options) (*routeagent.Agent, func()) {
	t.Helper()
	log, stopLog := testLogger(t)
	o.Logger = log
	a, err := routeagent.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
			stopLog()
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// waitFor polls cond until it holds, failing the test after timeout with
// cond's last description.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state:\n%s", timeout, what, desc)
		}
		<-tick.C
	}
}

// dataPlane renders the fake kernel's routes and FDB entries in weft's
// table and device, sorted.
func dataPlane(k *routetest.Kernel, p netplan.Params) string {
	var keep []string
	for _, l := range strings.Split(k.Owned(p), "\n") {
		if strings.HasPrefix(l, "route ") || strings.HasPrefix(l, "fdb ") {
			keep = append(keep, l)
		}
	}
	slices.Sort(keep)
	return strings.Join(keep, "\n")
}

// expect waits until the fake kernel shows exactly lines (any order).
func expect(t *testing.T, what string, k *routetest.Kernel, p netplan.Params, lines ...string) {
	t.Helper()
	slices.Sort(lines)
	want := strings.Join(lines, "\n")
	waitFor(t, what, 20*time.Second, func() (bool, string) {
		got := dataPlane(k, p)
		return got == want, got + "\nwant:\n" + want
	})
}

func viaVX(gw string, dsts ...string) []string {
	out := []string{"fdb 00:00:00:00:00:00 dev weft-vx dst " + gw}
	b := netip.MustParseAddr(gw).As4()
	for _, d := range dsts {
		out = append(out, fmt.Sprintf("route %s via 240.%d.%d.%d dev weft-vx src 10.1.2.1 onlink table 176", d, b[1], b[2], b[3]))
	}
	return out
}

func viaWG(dev string, dsts ...string) []string {
	var out []string
	for _, d := range dsts {
		out = append(out, fmt.Sprintf("route %s dev %s src 10.1.2.1 table 176", d, dev))
	}
	return out
}

// TestAgentFollowsClusterState runs the agent for node n2 against a real
// API server and the in-memory kernel and iptables fakes, and changes the
// cluster under it: RemoteClusters come and go, the gateway lease moves,
// expires, disappears. The resync period is an hour, so every change seen
// here is event-driven (or the lease-expiry timer). Then a second agent
// takes over the same node: it changes nothing at start-up, and its resync
// puts back what was deleted behind its back.
func TestAgentFollowsClusterState(t *testing.T) {
	s := startAPIServer(t)
	s.node("n1", "192.168.10.11", "10.1.1.0/24")
	s.node("n2", "192.168.10.12", "10.1.2.0/24")
	s.node("n3", "192.168.10.13", "10.1.3.0/24")
	s.setLease("n1", 3600)

	const wg = "wg-c1-n2" // lab gateways name their WireGuard device uniquely
	params := netplan.Params{WireGuardDevice: wg}
	k := routetest.New()
	k.AddLink("eth0", "veth", 1500, true)
	k.AddLink("cni0", "bridge", 1500, true)
	k.AddLink(wg, "wireguard", 1420, true)
	ipt := firewalltest.New()
	opts := routeagent.Options{
		RESTConfig:   s.cfg,
		NodeName:     "n2",
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.96.0.0/16")},
		Params:       params,
		Resync:       time.Hour,
		Kernel:       k,
		Tables:       ipt,
		Links: fakeLinks{
			netip.MustParseAddr("192.168.10.12"): {Name: "eth0", MTU: 1500},
			netip.MustParseAddr("10.1.2.1"):      {Name: "cni0", MTU: 1500},
		},
	}
	a, stopA := runAgent(t, opts)

	// No remote cluster yet: weft-vx toward n1, no routes.
	expect(t, "FDB toward n1", k, params, "fdb 00:00:00:00:00:00 dev weft-vx dst 192.168.10.11")
	owned := k.Owned(params)
	for _, want := range []string{"link weft-vx vxlan vni 4242 dstport 4799 local 192.168.10.12 learning mtu 1420 up", "addr 240.168.10.12/8 dev weft-vx", "rule 176: from all lookup 176"} {
		if !strings.Contains(owned, want+"\n") {
			t.Errorf("kernel lacks %q:\n%s", want, owned)
		}
	}
	if st := k.String(); !strings.Contains(st, "sysctl net/ipv4/conf/cni0/rp_filter = 2\n") || !strings.Contains(st, "sysctl net/ipv4/ip_forward = 1\n") {
		t.Errorf("sysctls not set (derived CNI interface cni0):\n%s", st)
	}
	if got := a.Status(); !got.Synced || got.Gateway != "n1" || got.Err != nil {
		t.Errorf("Status = %+v", got)
	}

	// RemoteClusters appear; a subnet overlapping the local pod CIDR is
	// skipped, the rest routed through the VXLAN hop.
	s.remoteCluster("c2", "10.2.0.0/16", "10.102.0.0/16")
	c3 := s.remoteCluster("c3", "10.3.0.0/16", "10.1.200.0/24")
	expect(t, "routes via n1", k, params, viaVX("192.168.10.11", "10.2.0.0/16", "10.102.0.0/16", "10.3.0.0/16")...)
	post := ipt.Rules("nat", netplan.ChainPostrouting)
	for _, want := range []string{"-s 10.1.0.0/16 -d 10.2.0.0/16 -j ACCEPT", "-s 10.96.0.0/16 -d 10.3.0.0/16 -j ACCEPT"} {
		if !slices.Contains(post, want) {
			t.Errorf("nat %s lacks %q: %q", netplan.ChainPostrouting, want, post)
		}
	}
	if len(post) != 6 {
		t.Errorf("nat %s has %d rules; want 6 (2 local x 3 remote): %q", netplan.ChainPostrouting, len(post), post)
	}
	if got := ipt.Rules("nat", "POSTROUTING"); !slices.Equal(got, []string{"-j " + netplan.ChainPostrouting}) {
		t.Errorf("nat POSTROUTING = %q", got)
	}
	if got := ipt.Rules("mangle", netplan.ChainMSS); len(got) != 6 || !strings.Contains(got[0], "--set-mss 1380") {
		t.Errorf("mangle %s = %q; want 6 rules clamping to 1380", netplan.ChainMSS, got)
	}

	// This node takes the lease before its gateway has created the
	// WireGuard device: the pass fails, and the agent retries (with
	// backoff, not at the hour-long resync) until the device is there.
	k.RemoveLink(wg)
	s.setLease("n2", 3600)
	waitFor(t, "a failed pass as the gateway", 20*time.Second, func() (bool, string) {
		st := a.Status()
		return st.Gateway == "n2" && st.Err != nil, fmt.Sprintf("%+v", st)
	})
	k.AddLink(wg, "wireguard", 1420, true)
	expect(t, "routes via WireGuard", k, params, viaWG(wg, "10.2.0.0/16", "10.102.0.0/16", "10.3.0.0/16")...)

	// The lease moves to n3.
	s.setLease("n3", 3600)
	expect(t, "routes via n3", k, params, viaVX("192.168.10.13", "10.2.0.0/16", "10.102.0.0/16", "10.3.0.0/16")...)

	// A RemoteCluster goes: its routes go.
	s.delete(c3)
	expect(t, "c3's routes gone", k, params, viaVX("192.168.10.13", "10.2.0.0/16", "10.102.0.0/16")...)
	if post := ipt.Rules("nat", netplan.ChainPostrouting); len(post) != 4 {
		t.Errorf("nat %s after c3 left: %q", netplan.ChainPostrouting, post)
	}

	// The lease is renewed for 2 s and then not any more: when it expires,
	// there is no active gateway and no route (found by the expiry timer).
	s.setLease("n3", 2)
	expect(t, "routes gone at lease expiry", k, params)
	if got := a.Status(); got.Gateway != "" {
		t.Errorf("Status.Gateway = %q after expiry", got.Gateway)
	}

	// A new holder; then the lease is deleted; then it is back.
	s.setLease("n1", 3600)
	expect(t, "routes via n1 again", k, params, viaVX("192.168.10.11", "10.2.0.0/16", "10.102.0.0/16")...)
	s.delete(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: routeagent.DefaultLeaseName}})
	expect(t, "routes gone with the lease", k, params)
	s.setLease("n1", 3600)
	expect(t, "routes via n1 once more", k, params, viaVX("192.168.10.11", "10.2.0.0/16", "10.102.0.0/16")...)
	stopA()

	// A second agent adopts the state without a single write, then repairs
	// what someone else deletes at its next resync.
	kw, fw := k.Writes(), ipt.Writes()
	opts.Resync = 300 * time.Millisecond
	b, _ := runAgent(t, opts)
	waitFor(t, "the second agent's first apply", 20*time.Second, func() (bool, string) {
		st := b.Status()
		return st.Applies >= 1 && st.Err == nil, fmt.Sprintf("%+v", st)
	})
	if k.Writes() != kw || ipt.Writes() != fw {
		t.Fatalf("restart wrote to the kernel (%d writes) or iptables (%d writes); want none", k.Writes()-kw, ipt.Writes()-fw)
	}
	if !k.RemoveRoute(176, netip.MustParsePrefix("10.102.0.0/16")) {
		t.Fatal("no route 10.102.0.0/16 to remove")
	}
	if err := ipt.DeleteById("nat", "POSTROUTING", 1); err != nil {
		t.Fatal(err)
	}
	expect(t, "the route back after a resync", k, params, viaVX("192.168.10.11", "10.2.0.0/16", "10.102.0.0/16")...)
	waitFor(t, "the POSTROUTING jump back", 20*time.Second, func() (bool, string) {
		got := ipt.Rules("nat", "POSTROUTING")
		return slices.Equal(got, []string{"-j " + netplan.ChainPostrouting}), fmt.Sprintf("%q", got)
	})
}

// TestAgentWaitsForCRDs starts the agent before weft's CRDs are installed:
// it waits for them instead of failing, then routes as usual.
func TestAgentWaitsForCRDs(t *testing.T) {
	env := &envtest.Environment{BinaryAssetsDirectory: assets(t)}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := &apiServer{t: t, ctx: ctx, cfg: cfg, c: c}
	s.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	s.node("n1", "192.168.10.11", "10.1.1.0/24")
	s.node("n2", "192.168.10.12", "10.1.2.0/24")
	s.setLease("n1", 3600)

	k := routetest.New()
	k.AddLink("cni0", "bridge", 1500, true)
	a, _ := runAgent(t, routeagent.Options{
		RESTConfig:   cfg,
		NodeName:     "n2",
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		TunnelMTU:    1420,
		CNIInterface: "cni0",
		Resync:       time.Hour,
		Kernel:       k,
		Tables:       firewalltest.New(),
	})
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths: []string{testenv.CRDDir()}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatal(err)
	}
	scheme := k8sruntime.NewScheme()
	if err := weftv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if s.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	s.remoteCluster("c2", "10.2.0.0/16")
	expect(t, "routes via n1", k, netplan.Params{}, viaVX("192.168.10.11", "10.2.0.0/16")...)
	if st := a.Status(); !st.Synced || st.Err != nil {
		t.Fatalf("Status = %+v", st)
	}
}
