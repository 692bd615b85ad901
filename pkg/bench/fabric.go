package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/lab"
	"github.com/weftnet/weft/pkg/lab/fabric"
	"github.com/weftnet/weft/pkg/wireguard"
)

// FabricOptions configure [Fabric].
type FabricOptions struct {
	BinDir, AssetsDir string
	// StockBinary is upstream wireguard-go, run between the two gateway
	// node namespaces as the baseline.
	StockBinary string
	Duration    time.Duration // per iperf3 run (default 3 s)
	Rounds      int           // default 3
	Log         *slog.Logger
	// Progress, when set, gets one line per measurement.
	Progress func(format string, args ...any)
}

// FabricReport holds the figures of one lab run, in bit/s and seconds.
type FabricReport struct {
	Options      FabricOptions
	ToFullMatrix time.Duration
	Paths        []PathResult
}

// PathResult is one measured path.
type PathResult struct {
	Name string
	Runs []float64
	Med  float64
	RTT  time.Duration
}

// Fabric builds a two-cluster lab (two nodes each) with the whole fabric,
// times agents-started to full connectivity, then measures, interleaved:
// pod to pod from a gateway node, pod to pod from a non-gateway node (the
// VXLAN hop on both ends), a stock wireguard-go pair between the same two
// gateway namespaces, and the bare WAN underlay.
func Fabric(ctx context.Context, o FabricOptions) (*FabricReport, error) {
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	name := fmt.Sprintf("wtb%d", os.Getpid()%100000)
	stateDir, err := os.MkdirTemp("", "weft-bench-lab-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stateDir)
	l, err := lab.New(lab.Options{Name: name, StateDir: filepath.Join(stateDir, "s"), Logger: o.Log})
	if err != nil {
		return nil, err
	}
	defer l.Down(context.WithoutCancel(ctx))
	topo := lab.GenerateTopology(2, 2, 1)
	topo.Name = name
	plan, err := l.Up(ctx, topo)
	if err != nil {
		return nil, err
	}
	if err := fabric.Up(ctx, fabric.Options{Lab: l, BinDir: o.BinDir, AssetsDir: o.AssetsDir, Log: o.Log}); err != nil {
		return nil, err
	}
	st, err := fabric.ReadState(l)
	if err != nil {
		return nil, err
	}
	r := &FabricReport{Options: o}
	v, err := fabric.Verify(ctx, l, fabric.VerifyOptions{Wait: 60 * time.Second, Parallel: 4})
	if err != nil {
		return nil, err
	}
	if v.Failed() > 0 {
		var b strings.Builder
		v.Print(&b)
		return nil, fmt.Errorf("bench: fabric not fully connected:\n%s", b.String())
	}
	var last, started time.Time
	for _, p := range v.Probes {
		if p.FirstOK.After(last) {
			last = p.FirstOK
		}
	}
	for _, t := range st.Started {
		if t.After(started) {
			started = t
		}
	}
	r.ToFullMatrix = last.Sub(started)

	c1, c2 := plan.Clusters[0], plan.Clusters[1]
	gw1, gw2 := c1.Nodes[0], c2.Nodes[0]
	if err := startStock(ctx, l, o.StockBinary, "c1/"+gw1.Name, "c2/"+gw2.Name, gw1.WANAddr.Addr().String(), gw2.WANAddr.Addr().String()); err != nil {
		return nil, fmt.Errorf("bench: stock wireguard-go: %w", err)
	}
	paths := []struct {
		name, from, to, addr string
	}{
		{"fabric, pod on gateway node -> pod on gateway node", "c1/" + c1.Nodes[0].Pods[0].Name, "c2/" + c2.Nodes[0].Pods[0].Name, c2.Nodes[0].Pods[0].Addr.Addr().String()},
		{"fabric, pod on other node -> pod on other node (VXLAN hops)", "c1/" + c1.Nodes[1].Pods[0].Name, "c2/" + c2.Nodes[1].Pods[0].Name, c2.Nodes[1].Pods[0].Addr.Addr().String()},
		{"stock wireguard-go, gateway ns -> gateway ns", "c1/" + gw1.Name, "c2/" + gw2.Name, "198.51.100.2"},
		{"bare underlay (WAN), gateway ns -> gateway ns", "c1/" + gw1.Name, "c2/" + gw2.Name, gw2.WANAddr.Addr().String()},
	}
	r.Paths = make([]PathResult, len(paths))
	for i, p := range paths {
		r.Paths[i].Name = p.name
		out, err := l.Run(ctx, p.from, "ping", "-n", "-q", "-c", "20", "-i", "0.05", p.addr)
		if err != nil {
			return nil, fmt.Errorf("bench: ping %s: %w", p.name, err)
		}
		r.Paths[i].RTT = pingAvg(out)
	}
	for round := 1; round <= o.Rounds; round++ {
		for i, p := range paths {
			bps, err := fabric.Iperf(ctx, l, p.from, p.to, p.addr, o.Duration)
			if err != nil {
				return nil, fmt.Errorf("bench: %s: %w", p.name, err)
			}
			r.Paths[i].Runs = append(r.Paths[i].Runs, bps)
			if o.Progress != nil {
				o.Progress("round %d: %s: %.2f Gbit/s", round, p.name, bps/1e9)
			}
		}
	}
	for i := range r.Paths {
		r.Paths[i].Med = median(r.Paths[i].Runs)
	}
	return r, nil
}

// startStock runs upstream wireguard-go in both gateway namespaces on a
// separate port and subnet (198.51.100.0/24), configured with wg(8).
func startStock(ctx context.Context, l *lab.Lab, bin, a, b, wanA, wanB string) error {
	if bin == "" {
		return errors.New("no stock wireguard-go binary")
	}
	ka, err := wireguard.GeneratePrivateKey()
	if err != nil {
		return err
	}
	kb, err := wireguard.GeneratePrivateKey()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "weft-bench-keys-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	type end struct {
		target, dev, peerWAN, addr, peerAddr string
		key                                  wireguard.PrivateKey
		peer                                 wireguard.PublicKey
	}
	suffix := strconv.Itoa(os.Getpid() % 100000)
	ends := []end{
		{a, "wsa" + suffix, wanB, "198.51.100.1", "198.51.100.2", ka, kb.Public()},
		{b, "wsb" + suffix, wanA, "198.51.100.2", "198.51.100.1", kb, ka.Public()},
	}
	for _, e := range ends {
		if _, err := l.StartProcess(ctx, "stock-"+e.dev, e.target, bin, "-f", e.dev); err != nil {
			return err
		}
	}
	for _, e := range ends {
		keyFile := filepath.Join(dir, e.dev)
		if err := wireguard.StorePrivateKeyFile(keyFile, e.key); err != nil {
			return err
		}
		var lastErr error
		for i := 0; i < 100; i++ { // until the device exists
			if _, lastErr = l.Run(ctx, e.target, "wg", "set", e.dev, "private-key", keyFile, "listen-port", "51900",
				"peer", e.peer.String(), "endpoint", e.peerWAN+":51900", "allowed-ips", e.peerAddr+"/32"); lastErr == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if lastErr != nil {
			return lastErr
		}
		for _, c := range [][]string{
			{"ip", "link", "set", e.dev, "mtu", "1420", "up"},
			{"ip", "addr", "add", e.addr + "/24", "dev", e.dev},
		} {
			if _, err := l.Run(ctx, e.target, c...); err != nil {
				return err
			}
		}
	}
	return nil
}

var pingAvgRE = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)

