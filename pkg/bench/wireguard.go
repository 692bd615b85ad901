package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/nspair"
	"github.com/weftnet/weft/pkg/wireguard"
)

// WireGuardOptions configure [WireGuard].
type WireGuardOptions struct {
	// StockBinary is the upstream wireguard-go binary (same library version).
	StockBinary string
	// WeftDeviceCmd starts one weft userspace device in the current network
	// namespace: it is run as `ip netns exec <ns> WeftDeviceCmd... <ifname>`
	// and must print "ready" on stdout once the interface exists, then run
	// until killed.
	WeftDeviceCmd []string
	// Duration of each iperf3 run; Rounds of each path, interleaved.
	Duration time.Duration
	Rounds   int
	// UnderlayMTU of the veth; the tunnel MTU is UnderlayMTU - 80.
	UnderlayMTU int
	Log         *slog.Logger
}

// WireGuardReport holds the figures of one run, in bit/s.
type WireGuardReport struct {
	Options              WireGuardOptions
	Veth, Stock, Weft    []float64
	VethMed, StockMed    float64
	WeftMed, WeftVsStock float64
}

// WireGuard measures single-stream TCP throughput between two namespaces
// over: the bare veth, two stock wireguard-go processes configured with
// wg(8), and two weft userspace devices, also configured with wg(8). The
// three paths are measured round by round, interleaved, so drift in machine
// load hits all of them alike.
func WireGuard(ctx context.Context, o WireGuardOptions) (*WireGuardReport, error) {
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.UnderlayMTU == 0 {
		o.UnderlayMTU = 1500
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if why := nspair.Supported(); why != "" {
		return nil, errors.New("bench: " + why)
	}
	pair, err := nspair.New(ctx, nspair.Options{MTU: o.UnderlayMTU})
	if err != nil {
		return nil, err
	}
	defer pair.Close()
	tmp, err := os.MkdirTemp("", "weft-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	tunnels := []struct {
		label string
		cmd   []string
		port  int
		net   string
	}{
		{"stock", []string{o.StockBinary, "-f"}, 51830, "198.51.100"},
		{"weft", o.WeftDeviceCmd, 51840, "203.0.113"},
	}
	for _, tn := range tunnels {
		a, b := pair.Prefix+"s"+tn.label[:1]+"a", pair.Prefix+"s"+tn.label[:1]+"b"
		if err := startTunnel(ctx, tunnelSpec{
			pair: pair, dir: tmp, cmd: tn.cmd, ifA: a, ifB: b, port: tn.port,
			mtu: o.UnderlayMTU - 80, netPrefix: tn.net,
		}); err != nil {
			return nil, fmt.Errorf("bench: %s tunnel: %w", tn.label, err)
		}
	}
	r := &WireGuardReport{Options: o}
	for round := 1; round <= o.Rounds; round++ {
		for _, m := range []struct {
			name string
			addr string
			into *[]float64
		}{
			{"bare veth", pair.AddrB.String(), &r.Veth},
			{"stock wireguard-go", "198.51.100.2", &r.Stock},
			{"weft userspace", "203.0.113.2", &r.Weft},
		} {
			bps, err := IperfTCP(ctx, pair.B, pair.A, m.addr, o.Duration)
			if err != nil {
				return nil, fmt.Errorf("bench: %s: %w", m.name, err)
			}
			*m.into = append(*m.into, bps)
			o.Log.Info("measured", "round", round, "path", m.name, "gbit_s", fmt.Sprintf("%.2f", bps/1e9))
		}
	}
	r.VethMed, r.StockMed, r.WeftMed = median(r.Veth), median(r.Stock), median(r.Weft)
	r.WeftVsStock = r.WeftMed / r.StockMed
	return r, nil
}

type tunnelSpec struct {
	pair      *nspair.Pair
	dir       string
	cmd       []string
	ifA, ifB  string
	port      int
	mtu       int
	netPrefix string // a /24 for the tunnel addresses: .1 in A, .2 in B
}

// startTunnel runs the device command in both namespaces (processes are
// killed when the namespaces are deleted) and configures both ends with
// wg(8) and ip(8), exactly as an operator would.
func startTunnel(ctx context.Context, s tunnelSpec) error {
	keyA, err := wireguard.GeneratePrivateKey()
	if err != nil {
		return err
	}
	keyB, err := wireguard.GeneratePrivateKey()
	if err != nil {
		return err
	}
	type end struct {
		ns, ifname string
		key        wireguard.PrivateKey
		peer       wireguard.PublicKey
		peerAddr   string
		tunAddr    string
		peerTun    string
	}
	ends := []end{
		{s.pair.A, s.ifA, keyA, keyB.Public(), s.pair.AddrB.String(), s.netPrefix + ".1", s.netPrefix + ".2"},
		{s.pair.B, s.ifB, keyB, keyA.Public(), s.pair.AddrA.String(), s.netPrefix + ".2", s.netPrefix + ".1"},
	}
	for _, e := range ends {
		if err := startDevice(ctx, e.ns, append(append([]string(nil), s.cmd...), e.ifname)); err != nil {
			return err
		}
	}
	for i, e := range ends {
		keyFile := filepath.Join(s.dir, e.ifname+".key")
		if err := wireguard.StorePrivateKeyFile(keyFile, e.key); err != nil {
			return err
		}
		peerPort := s.port + 1 - i
		cmds := [][]string{
			{"wg", "set", e.ifname, "private-key", keyFile, "listen-port", fmt.Sprint(s.port + i),
				"peer", e.peer.String(), "endpoint", fmt.Sprintf("%s:%d", e.peerAddr, peerPort), "allowed-ips", e.peerTun + "/32"},
			{"ip", "link", "set", e.ifname, "mtu", fmt.Sprint(s.mtu), "up"},
			{"ip", "addr", "add", e.tunAddr + "/24", "dev", e.ifname},
		}
		for _, c := range cmds {
			if _, err := nspair.Exec(ctx, e.ns, c...); err != nil {
				return err
			}
		}
	}
	return nil
}

// startDevice starts a userspace WireGuard process in ns and waits until its
// interface exists. The process lives until the namespace is torn down.
func startDevice(ctx context.Context, ns string, cmdline []string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, cmdline...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s in %s: %w", cmdline[0], ns, err)
	}
	go func() {
		// Drain stdout so the device never blocks on a full pipe.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
		}
		cmd.Wait()
	}()
	ifname := cmdline[len(cmdline)-1]
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if out, err := nspair.Exec(ctx, ns, "ip", "-o", "link", "show", ifname); err == nil && strings.Contains(out, ifname) {
			if _, err := os.Stat("/var/run/wireguard/" + ifname + ".sock"); err == nil {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not create %s in %s", cmdline[0], ifname, ns)
}

// Print writes the report as a table.
func (r *WireGuardReport) Print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "\nWireGuard data path: one TCP stream (iperf3), %s x %d rounds interleaved, underlay MTU %d, tunnel MTU %d\n",
		o.Duration, o.Rounds, o.UnderlayMTU, o.UnderlayMTU-80)
	fmt.Fprintf(w, "%-34s %10s   %s\n", "path", "median", "runs (Gbit/s)")
	row := func(name string, med float64, runs []float64) {
		var rs []string
		for _, x := range runs {
			rs = append(rs, fmt.Sprintf("%.2f", x/1e9))
		}
		fmt.Fprintf(w, "%-34s %6.2f Gb/s  %s\n", name, med/1e9, strings.Join(rs, " "))
	}
	row("bare veth (baseline)", r.VethMed, r.Veth)
	row("stock wireguard-go + wg (baseline)", r.StockMed, r.Stock)
	row("weft userspace device", r.WeftMed, r.Weft)
	verdict := "met"
	if r.WeftVsStock < 0.95 {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "ratio weft/stock wireguard-go: %.3f (target >= 0.95: %s)\n", r.WeftVsStock, verdict)
	fmt.Fprintf(w, "ratio weft/bare veth:          %.3f\n", r.WeftMed/r.VethMed)
}
