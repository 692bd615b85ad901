// Package fabric runs weft for real on top of a namespace lab (pkg/lab):
// per cluster a kube-apiserver and etcd in the lab's control namespace,
// the broker with embedded etcd beside them, Node objects for the lab's
// nodes, a join token per cluster, and the real gateway and route-agent
// binaries inside the node namespaces. A loopback proxy in the host
// namespace (listening on 127.0.0.1 only) lets kubectl and weftctl on the
// host reach the API servers and the broker. Verify pings and iperf3s
// across the clusters and prints a matrix.
package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/weftnet/weft/deploy/crds"
	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/lab"
)

// Options configure Up.
type Options struct {
	Lab *lab.Lab
	// BinDir holds broker, gateway, route-agent and weftctl.
	BinDir string
	// AssetsDir holds kube-apiserver and etcd (hack/build-assets.sh).
	AssetsDir string
	Log       *slog.Logger
	// Progress, when set, receives one line per step for the operator.
	Progress func(format string, args ...any)
	// Clusters limits which clusters get started ("" all); used to add a
	// cluster to a running lab.
	Only []string
}

// State is what Up records for later commands (kubeconfig, verify).
type State struct {
	// HostPorts maps a proxied target (cluster name, or "broker") to its
	// 127.0.0.1 port in the host namespace.
	HostPorts map[string]int `json:"hostPorts"`
	// AdminConfig is the broker admin credential usable from the host.
	AdminConfig string `json:"adminConfig"`
	// Started is when the gateways and route agents were started.
	Started map[string]time.Time `json:"started"`
}

// Fabric is a running fabric on a lab.
type Fabric struct {
	o    Options
	plan *lab.Plan
	dir  string
}

// Dir is where the fabric keeps its files inside the lab's state dir.
func Dir(l *lab.Lab) string { return filepath.Join(l.StateDir(), "fabric") }

// NodeName is the Kubernetes node name of a lab node.
func NodeName(cluster, node string) string { return cluster + "-" + node }

// DeviceName is the WireGuard interface of a lab gateway: unique per
// gateway, because wireguard-go's UAPI sockets share /var/run/wireguard
// across namespaces.
func DeviceName(cluster string, node int) string { return fmt.Sprintf("wg%sn%d", cluster, node) }

// KubeconfigPath is the host-usable kubeconfig of a cluster.
func KubeconfigPath(l *lab.Lab, cluster string) string {
	return filepath.Join(Dir(l), cluster, "kubeconfig")
}

func (f *Fabric) progress(format string, args ...any) {
	if f.o.Progress != nil {
		f.o.Progress(format, args...)
	}
	f.o.Log.Info(fmt.Sprintf(format, args...))
}

