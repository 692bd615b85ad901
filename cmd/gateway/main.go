// Command gateway runs weft's gateway on a gateway node (DaemonSet on nodes
// labeled weft.io/gateway=true, hostNetwork, NET_ADMIN and NET_RAW). The
// node holding the Lease weft-gateway in weft-system is the active gateway:
// it owns the WireGuard device, publishes the cluster's endpoint at the
// broker, peers with every remote cluster's gateway, probes the tunnels and
// writes the Gateway and RemoteCluster objects. The other gateway nodes
// wait, passive.
//
// Exit status: 0 after SIGINT/SIGTERM (the device is closed, then the
// Lease released); 1 on a configuration error, on a failure of the active
// gateway, and when the active gateway loses its Lease (the device is
// closed first). The DaemonSet, or the lab, restarts it as a passive
// gateway.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/pkg/gateway"
	"github.com/weftnet/weft/pkg/wireguard"
)

type config struct {
	kubeconfig, nodeName, clusterID, podCIDRs, serviceCIDRs string
	namespace, device, backend, healthCheckIP, publicIP     string
	logLevel                                                string
	listenPort, mtu                                         int
	leaseDuration, renewDeadline, retryPeriod               time.Duration
	unprivilegedICMP                                        bool
}

func main() {
	var c config
	fs := flag.NewFlagSet("gateway", flag.ExitOnError)
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the local cluster (default: in-cluster config)")
	fs.StringVar(&c.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.StringVar(&c.clusterID, "cluster-id", "", "this cluster's id at the broker (DNS-1123 label)")
	fs.StringVar(&c.podCIDRs, "pod-cidrs", "", "comma-separated pod CIDRs of the cluster")
	fs.StringVar(&c.serviceCIDRs, "service-cidrs", "", "comma-separated service CIDRs of the cluster")
	fs.StringVar(&c.namespace, "namespace", gateway.DefaultNamespace, "namespace of the Lease, Secrets and weft.io objects")
	fs.StringVar(&c.device, "wg-device", gateway.DefaultDeviceName, "WireGuard interface name (at most 15 bytes)")
	fs.StringVar(&c.backend, "wireguard", string(wireguard.BackendAuto), "WireGuard backend: auto, kernel or userspace")
	fs.IntVar(&c.listenPort, "listen-port", gateway.DefaultListenPort, "WireGuard UDP port (also published)")
	fs.IntVar(&c.mtu, "mtu", 0, "WireGuard MTU (default: MTU of the interface holding the node's InternalIP minus 80)")
	fs.StringVar(&c.healthCheckIP, "health-check-ip", "", "this node's pod-network address: published health-check address and probe source (default: first host of the node's spec.podCIDR)")
	fs.StringVar(&c.publicIP, "public-ip", "", "public address to publish (default: node annotation weft.io/public-ip, else the node's ExternalIP)")
	fs.DurationVar(&c.leaseDuration, "lease-duration", 4*time.Second, "leader election lease duration")
	fs.DurationVar(&c.renewDeadline, "renew-deadline", 3*time.Second, "leader election renew deadline")
	fs.DurationVar(&c.retryPeriod, "retry-period", time.Second, "leader election retry period")
	fs.BoolVar(&c.unprivilegedICMP, "unprivileged-icmp", false, "health probes over unprivileged ICMP sockets (needs net.ipv4.ping_group_range) instead of raw ones")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Parse(os.Args[1:])

	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "gateway: --log-level %q: %v\n", c.logLevel, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// client-go's leader election logs through klog: send it to the same
	// place.
	klog.SetSlogLogger(log.With("component", "client-go"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		if errors.Is(err, gateway.ErrLostLeadership) {
			log.Error("exiting to restart as a passive gateway", "err", err)
		} else {
			log.Error("gateway failed", "err", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, log *slog.Logger) error {
	o := gateway.Options{
		Namespace: c.namespace, NodeName: c.nodeName, ClusterID: c.clusterID,
		Device: gateway.DeviceOptions{Name: c.device, Backend: wireguard.Backend(c.backend), ListenPort: c.listenPort, MTU: c.mtu},
		LeaderElection: gateway.LeaderElectionOptions{
			LeaseDuration: c.leaseDuration, RenewDeadline: c.renewDeadline, RetryPeriod: c.retryPeriod,
		},
		Probe:  gateway.ProbeOptions{Unprivileged: c.unprivilegedICMP},
		Logger: log,
	}
	switch {
	case c.nodeName == "":
		return errors.New("--node-name: unset (and $NODE_NAME empty)")
	case c.clusterID == "":
		return errors.New("--cluster-id: unset")
	case strings.TrimSpace(c.podCIDRs) == "":
		return errors.New("--pod-cidrs: unset")
	}
	var err error
	if o.PodCIDRs, err = parsePrefixes(c.podCIDRs); err != nil {
		return fmt.Errorf("--pod-cidrs: %w", err)
	}
	if o.ServiceCIDRs, err = parsePrefixes(c.serviceCIDRs); err != nil {
		return fmt.Errorf("--service-cidrs: %w", err)
	}
	if o.HealthCheckIP, err = parseAddr(c.healthCheckIP); err != nil {
		return fmt.Errorf("--health-check-ip: %w", err)
	}
	if o.PublicIP, err = parseAddr(c.publicIP); err != nil {
		return fmt.Errorf("--public-ip: %w", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.kubeconfig
	o.RESTConfig, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	g, err := gateway.New(o)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseAddr(s string) (netip.Addr, error) {
	if s = strings.TrimSpace(s); s == "" {
		return netip.Addr{}, nil
	}
	return netip.ParseAddr(s)
}
