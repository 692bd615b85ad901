package fabric

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/pkg/lab"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Wait is how long to keep retrying pairs that fail (a fabric that
	// just started needs a few seconds); 0 means a single try.
	Wait time.Duration
	// Iperf runs one iperf3 TCP test per cluster pair for this long (0: none).
	Iperf time.Duration
	// Parallel pings at once (default 8).
	Parallel int
	// Only restricts the probes to these clusters (default all).
	Only []string
	// Involving keeps only probes from or to this cluster ("" all).
	Involving string
}

// Probe is one ping from a pod to a pod of another cluster.
type Probe struct {
	From, To  string // lab targets: c1/n1-p1
	ToAddr    string
	ToGateway bool // the destination pod lives on a gateway node
	OK        bool
	RTT       time.Duration
	Err       string
	Attempts  int
	FirstOK   time.Time
}

// Throughput is one iperf3 result between two clusters.
type Throughput struct {
	From, To string
	Bps      float64
	Err      string
}

// Report is the outcome of Verify.
type Report struct {
	Probes     []*Probe
	Throughput []Throughput
	Took       time.Duration
}

// Failed counts failed probes and iperf runs.
func (r *Report) Failed() int {
	n := 0
	for _, p := range r.Probes {
		if !p.OK {
			n++
		}
	}
	for _, t := range r.Throughput {
		if t.Err != "" {
			n++
		}
	}
	return n
}

