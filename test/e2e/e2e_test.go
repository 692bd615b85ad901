// Package e2e drives the namespace lab with the real fabric: kube-apiservers,
// the broker, gateways and route agents, and checks what an operator would:
// pods reaching pods across clusters.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testenv"
	"github.com/weftnet/weft/pkg/lab"
	"github.com/weftnet/weft/pkg/lab/fabric"
)

// setup finds (or builds) the binaries and the assets, or skips with why.
func setup(t *testing.T) (binDir, assets string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "ping", "iperf3", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("e2e: needs %s (make deps)", tool)
		}
	}
	assets = testenv.Assets(t)
	// make test builds bin/ first and says so; otherwise build here.
	if dir := os.Getenv("WEFT_BIN_DIR"); dir != "" {
		return dir, assets
	}
	binDir = t.TempDir()
	cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build binaries: %v\n%s", err, out)
	}
	return binDir, assets
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingRun is a ping running in the background, every 100 ms.
type pingRun struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func (p *pingRun) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pingRun) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitReplies waits until n replies have arrived (or ctx ends).
func (p *pingRun) waitReplies(ctx context.Context, n int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for strings.Count(p.output(), "bytes from") < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d ping replies: %w\n%s", n, ctx.Err(), p.output())
		case <-tick.C:
		}
	}
	return nil
}

// wait waits for the run to end and returns sent and received counts.
func (p *pingRun) wait() (int, int, error) {
	p.cmd.Wait()
	m := pingStats.FindStringSubmatch(p.output())
	if m == nil {
		return 0, 0, fmt.Errorf("ping output: %s", p.output())
	}
	sent, _ := strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	return sent, recv, nil
}

// startPing pings every 100 ms for d from a lab target.
func startPing(ctx context.Context, l *lab.Lab, from, to string, d time.Duration) (*pingRun, error) {
	n := int(d / (100 * time.Millisecond))
	cmd, err := l.Command(ctx, from, "ping", "-n", "-i", "0.1", "-c", strconv.Itoa(n), "-W", "1", to)
	if err != nil {
		return nil, err
	}
	p := &pingRun{cmd: cmd}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

func podAddr(t *testing.T, plan *lab.Plan, cluster string, node, pod int) string {
	t.Helper()
	c, ok := plan.Cluster(cluster)
	if !ok {
		t.Fatalf("no cluster %s", cluster)
	}
	return c.Nodes[node-1].Pods[pod-1].Addr.Addr().String()
}

// TestFabric brings up four clusters of three nodes (the fabric in three
// of them), then checks the full matrix, a route-agent restart under
// traffic, a 30 s broker outage under traffic, a fourth cluster joining
// afterwards, and that down leaves nothing behind.
func TestFabric(t *testing.T) {
	binDir, assets := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	name := fmt.Sprintf("wte%d", os.Getpid()%100000)
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := lab.New(lab.Options{Name: name, StateDir: filepath.Join(t.TempDir(), "state"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, l)
		}
		if _, err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	topo := lab.GenerateTopology(4, 3, 1)
	topo.Name = name
	plan, err := l.Up(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	up := func(only ...string) {
		t.Helper()
		if err := fabric.Up(ctx, fabric.Options{Lab: l, BinDir: binDir, AssetsDir: assets, Only: only, Log: log,
			Progress: func(f string, a ...any) { t.Logf("[fabric] "+f, a...) }}); err != nil {
			t.Fatal(err)
		}
	}
	up("c1", "c2", "c3")
	st, err := fabric.ReadState(l)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("matrix", func(t *testing.T) {
		r, err := fabric.Verify(ctx, l, fabric.VerifyOptions{Wait: 90 * time.Second, Iperf: 2 * time.Second, Only: []string{"c1", "c2", "c3"}})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		r.Print(&out)
		t.Log("\n" + out.String())
		if r.Failed() > 0 {
			t.Fatalf("%d failures", r.Failed())
		}
		var last time.Time
		for _, p := range r.Probes {
			if p.FirstOK.After(last) {
				last = p.FirstOK
			}
		}
		started := st.Started["c1"]
		for _, c := range []string{"c2", "c3"} {
			if st.Started[c].After(started) {
				started = st.Started[c]
			}
		}
		t.Logf("FIGURE agents started -> full matrix: %s", last.Sub(started).Round(time.Millisecond))
	})

	// c1/n2 is not a gateway node: its pod's traffic takes the VXLAN hop
	// programmed by that node's route agent.
	target := podAddr(t, plan, "c2", 2, 1)
	t.Run("route-agent restart loses nothing", func(t *testing.T) {
		ping, err := startPing(ctx, l, "c1/n2-p1", target, 6*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Restart in the middle of the run, once traffic is flowing.
		if err := ping.waitReplies(ctx, 15); err != nil {
			t.Fatal(err)
		}
		if _, err := l.RestartProcess(ctx, "c1-n2-route-agent"); err != nil {
			t.Fatal(err)
		}
		sent, recv, err := ping.wait()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("FIGURE route-agent restart: %d/%d replies", recv, sent)
		if recv != sent {
			t.Fatalf("lost %d of %d replies across a route-agent restart", sent-recv, sent)
		}
	})

	t.Run("broker outage: traffic flows, then a new cluster joins", func(t *testing.T) {
		p, err := l.StopProcess(ctx, "broker")
		if err != nil {
			t.Fatal(err)
		}
		ping, err := startPing(ctx, l, "c1/n1-p1", podAddr(t, plan, "c3", 2, 1), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		sent, recv, err := ping.wait()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("FIGURE during a 30 s broker outage: %d/%d replies", recv, sent)
		if recv != sent {
			t.Fatalf("lost %d of %d replies while the broker was down", sent-recv, sent)
		}
		if _, err := l.StartProcess(ctx, p.Name, p.Target, p.Args...); err != nil {
			t.Fatal(err)
		}
		up("c4")
		st, err := fabric.ReadState(l)
		if err != nil {
			t.Fatal(err)
		}
		r, err := fabric.Verify(ctx, l, fabric.VerifyOptions{Wait: 90 * time.Second, Only: []string{"c1", "c2", "c3", "c4"}, Involving: "c4"})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		r.Print(&out)
		t.Log("\n" + out.String())
		if r.Failed() > 0 {
			t.Fatalf("%d failures after c4 joined", r.Failed())
		}
		first := time.Time{}
		for _, pr := range r.Probes {
			if first.IsZero() || pr.FirstOK.Before(first) {
				first = pr.FirstOK
			}
		}
		t.Logf("FIGURE c4 gateway start -> first cross-cluster ping: %s", first.Sub(st.Started["c4"]).Round(time.Millisecond))
	})

	t.Run("down leaves nothing", func(t *testing.T) {
		if _, err := l.Down(ctx); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), name+"-") {
			t.Fatalf("namespaces left: %s", out)
		}
		out, _ = exec.Command("ps", "-eo", "args").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, name+"-") && !strings.Contains(line, "ps -eo") {
				t.Fatalf("process left: %s", line)
			}
		}
	})
}

func dumpLogs(t *testing.T, l *lab.Lab) {
	files, _ := filepath.Glob(filepath.Join(l.StateDir(), "logs", "*.log"))
	for _, f := range files {
		if !strings.Contains(f, "gateway") && !strings.Contains(f, "route-agent") && !strings.Contains(f, "broker") {
			continue
		}
		raw, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("=== %s (tail)\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}
