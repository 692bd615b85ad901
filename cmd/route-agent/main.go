// Command route-agent runs weft's route agent on a node (DaemonSet on every
// node, hostNetwork, NET_ADMIN; in the lab: `ip netns exec <node-ns>
// route-agent --kubeconfig <path> --node-name <node> --cluster-cidrs
// <pod>,<svc> --wg-device <name>`). It watches Nodes, the gateway Lease and
// the RemoteClusters of its cluster and routes the remote clusters' subnets:
// into the WireGuard device when its node holds the Lease, through the
// weft-vx VXLAN hop to the gateway node otherwise (see package routeagent).
//
// Everything happens in the network namespace the process runs in.
// --cleanup removes what weft added (routes in table 176, the rule,
// weft-vx, the WEFT-* chains and jumps) and exits.
//
// Exit status: 0 after SIGINT/SIGTERM (the data plane stays as it is:
// nothing is flushed on exit) or a successful --cleanup; 1 on a failure;
// 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/netplan"
	"github.com/weftnet/weft/pkg/route"
	"github.com/weftnet/weft/pkg/routeagent"
)

// config is what the flags say.
type config struct {
	kubeconfig     string
	nodeName       string
	clusterCIDRs   []netip.Prefix
	wgDevice       string
	tunnelMTU      int
	cniInterface   string
	podNetworkAddr netip.Addr
	resync         time.Duration
	cleanup        bool
	logLevel       slog.Level
}

// parseFlags parses args; getenv supplies NODE_NAME's default.
func parseFlags(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var c config
	var cidrs, podAddr, level string
	fs := flag.NewFlagSet("route-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the local cluster (empty: in-cluster config)")
	fs.StringVar(&c.nodeName, "node-name", getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.StringVar(&cidrs, "cluster-cidrs", "", "comma-separated local pod and service CIDRs (required)")
	fs.StringVar(&c.wgDevice, "wg-device", netplan.DefaultWireGuardDevice, "WireGuard device the active gateway routes into")
	fs.IntVar(&c.tunnelMTU, "tunnel-mtu", 0, "tunnel MTU (0: MTU of the interface holding the node's InternalIP minus 80)")
	fs.StringVar(&c.cniInterface, "cni-interface", "", "interface replies from remote clusters arrive on (default: the interface holding the pod-network address)")
	fs.StringVar(&podAddr, "pod-network-addr", "", "this node's pod-network address, the source of weft's routes (default: first host address of the node's spec.podCIDR)")
	fs.DurationVar(&c.resync, "resync", routeagent.DefaultResync, "period of full passes that re-add what something else deleted")
	fs.BoolVar(&c.cleanup, "cleanup", false, "remove everything weft added (routes in table 176, the rule, weft-vx, WEFT-* chains and jumps) and exit")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := c.logLevel.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("--log-level %q: %w", level, err)
	}
	if err := netplan.CheckInterfaceName(c.wgDevice); err != nil {
		return c, fmt.Errorf("--wg-device: %w", err)
	}
	if c.cleanup {
		return c, nil
	}
	for _, f := range strings.Split(cidrs, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return c, fmt.Errorf("--cluster-cidrs: %w", err)
		}
		c.clusterCIDRs = append(c.clusterCIDRs, p)
	}
	if len(c.clusterCIDRs) == 0 {
		return c, errors.New("--cluster-cidrs is required (the local pod and service CIDRs, comma-separated)")
	}
	if c.nodeName == "" {
		return c, errors.New("--node-name is required (or set NODE_NAME)")
	}
	if podAddr != "" {
		a, err := netip.ParseAddr(podAddr)
		if err != nil {
			return c, fmt.Errorf("--pod-network-addr: %w", err)
		}
		c.podNetworkAddr = a
	}
	if c.cniInterface != "" {
		if err := netplan.CheckInterfaceName(c.cniInterface); err != nil {
			return c, fmt.Errorf("--cni-interface: %w", err)
		}
	}
	if c.resync <= 0 {
		return c, fmt.Errorf("--resync %s: must be positive", c.resync)
	}
	return c, nil
}

func main() {
	c, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "route-agent:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.logLevel}))
	// client-go and controller-runtime log through klog and logr: send
	// them to the same place.
	klog.SetSlogLogger(log.With("component", "client-go"))
	ctrllog.SetLogger(logr.FromSlogHandler(log.With("component", "controller-runtime").Handler()))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		log.Error("route agent failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, log *slog.Logger) error {
	kernel, err := route.OpenNetlink(route.NetlinkOptions{})
	if err != nil {
		return err
	}
	defer kernel.Close()
	tables, err := firewall.OpenIPTables(firewall.IPTablesOptions{Timeout: 10})
	if err != nil {
		return err
	}
	params := netplan.Params{WireGuardDevice: c.wgDevice}
	if c.cleanup {
		return routeagent.Cleanup(ctx, routeagent.CleanupOptions{Kernel: kernel, Tables: tables, Params: params, Logger: log})
	}
	links, err := routeagent.OpenNetlinkLinks(routeagent.NetlinkOptions{})
	if err != nil {
		return err
	}
	defer links.Close()
	cfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	a, err := routeagent.New(routeagent.Options{
		RESTConfig:     cfg,
		NodeName:       c.nodeName,
		ClusterCIDRs:   c.clusterCIDRs,
		PodNetworkAddr: c.podNetworkAddr,
		TunnelMTU:      c.tunnelMTU,
		CNIInterface:   c.cniInterface,
		Params:         params,
		Resync:         c.resync,
		Kernel:         kernel,
		Tables:         tables,
		Links:          links,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// restConfig loads path, or the in-cluster configuration when path is "".
func restConfig(path string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("in-cluster config (or pass --kubeconfig): %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	cfg.UserAgent = "weft-route-agent"
	return cfg, nil
}