// Verify pings, from every pod, one pod on a gateway node and one on a
// non-gateway node of every other cluster, then runs iperf3 once per
// cluster pair.
func Verify(ctx context.Context, l *lab.Lab, o VerifyOptions) (*Report, error) {
	plan, err := l.Plan()
	if err != nil {
		return nil, err
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	start := time.Now()
	r := &Report{}
	in := func(c string) bool { return len(o.Only) == 0 || slices.Contains(o.Only, c) }
	var clusters []lab.ClusterPlan
	for _, c := range plan.Clusters {
		if in(c.Name) {
			clusters = append(clusters, c)
		}
	}
	for _, src := range clusters {
		for _, dst := range clusters {
			if src.Name == dst.Name || (o.Involving != "" && src.Name != o.Involving && dst.Name != o.Involving) {
				continue
			}
			targets := targetPods(&dst)
			for _, sn := range src.Nodes {
				for _, sp := range sn.Pods {
					for _, t := range targets {
						r.Probes = append(r.Probes, &Probe{From: src.Name + "/" + sp.Name, To: t.target, ToAddr: t.addr, ToGateway: t.gateway})
					}
				}
			}
		}
	}
	deadline := start.Add(o.Wait)
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for _, p := range r.Probes {
		wg.Add(1)
		go func(p *Probe) {
			defer wg.Done()
			for {
				sem <- struct{}{}
				out, err := l.Run(ctx, p.From, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", p.ToAddr)
				<-sem
				p.Attempts++
				if err == nil {
					p.OK, p.RTT, p.FirstOK = true, avgRTT(out), time.Now()
					return
				}
				p.Err = lastLine(err.Error())
				if time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				time.Sleep(500 * time.Millisecond)
			}
		}(p)
	}
	wg.Wait()
	if o.Iperf > 0 {
		for i, a := range clusters {
			for _, b := range clusters[i+1:] {
				if o.Involving != "" && a.Name != o.Involving && b.Name != o.Involving {
					continue
				}
				ta, tb := targetPods(&a), targetPods(&b)
				if len(ta) == 0 || len(tb) == 0 {
					continue
				}
				bps, err := Iperf(ctx, l, ta[0].target, tb[0].target, tb[0].addr, o.Iperf)
				t := Throughput{From: ta[0].target, To: tb[0].target, Bps: bps}
				if err != nil {
					t.Err = lastLine(err.Error())
				}
				r.Throughput = append(r.Throughput, t)
			}
		}
	}
	r.Took = time.Since(start)
	return r, nil
}

type podTarget struct {
	target, addr string
	gateway      bool
}

// targetPods: the first pod on the first gateway node and the first pod on
// the first non-gateway node.
func targetPods(c *lab.ClusterPlan) []podTarget {
	var out []podTarget
	haveGW, haveNode := false, false
	for _, n := range c.Nodes {
		if len(n.Pods) == 0 || (n.Gateway && haveGW) || (!n.Gateway && haveNode) {
			continue
		}
		out = append(out, podTarget{c.Name + "/" + n.Pods[0].Name, n.Pods[0].Addr.Addr().String(), n.Gateway})
		if n.Gateway {
			haveGW = true
		} else {
			haveNode = true
		}
	}
	return out
}

var rttRE = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)

func avgRTT(out string) time.Duration {
	m := rttRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	ms, _ := strconv.ParseFloat(m[1], 64)
	return time.Duration(ms * float64(time.Millisecond))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// Iperf runs a one-shot iperf3 server in the server target, waits until it
// listens, then one TCP stream from the client target for d, and returns
// the received bit rate.
func Iperf(ctx context.Context, l *lab.Lab, client, server, serverAddr string, d time.Duration) (float64, error) {
	const port = "5211"
	srv, err := l.Command(ctx, server, "iperf3", "-s", "-1", "-p", port)
	if err != nil {
		return 0, err
	}
	var srvOut strings.Builder
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := l.Run(ctx, server, "ss", "-Hltn", "sport", "= :"+port)
		if strings.TrimSpace(out) != "" {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("iperf3 server in %s did not listen: %s", server, strings.TrimSpace(srvOut.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, runErr := l.Run(ctx, client, "iperf3", "-c", serverAddr, "-p", port, "-t", strconv.Itoa(int(d.Seconds())), "-J")
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		return 0, fmt.Errorf("iperf3 %s -> %s: %v (output not JSON)", client, server, runErr)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3 %s -> %s: %s (server: %s)", client, server, res.Error, strings.TrimSpace(srvOut.String()))
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

// Print writes the matrix: one row per source pod, one column per target.
func (r *Report) Print(w io.Writer) {
	var cols []string
	seen := map[string]bool{}
	rows := map[string]map[string]*Probe{}
	var rowNames []string
	for _, p := range r.Probes {
		col := p.To
		if p.ToGateway {
			col += "(gw)"
		}
		if !seen[col] {
			seen[col] = true
			cols = append(cols, col)
		}
		if rows[p.From] == nil {
			rows[p.From] = map[string]*Probe{}
			rowNames = append(rowNames, p.From)
		}
		rows[p.From][col] = p
	}
	sort.Strings(cols)
	sort.Strings(rowNames)
	fmt.Fprintf(w, "%-12s", "from \\ to")
	for _, c := range cols {
		fmt.Fprintf(w, " %-13s", c)
	}
	fmt.Fprintln(w)
	for _, rn := range rowNames {
		fmt.Fprintf(w, "%-12s", rn)
		for _, c := range cols {
			p := rows[rn][c]
			cell := "·"
			switch {
			case p == nil:
			case p.OK:
				cell = fmt.Sprintf("ok %.2fms", float64(p.RTT.Microseconds())/1000)
			default:
				cell = "FAIL"
			}
			fmt.Fprintf(w, " %-13s", cell)
		}
		fmt.Fprintln(w)
	}
	for _, t := range r.Throughput {
		if t.Err != "" {
			fmt.Fprintf(w, "iperf3 %s -> %s: FAIL %s\n", t.From, t.To, t.Err)
		} else {
			fmt.Fprintf(w, "iperf3 %s -> %s: %.2f Gbit/s\n", t.From, t.To, t.Bps/1e9)
		}
	}
	ok := len(r.Probes) - r.FailedProbes()
	fmt.Fprintf(w, "%d/%d pod pairs reachable, %d iperf3 runs, verify took %s\n", ok, len(r.Probes), len(r.Throughput), r.Took.Round(time.Millisecond))
	for _, p := range r.Probes {
		if !p.OK {
			fmt.Fprintf(w, "  FAIL %s -> %s (%s): %s\n", p.From, p.To, p.ToAddr, p.Err)
		}
	}
}

// FailedProbes counts failed pings.
func (r *Report) FailedProbes() int {
	n := 0
	for _, p := range r.Probes {
		if !p.OK {
			n++
		}
	}
	return n
}
