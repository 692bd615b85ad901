package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftnet/weft/pkg/lab"
)

// labFlags are shared by every lab subcommand.
type labFlags struct {
	name     string
	stateDir string
	verbose  bool
}

func newLabCmd() *cobra.Command {
	f := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A local multi-cluster lab built from network namespaces",
		Long: `The lab builds clusters of nodes and pods as network namespaces on this host,
joined by a WAN namespace (optionally behind NAT routers), plus a control
network. Nothing is configured in the host's own namespace; every name
starts with the lab name ("weft" by default). See pkg/lab for the topology
format, the names and the address plan.`,
	}
	cmd.PersistentFlags().StringVar(&f.name, "name", "", `lab name, prefix of every name it makes (default "weft"; lab up: the topology's name)`)
	cmd.PersistentFlags().StringVar(&f.stateDir, "state-dir", "", "state directory (default "+lab.DefaultStateRoot+"/<name>)")
	cmd.PersistentFlags().BoolVarP(&f.verbose, "verbose", "v", false, "debug logging")
	cmd.AddCommand(newLabUpCmd(f), newLabDownCmd(f), newLabStatusCmd(f), newLabExecCmd(f), newLabIPCmd(f),
		newLabVerifyCmd(f), newLabKubeconfigCmd(f), newLabProxyCmd(), newLabAddClusterCmd(f), newLabProcessCmd(f))
	return cmd
}

// open makes the lab handle; name overrides the flag when the flag is unset.
func (f *labFlags) open(name string, o lab.Options) (*lab.Lab, error) {
	if f.name != "" {
		name = f.name
	}
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	o.Name, o.StateDir = name, f.stateDir
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	return lab.New(o)
}

// nameFlag is the --name argument to repeat in hints ("" for the default).
func nameFlag(l *lab.Lab) string {
	if l.Name() == lab.DefaultName {
		return ""
	}
	return " --name " + l.Name()
}

