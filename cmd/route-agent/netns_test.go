package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weftnet/weft/internal/nspair"
	"github.com/weftnet/weft/internal/testenv"
	weftv1alpha1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
)

// needs skips the test unless it can run: root, tools, envtest binaries.
func needs(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("netns test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("netns test: needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-save", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("netns test: needs %s", tool)
		}
	}
	testenv.Assets(t)
}

// TestRouteAgentInNamespace runs this command the way the lab does
// (`ip netns exec <node-ns> route-agent --kubeconfig ... --node-name ...
// --cluster-cidrs ... --wg-device ...`) inside a test namespace, against a
// real kube-apiserver, with the real kernel and iptables. The API server
// listens in the test's own namespace; a TCP relay listening inside the
// node namespace forwards to it, so nothing is configured outside the test
// namespace. Checked: routes through the VXLAN hop and the WireGuard device
// as the lease moves, the derived tunnel MTU and CNI interface, a route
// deleted by hand coming back at the resync, nothing flushed at exit, and
// --cleanup removing all of it.
func TestRouteAgentInNamespace(t *testing.T) {
	needs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := testenv.StartControlPlane(t)
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{corev1.AddToScheme, coordinationv1.AddToScheme, weftv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	kc, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	create := func(obj client.Object) {
		t.Helper()
		if err := kc.Create(ctx, obj); err != nil {
			t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
		}
	}
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}})
	for _, n := range []struct{ name, ip, pods string }{{"n1", "192.168.10.11", "10.1.1.0/24"}, {"n2", "192.168.10.12", "10.1.2.0/24"}} {
		create(&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name},
			Spec:       corev1.NodeSpec{PodCIDR: n.pods, PodCIDRs: []string{n.pods}},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip}}},
		})
	}
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-gateway"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n1"), LeaseDurationSeconds: ptr.To[int32](3600),
			RenewTime: &metav1.MicroTime{Time: time.Now()}},
	}
	create(lease)

	// The node namespace: LAN interface, pod bridge stand-in, and the
	// gateway's WireGuard device stand-in (named as the lab names them).
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	node := "wt" + hex.EncodeToString(rnd[:]) + "ra"
	ip := func(args ...string) {
		t.Helper()
		if err := nspair.IP(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	ip("netns", "add", node)
	t.Cleanup(func() {
		if err := nspair.IP(context.Background(), "netns", "del", node); err != nil {
			t.Errorf("delete netns: %v", err)
		}
	})
	const wg = "weft-c1-2"
	ip("-n", node, "link", "set", "lo", "up")
	for _, dev := range []string{"eth-lan", "cbr0", wg} {
		if nspair.IP(ctx, "-n", node, "link", "add", dev, "type", "dummy") != nil {
			ip("-n", node, "link", "add", dev, "type", "veth", "peer", "name", dev+"p")
			ip("-n", node, "link", "set", dev+"p", "up")
		}
		ip("-n", node, "link", "set", dev, "up")
	}
	ip("-n", node, "addr", "add", "192.168.10.12/24", "dev", "eth-lan")
	ip("-n", node, "addr", "add", "10.1.2.1/24", "dev", "cbr0")
	ip("-n", node, "link", "set", wg, "mtu", "1420")
	in := func(args ...string) string {
		t.Helper()
		out, err := nspair.Exec(ctx, node, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	kubeconfig := relayKubeconfig(t, cfg, node)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, node, exe, "--kubeconfig", kubeconfig, "--node-name", "n2",
		"--cluster-cidrs", "10.1.0.0/16,10.96.0.0/16", "--wg-device", wg, "--resync", "500ms")

	waitIn := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			ok, state := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) || agent.exited() {
				t.Fatalf("waiting for %s; state:\n%s\nagent output:\n%s", what, state, agent.output())
			}
			<-tick.C
		}
	}
	table := func(want ...string) func() (bool, string) {
		return func() (bool, string) {
			out, err := nspair.Exec(ctx, node, "ip", "route", "show", "table", "176")
			if err != nil { // "FIB table does not exist" until the first route
				return false, err.Error()
			}
			got := strings.Fields(out)
			return strings.Join(got, " ") == strings.Join(strings.Fields(strings.Join(want, "\n")), " "), out
		}
	}

	// A remote cluster appears; n1 holds the lease: the VXLAN hop.
	create(&weftv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "c2"},
		Spec:       weftv1alpha1.RemoteClusterSpec{ClusterID: "c2", Subnets: []string{"10.2.0.0/16", "10.102.0.0/16"}},
	})
	waitIn("routes via weft-vx", table(
		"10.2.0.0/16 via 240.168.10.11 dev weft-vx proto static src 10.1.2.1 onlink",
		"10.102.0.0/16 via 240.168.10.11 dev weft-vx proto static src 10.1.2.1 onlink"))
	if out := in("ip", "-d", "link", "show", "weft-vx"); !strings.Contains(out, "mtu 1420 ") || !strings.Contains(out, "vxlan id 4242 ") || !strings.Contains(out, "local 192.168.10.12 ") {
		t.Errorf("weft-vx (tunnel MTU derived from eth-lan's 1500):\n%s", out)
	}
	if out := in("bridge", "fdb", "show", "dev", "weft-vx"); !strings.Contains(out, "00:00:00:00:00:00 dst 192.168.10.11 ") {
		t.Errorf("weft-vx FDB:\n%s", out)
	}
	if v := strings.TrimSpace(in("sysctl", "-n", "net.ipv4.conf.cbr0.rp_filter")); v != "2" {
		t.Errorf("rp_filter of the derived CNI interface cbr0 = %s; want 2", v)
	}
	if !strings.Contains(in("ip", "rule"), "176:\tfrom all lookup 176") {
		t.Errorf("ip rule lacks 176: %s", in("ip", "rule"))
	}
	// The agent applies the firewall before the routes.
	save := in("iptables-save")
	for _, want := range []string{"-A POSTROUTING -j WEFT-POSTROUTING", "-A WEFT-POSTROUTING -s 10.96.0.0/16 -d 10.102.0.0/16 -j ACCEPT",
		"-A WEFT-FORWARD -d 10.2.0.0/16 -j ACCEPT", "-A WEFT-MSS -s 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380"} {
		if !strings.Contains(save, want+"\n") {
			t.Errorf("iptables-save lacks %q:\n%s", want, save)
		}
	}

	// This node takes the lease: routes into its WireGuard device.
	if err := kc.Get(ctx, client.ObjectKeyFromObject(lease), lease); err != nil {
		t.Fatal(err)
	}
	lease.Spec.HolderIdentity = ptr.To("n2")
	lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if err := kc.Update(ctx, lease); err != nil {
		t.Fatal(err)
	}
	wgRoutes := table(
		"10.2.0.0/16 dev "+wg+" proto static scope link src 10.1.2.1",
		"10.102.0.0/16 dev "+wg+" proto static scope link src 10.1.2.1")
	waitIn("routes via "+wg, wgRoutes)

	// Deleted by hand, back at the next resync.
	in("ip", "route", "del", "10.102.0.0/16", "table", "176")
	in("iptables", "-t", "nat", "-D", "POSTROUTING", "-j", "WEFT-POSTROUTING")
	waitIn("the deleted route back", wgRoutes)
	waitIn("the deleted jump back", func() (bool, string) {
		out := in("iptables", "-t", "nat", "-S", "POSTROUTING")
		return strings.Contains(out, "-A POSTROUTING -j WEFT-POSTROUTING\n"), out
	})

	// SIGTERM: a clean exit that leaves the data plane in place.
	if err := agent.stop(); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, agent.output())
	}
	if ok, out := wgRoutes(); !ok {
		t.Fatalf("routes gone after the agent exited:\n%s", out)
	}

	// --cleanup removes everything weft added, and a second run finds
	// nothing to do.
	for range 2 {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", node, exe, "--cleanup", "--wg-device", wg)
		cmd.Env = append(os.Environ(), "WEFT_TEST_ROUTE_AGENT_MAIN=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("--cleanup: %v\n%s", err, out)
		}
	}
	if out, err := nspair.Exec(ctx, node, "ip", "route", "show", "table", "176"); err == nil && strings.TrimSpace(out) != "" {
		t.Errorf("table 176 after --cleanup:\n%s", out)
	}
	if out := in("ip", "rule"); strings.Contains(out, "lookup 176") {
		t.Errorf("ip rule after --cleanup:\n%s", out)
	}
	if out := in("ip", "-br", "link"); strings.Contains(out, "weft-vx") || !strings.Contains(out, wg) {
		t.Errorf("links after --cleanup:\n%s", out)
	}
	if out := in("iptables-save"); strings.Contains(out, "WEFT") {
		t.Errorf("iptables-save after --cleanup:\n%s", out)
	}
}