// Up starts the fabric on a lab that is up.
func Up(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	plan, err := o.Lab.Plan()
	if err != nil {
		return err
	}
	for _, b := range []string{filepath.Join(o.BinDir, "broker"), filepath.Join(o.BinDir, "gateway"), filepath.Join(o.BinDir, "route-agent"),
		filepath.Join(o.BinDir, "weftctl"), filepath.Join(o.AssetsDir, "kube-apiserver"), filepath.Join(o.AssetsDir, "etcd")} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("fabric: %w (run make build and make assets)", err)
		}
	}
	f := &Fabric{o: o, plan: plan, dir: Dir(o.Lab)}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return err
	}
	st, err := f.readState()
	if err != nil {
		return err
	}
	first := len(st.HostPorts) == 0
	ctlIP := plan.Control.Addr.Addr().String()
	brokerAddr := net.JoinHostPort(ctlIP, strconv.Itoa(brokerPort))
	if first {
		f.progress("starting the broker (embedded etcd) in %s at %s", plan.Control.Namespace, brokerAddr)
		if _, err := o.Lab.StartProcess(ctx, "broker", "ctl", filepath.Join(o.BinDir, "broker"),
			"--listen", brokerAddr, "--data-dir", filepath.Join(f.dir, "broker"),
			"--metrics-addr", net.JoinHostPort(ctlIP, strconv.Itoa(metricsPort)),
			"--join-rate", "50", "--join-burst", "50", "--heartbeat-interval", "5s"); err != nil {
			return err
		}
	}
	var cps []*controlPlane
	for i := range plan.Clusters {
		c := &plan.Clusters[i]
		if !f.selected(c.Name) {
			continue
		}
		f.progress("cluster %s: starting kube-apiserver %s and etcd %s", c.Name, "1.34", "3.6")
		cp, err := f.startControlPlane(ctx, c)
		if err != nil {
			return err
		}
		cps = append(cps, cp)
	}
	// Host-side proxy: one port per cluster apiserver and the broker.
	if st.HostPorts == nil {
		st.HostPorts = map[string]int{}
	}
	for _, cp := range cps {
		if st.HostPorts[cp.cluster] == 0 {
			if st.HostPorts[cp.cluster], err = freePort(); err != nil {
				return err
			}
		}
	}
	if st.HostPorts["broker"] == 0 {
		if st.HostPorts["broker"], err = freePort(); err != nil {
			return err
		}
	}
	// One proxy process per started cluster (and one for the broker, the
	// first time), so adding a cluster later leaves running ones alone.
	for _, cp := range cps {
		m := fmt.Sprintf("127.0.0.1:%d=%s", st.HostPorts[cp.cluster], cp.ctlAddr)
		if _, err := o.Lab.StartProcess(ctx, "proxy-"+cp.cluster, lab.HostTarget,
			filepath.Join(o.BinDir, "weftctl"), "lab", "proxy", "--netns", plan.Control.Namespace, "--map", m); err != nil {
			return err
		}
	}
	if first {
		m := fmt.Sprintf("127.0.0.1:%d=%s", st.HostPorts["broker"], brokerAddr)
		if _, err := o.Lab.StartProcess(ctx, "proxy-broker", lab.HostTarget,
			filepath.Join(o.BinDir, "weftctl"), "lab", "proxy", "--netns", plan.Control.Namespace, "--map", m); err != nil {
			return err
		}
	}

	// Broker admin credential, rewritten for the host side of the proxy.
	adminPath := filepath.Join(f.dir, "broker", "admin.json")
	admin, err := waitAdmin(ctx, plan.Control.Namespace, adminPath, 60*time.Second)
	if err != nil {
		return err
	}
	hostAdmin := *admin
	hostAdmin.Addresses = []string{fmt.Sprintf("127.0.0.1:%d", st.HostPorts["broker"])}
	raw, _ := hostAdmin.Marshal()
	st.AdminConfig = filepath.Join(f.dir, "admin-host.json")
	if err := os.WriteFile(st.AdminConfig, raw, 0o600); err != nil {
		return err
	}
	adminConn, err := client.Dial(admin, "", dialInOption(plan.Control.Namespace))
	if err != nil {
		return err
	}
	defer adminConn.Close()
	adm := v1.NewAdminServiceClient(adminConn)

	for _, cp := range cps {
		f.progress("cluster %s: waiting for kube-apiserver", cp.cluster)
		if err := f.waitReady(ctx, cp, 90*time.Second); err != nil {
			return err
		}
		if err := writeKubeconfig(filepath.Join(cp.dir, "kubeconfig-lab"), cp.cluster, "https://"+cp.ctlAddr, cp.token); err != nil {
			return err
		}
		if err := writeKubeconfig(KubeconfigPath(o.Lab, cp.cluster), cp.cluster, fmt.Sprintf("https://127.0.0.1:%d", st.HostPorts[cp.cluster]), cp.token); err != nil {
			return err
		}
		c, _ := plan.Cluster(cp.cluster)
		f.progress("cluster %s: CRDs, Node objects, join token", cp.cluster)
		if err := f.seedCluster(ctx, cp, c, adm); err != nil {
			return fmt.Errorf("cluster %s: %w", cp.cluster, err)
		}
	}
	if st.Started == nil {
		st.Started = map[string]time.Time{}
	}
	for _, cp := range cps {
		c, _ := plan.Cluster(cp.cluster)
		kc := filepath.Join(cp.dir, "kubeconfig-lab")
		cidrs := c.PodCIDR.String() + "," + c.ServiceCIDR.String()
		f.progress("cluster %s: starting gateway and route-agent processes in the node namespaces", cp.cluster)
		for _, n := range c.Nodes {
			node := NodeName(c.Name, n.Name)
			target := c.Name + "/" + n.Name
			dev := DeviceName(c.Name, n.Index)
			if n.Gateway {
				if _, err := o.Lab.StartProcess(ctx, node+"-gateway", target, filepath.Join(o.BinDir, "gateway"),
					"--kubeconfig", kc, "--node-name", node, "--cluster-id", c.Name,
					"--pod-cidrs", c.PodCIDR.String(), "--service-cidrs", c.ServiceCIDR.String(),
					"--wg-device", dev, "--wireguard", "userspace"); err != nil {
					return err
				}
			}
			if _, err := o.Lab.StartProcess(ctx, node+"-route-agent", target, filepath.Join(o.BinDir, "route-agent"),
				"--kubeconfig", kc, "--node-name", node, "--cluster-cidrs", cidrs, "--wg-device", routeDevice(c.Name, n)); err != nil {
				return err
			}
		}
		st.Started[cp.cluster] = time.Now()
	}
	return f.writeState(st)
}