func newLabUpCmd(f *labFlags) *cobra.Command {
	var (
		file                  string
		clusters, nodes, pods int
		nat                   []string
		delay                 time.Duration
		loss                  float64
		dryRun, keep, bare    bool
		binDir, assetsDir     string
		only                  []string
	)
	cmd := &cobra.Command{
		Use:   "up [-f topology.yaml]",
		Short: "Build the lab",
		Long: `Build the lab from a topology file, or from flags (default: clusters c1 and c2,
2 nodes each with node 1 as gateway, 2 pods per node). Fails if a lab of the
same name exists: run "weftctl lab down" first.`,
		Example: `  weftctl lab up
  weftctl lab up --clusters 3 --nodes 3 --nat c3
  weftctl lab up -f pkg/lab/testdata/demo.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var topo lab.Topology
			if file != "" {
				for _, fl := range []string{"clusters", "nodes", "pods-per-node"} {
					if cmd.Flags().Changed(fl) {
						return fmt.Errorf("--%s conflicts with -f: edit the topology file instead", fl)
					}
				}
				t, err := lab.LoadTopology(file)
				if err != nil {
					return err
				}
				topo = t
			} else {
				topo = lab.GenerateTopology(clusters, nodes, pods)
			}
			if cmd.Flags().Changed("wan-delay") {
				topo.WAN.Delay = lab.Duration(delay)
			}
			if cmd.Flags().Changed("wan-loss") {
				topo.WAN.Loss = loss
			}
			for _, c := range nat {
				found := false
				for k := range topo.Clusters {
					if topo.Clusters[k].Name == c {
						topo.Clusters[k].NAT, found = true, true
					}
				}
				if !found {
					return fmt.Errorf("--nat %s: no such cluster in the topology", c)
				}
			}
			name := topo.Name
			if name == "" {
				name = lab.DefaultName
			}
			l, err := f.open(name, lab.Options{KeepOnFailure: keep})
			if err != nil {
				return err
			}
			topo.Name = l.Name()
			if dryRun {
				plan, err := lab.NewPlan(topo)
				if err != nil {
					return err
				}
				fmt.Print(plan)
				return nil
			}
			plan, err := l.Up(cmd.Context(), topo)
			if errors.Is(err, lab.ErrExists) {
				return fmt.Errorf("%w\n  tear it down with: weftctl lab down%s", err, nameFlag(l))
			}
			if err != nil {
				return err
			}
			if !bare {
				if err := startFabric(cmd, l, binDir, assetsDir, only); err != nil {
					return fmt.Errorf("%w\n  logs: %s/logs; tear down with: weftctl lab down%s", err, l.StateDir(), nameFlag(l))
				}
			}
			example := plan.Clusters[0].Name + "/" + plan.Clusters[0].Nodes[0].Name
			if len(plan.Clusters[0].Nodes[0].Pods) > 0 {
				example = plan.Clusters[0].Name + "/" + plan.Clusters[0].Nodes[0].Pods[0].Name
			}
			fmt.Printf("lab %s is up: %d clusters, %d namespaces (state %s)\n", l.Name(), len(plan.Clusters), len(plan.Namespaces()), l.StateDir())
			fmt.Printf("  status:    weftctl lab status%s\n", nameFlag(l))
			fmt.Printf("  a shell:   weftctl lab exec%s %s\n", nameFlag(l), example)
			if !bare {
				fmt.Printf("  verify:    weftctl lab verify%s\n", nameFlag(l))
				fmt.Printf("  kubectl:   kubectl --kubeconfig $(weftctl lab kubeconfig%s %s) get gateways,remoteclusters\n", nameFlag(l), plan.Clusters[0].Name)
			}
			fmt.Printf("  tear down: weftctl lab down%s\n", nameFlag(l))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&only, "fabric-clusters", nil, "start the fabric only in these clusters (others can join later: lab add-cluster)")
	fl.BoolVar(&bare, "no-fabric", false, "only the namespaces: no API servers, broker, gateways or route agents")
	fl.StringVar(&binDir, "bin-dir", "", "directory with broker, gateway, route-agent (default: next to weftctl)")
	fl.StringVar(&assetsDir, "assets", "", "directory with kube-apiserver and etcd (default $WEFT_ASSETS, else hack/build-assets.sh's cache)")
	fl.StringVarP(&file, "file", "f", "", "topology file (YAML)")
	fl.IntVar(&clusters, "clusters", 2, "number of clusters c1..cN (without -f)")
	fl.IntVar(&nodes, "nodes", 2, "nodes per cluster (without -f)")
	fl.IntVar(&pods, "pods-per-node", 2, "pods per node (without -f)")
	fl.StringSliceVar(&nat, "nat", nil, "clusters whose gateways sit behind a NAT router")
	fl.DurationVar(&delay, "wan-delay", 0, "one-way delay on every WAN port (tc netem)")
	fl.Float64Var(&loss, "wan-loss", 0, "percent of packets dropped on every WAN port")
	fl.BoolVar(&dryRun, "dry-run", false, "print the plan (every step) and change nothing")
	fl.BoolVar(&keep, "keep-on-failure", false, "leave a half-built lab in place when up fails (for debugging)")
	return cmd
}

func newLabDownCmd(f *labFlags) *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab: its processes, namespaces and state",
		Long: `Stop the lab's processes (SIGTERM, then SIGKILL after --grace), including any
other process living in one of its namespaces, delete its namespaces (also
leftovers of a crashed run named "<lab>-..."), and remove its state
directory. Succeeds when there is nothing to remove.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(lab.DefaultName, lab.Options{StopGrace: grace})
			if err != nil {
				return err
			}
			rep, err := l.Down(cmd.Context())
			if err != nil {
				return err
			}
			if rep.Nothing() {
				fmt.Printf("lab %s: nothing to remove\n", l.Name())
				return nil
			}
			fmt.Printf("lab %s is down: %d namespaces deleted, %d processes stopped\n", l.Name(), len(rep.Namespaces), rep.Processes)
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", lab.DefaultStopGrace, "time between SIGTERM and SIGKILL")
	return cmd
}

func newLabStatusCmd(f *labFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab: clusters, nodes and pods with addresses, and which namespaces exist",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(lab.DefaultName, lab.Options{})
			if err != nil {
				return err
			}
			s, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			case "text", "":
				return s.WriteText(os.Stdout)
			}
			return fmt.Errorf("--output %q: want text or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func newLabExecCmd(f *labFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec <cluster>/<node-or-pod> [-- command [args...]]",
		Short: "Run a command (default: a shell) inside a lab namespace",
		Long: `Run a command inside a lab namespace with stdin, stdout and stderr attached;
weftctl exits with the command's exit code. Targets: <cluster>/n<i> (node),
<cluster>/n<i>-p<j> (pod), <cluster>/lan, <cluster>/rtr, wan, ctl.`,
		Example: `  weftctl lab exec c1/n1-p1 -- ping -c 3 10.1.2.2
  weftctl lab exec c1/n1 -- ip route
  weftctl lab exec c2/n1`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(lab.DefaultName, lab.Options{})
			if err != nil {
				return err
			}
			command := args[1:]
			if len(command) > 0 && command[0] == "--" {
				command = command[1:]
			}
			if len(command) == 0 {
				shell := os.Getenv("SHELL")
				if shell == "" {
					shell = "/bin/sh"
				}
				command = []string{shell}
			}
			c, err := l.Command(cmd.Context(), args[0], command...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			// The terminal's signals (Ctrl-C) reach the command directly;
			// weftctl waits for it and passes on its exit code.
			err = c.Run()
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code := exit.ExitCode()
				if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
				os.Exit(code)
			}
			return err
		},
	}
	// Everything after the target belongs to the command, "--" or not.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabIPCmd(f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ip <target>",
		Short: "Print a target's address (pod address, node LAN address, router WAN address)",
		Long: `Print the address others reach a target by, for scripts:
  ping "$(weftctl lab ip c1/n2-p1)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(lab.DefaultName, lab.Options{})
			if err != nil {
				return err
			}
			pl, err := l.Resolve(args[0])
			if err != nil {
				return err
			}
			if !pl.Addr.IsValid() {
				return fmt.Errorf("%s (namespace %s) has no address of its own", args[0], pl.Namespace)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), pl.Addr)
			return err
		},
	}
}
