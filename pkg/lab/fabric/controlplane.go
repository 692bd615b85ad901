package fabric

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftnet/weft/pkg/lab"
)

// Ports inside the control namespace, per cluster index n.
func apiserverPort(n int) int { return 6443 + n }
func etcdPort(n int) int      { return 12379 + 10*n }

const (
	brokerPort  = 7443
	metricsPort = 9470
)

// controlPlane is one cluster's kube-apiserver + etcd in the control
// namespace.
type controlPlane struct {
	cluster  string
	index    int
	dir      string
	token    string
	ctlAddr  string // host:port inside the lab
	hostAddr string // 127.0.0.1:port through the proxy
}

func (f *Fabric) startControlPlane(ctx context.Context, c *lab.ClusterPlan) (*controlPlane, error) {
	cp := &controlPlane{cluster: c.Name, index: c.Index, dir: filepath.Join(f.dir, c.Name)}
	if err := os.MkdirAll(cp.dir, 0o700); err != nil {
		return nil, err
	}
	ctlIP := f.plan.Control.Addr.Addr().String()
	cp.ctlAddr = net.JoinHostPort(ctlIP, strconv.Itoa(apiserverPort(c.Index)))
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	cp.token = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(cp.dir, "tokens.csv"), []byte(cp.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cp.dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cp.dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, err
	}
	ep := etcdPort(c.Index)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ep)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ep+1)
	if _, err := f.o.Lab.StartProcess(ctx, c.Name+"-etcd", "ctl", filepath.Join(f.o.AssetsDir, "etcd"),
		"--name", c.Name, "--data-dir", filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", c.Name+"="+peerURL, "--unsafe-no-fsync", "--log-level", "warn",
	); err != nil {
		return nil, err
	}
	if _, err := f.o.Lab.StartProcess(ctx, c.Name+"-apiserver", "ctl", filepath.Join(f.o.AssetsDir, "kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", "0.0.0.0", "--advertise-address", ctlIP,
		"--secure-port", strconv.Itoa(apiserverPort(c.Index)),
		"--cert-dir", filepath.Join(cp.dir, "certs"),
		"--service-cluster-ip-range", c.ServiceCIDR.String(),
		"--token-auth-file", filepath.Join(cp.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--allow-privileged=true",
		"--disable-admission-plugins", "ServiceAccount",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(cp.dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(cp.dir, "sa.key"),
		"--v", "1",
	); err != nil {
		return nil, err
	}
	return cp, nil
}

// restConfig reaches the apiserver from this process (which stays in the
// host namespace) by dialing inside the control namespace.
func (f *Fabric) restConfig(cp *controlPlane) *rest.Config {
	ns := f.plan.Control.Namespace
	return &rest.Config{
		Host:            "https://" + cp.ctlAddr,
		BearerToken:     cp.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialIn(ctx, ns, network, addr)
		},
		QPS: 100, Burst: 200, Timeout: 20 * time.Second,
	}
}

// waitReady polls /readyz until the apiserver answers 200.
func (f *Fabric) waitReady(ctx context.Context, cp *controlPlane, within time.Duration) error {
	ns := f.plan.Control.Namespace
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // lab apiserver, self-signed
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialIn(ctx, ns, network, addr)
		},
	}}
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+cp.ctlAddr+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+cp.token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz: %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster %s: kube-apiserver not ready after %s: %v (log: %s)", cp.cluster, within, last,
		filepath.Join(f.o.Lab.StateDir(), "logs", cp.cluster+"-apiserver.log"))
}

// writeKubeconfig writes a kubeconfig for server with the admin token.
func writeKubeconfig(path, cluster, server, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: "admin", Namespace: "weft-system"}
	cfg.CurrentContext = cluster
	return clientcmd.WriteToFile(*cfg, path)
}