// routeDevice is the WireGuard device a node's route agent routes into
// when that node is the active gateway: its own gateway's device.
func routeDevice(cluster string, n lab.NodePlan) string {
	if n.Gateway {
		return DeviceName(cluster, n.Index)
	}
	return "weft-wg" // never the active gateway: unused
}

func (f *Fabric) selected(cluster string) bool {
	if len(f.o.Only) == 0 {
		return true
	}
	for _, c := range f.o.Only {
		if c == cluster {
			return true
		}
	}
	return false
}

// seedCluster installs CRDs, the weft-system namespace, Node objects and
// the join token Secret.
func (f *Fabric) seedCluster(ctx context.Context, cp *controlPlane, c *lab.ClusterPlan, adm v1.AdminServiceClient) error {
	cfg := f.restConfig(cp)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ext, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil {
		return err
	}
	for _, name := range files {
		raw, _ := crds.FS.ReadFile(name)
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			return fmt.Errorf("crd %s: %w", name, err)
		}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("install crd %s: %w", name, err)
		}
	}
	for _, name := range files {
		raw, _ := crds.FS.ReadFile(name)
		var crd apiextv1.CustomResourceDefinition
		_ = yaml.Unmarshal(raw, &crd)
		if err := waitEstablished(ctx, ext, crd.Name); err != nil {
			return err
		}
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for _, n := range c.Nodes {
		labels := map[string]string{"kubernetes.io/hostname": NodeName(c.Name, n.Name)}
		if n.Gateway {
			labels["weft.io/gateway"] = "true"
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: NodeName(c.Name, n.Name), Labels: labels},
			Spec:       corev1.NodeSpec{PodCIDR: n.PodSlice.String(), PodCIDRs: []string{n.PodSlice.String()}},
		}
		created, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = kube.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		}
		if err != nil {
			return fmt.Errorf("node %s: %w", node.Name, err)
		}
		created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.LANAddr.Addr().String()}, {Type: corev1.NodeHostName, Address: node.Name}}
		if n.Gateway {
			if ext := externalIP(c, n); ext.IsValid() {
				created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ext.String()})
			}
		}
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "LabNode", LastHeartbeatTime: metav1.Now()}}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s status: %w", node.Name, err)
		}
	}
	tok, err := adm.CreateToken(ctx, &v1.CreateTokenRequest{ClusterId: c.Name, Uses: 1, Description: "lab " + f.plan.Lab})
	if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "weft-broker-token", Namespace: "weft-system"}, StringData: map[string]string{"token": tok.Token}}
	if _, err := kube.CoreV1().Secrets("weft-system").Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("token secret: %w", err)
	}
	return nil
}

// externalIP is the address other clusters reach a gateway at: its WAN
// address, or its NAT router's.
func externalIP(c *lab.ClusterPlan, n lab.NodePlan) netip.Addr {
	if c.Router != nil {
		return c.Router.WANAddr.Addr()
	}
	return n.WANAddr.Addr()
}

func waitEstablished(ctx context.Context, ext apiextclient.Interface, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("crd %s not established after 30s", name)
}

func (f *Fabric) readState() (*State, error) {
	raw, err := os.ReadFile(filepath.Join(f.dir, "fabric.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("fabric state: %w", err)
	}
	return &st, nil
}

func (f *Fabric) writeState(st *State) error {
	raw, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(filepath.Join(f.dir, "fabric.json"), raw, 0o600)
}

// ReadState reads what Up recorded.
func ReadState(l *lab.Lab) (*State, error) {
	f := &Fabric{dir: Dir(l)}
	st, err := f.readState()
	if err == nil && len(st.HostPorts) == 0 {
		return nil, fmt.Errorf("lab %s runs no fabric (lab up --fabric)", l.Name())
	}
	return st, err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitAdmin(ctx context.Context, ns, path string, within time.Duration) (*client.Credentials, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if raw, err := os.ReadFile(path); err == nil {
			if c, err := client.UnmarshalCredentials(raw); err == nil {
				if conn, err := DialIn(ctx, ns, "tcp", c.Addresses[0]); err == nil {
					conn.Close()
					return c, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("broker not up after %s (no %s)", within, path)
}