// relayKubeconfig starts a TCP relay listening on 127.0.0.1 inside
// namespace node that forwards to cfg's API server (in the test's own
// namespace), and writes a kubeconfig for it.
func relayKubeconfig(t *testing.T, cfg *rest.Config, node string) string {
	t.Helper()
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		u, err = url.Parse("https://" + cfg.Host)
	}
	if err != nil {
		t.Fatalf("API server address %q: %v", cfg.Host, err)
	}
	target := u.Host
	l, err := listenIn(nspair.NSPath(node), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()

	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: "https://" + l.Addr().String(), CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// listenIn opens a TCP listener inside the namespace at nsPath. The socket
// stays in that namespace; accepting works from any thread.
func listenIn(nsPath, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter %s: %w", nsPath, err)}
			return
		}
		l, lerr := net.Listen("tcp", addr)
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with this goroutine.
			if l != nil {
				l.Close()
			}
			ch <- result{err: fmt.Errorf("restore netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{l, lerr}
	}()
	r := <-ch
	return r.l, r.err
}

// agentProc is the route agent running in a namespace.
type agentProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startAgent(t *testing.T, node, exe string, args ...string) *agentProc {
	t.Helper()
	// ip netns exec execs the command: the process is the agent itself.
	cmd := exec.Command("ip", append([]string{"netns", "exec", node, exe}, args...)...)
	cmd.Env = append(os.Environ(), "WEFT_TEST_ROUTE_AGENT_MAIN=1")
	p := &agentProc{cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", p.out)
		}
	})
	return p
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *agentProc) output() string { return p.out.String() }

// stop sends SIGTERM and waits for the exit.
func (p *agentProc) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		return errors.New("no exit 30 s after SIGTERM")
	}
}
