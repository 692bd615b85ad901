package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftnet/weft/pkg/bench"
	"github.com/weftnet/weft/pkg/wireguard"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks: figures and ratios against baselines measured in the same run",
	}
	cmd.AddCommand(newBenchWireGuardCmd(), newBenchDeviceCmd(), newBenchBrokerCmd(), newBenchFabricCmd())
	return cmd
}

func newBenchBrokerCmd() *cobra.Command {
	var o bench.BrokerOptions
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Broker: join rate, fan-out latency of one endpoint change to every member, broker RSS",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.BrokerBinary == "" {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				o.BrokerBinary = filepath.Join(filepath.Dir(self), "broker")
			}
			if _, err := os.Stat(o.BrokerBinary); err != nil {
				return fmt.Errorf("--broker-binary: %w (run make build)", err)
			}
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			fmt.Fprintf(cmd.ErrOrStderr(), "[bench] broker: %d clusters x (%d endpoints + %d exports); takes a minute or two\n", o.Clusters, o.Endpoints, o.Exports)
			r, err := bench.Broker(cmd.Context(), o)
			if err != nil {
				return err
			}
			r.Print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&o.BrokerBinary, "broker-binary", "", "cmd/broker binary (default: next to weftctl)")
	cmd.Flags().IntVar(&o.Clusters, "clusters", 1000, "simulated member clusters")
	cmd.Flags().IntVar(&o.Endpoints, "endpoints", 2, "endpoints per cluster")
	cmd.Flags().IntVar(&o.Exports, "exports", 50, "service exports per cluster")
	cmd.Flags().IntVar(&o.Changes, "changes", 20, "endpoint changes timed through all watchers")
	cmd.Flags().IntVar(&o.Parallel, "parallel", 32, "concurrent members while loading")
	return cmd
}

func newBenchWireGuardCmd() *cobra.Command {
	var (
		o     bench.WireGuardOptions
		stock string
	)
	cmd := &cobra.Command{
		Use:   "wireguard",
		Short: "TCP throughput: weft userspace device vs stock wireguard-go vs bare veth, between two namespaces",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stock == "" {
				if dir := os.Getenv("WEFT_ASSETS"); dir != "" {
					stock = filepath.Join(dir, "wireguard-go")
				}
			}
			if stock == "" {
				return fmt.Errorf("--stock-wireguard-go: unset (run `make assets` and pass the built binary, or set WEFT_ASSETS)")
			}
			if _, err := os.Stat(stock); err != nil {
				return fmt.Errorf("--stock-wireguard-go: %w", err)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			o.StockBinary = stock
			o.WeftDeviceCmd = []string{self, "bench", "device", "--mtu", fmt.Sprint(o.UnderlayMTU - 80)}
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			fmt.Fprintf(cmd.ErrOrStderr(), "[bench] wireguard: %d rounds x 3 paths x %s (about %s)\n",
				o.Rounds, o.Duration, time.Duration(o.Rounds*3)*(o.Duration+time.Second))
			r, err := bench.WireGuard(cmd.Context(), o)
			if err != nil {
				return err
			}
			r.Print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&stock, "stock-wireguard-go", "", "upstream wireguard-go binary (default $WEFT_ASSETS/wireguard-go)")
	cmd.Flags().DurationVar(&o.Duration, "duration", 5*time.Second, "length of each iperf3 run")
	cmd.Flags().IntVar(&o.Rounds, "rounds", 3, "rounds of each path, interleaved")
	cmd.Flags().IntVar(&o.UnderlayMTU, "mtu", 1500, "underlay (veth) MTU; the tunnel gets 80 less")
	return cmd
}

// newBenchDeviceCmd runs one weft userspace WireGuard device in the current
// network namespace until killed: the benchmark's counterpart of
// `wireguard-go -f`, configured with wg(8) the same way.
func newBenchDeviceCmd() *cobra.Command {
	var mtu int
	cmd := &cobra.Command{
		Use:    "device IFNAME",
		Short:  "Run a weft userspace WireGuard device until killed (benchmark helper)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			dev, err := wireguard.OpenUserspace(cmd.Context(), wireguard.Options{Name: args[0], MTU: mtu, Logger: log})
			if err != nil {
				return err
			}
			defer dev.Close()
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().IntVar(&mtu, "mtu", 1420, "interface MTU")
	return cmd
}

func newBenchFabricCmd() *cobra.Command {
	var o bench.FabricOptions
	cmd := &cobra.Command{
		Use:   "fabric",
		Short: "Lab: time to full connectivity, pod-to-pod throughput and RTT (gateway and VXLAN paths) vs stock wireguard-go and the bare underlay",
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if o.BinDir == "" {
				o.BinDir = filepath.Dir(self)
			}
			if o.AssetsDir == "" {
				o.AssetsDir = os.Getenv("WEFT_ASSETS")
			}
			if o.AssetsDir == "" {
				return fmt.Errorf("--assets: unset (run make assets and set WEFT_ASSETS, or pass --assets)")
			}
			if o.StockBinary == "" {
				o.StockBinary = filepath.Join(o.AssetsDir, "wireguard-go")
			}
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			o.Progress = func(format string, args ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), "[bench] "+format+"\n", args...)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "[bench] fabric: lab up, verify, then %d rounds x 4 paths x %s\n", o.Rounds, o.Duration)
			r, err := bench.Fabric(cmd.Context(), o)
			if err != nil {
				return err
			}
			r.Print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&o.BinDir, "bin-dir", "", "directory with broker, gateway, route-agent (default: next to weftctl)")
	cmd.Flags().StringVar(&o.AssetsDir, "assets", "", "kube-apiserver, etcd and stock wireguard-go (default $WEFT_ASSETS)")
	cmd.Flags().DurationVar(&o.Duration, "duration", 3*time.Second, "length of each iperf3 run")
	cmd.Flags().IntVar(&o.Rounds, "rounds", 3, "rounds of each path, interleaved")
	return cmd
}