func pingAvg(out string) time.Duration {
	m := pingAvgRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	ms, _ := strconv.ParseFloat(m[1], 64)
	return time.Duration(ms * float64(time.Millisecond))
}

// Print writes the fabric figures.
func (r *FabricReport) Print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "\nFabric (lab: 2 clusters x 2 nodes, userspace WireGuard, one TCP stream, %s x %d rounds interleaved)\n", o.Duration, o.Rounds)
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "agents started -> full ping matrix: %s (target < 10s: %s)\n", r.ToFullMatrix.Round(time.Millisecond), met(r.ToFullMatrix < 10*time.Second))
	fmt.Fprintf(w, "%-60s %12s %10s   %s\n", "path", "median", "RTT", "runs (Gbit/s)")
	for _, p := range r.Paths {
		var rs []string
		for _, x := range p.Runs {
			rs = append(rs, fmt.Sprintf("%.2f", x/1e9))
		}
		fmt.Fprintf(w, "%-60s %7.2f Gb/s %8.3fms   %s\n", p.Name, p.Med/1e9, float64(p.RTT.Microseconds())/1000, strings.Join(rs, " "))
	}
	if len(r.Paths) == 4 && r.Paths[2].Med > 0 && r.Paths[0].Med > 0 {
		ratio := r.Paths[0].Med / r.Paths[2].Med
		fmt.Fprintf(w, "ratio fabric (gateway pods) / stock wireguard-go: %.3f (target >= 0.9: %s)\n", ratio, met(ratio >= 0.9))
		fmt.Fprintf(w, "ratio non-gateway path / gateway path:            %.3f\n", r.Paths[1].Med/r.Paths[0].Med)
		fmt.Fprintf(w, "ratio fabric / bare underlay:                      %.3f\n", r.Paths[0].Med/r.Paths[3].Med)
	}
}
