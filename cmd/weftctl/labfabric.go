package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftnet/weft/pkg/lab"
	"github.com/weftnet/weft/pkg/lab/fabric"
)

// startFabric runs the API servers, broker, gateways and route agents on
// a lab that is up.
func startFabric(cmd *cobra.Command, l *lab.Lab, binDir, assetsDir string, only []string) error {
	if binDir == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		binDir = filepath.Dir(self)
	}
	if assetsDir == "" {
		assetsDir = os.Getenv("WEFT_ASSETS")
	}
	if assetsDir == "" {
		matches, _ := filepath.Glob(filepath.Join(filepath.Dir(binDir), ".cache", "assets", "*", "kube-apiserver"))
		if len(matches) == 0 {
			return errors.New("--assets: no kube-apiserver found; run make assets (hack/build-assets.sh) or pass --assets")
		}
		assetsDir = filepath.Dir(matches[0])
	}
	start := time.Now()
	err := fabric.Up(cmd.Context(), fabric.Options{
		Lab: l, BinDir: binDir, AssetsDir: assetsDir, Only: only,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Progress: func(format string, args ...any) {
			fmt.Fprintf(cmd.ErrOrStderr(), "[lab %5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		},
	})
	return err
}

func newLabVerifyCmd(f *labFlags) *cobra.Command {
	var o fabric.VerifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Ping from every pod to pods of every other cluster (gateway and non-gateway nodes), iperf3 per cluster pair; non-zero exit on any failure",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(f.name, lab.Options{})
			if err != nil {
				return err
			}
			r, err := fabric.Verify(cmd.Context(), l, o)
			if err != nil {
				return err
			}
			r.Print(cmd.OutOrStdout())
			if n := r.Failed(); n > 0 {
				return fmt.Errorf("verify: %d failures", n)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&o.Wait, "wait", 60*time.Second, "keep retrying failing pairs this long (a fabric that just started needs a few seconds)")
	cmd.Flags().DurationVar(&o.Iperf, "iperf", 3*time.Second, "iperf3 duration per cluster pair (0: skip)")
	cmd.Flags().IntVar(&o.Parallel, "parallel", 8, "pings at once")
	return cmd
}

func newLabKubeconfigCmd(f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "kubeconfig CLUSTER",
		Short: "Print the path of a kubeconfig for the cluster, usable with kubectl from the host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(f.name, lab.Options{})
			if err != nil {
				return err
			}
			if _, err := fabric.ReadState(l); err != nil {
				return err
			}
			p := fabric.KubeconfigPath(l, args[0])
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("cluster %s: %w", args[0], err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), p)
			return nil
		},
	}
}

// newLabProxyCmd is the loopback proxy lab up starts in the host
// namespace: 127.0.0.1 ports forwarded into the lab's control namespace.
func newLabProxyCmd() *cobra.Command {
	var (
		ns   string
		maps []string
	)
	cmd := &cobra.Command{
		Use:    "proxy",
		Short:  "Forward 127.0.0.1 ports into the lab's control namespace (started by lab up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ms []fabric.Mapping
			for _, m := range maps {
				pm, err := fabric.ParseMapping(m)
				if err != nil {
					return err
				}
				ms = append(ms, pm)
			}
			return fabric.Proxy(cmd.Context(), ns, ms, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		},
	}
	cmd.Flags().StringVar(&ns, "netns", "", "control namespace")
	cmd.Flags().StringArrayVar(&maps, "map", nil, "127.0.0.1:port=host:port")
	return cmd
}

func newLabAddClusterCmd(f *labFlags) *cobra.Command {
	var binDir, assetsDir string
	cmd := &cobra.Command{
		Use:   "add-cluster CLUSTER...",
		Short: "Start the fabric (API server, join, gateway, route agents) of clusters left out by lab up --fabric-clusters",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(f.name, lab.Options{})
			if err != nil {
				return err
			}
			if _, err := fabric.ReadState(l); err != nil {
				return err
			}
			return startFabric(cmd, l, binDir, assetsDir, args)
		},
	}
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "directory with broker, gateway, route-agent (default: next to weftctl)")
	cmd.Flags().StringVar(&assetsDir, "assets", "", "directory with kube-apiserver and etcd")
	return cmd
}

func newLabProcessCmd(f *labFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "process", Short: "Stop or restart a lab process (names: lab status)"}
	for _, verb := range []string{"stop", "restart"} {
		cmd.AddCommand(&cobra.Command{
			Use:  verb + " NAME",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				l, err := f.open(f.name, lab.Options{})
				if err != nil {
					return err
				}
				if verb == "stop" {
					_, err = l.StopProcess(cmd.Context(), args[0])
				} else {
					_, err = l.RestartProcess(cmd.Context(), args[0])
				}
				return err
			},
		})
	}
	return cmd
}
